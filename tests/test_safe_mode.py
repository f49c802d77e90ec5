"""Safe mode of the app: a token login, server paths limited to configured roots, the LLM
backend fixed by the server (issue 18)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app.safe_mode import allowed_server_path, is_loopback, safe_mode_on, token_ok
from app.settings import AppSettings

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "address, loopback",
    [("127.0.0.1", True), ("localhost", True), ("::1", True), ("[::1]", True), ("127.8.0.1", True),
     ("0.0.0.0", False), ("", False), (None, False), ("192.168.1.5", False), ("example.org", False)],
)  # fmt: skip
def test_loopback_addresses(address: str | None, loopback: bool) -> None:
    assert is_loopback(address) is loopback
    assert safe_mode_on(AppSettings(), address) is (not loopback)
    assert safe_mode_on(AppSettings(safe_mode="on"), address) is True
    assert safe_mode_on(AppSettings(safe_mode="off"), address) is False


def test_tokens_and_roots(tmp_path: Path) -> None:
    assert token_ok("s3cret", "s3cret") and not token_ok("s3cre", "s3cret") and not token_ok("", None)
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (root / "out").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    assert allowed_server_path(root / "sub", [root])
    assert not allowed_server_path(root / ".." / "elsewhere", [root])  # '..' resolved
    assert not allowed_server_path(root / "out", [root])  # a link out of the root
    assert not allowed_server_path(Path("/etc/passwd"), [root])
    assert not allowed_server_path(root, [])


@pytest.fixture
def safe_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "note.txt").write_text("Kestrels hover over fields before they dive.\n")
    env = {
        "LONGQA_HOME": str(tmp_path / "home"),
        "LONGQA_EMBEDDING__DEVICE": "cpu",
        "LONGQA_APP__SAFE_MODE": "on",
        "LONGQA_APP__TOKEN": "s3cret",
        "LONGQA_APP__ROOTS": f'["{allowed}"]',
        "LONGQA_LLM__BACKEND": "openai",
        "LONGQA_LLM__BASE_URL": "http://127.0.0.1:9/v1",
        "LONGQA_LLM__MODEL": "served-model",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _texts(at: AppTest) -> list[str]:
    return [e.value for e in (*at.markdown, *at.caption, *at.info, *at.warning, *at.error, *at.title)]


def test_safe_mode_needs_the_token_then_limits_paths_and_fixes_the_backend(safe_env: Path) -> None:
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=600).run()
    assert not at.exception
    assert [t.key for t in at.text_input] == ["login_token"] and not at.tabs  # nothing but the login
    at.text_input(key="login_token").set_value("guess").run()
    assert "Wrong access token." in _texts(at) and not at.tabs
    at.text_input(key="login_token").set_value("s3cret").run()
    assert not at.exception and at.tabs
    keys = {t.key for t in at.sidebar.text_input}
    assert not keys & {"opt_base_url", "opt_api_key", "opt_model_remote"}  # no URL, key or model
    assert not at.sidebar.radio
    shown = " ".join(_texts(at))
    assert "served\\-model at http\\://127\\.0\\.0\\.1\\:9/v1 (fixed by the server)" in shown

    at.session_state["tab"] = "Library"
    at.run()
    at.text_input(key="server_path").set_value("/etc").run()
    at.button[1].click().run()  # "Ingest from the server"
    errors = [re.sub(r"\\(.)", r"\1", e.value) for e in at.error]  # as shown, without md escapes
    assert any("outside the folders this app may read in safe mode" in e for e in errors), errors
    assert any(str(safe_env / "allowed") in e for e in errors)


def test_safe_mode_without_a_token_says_how_to_set_one(
    safe_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LONGQA_APP__TOKEN")
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=600).run()
    assert not at.exception and not at.tabs and not at.text_input
    assert any(
        "no access token is set" in e.value and "LONGQA\\_APP\\_\\_TOKEN" in e.value for e in at.error
    ), [e.value for e in at.error]


def test_safe_mode_ingests_a_folder_inside_the_roots(safe_env: Path) -> None:
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=600).run()
    at.text_input(key="login_token").set_value("s3cret").run()
    at.session_state["tab"] = "Library"
    at.run()
    at.text_input(key="server_path").set_value(str(safe_env / "allowed")).run()
    at.button[1].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("Last ingest: 1 ingested" in s.value for s in at.success), [s.value for s in at.success]


def test_password_hashes() -> None:
    from app.accounts import authenticate, hash_password, password_ok

    h = hash_password("correct horse")
    assert h.startswith("scrypt$") and "correct" not in h
    assert password_ok("correct horse", h) and not password_ok("correct hors", h)
    assert not password_ok("x", "plain-text") and not password_ok("x", "scrypt$1$2$3$!!$??")
    assert hash_password("same") != hash_password("same")  # salted
    users = {"ann": h}
    assert authenticate(users, " ann ", "correct horse") == "ann"
    assert authenticate(users, "ann", "wrong") is None and authenticate(users, "bob", "correct horse") is None


def _sign_in(name: str, password: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=600).run()
    assert not at.exception and not at.tabs
    at.text_input(key="login_name").set_value(name)
    at.text_input(key="login_password").set_value(password)
    at.button[0].click().run()  # the form's "Sign in"
    return at


def test_accounts_keep_chats_apart_and_share_only_shared_collections(
    safe_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.accounts import hash_password

    users = {"ann": hash_password("ann-password"), "bob": hash_password("bob-password")}
    monkeypatch.setenv("LONGQA_APP__USERS", json.dumps(users))
    bad = _sign_in("ann", "bob-password")
    assert "Wrong user name or password." in _texts(bad) and not bad.tabs

    ann = _sign_in("ann", "ann-password")
    assert not ann.exception and ann.tabs
    assert any("Signed in as **ann**" in c.value for c in ann.sidebar.caption)
    ann.session_state["tab"] = "Library"
    ann.run()
    ann.text_input(key="server_path").set_value(str(safe_env / "allowed")).run()
    ann.button[1].click().run()
    doc = ann.dataframe[0].value["id"][0]
    for name, shared in (("Birds (shared)", True), ("Ann's own", False)):
        ann.text_input(key=f"coll_name_{ann.session_state['coll_round']}").set_value(name)
        ann.multiselect(key=f"coll_docs_{ann.session_state['coll_round']}").set_value([doc])
        ann.checkbox(key=f"coll_shared_{ann.session_state['coll_round']}").set_value(shared)
        ann.run()
        ann.button(key=f"coll_save_{ann.session_state['coll_round']}").click().run()
        assert not ann.exception
    ann.session_state["tab"] = "Ask"
    ann.run()
    assert len(ann.selectbox(key="collection").options) == 2
    ann.selectbox(key="collection").select_index(0).run()
    assert ann.multiselect(key="scope").value == [doc]  # the collection's documents
    # The question fails (the configured server is not there) and is saved all the same.
    ann.chat_input(key="question").set_value("Which birds hover over fields?").run()
    assert not ann.exception
    assert len(ann.chat_message) == 2
    assert len(ann.sidebar.radio(key="chat_pick").options) == 1

    bob = _sign_in("bob", "bob-password")
    assert not bob.exception and bob.tabs
    assert not bob.sidebar.radio  # none of Ann's chats
    opts = bob.selectbox(key="collection").options
    assert len(opts) == 1 and "Birds (shared)" in opts[0] and "shared by ann" in opts[0]
    # Bob cannot open Ann's chat by its address either.
    bob2 = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=600)
    bob2.query_params["chat"] = ann.session_state["chat_id"]
    bob2.run()
    bob2.text_input(key="login_name").set_value("bob")
    bob2.text_input(key="login_password").set_value("bob-password")
    bob2.button[0].click().run()
    assert not bob2.exception and len(bob2.chat_message) == 0
