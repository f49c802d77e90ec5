"""OpenAI-compatible chat completions over HTTP (vLLM, SGLang, Ollama, llama.cpp server, APIs).

Every call streams (server-sent events), so time to first token is measured on every
backend. Connection failures, timeouts before the first byte, HTTP 429 and 5xx are retried
with exponential backoff (honouring ``Retry-After``); a stream that breaks half-way is not
retried (the text already shown cannot be taken back) and raises. Reading a document once
is the server's job here: prompts keep the document first and the question last, so vLLM's
and SGLang's automatic prefix caching and llama.cpp's slot cache reuse it.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import httpx

from app.llm import control
from app.llm.base import DecodingLoop, Generation, LLMError, Message, SpeedMeter, TokenChoices, plain_messages

CHARS_PER_TOKEN = 4  # English text, when no tokenizer for the served model is given


class OpenAICompatGenerator(DecodingLoop):
    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str = "",
        context_window: int = 32768,
        timeout_s: float = 120.0,
        connect_timeout_s: float = 5.0,
        retries: int = 2,
        backoff_s: float = 0.5,
        prefill_tokens_per_s: float = 2000.0,
        decode_tokens_per_s: float = 50.0,
        fixed_speed: bool = False,
        seed: int = 0,
        token_counter: Callable[[str], int] | None = None,
    ) -> None:
        self.name = model
        self.base_url = base_url.rstrip("/")
        self.context_window = context_window
        self.retries = retries
        self.backoff_s = backoff_s
        self.seed = seed
        self._count = token_counter
        self._speed = SpeedMeter(prefill_tokens_per_s, decode_tokens_per_s, fixed=fixed_speed)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout_s, connect=min(connect_timeout_s, timeout_s)), headers=headers
        )

    def count_tokens(self, text: str) -> int:
        if self._count is not None:
            return self._count(text)
        # Servers tokenise differently; about 4 characters per token for English text.
        return max(1, len(text) // CHARS_PER_TOKEN)

    def cached_prefix_tokens(self, messages: Sequence[Message]) -> int:
        return 0  # the server's prefix cache is not visible before a request

    def close(self) -> None:
        self._client.close()

    # -- HTTP with retries ---------------------------------------------------------------
    def _error(self, reason: str, fix: str = "", app_fix: str = "") -> LLMError:
        """An LLMError with its fix; in the app, the fix points at the sidebar."""
        return LLMError(
            reason,
            fix,
            app_fix=app_fix
            or f"Check that the server at {self.base_url} is running and serves the model "
            f"'{self.name}', or switch the backend to the embedded llama.cpp in the sidebar.",
        )

    def _fail(self, resp: httpx.Response) -> LLMError:
        body = resp.read().decode("utf-8", "replace")[:300]
        where = f"the LLM server at {self.base_url}"
        if resp.status_code in (401, 403):
            return self._error(
                f"{where} refused the API key (HTTP {resp.status_code})",
                "set llm.api_key",
                "Enter the server's API key in the sidebar.",
            )
        if resp.status_code == 404:
            return self._error(
                f"{where} has no model '{self.name}' or no /chat/completions (HTTP 404: {body})",
                "check llm.model and llm.base_url (it usually ends in /v1)",
                "Check the model name and the server URL in the sidebar (the URL usually ends in /v1).",
            )
        return self._error(f"{where} refused the request (HTTP {resp.status_code}: {body})")

    def _open_stream(self, payload: dict[str, Any]) -> httpx.Response:
        """POST a streaming request; retry until the server answers with 2xx headers."""
        url = f"{self.base_url}/chat/completions"
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            wait = delay
            app_fix = ""
            try:
                resp = self._client.send(self._client.build_request("POST", url, json=payload), stream=True)
            except httpx.TimeoutException as exc:
                err: Exception = exc
                reason = f"the LLM server at {self.base_url} did not answer within the timeout"
                fix = "raise llm.timeout_s or check the server's load"
            except httpx.TransportError as exc:
                err = exc
                reason = f"cannot reach the LLM server at {self.base_url} ({exc.__class__.__name__}: {exc})"
                fix = "check that it is running and that llm.base_url is right"
            else:
                if resp.status_code < 300:
                    return resp
                if resp.status_code != 429 and resp.status_code < 500:
                    raise self._fail(resp)
                failed = self._fail(resp)
                err, reason, fix, app_fix = failed, failed.reason, failed.fix, failed.app_fix
                retry_after = resp.headers.get("retry-after", "")
                resp.close()
                if retry_after.replace(".", "", 1).isdigit():
                    wait = min(float(retry_after), 60.0)
            if attempt == self.retries:
                tries = f" (after {self.retries + 1} attempts)" if self.retries else ""
                if fix:  # the attempts go last, after the fix they belong to
                    raise self._error(reason, fix + tries, app_fix) from err
                raise self._error(reason + tries, "", app_fix) from err
            time.sleep(wait * (1 + 0.1 * random.random()))
            delay *= 2
        raise AssertionError("unreachable")

    def _events(self, resp: httpx.Response) -> Iterator[dict[str, Any]]:
        try:
            for line in resp.iter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                try:
                    yield json.loads(data)
                except json.JSONDecodeError as exc:
                    raise LLMError(
                        f"the LLM server at {self.base_url} sent a malformed event: {data[:200]}"
                    ) from exc
        except httpx.HTTPError as exc:
            raise self._error(
                f"the LLM server at {self.base_url} broke off the answer ({exc.__class__.__name__})",
                "check the server's log",
            ) from exc
        finally:
            resp.close()

    # -- generation ----------------------------------------------------------------------
    def _run(
        self,
        messages: Sequence[Message],
        max_tokens: int,
        temperature: float,
        stop: Sequence[str] | None,
        done: Callable[[Generation], None] | None,
    ) -> Iterator[str]:
        payload: dict[str, Any] = {
            "model": self.name,
            "messages": plain_messages(messages),
            "max_tokens": max_tokens,
            "temperature": temperature,
            "seed": self.seed,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if stop:
            payload["stop"] = list(stop)
        ctl = control.current()
        reading = None
        if ctl is not None:
            ctl.check()
            # The server's tokenizer is not at hand: about 4 characters a token.
            chars = sum(len(m.content) for m in messages)
            reading = ctl.reading(max(1, chars // 4), self._speed.prefill)
        t0 = time.perf_counter()
        resp = self._open_stream(payload)
        pieces: list[str] = []
        with ctl.on_cancel(resp.close) if ctl is not None else contextlib.nullcontext():
            yield from self._decode(resp, ctl, t0, pieces, reading, messages, done)

    def _decode(
        self,
        resp: httpx.Response,
        ctl: control.Control | None,
        t0: float,
        pieces: list[str],
        reading: control.PrefillState | None,
        messages: Sequence[Message],
        done: Callable[[Generation], None] | None,
    ) -> Iterator[str]:
        """The answer's pieces from the open stream; a stop closes it (the server stops too)."""
        first: float | None = None
        finish = ""
        usage: dict[str, Any] = {}
        events = self._events(resp)
        while True:
            try:
                event = next(events)
            except StopIteration:
                break
            except Exception:  # a stop closed the stream under the reader
                if ctl is not None and ctl.cancelled:
                    raise control.Cancelled() from None
                raise
            if ctl is not None and ctl.cancelled:
                events.close()
                raise control.Cancelled()
            if event.get("error"):
                raise LLMError(f"the LLM server at {self.base_url} failed: {str(event['error'])[:300]}")
            usage = event.get("usage") or usage
            for choice in event.get("choices") or []:
                delta = choice.get("delta") or {}
                piece = delta.get("content") or choice.get("text") or ""
                if choice.get("finish_reason"):
                    finish = str(choice["finish_reason"])
                if piece:
                    if first is None:
                        first = time.perf_counter() - t0
                        if reading is not None:
                            reading.finished = True
                    pieces.append(piece)
                    yield piece
        seconds = time.perf_counter() - t0
        details = usage.get("prompt_tokens_details") or {}
        prompt_tokens = int(usage.get("prompt_tokens") or sum(self.count_tokens(m.content) for m in messages))
        completion_tokens = int(usage.get("completion_tokens") or len(pieces))
        cached = int(details.get("cached_tokens") or 0)
        first_s = first if first is not None else seconds
        self._speed.record(prompt_tokens - cached, first_s, completion_tokens, seconds)
        if done is not None:
            done(
                Generation(
                    text="".join(pieces),
                    prompt_tokens=prompt_tokens,
                    completion_tokens=completion_tokens,
                    seconds=seconds,
                    cached_tokens=cached,
                    finish_reason=finish,
                    first_token_s=first_s,
                )
            )

    def first_token_probs(self, messages: Sequence[Message], n: int = 10) -> TokenChoices:
        """The ``n`` most likely first tokens of the reply (``logprobs``/``top_logprobs``, which
        vLLM, SGLang, llama.cpp's server and OpenAI's API return; at most 20 there)."""
        payload: dict[str, Any] = {
            "model": self.name,
            "messages": plain_messages(messages),
            "max_tokens": 1,
            "temperature": 0.0,
            "seed": self.seed,
            "stream": True,
            "stream_options": {"include_usage": True},
            "logprobs": True,
            "top_logprobs": min(n, 20),
        }
        control.check()
        t0 = time.perf_counter()
        resp = self._open_stream(payload)
        top: list[dict[str, Any]] = []
        usage: dict[str, Any] = {}
        text = ""
        try:
            for event in self._events(resp):
                if event.get("error"):
                    raise LLMError(f"the LLM server at {self.base_url} failed: {str(event['error'])[:300]}")
                usage = event.get("usage") or usage
                for choice in event.get("choices") or []:
                    text += (choice.get("delta") or {}).get("content") or ""
                    content = (choice.get("logprobs") or {}).get("content") or []
                    if content and not top:
                        top = list(content[0].get("top_logprobs") or [])
        finally:
            resp.close()
        if not top:
            raise self._error(
                f"the LLM server at {self.base_url} returned no token probabilities",
                "use a server that returns logprobs (vLLM, SGLang, llama.cpp), or llm.entail_threshold = 0",
            )
        seconds = time.perf_counter() - t0
        cands = tuple((str(t.get("token", "")), math.exp(float(t.get("logprob", -1e9)))) for t in top)
        details = usage.get("prompt_tokens_details") or {}
        gen = Generation(
            text=text,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 1),
            seconds=seconds,
            cached_tokens=int(details.get("cached_tokens") or 0),
            finish_reason="length",
            first_token_s=seconds,
        )
        return TokenChoices(cands, gen)

    def models(self) -> list[str]:
        """Model names the server serves (GET /models)."""
        try:
            resp = self._client.get(f"{self.base_url}/models")
        except httpx.HTTPError as exc:
            raise self._error(
                f"cannot reach the LLM server at {self.base_url} ({exc})",
                "check that it is running and that llm.base_url is right",
            ) from exc
        if resp.status_code >= 300:
            raise self._fail(resp)
        return [str(m.get("id")) for m in resp.json().get("data", [])]
