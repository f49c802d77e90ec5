"""The Streamlit page logic, driven by streamlit.testing's AppTest with the real SmolLM2 model."""

from __future__ import annotations

import re
from pathlib import Path

import pymupdf
import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "When was the IBM MT/ST introduced?"  # the tiny test model answers it with a verifiable claim


@pytest.fixture
def app_env(tmp_path: Path, model_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    env = {
        "LONGQA_HOME": str(tmp_path / "home"),
        "LONGQA_MODEL_CACHE": str(model_cache),
        "LONGQA_LLM__MODEL": "smollm2-135m",
        "LONGQA_LLM__MAX_TOKENS": "48",
        "LONGQA_LLM__THREADS": "2",
        "LONGQA_EMBEDDING__DEVICE": "cpu",
        "LONGQA_RETRIEVAL__TOP_K": "3",
        "LONGQA_APP__SAFE_MODE": "off",  # AppTest has no bind address (tests/test_safe_mode.py)
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def new_app() -> AppTest:
    return AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=600)


def texts(at: AppTest) -> list[str]:
    return [e.value for e in (*at.markdown, *at.caption, *at.info, *at.warning, *at.success)]


def shown(markdown: str) -> str:
    """The text a reader sees from markdown the app escaped (``\\.`` shows as ``.``)."""
    return re.sub(r"\\(.)", r"\1", markdown)


def on_tab(at: AppTest, tab: str) -> AppTest:
    at.session_state["tab"] = tab
    return at.run()


def with_samples() -> AppTest:
    at = new_app().run()
    assert not at.exception
    assert "library is empty" in at.info[0].value
    at.button(key="samples").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    return at


def test_ask_shows_answer_mode_reason_usage_and_linked_sources(app_env: Path) -> None:
    at = with_samples()
    at.segmented_control(key="mode").set_value("rag")
    at.chat_input(key="question").set_value(QUESTION).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert len(at.chat_message) == 2
    shown = texts(at)
    assert ":blue-badge[RAG]" in shown
    assert any(t.startswith("Forced: RAG mode was requested") for t in shown)
    # The sidebar names the router's profile: the catalog gives the model's size, hence its class.
    assert any("the class prior (small" in c.value for c in at.sidebar.caption), [
        c.value for c in at.sidebar.caption
    ]
    usage = next(t for t in shown if "completion tokens" in t)
    assert "prompt +" in usage and "smollm2-135m" in usage and " s · " in usage
    anchors = [t for t in shown if t.startswith('<div id="src-0-')]
    assert anchors, shown  # the sample PDF answers this; every citation gets a source panel
    statuses = [t for t in shown if t.endswith("verified]")]
    assert len(statuses) == len(anchors)
    assert any("green-badge" in t for t in statuses), statuses  # at least one verified citation
    answer = at.chat_message[1].markdown[0].value
    assert "(#src-0-" in answer  # markers link to their panels
    passages = [t for t in shown if "<mark" in t]
    assert passages and all("</mark>" in p for p in passages)
    # PDF citations show the page image with the cited words highlighted.
    images = at.get("image")
    captions = [i.caption for img in images for i in img.proto.imgs]
    assert any("cited words highlighted" in c for c in captions), captions

    # The conversation stays on the page across reruns (any widget change reruns the script).
    at.run()
    assert len(at.chat_message) == 2 and at.chat_message[1].markdown[0].value == answer

    # It is saved in the database: a new session (a refresh, a restart of the app) lists it and
    # reopens it from the list or from the address (?chat=<id>), sources and all.
    chat_id = at.session_state["chat_id"]
    b = new_app().run()
    assert len(b.chat_message) == 0
    pick = b.radio(key="chat_pick")
    assert pick.options == [f"{QUESTION.replace('.', chr(92) + '.')} · " + pick.options[0].split(" · ")[1]]
    pick.set_value(chat_id).run()
    assert not b.exception
    assert len(b.chat_message) == 2 and b.chat_message[1].markdown[0].value == answer
    assert sum(t.startswith('<div id="src-0-') for t in texts(b)) == len(anchors)
    c = new_app()
    c.query_params["chat"] = chat_id
    c.run()
    assert len(c.chat_message) == 2 and c.chat_message[1].markdown[0].value == answer

    # With every document deleted, the chat is still listed and opens, its sources quoted.
    d = on_tab(new_app().run(), "Library")
    d.multiselect(key="doomed").set_value(list(d.dataframe[0].value["id"])).run()
    next(x for x in d.button if x.label.startswith("Delete 2")).click().run()
    d.button(key="delete_yes").click().run()
    assert not d.exception and "Nothing ingested yet." in texts(d)
    e = new_app()
    e.query_params["chat"] = chat_id
    e.run()
    assert not e.exception and "library is empty" in e.info[0].value
    assert len(e.chat_message) == 2 and e.chat_message[1].markdown[0].value == answer
    gone = [i for i in e.info if i.value.startswith("This document is no longer in the library")]
    assert len(gone) == len(anchors)
    assert e.radio(key="chat_pick").value == chat_id


@pytest.mark.slow  # two answers, one of them reading a whole document
def test_compare_answers_rag_and_lc_side_by_side(app_env: Path) -> None:
    at = on_tab(with_samples(), "Library")
    table = at.dataframe[0].value
    story = next(i for n, i in zip(table["name"], table["id"]) if "gold-bug" in n)
    at = on_tab(at, "Compare")
    at.text_input(key="cmp_question").set_value("What did the narrator's friend find on the beach?")
    at.multiselect(key="cmp_scope").set_value([story])
    at.button[0].click().run()  # the form's submit button
    assert not at.exception and not at.error, [e.value for e in at.error]
    table = at.dataframe[0].value
    assert list(table["mode"]) == ["RAG", "Long context"]
    assert all(table["seconds"] > 0) and all(table["prompt tokens"] > 0)
    assert list(table["status"]) == ["answered", "answered"]
    shown = texts(at)
    assert ":blue-badge[RAG]" in shown and ":violet-badge[LC]" in shown
    assert sum(t.startswith("Forced:") for t in shown) == 2


def test_library_upload_delete_and_a_second_session_sees_it(app_env: Path) -> None:
    a = on_tab(new_app().run(), "Library")
    note = b"The lighthouse of Vardo was repainted red in 1987 by the harbour guild.\n" * 3
    a.file_uploader[0].set_value([("lighthouse.txt", note, "text/plain")])
    a.run()
    next(b for b in a.button if b.label == "Ingest uploaded files").click().run()
    assert not a.exception and not a.error, [e.value for e in a.error]
    assert any("1 ingested" in t for t in texts(a))
    table = a.dataframe[0].value
    assert list(table["name"]) == ["lighthouse.txt"] and list(table["status"]) == ["ready"]
    assert (app_env / "home" / "uploads" / "lighthouse.txt").read_bytes() == note

    b = on_tab(new_app().run(), "Library")  # another browser session, same process
    assert list(b.dataframe[0].value["name"]) == ["lighthouse.txt"]

    doc_id = table["id"][0]
    a.multiselect(key="doomed").set_value([doc_id])
    a.run()
    next(x for x in a.button if x.label.startswith("Delete 1")).click().run()
    assert not a.exception
    assert list(a.dataframe[0].value["name"]) == ["lighthouse.txt"]  # asked first, nothing deleted
    assert any("Delete 1 document(s) for everyone" in w.value for w in a.warning)
    a.button(key="delete_yes").click().run()
    assert not a.exception
    assert "Nothing ingested yet." in texts(a)
    assert not (app_env / "home" / "uploads" / "lighthouse.txt").exists()  # the uploaded copy went too
    b.run()
    assert "Nothing ingested yet." in texts(b)

    a.text_input(key="server_path").set_value(str(app_env / "no-such-folder")).run()
    next(x for x in a.button if x.label == "Ingest from the server").click().run()
    assert not a.exception
    assert any("There is no file or folder" in e.value and "on the server" in e.value for e in a.error)


def test_an_unreachable_llm_server_is_a_friendly_message(app_env: Path) -> None:
    at = with_samples()
    at.sidebar.radio(key="opt_backend").set_value("openai").run()
    at.sidebar.text_input(key="opt_base_url").set_value("http://127.0.0.1:9/v1")
    at.sidebar.text_input(key="opt_model_remote").set_value("some-model").run()
    at.segmented_control(key="mode").set_value("rag")
    at.chat_input(key="question").set_value(QUESTION).run()
    assert not at.exception  # no stack trace
    errors = [shown(e.value) for e in at.error]
    assert len(errors) == 1, errors
    assert "LLM server at http://127.0.0.1:9/v1" in errors[0]  # what failed
    assert "is running" in errors[0] and "embedded llama.cpp" in errors[0]  # and the fix
    assert "Traceback" not in errors[0]


def test_eval_tab_opens_a_report(app_env: Path) -> None:
    run = app_env / "reports" / "lara-32k"
    run.mkdir(parents=True)
    (run / "summary.md").write_text(
        "# Routed beats both\n\nAccuracy by mode.\n\n![Accuracy plot](plot.png)\n\nAfter the plot."
    )
    (run / "accuracy.csv").write_text("mode,accuracy\nrag,0.41\nlc,0.47\nrouted,0.49\n")
    (run / "plot.png").write_bytes(pymupdf.Pixmap(pymupdf.csRGB, (0, 0, 4, 4), False).tobytes("png"))
    at = on_tab(new_app().run(), "Eval")
    assert not at.exception
    assert any("Routed beats both" in t for t in texts(at))
    # The report's plot is shown where its Markdown puts it, once, not as its link's alt text.
    assert not any("Accuracy plot" in t for t in texts(at))
    assert any("After the plot" in t for t in texts(at))
    assert [c for img in at.image for c in img.captions] == ["Accuracy plot"]
    assert list(at.dataframe[0].value["mode"]) == ["rag", "lc", "routed"]
