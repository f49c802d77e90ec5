"""End to end in a real headless Chromium: start the app, load the samples, ask, see a verified citation.

Needs Debian's chromium and chromium-driver (scripts/test.sh installs them) and selenium (the
dev extra). Saves screenshots to artifacts/e2e/ (or $LONGQA_ARTIFACTS/e2e/).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("LONGQA_ARTIFACTS", ROOT / "artifacts")) / "e2e"
QUESTION = "When was the IBM MT/ST introduced?"  # the tiny test model answers it with a verifiable claim
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def _need_browser() -> None:
    if CHROMIUM and CHROMEDRIVER:
        return
    msg = "no chromium/chromedriver: apt-get install chromium chromium-driver (scripts/test.sh does)"
    if os.environ.get("CI"):
        pytest.fail("CI must run the browser test: " + msg)
    pytest.skip(msg)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def app_env() -> dict[str, str]:
    """Settings a test changes for its app (overrides below)."""
    return {}


class AppServer:
    """The app in its own process (``streamlit run``, as a user starts it); ``restart`` stops it
    and starts it again on the same port and data, as after a reboot."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.tmp_path, self.env = tmp_path, env
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None  # type: ignore[type-arg]
        self.log = (tmp_path / "streamlit.log").open("a")

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                str(ROOT / "streamlit_app.py"),
                "--server.headless=true",
                f"--server.port={self.port}",
                "--server.address=127.0.0.1",
                "--browser.gatherUsageStats=false",
                "--server.fileWatcherType=none",
            ],
            cwd=ROOT,  # reads .streamlit/config.toml like a user running it from the project
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                    if r.read() == b"ok":
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    "streamlit did not start:\n" + (self.tmp_path / "streamlit.log").read_text()[-3000:]
                )
            time.sleep(0.5)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(20)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def app_server(tmp_path: Path, model_cache: Path, app_env: dict[str, str]) -> Iterator[AppServer]:
    _need_browser()
    env = {
        **os.environ,
        "LONGQA_HOME": str(tmp_path / "home"),
        "LONGQA_MODEL_CACHE": str(model_cache),
        "LONGQA_LLM__MODEL": "smollm2-135m",
        "LONGQA_LLM__MAX_TOKENS": "48",
        "LONGQA_LLM__THREADS": "2",
        "LONGQA_EMBEDDING__DEVICE": "cpu",
        "LONGQA_RETRIEVAL__TOP_K": "3",
        "HF_HUB_OFFLINE": "1",
        **app_env,
    }
    server = AppServer(tmp_path, env)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        server.log.close()


@pytest.fixture
def app_url(app_server: AppServer) -> str:
    return app_server.url


@pytest.fixture
def browser(tmp_path: Path):  # type: ignore[no-untyped-def]
    _need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM  # type: ignore[assignment]
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1440,2000",
        "--autoplay-policy=no-user-gesture-required",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver, what: str, cond, timeout: float = 300.0):  # type: ignore[no-untyped-def]
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.5).until(lambda d: cond(d))
    except TimeoutException:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "failure.png"))
        pytest.fail(f"timed out waiting for {what}; screenshot in {ARTIFACTS / 'failure.png'}")


def _button(driver, label: str):  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.XPATH, f"//button[normalize-space(.)='{label}']")
    return found[0] if found and found[0].is_displayed() else None


