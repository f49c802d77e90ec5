"""Saved chats (app/chats.py, app/ui/chat_json.py): in the project's database on SQLite and
PostgreSQL, a turn survives the JSON round trip with its citations and route, two processes
saving at once lose nothing, and the Markdown export carries the sources."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest

from app.chats import ChatNotFound, ChatStore, title_from
from app.ui.chat_json import chat_markdown, turn_from_json, turn_json
from app.ui.errors import Problem
from app.ui.library import Draft, Outcome, Turn
from pipeline.store import MetadataStore
from pipeline.types import Answer, Citation, FirstDraft, RouteDecision, RouteFacts, Span, Usage


def _answered_turn() -> Turn:
    facts = RouteFacts(
        doc_tokens=5200,
        window=32768,
        capacity=30000,
        cached_tokens=0,
        predicted_lc_seconds=41.5,
        latency_budget_s=90.0,
        policy_inputs={"q_hallu": 0.1, "log_tokens": 8.5},
        p_lc_better=0.31,
        threshold=0.5,
    )
    route = RouteDecision("rag", "RAG: the question asks for one fact", facts)
    cites = (
        Citation(
            1,
            "d1",
            "/data/word-processor-history.pdf",
            "c7",
            Span(100, 180),
            (1, 1),
            None,
            "The MT/ST was introduced in 1964",
            True,
            0.9,
            "model",
            "verified",
            "the passage states it",
            "It was introduced in 1964.",
        ),
        Citation(
            2,
            "d2",
            "/data/talk.srt",
            "c9",
            Span(5, 40),
            None,
            (192.0, 221.5),
            "we shipped it in May",
            False,
            0.2,
            "matched",
            "not_stated",
            "the cue does not say so",
            "x",
            "not_stated",  # the model, asked, said so (model_check)
        ),
    )
    ans = Answer(
        "When was the IBM MT/ST introduced?",
        "It was introduced in 1964 [1]. Shipping began in May [2].",
        "rag",
        route,
        cites,
        Usage(812, 24, 9.5, 0, "xllamacpp test", 150.0, 12.0),
        "qwen2.5-1.5b",
        "hybrid",
        FirstDraft("It came out in 1966 [1].", cites[:1], False),
    )
    return Turn(
        ans.question,
        "auto",
        ("d1",),
        Outcome(ans, None, 9.6, "auto"),
        (Draft("It came out in 1966.", "checking once more"),),
        "",
        route,
    )


def test_turn_json_round_trip_keeps_everything_shown() -> None:
    t = _answered_turn()
    back = turn_from_json(turn_json(t))
    assert back == t
    assert back.outcome.answer.route.features == t.outcome.answer.route.features  # type: ignore[union-attr]
    stopped = Turn("Why?", "lc", (), Outcome(None, None, 3.2, "lc", stopped=True), (), "Because the", None)
    failed = Turn(
        "Why?", "rag", (), Outcome(None, Problem("The server did not answer", "Start it"), 1.0, "rag")
    )
    assert turn_from_json(turn_json(stopped)) == stopped
    assert turn_from_json(turn_json(failed)) == failed


def test_markdown_export_has_answers_and_checked_sources() -> None:
    t = _answered_turn()
    stopped = Turn("And then?", "lc", (), Outcome(None, None, 3.2, "lc", stopped=True), (), "Then the", None)
    md = chat_markdown("IBM history", [t, stopped], when=0)
    assert md.startswith("# IBM history\n")
    assert "## 1. When was the IBM MT/ST introduced?" in md
    assert "It was introduced in 1964 [1]." in md
    assert (
        "- [1] word-processor-history.pdf, p. 1 (verified — the passage states it): "
        "“The MT/ST was introduced in 1964”"
    ) in md
    assert "- [2] talk.srt, 03:12-03:41 (not stated — the cue does not say so)" in md
    assert "## 2. And then?" in md and "Then the" in md and "_Stopped after 3.2 s._" in md


def test_titles() -> None:
    assert title_from("  When   was\nit?  ") == "When was it?"
    long = title_from("word " * 40)
    assert long.endswith("…") and len(long) <= 61
    assert title_from("") == "New chat"


def test_store_crud(db_url: str) -> None:
    store = MetadataStore(db_url)
    chats = ChatStore(store)
    a = chats.create("First")
    b = chats.create("Second")
    t = _answered_turn()
    assert chats.add_turn(a.id, turn_json(t)) == 1
    assert chats.add_turn(a.id, turn_json(t)) == 2
    listed = chats.list()
    assert [c.id for c in listed] == [a.id, b.id]  # the chat last written to comes first
    assert [c.turns for c in listed] == [2, 0]
    assert [turn_from_json(d) for d in chats.turns(a.id)] == [t, t]
    chats.rename(b.id, "  Renamed\n chat ")
    assert chats.get(b.id).title == "Renamed chat"
    assert (chats.get(a.id).id, chats.get(a.id).turns) == (a.id, 2)
    # Another owner sees nothing of these and cannot write to them.
    assert chats.list(owner="ann") == []
    with pytest.raises(ChatNotFound):
        chats.get(a.id, owner="ann")
    with pytest.raises(ChatNotFound):
        chats.turns(a.id, owner="ann")
    with pytest.raises(ChatNotFound):
        chats.add_turn(a.id, turn_json(t), owner="ann")
    with pytest.raises(ChatNotFound):
        chats.delete(a.id, owner="ann")
    chats.delete(a.id)
    assert [c.id for c in chats.list()] == [b.id]
    with pytest.raises(ChatNotFound):
        chats.turns(a.id)
    # A second store on the same database (a restart, another replica) sees the same chats.
    store.close()
    again = ChatStore(MetadataStore(db_url))
    assert [c.title for c in again.list()] == ["Renamed chat"]


def _writer(url: str, chat_id: str, who: int, n: int) -> None:
    chats = ChatStore(MetadataStore(url))
    for i in range(n):
        chats.add_turn(chat_id, {"format": 1, "question": f"{who}-{i}"})


def test_two_processes_saving_at_once_lose_nothing(db_url: str) -> None:
    chats = ChatStore(MetadataStore(db_url))
    chat = chats.create("busy")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(db_url, chat.id, w, 25)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    got = [d["question"] for d in chats.turns(chat.id)]
    assert sorted(got) == sorted(f"{w}-{i}" for w in range(2) for i in range(25))
    assert chats.get(chat.id).turns == 50


def test_chats_live_beside_the_documents(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'meta.db'}"
    ChatStore(MetadataStore(url)).create("x")
    import sqlite3

    names = {r[0] for r in sqlite3.connect(tmp_path / "meta.db").execute("select name from sqlite_master")}
    assert {"chats", "chat_turns", "documents"} <= names
