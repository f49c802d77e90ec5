"""An answer and its citations as plain JSON-ready dicts: one shape for ``longqa ask --json``
and the batch table's ``citations`` column (docs/app.md, docs/batch.md).

Citation (``citation_json``):

- ``number`` and ``n``: its number in the answer (``[n]``); ``n`` is the batch table's name
  for it, kept so that both outputs' readers find the key they know;
- ``doc_id``; ``source``: the file's path as ingested; ``doc``: the document as the caller
  names it (the batch run: its path relative to the documents folder), else the file's name;
- ``where``: pages, time range or character range in words (``app.locations.location_text``);
  ``pages`` ``[first, last]``, ``time`` ``[start, end]`` seconds (null when absent); ``span``
  ``[start, end]`` characters of the quote in the document's text;
- ``quote``; ``verified`` (bool); ``support`` (share of the words the claim adds to the question
  that are in the passage); ``origin``: ``model``, ``repaired``, ``matched`` or ``quote``
  (``CitationOrigin``);
- ``verdict``: ``verified``, ``unsupported``, ``contradicted``, ``not_an_answer`` or
  ``not_stated`` (the model's check said so); ``reason``: why, in words; ``claim``: the claim
  that was checked (docs/citations.md); ``model_check``: null when the model was not asked about
  the claim, else its reply (``supported``, ``not_stated``, ``contradicted``; ``llm.entail_claims``).

Answer (``answer_json``): ``question``, ``answer``, ``mode`` (what answered), ``reason``,
``forced``, ``features`` (the router's facts for display), ``model``, ``retrieval``,
``citations``, ``usage`` (``Usage`` as a dict), ``cut_off`` (true when the model stopped at
``llm.max_tokens`` mid-sentence: the answer ends with that sentence and "…", not cited or checked)
and ``first_draft`` (null, or the draft before its re-check: ``answer``, ``kept``, ``citations``).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from app.locations import location_text
from pipeline.types import Answer, Citation


def citation_json(c: Citation, doc_label: str = "") -> dict[str, Any]:
    """One citation (see the module doc); ``doc_label`` names its document for ``doc``."""
    return {
        "number": c.number,
        "n": c.number,
        "doc_id": c.doc_id,
        "source": c.source_path,
        "doc": doc_label if doc_label and c.doc_id else Path(c.source_path).name,
        "where": location_text(c.pages, c.time, c.span),
        "pages": list(c.pages) if c.pages else None,
        "time": list(c.time) if c.time else None,
        "span": [c.span.start, c.span.end],
        "quote": c.quote,
        "verified": bool(c.verified),
        "support": c.support,
        "origin": c.origin,
        "verdict": c.verdict or ("verified" if c.verified else "unsupported"),
        "reason": c.reason,
        "claim": c.claim,
        "model_check": c.model_check or None,
    }


def answer_json(ans: Answer, doc_label: str = "") -> dict[str, Any]:
    """The answer with its route, citations, usage and first draft (see the module doc)."""
    return {
        "question": ans.question,
        "answer": ans.text,
        "mode": ans.mode,
        "reason": ans.route.reason,
        "forced": ans.route.forced,
        "features": ans.route.features,
        "model": ans.model,
        "retrieval": ans.retrieval,
        "citations": [citation_json(c, doc_label) for c in ans.citations],
        "usage": asdict(ans.usage),
        "cut_off": ans.cut_off,
        "first_draft": None
        if ans.first_draft is None
        else {
            "answer": ans.first_draft.text,
            "kept": ans.first_draft.kept,
            "citations": [citation_json(c, doc_label) for c in ans.first_draft.citations],
        },
    }