def test_ask_the_samples_and_see_a_verified_citation(app_server: AppServer, browser) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    app_url = app_server.url
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.get(app_url)
    _wait(browser, "the empty-library button", lambda d: _button(d, "Load the sample documents"), 120).click()
    box = _wait(
        browser,
        "the chat input",
        lambda d: d.find_elements(By.CSS_SELECTOR, "textarea[data-testid='stChatInputTextArea']"),
        240,
    )[0]
    _wait(browser, "the mode control", lambda d: _button(d, "RAG")).click()
    _wait(
        browser,
        "RAG to be selected",
        lambda d: [
            b
            for b in d.find_elements(
                By.CSS_SELECTOR, "[data-testid='stButtonGroup'] button[aria-checked='true']"
            )
            if b.text.strip() == "RAG"
        ],
        60,
    )
    box = browser.find_element(By.CSS_SELECTOR, "textarea[data-testid='stChatInputTextArea']")
    box.send_keys(QUESTION)
    box.send_keys(Keys.ENTER)

    def answered(d):  # type: ignore[no-untyped-def]
        msgs = d.find_elements(By.CSS_SELECTOR, "[data-testid='stChatMessage']")
        if len(msgs) < 2:
            return None
        m = re.search(r"(\d+)/(\d+) citations verified", msgs[1].text)
        spinning = d.find_elements(By.CSS_SELECTOR, "[data-testid='stSpinner']")
        return msgs[1] if m and not spinning else None

    answer = _wait(browser, "the answer", answered, 600)
    text = answer.text
    verified, total = map(int, re.search(r"(\d+)/(\d+) citations verified", text).groups())  # type: ignore[union-attr]
    assert verified >= 1 and total >= verified, text
    assert "RAG" in text and "Forced: RAG mode was requested" in text
    # Every [n] links to its source panel, and the panels exist with their verdict.
    links = answer.find_elements(By.CSS_SELECTOR, "a[href*='#src-0-']")
    assert links, text
    for link in links:
        anchor = link.get_attribute("href").split("#", 1)[1]
        _wait(browser, f"the source panel #{anchor}", lambda d, a=anchor: d.find_elements(By.ID, a), 120)
    badges = [
        b.text for b in answer.find_elements(By.CSS_SELECTOR, "[data-testid='stMarkdownContainer'] span")
    ]
    assert any(b.strip().endswith("verified") and "unverified" not in b for b in badges), badges
    # A PDF citation shows the page image with the cited words highlighted.
    _wait(
        browser,
        "the page image",
        lambda d: answer.find_elements(By.CSS_SELECTOR, "[data-testid='stImage'] img"),
    )

    browser.execute_script("arguments[0].scrollIntoView({block: 'start'});", answer)
    time.sleep(1.0)
    browser.save_screenshot(str(ARTIFACTS / "answer.png"))
    links[0].click()
    time.sleep(1.0)
    browser.save_screenshot(str(ARTIFACTS / "source-panel.png"))

    # The document viewer (pdf.js): the cited page drawn with the cited words boxed, zoom buttons.
    toggle = _wait(
        browser,
        "the viewer toggle",
        lambda d: d.find_elements(By.XPATH, "//label[contains(., 'Open in the document viewer')]"),
        60,
    )[0]
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", toggle)
    toggle.click()
    frame = _wait(
        browser,
        "the PDF viewer",
        lambda d: d.find_elements(By.CSS_SELECTOR, "iframe[title*='streamlit_pdf_viewer']"),
        120,
    )[0]
    assert "Pages 1–" in answer.text and "the cited words are boxed on page 1" in answer.text, answer.text
    browser.execute_script("arguments[0].scrollIntoView({block: 'start'});", frame)
    browser.switch_to.frame(frame)
    _wait(browser, "the page drawn", lambda d: d.find_elements(By.CSS_SELECTOR, "canvas"), 120)
    boxes = _wait(
        browser, "the cited words' box", lambda d: d.find_elements(By.CSS_SELECTOR, "[id^='annotation-']"), 60
    )
    assert boxes
    browser.switch_to.default_content()
    time.sleep(1.0)
    browser.save_screenshot(str(ARTIFACTS / "viewer.png"))

    # The chat is saved in the database and named in the address: after the app restarts, the
    # same address shows it again.
    address = browser.current_url
    assert "chat=" in address, address
    app_server.restart()
    browser.get(address)
    again = _wait(browser, "the reopened chat", answered, 240)
    assert QUESTION in browser.find_elements(By.CSS_SELECTOR, "[data-testid='stChatMessage']")[0].text
    assert f"{verified}/{total} citations verified" in again.text
    _wait(
        browser,
        "the chat in the sidebar's list",
        lambda d: [
            e
            for e in d.find_elements(By.CSS_SELECTOR, "[data-testid='stSidebar'] label")
            if QUESTION in e.text
        ],
        60,
    )
    browser.save_screenshot(str(ARTIFACTS / "reopened.png"))

    # A second browser session at the same time shares the library (loaded once per process).
    first = browser.current_window_handle
    browser.switch_to.new_window("tab")
    browser.get(app_url)
    _wait(
        browser,
        "the chat input in a second session",
        lambda d: d.find_elements(By.CSS_SELECTOR, "textarea[data-testid='stChatInputTextArea']"),
        120,
    )
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-testid='stException']")
    browser.switch_to.window(first)
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-testid='stException']")


def _stop_button(driver):  # type: ignore[no-untyped-def]
    """The answer's Stop button (its key is stop_<turn>), not Streamlit's own "Stop" in the page
    header, which halts the script without a rerun."""
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.CSS_SELECTOR, "[class*='st-key-stop_'] button")
    return found[0] if found and found[0].is_displayed() else None


