"""One JSON shape for an answer and its citations (app/answer_json.py): every key that
`longqa ask --json` and the batch table's citations had before they shared it."""

from __future__ import annotations

import json

from app.answer_json import answer_json, citation_json
from app.routing.router import RouteInputs, route
from pipeline.types import Answer, Citation, FirstDraft, Span, Usage

CLI_KEYS = {"number", "doc_id", "source", "pages", "time", "span", "quote", "verified", "support", "origin"}
BATCH_KEYS = {"n", "doc", "doc_id", "where", "pages", "time", "quote", "verified"}
# issue 19: why a citation is verified or not, and the model's own reply when it was asked
VERDICT_KEYS = {"verdict", "reason", "claim", "model_check"}


def _cite(**kw) -> Citation:  # type: ignore[no-untyped-def]
    base = dict(
        number=2,
        doc_id="d1",
        source_path="/lib/reports/q3.pdf",
        chunk_id="c1",
        span=Span(10, 40),
        pages=(3, 4),
        time=None,
        quote="Revenue rose.",
        verified=True,
        support=0.8,
        origin="repaired",
    )
    base.update(kw)
    return Citation(**base)


def test_citation_shape_has_every_key_of_both_outputs() -> None:
    c = citation_json(_cite())
    assert set(c) == CLI_KEYS | BATCH_KEYS | VERDICT_KEYS
    assert c["verdict"] == "verified" and c["reason"] == ""  # a citation made before verdicts
    why = citation_json(
        _cite(verified=False, verdict="contradicted", reason="the passage negates it", claim="x")
    )
    assert (why["verdict"], why["reason"], why["claim"]) == ("contradicted", "the passage negates it", "x")
    assert c["model_check"] is None  # not asked
    asked = citation_json(_cite(verified=False, verdict="not_stated", model_check="not_stated"))
    assert asked["model_check"] == "not_stated" and asked["verdict"] == "not_stated"
    assert c["number"] == c["n"] == 2 and c["source"] == "/lib/reports/q3.pdf"
    assert c["doc"] == "q3.pdf" and c["where"] == "pp. 3-4" and c["pages"] == [3, 4]
    assert c["span"] == [10, 40] and c["time"] is None and c["origin"] == "repaired"
    assert c["verified"] is True and c["support"] == 0.8
    # The batch run names the document as its table does; a citation without a document id
    # (none today) falls back to the file's name.
    assert citation_json(_cite(), doc_label="reports/q3.pdf")["doc"] == "reports/q3.pdf"
    assert citation_json(_cite(doc_id=""), doc_label="reports/q3.pdf")["doc"] == "q3.pdf"
    talk = citation_json(_cite(pages=None, time=(72.0, 161.0)))
    assert talk["where"] == "01:12-02:41" and talk["time"] == [72.0, 161.0]
    assert citation_json(_cite(pages=None))["where"] == "chars 10-40"


def test_answer_shape() -> None:
    d = route(
        RouteInputs(
            doc_tokens=3000,
            window=32768,
            reserved_tokens=456,
            prefill_tokens_per_s=1000.0,
            cached_tokens=0,
            latency_budget_s=60.0,
        )
    )
    first = FirstDraft("Revenue fell [2].", (_cite(verified=False),), kept=False)
    ans = Answer("q?", "Revenue rose [2].", "lc", d, (_cite(),), Usage(10, 5, 1.5), "m", "", first)
    out = answer_json(ans)
    assert set(out) == {
        "question",
        "answer",
        "mode",
        "reason",
        "forced",
        "features",
        "model",
        "retrieval",
        "citations",
        "usage",
        "cut_off",
        "first_draft",
    }
    assert out["features"] == d.features and out["features"]["doc_tokens"] == 3000
    assert out["usage"]["prompt_tokens"] == 10 and out["citations"][0]["n"] == 2
    assert out["first_draft"]["kept"] is False and out["first_draft"]["citations"][0]["verified"] is False
    assert out["cut_off"] is False
    json.dumps(out)  # JSON-ready
