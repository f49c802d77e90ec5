"""A chat turn as JSON and back (what :class:`app.chats.ChatStore` saves), and a chat as Markdown
with its citations (the export).

The JSON keeps everything the page shows again when a chat is reopened: the question, the route
and its facts, the answer with every citation (verdict, reason, location, quote), the drafts shown
while it was checked, a stopped turn's streamed text, or the problem that stopped it.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from app.locations import location_text
from app.ui.errors import Problem
from app.ui.library import Draft, Outcome, Turn
from pipeline.types import Answer, Citation, FirstDraft, RouteDecision, RouteFacts, Span, Usage

FORMAT = 1


def _route_json(r: RouteDecision | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {
        "mode": r.mode,
        "reason": r.reason,
        "forced": r.forced,
        "facts": None
        if r.facts is None
        else {**asdict(r.facts), "policy_inputs": dict(r.facts.policy_inputs)},
    }


def _route(d: dict[str, Any] | None) -> RouteDecision | None:
    if d is None:
        return None
    facts = d.get("facts")
    return RouteDecision(
        d["mode"], d.get("reason", ""), None if facts is None else RouteFacts(**facts), bool(d.get("forced"))
    )


def _citation_json(c: Citation) -> dict[str, Any]:
    return {
        **{k: getattr(c, k) for k in ("number", "doc_id", "source_path", "chunk_id", "quote", "verified")},
        **{k: getattr(c, k) for k in ("support", "origin", "verdict", "reason", "claim", "model_check")},
        "span": [c.span.start, c.span.end],
        "pages": list(c.pages) if c.pages else None,
        "time": list(c.time) if c.time else None,
    }


def _citation(d: dict[str, Any]) -> Citation:
    return Citation(
        number=int(d["number"]),
        doc_id=d["doc_id"],
        source_path=d["source_path"],
        chunk_id=d.get("chunk_id"),
        span=Span(*d["span"]),
        pages=tuple(d["pages"]) if d.get("pages") else None,  # type: ignore[arg-type]
        time=tuple(d["time"]) if d.get("time") else None,  # type: ignore[arg-type]
        quote=d.get("quote", ""),
        verified=bool(d.get("verified")),
        support=float(d.get("support", 0.0)),
        origin=d.get("origin", "model"),
        verdict=d.get("verdict", ""),
        reason=d.get("reason", ""),
        claim=d.get("claim", ""),
        model_check=d.get("model_check", ""),
    )


def _answer_json(a: Answer | None) -> dict[str, Any] | None:
    if a is None:
        return None
    return {
        "question": a.question,
        "text": a.text,
        "mode": a.mode,
        "route": _route_json(a.route),
        "citations": [_citation_json(c) for c in a.citations],
        "usage": asdict(a.usage),
        "model": a.model,
        "retrieval": a.retrieval,
        "cut_off": a.cut_off,
        "first_draft": None
        if a.first_draft is None
        else {
            "text": a.first_draft.text,
            "kept": a.first_draft.kept,
            "citations": [_citation_json(c) for c in a.first_draft.citations],
        },
    }


def _answer(d: dict[str, Any] | None) -> Answer | None:
    if d is None:
        return None
    fd = d.get("first_draft")
    route = _route(d["route"])
    assert route is not None
    return Answer(
        question=d["question"],
        text=d["text"],
        mode=d["mode"],
        route=route,
        citations=tuple(_citation(c) for c in d.get("citations", ())),
        usage=Usage(**d.get("usage", {})),
        model=d.get("model", ""),
        retrieval=d.get("retrieval", ""),
        cut_off=bool(d.get("cut_off", False)),
        first_draft=None
        if fd is None
        else FirstDraft(
            fd["text"], tuple(_citation(c) for c in fd.get("citations", ())), bool(fd.get("kept"))
        ),
    )


def turn_json(t: Turn) -> dict[str, Any]:
    o = t.outcome
    return {
        "format": FORMAT,
        "question": t.question,
        "mode": t.mode,
        "scope": list(t.scope),
        "outcome": {
            "answer": _answer_json(o.answer),
            "problem": None if o.problem is None else {"message": o.problem.message, "fix": o.problem.fix},
            "seconds": o.seconds,
            "mode": o.mode,
            "stopped": o.stopped,
        },
        "drafts": [{"text": d.text, "reason": d.reason} for d in t.drafts],
        "partial": t.partial,
        "route": _route_json(t.route),
    }


def turn_from_json(d: dict[str, Any]) -> Turn:
    o = d["outcome"]
    p = o.get("problem")
    return Turn(
        question=d["question"],
        mode=d["mode"],
        scope=tuple(d.get("scope", ())),
        outcome=Outcome(
            _answer(o.get("answer")),
            None if p is None else Problem(p["message"], p.get("fix", "")),
            float(o.get("seconds", 0.0)),
            o.get("mode", d["mode"]),
            bool(o.get("stopped")),
        ),
        drafts=tuple(Draft(x["text"], x.get("reason", "")) for x in d.get("drafts", ())),
        partial=d.get("partial", ""),
        route=_route(d.get("route")),
    )


MODE_NAMES = {"rag": "RAG", "lc": "long context", "auto": "auto"}


def chat_markdown(title: str, turns: list[Turn], when: float | None = None) -> str:
    """The chat as Markdown: each question, the answer with its [n] markers, and under it the
    sources each marker points to (document, pages or time, verified or not and why, the quote)."""
    stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(time.time() if when is None else when))
    out = [f"# {title}", "", f"_Exported from longqa on {stamp}._", ""]
    for i, t in enumerate(turns, 1):
        out += [f"## {i}. {t.question}", ""]
        o = t.outcome
        a = o.answer
        if a is not None:
            how = MODE_NAMES.get(a.mode, a.mode)
            out += [
                a.text.strip(),
                "",
                f"_Answered with {how} in {o.seconds:.1f} s ({a.model}). {a.route.reason}_",
                "",
            ]
            if not any(c.verified for c in a.citations):
                out += ["> **No verified source in your documents** for this answer.", ""]
            if a.citations:
                out += ["Sources:", ""]
                for c in a.citations:
                    where = location_text(c.pages, c.time, c.span)
                    verdict = "verified" if c.verified else (c.verdict or "unverified").replace("_", " ")
                    why = f" — {c.reason}" if c.reason else ""
                    quote = " ".join(c.quote.split())
                    out.append(
                        f"- [{c.number}] {Path(c.source_path).name}, {where} ({verdict}{why}): “{quote}”"
                    )
                out.append("")
        elif o.stopped:
            out += [
                (t.partial.strip() + "\n\n" if t.partial.strip() else "")
                + f"_Stopped after {o.seconds:.1f} s._",
                "",
            ]
        elif o.problem is not None:
            out += [f"_Not answered: {o.problem}_", ""]
    return "\n".join(out).rstrip() + "\n"