def _chat(driver):  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, "[data-testid='stChatMessage']")


def _open_with_samples(driver, url: str) -> None:  # type: ignore[no-untyped-def]
    """The app opened on an empty library, the samples loaded, and the chat ready."""
    from selenium.webdriver.common.by import By

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.get(url)
    _wait(driver, "the empty-library button", lambda d: _button(d, "Load the sample documents"), 120).click()
    _wait(
        driver,
        "the chat input",
        lambda d: d.find_elements(By.CSS_SELECTOR, "textarea[data-testid='stChatInputTextArea']"),
        240,
    )


def _ask(driver, question: str, mode: str) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    _wait(driver, "the mode control", lambda d: _button(d, mode)).click()
    _wait(
        driver,
        f"{mode} to be selected",
        lambda d: [
            b
            for b in d.find_elements(
                By.CSS_SELECTOR, "[data-testid='stButtonGroup'] button[aria-checked='true']"
            )
            if b.text.strip() == mode
        ],
        60,
    )
    box = driver.find_element(By.CSS_SELECTOR, "textarea[data-testid='stChatInputTextArea']")
    box.send_keys(question)
    box.send_keys(Keys.ENTER)


@pytest.mark.parametrize("app_env", [{"LONGQA_LLM__MAX_TOKENS": "1500"}])
def test_stop_an_answer_then_ask_again_and_see_an_ungrounded_answer_marked(app_url: str, browser) -> None:  # type: ignore[no-untyped-def]
    _open_with_samples(browser, app_url)
    # Long context: the route is on screen before the answer, with a Stop button.
    _ask(browser, "Tell the whole history of word processors in detail.", "Long context")
    stop = _wait(browser, "the Stop button", _stop_button, 240)
    _wait(
        browser,
        "the route before the answer",
        lambda d: len(_chat(d)) >= 2 and "Forced: LC mode was requested" in _chat(d)[1].text,
        120,
    )
    browser.save_screenshot(str(ARTIFACTS / "answering.png"))
    stop.click()
    stopped = _wait(
        browser,
        "the stopped answer",
        lambda d: len(_chat(d)) >= 2 and "Stopped after" in _chat(d)[1].text and not _stop_button(d),
        60,
    )
    assert stopped
    assert "its sources were not checked" in _chat(browser)[1].text
    browser.save_screenshot(str(ARTIFACTS / "stopped.png"))
    # The engine is free again: the next question is answered, and with nothing in the
    # documents to support it, the answer itself says so.
    _ask(browser, "What is the population of Tokyo?", "RAG")

    def answered(d):  # type: ignore[no-untyped-def]
        msgs = _chat(d)
        return msgs[3] if len(msgs) >= 4 and "citations verified" in msgs[3].text else None

    answer = _wait(browser, "the second answer", answered, 600)
    text = answer.text
    verified = int(re.search(r"(\d+)/\d+ citations verified", text).group(1))  # type: ignore[union-attr]
    if verified == 0:
        assert "No verified source in your documents" in text or "Not in your documents" in text, text
    browser.execute_script("arguments[0].scrollIntoView({block: 'start'});", answer)
    time.sleep(1.0)
    browser.save_screenshot(str(ARTIFACTS / "ungrounded.png"))


@pytest.mark.parametrize("app_env", [{"LONGQA_LLM__MAX_TOKENS": "16", "LONGQA_LLM__RECHECK": "false"}])
def test_an_answer_cut_at_its_length_limit_says_so(app_url: str, browser) -> None:  # type: ignore[no-untyped-def]
    """16 tokens (the app's least "Longest answer") end the test model's answer mid-sentence: the
    answer ends in "…" and a warning under it says it was cut off and its last sentence was not
    checked."""
    _open_with_samples(browser, app_url)
    _ask(browser, QUESTION, "RAG")

    def answered(d):  # type: ignore[no-untyped-def]
        msgs = _chat(d)
        return msgs[1] if len(msgs) >= 2 and "citations verified" in msgs[1].text else None

    text = _wait(browser, "the answer", answered, 600).text
    if "…" not in text:  # the model happened to end a sentence on its 16th token
        pytest.skip(f"16 tokens ended a sentence: {text[:200]!r}")
    assert "Cut off: the answer reached its length limit" in text and "was not checked" in text, text
    browser.save_screenshot(str(ARTIFACTS / "cut-off.png"))


def _enabled(element):  # type: ignore[no-untyped-def]
    return element if element is not None and element.is_enabled() else None


