"""The OpenAI-compatible backend against a real server: the embedded engine's llama.cpp server,
started here on 127.0.0.1 with the SmolLM2 GGUF. Retries are checked through a small real HTTP
proxy in front of it that fails the first requests."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.llm.base import LLMError, Message
from app.llm.openai_compat import OpenAICompatGenerator
from tests.conftest import free_port, llama_server

ALIAS = "smol"
QUESTION = [
    Message("system", "You answer briefly."),
    Message("user", "The harbour of Vardo was rebuilt in 1998. When was the harbour rebuilt?"),
]


@pytest.fixture(scope="module")
def server(model_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    # one decode thread: fast on a busy machine too
    args = ["--ctx", "2048", "--threads", "1", "--threads-batch", "2"]
    with llama_server(model_cache, log, ALIAS, args) as url:
        yield url


def test_generate_and_stream_against_a_real_server(server: str) -> None:
    gen = OpenAICompatGenerator(server, ALIAS, timeout_s=120, retries=0)
    assert ALIAS in gen.models()
    out = gen.generate(QUESTION, max_tokens=24)
    assert "1998" in out.text
    assert out.prompt_tokens > 10 and 0 < out.completion_tokens <= 24
    assert 0 < out.first_token_s <= out.seconds
    pieces = list(gen.stream(QUESTION, max_tokens=24))
    assert len(pieces) > 1  # text arrives piece by piece
    assert "".join(pieces).strip() == out.text  # greedy: the same answer either way
    assert gen.decode_tokens_per_s > 0


def test_unknown_model_and_server_errors_name_the_fix(server: str) -> None:
    # llama.cpp's server answers any model name, but the API key and URL checks are ours.
    gen = OpenAICompatGenerator(server.replace("/v1", "/nope"), ALIAS, retries=0)
    with pytest.raises(LLMError, match=r"HTTP 404.*llm.base_url"):
        gen.generate(QUESTION, max_tokens=4)


def test_server_down_is_a_clear_error_after_backoff() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    gen = OpenAICompatGenerator(url, ALIAS, retries=2, backoff_s=0.2)
    t0 = time.monotonic()
    with pytest.raises(
        LLMError, match=r"cannot reach the LLM server .* check that it is running.*3 attempts"
    ):
        gen.generate(QUESTION, max_tokens=4)
    assert time.monotonic() - t0 >= 0.2 + 0.4  # two waits, doubling


def test_timeout_is_reported() -> None:
    # A real socket that accepts connections and never answers.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
        gen = OpenAICompatGenerator(url, ALIAS, timeout_s=0.5, retries=1, backoff_s=0.1)
        t0 = time.monotonic()
        with pytest.raises(LLMError, match="did not answer within the timeout"):
            gen.generate(QUESTION, max_tokens=4)
        assert 1.0 <= time.monotonic() - t0 < 10
    finally:
        sock.close()


class _FlakyProxy(http.server.BaseHTTPRequestHandler):
    """Answers 503 (with Retry-After) to the first ``failures`` requests, then forwards to the server."""

    upstream = ""
    failures = 0
    seen: list[float] = []

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        type(self).seen.append(time.monotonic())
        if len(self.seen) <= self.failures:
            self.send_response(503)
            self.send_header("Retry-After", "0.3")
            self.send_header("Content-Length", "4")
            self.end_headers()
            self.wfile.write(b"busy")
            return
        with httpx.stream(
            "POST",
            self.upstream + self.path,
            content=body,
            headers={"content-type": "application/json"},
            timeout=120,
        ) as up:
            self.send_response(up.status_code)
            self.send_header("Content-Type", up.headers.get("content-type", "text/event-stream"))
            self.end_headers()
            for chunk in up.iter_raw():
                self.wfile.write(chunk)
                self.wfile.flush()

    def log_message(self, *args: object) -> None:
        pass


def test_retries_with_backoff_until_the_server_answers(server: str) -> None:
    _FlakyProxy.upstream = server.removesuffix("/v1")
    _FlakyProxy.failures = 2
    _FlakyProxy.seen = []
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FlakyProxy)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        gen = OpenAICompatGenerator(f"http://127.0.0.1:{proxy.server_address[1]}/v1", ALIAS, retries=2)
        out = gen.generate(QUESTION, max_tokens=16)
        assert "1998" in out.text
        seen = _FlakyProxy.seen
        # Retry-After (0.3 s) honoured between the attempts.
        assert len(seen) == 3 and seen[1] - seen[0] >= 0.3 and seen[2] - seen[1] >= 0.3
        _FlakyProxy.seen = []
        _FlakyProxy.failures = 5
        with pytest.raises(LLMError, match=r"HTTP 503.*3 attempts"):
            OpenAICompatGenerator(
                f"http://127.0.0.1:{proxy.server_address[1]}/v1", ALIAS, retries=2
            ).generate(QUESTION, max_tokens=4)
    finally:
        proxy.shutdown()


def test_first_token_probabilities_from_a_real_server(server: str) -> None:
    """logprobs/top_logprobs over the OpenAI API (the RAG scored citation check)."""
    gen = OpenAICompatGenerator(server, ALIAS, timeout_s=120, retries=0)
    choices = gen.first_token_probs(QUESTION, n=5)
    probs = [p for _, p in choices.candidates]
    assert len(probs) == 5 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001
    first = gen.generate(QUESTION, max_tokens=1).text
    assert choices.candidates[0][0].strip() == first.strip()
    assert choices.generation.prompt_tokens > 10