def _tab(driver, label: str):  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.XPATH, f"//*[@role='tab'][normalize-space(.)='{label}']")
    return found[0] if found and found[0].is_displayed() else None


def _srt(cues: list[tuple[float, float, str]]) -> str:
    def ts(t: float) -> str:
        return f"00:00:{int(t):02d},{int(t * 1000) % 1000:03d}"

    return "\n".join(f"{i}\n{ts(a)} --> {ts(b)}\n{text}\n" for i, (a, b, text) in enumerate(cues, 1))


def test_a_transcript_with_its_recording_plays_from_a_clicked_time(
    app_server: AppServer, browser, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    if shutil.which("espeak-ng") is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run this test: espeak-ng is missing (scripts/test.sh installs it)")
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    lines = [
        "Welcome to the harbour tour.",
        "The lighthouse of Vardo was repainted red in 1987.",
        "The harbour guild paid for the paint.",
        "Next we visit the fish market.",
    ]
    cues = [(i * 4.0, i * 4.0 + 3.5, text) for i, text in enumerate(lines)]
    srt = tmp_path / "harbour-tour.srt"
    srt.write_text(_srt(cues), encoding="utf-8")
    wav = tmp_path / "recording.wav"  # a different name: found only because it is attached
    subprocess.run(["espeak-ng", "-s", "110", "-w", str(wav), " ".join(lines)], check=True)

    browser.get(app_server.url)
    _wait(browser, "the Library tab", lambda d: _tab(d, "Library"), 120).click()
    path_box = _wait(
        browser,
        "the server path box",
        lambda d: d.find_elements(By.CSS_SELECTOR, "input[aria-label*='Folder or file']"),
        60,
    )[0]
    path_box.send_keys(str(srt))
    path_box.send_keys("\n")
    _wait(browser, "the ingest button", lambda d: _enabled(_button(d, "Ingest from the server")), 60).click()
    _wait(
        browser,
        "the transcript in the library",
        lambda d: "1 ingested" in d.find_element(By.TAG_NAME, "body").text,
        240,
    )
    _wait(
        browser,
        "the attach expander",
        lambda d: d.find_elements(By.XPATH, "//summary[contains(., 'Attach a recording')]"),
        60,
    )[0].click()
    upload = _wait(
        browser,
        "the recording uploader",
        lambda d: d.find_elements(By.CSS_SELECTOR, "[class*='st-key-attach_file'] input[type='file']"),
        60,
    )[0]
    upload.send_keys(str(wav))
    _wait(
        browser,
        "the attach button",
        lambda d: (
            _button(d, "Attach") if _button(d, "Attach") and _button(d, "Attach").is_enabled() else None
        ),
        60,
    ).click()
    _wait(
        browser,
        "the recording attached",
        lambda d: "Attached now: wav recording" in d.find_element(By.TAG_NAME, "body").text,
        60,
    )

    _wait(browser, "the Ask tab", lambda d: _tab(d, "Ask"), 60).click()
    _wait(
        browser,
        "the chat input",
        lambda d: d.find_elements(By.CSS_SELECTOR, "textarea[data-testid='stChatInputTextArea']"),
        120,
    )
    _ask(browser, "When was the lighthouse of Vardo repainted red?", "RAG")

    def answered(d):  # type: ignore[no-untyped-def]
        msgs = _chat(d)
        return msgs[1] if len(msgs) >= 2 and "citations verified" in msgs[1].text else None

    answer = _wait(browser, "the answer", answered, 600)
    assert "harbour-tour.srt" in answer.text, answer.text  # the source panel is the transcript
    cue = _wait(
        browser,
        "the clickable time 00:04",
        lambda d: [
            b for b in d.find_elements(By.CSS_SELECTOR, "[class*='st-key-cue_'] button") if "00:04" in b.text
        ],
        120,
    )[0]
    _wait(browser, "the player", lambda d: d.find_elements(By.TAG_NAME, "audio"), 60)
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", cue)
    cue.click()
    _wait(
        browser,
        "the player to follow the click",
        lambda d: "Playing from 00:04" in d.find_element(By.TAG_NAME, "body").text,
        60,
    )
    position = _wait(
        browser,
        "the recording playing from 4 s",
        lambda d: [
            t
            for t in [
                d.execute_script("const a = document.querySelector('audio'); return a ? a.currentTime : -1;")
            ]
            if t >= 4.0
        ],
        60,
    )[0]
    assert 4.0 <= position < 30.0
    time.sleep(0.5)
    browser.save_screenshot(str(ARTIFACTS / "transcript-play.png"))
