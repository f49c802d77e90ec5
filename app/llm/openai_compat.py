"""OpenAI-compatible chat completions over HTTP (vLLM, SGLang, Ollama, llama.cpp server, APIs)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import httpx

from app.llm.base import Generation, LLMError, Message


class OpenAICompatGenerator:
    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str = "",
        context_window: int = 32768,
        timeout_s: float = 120.0,
        retries: int = 2,
        prefill_tokens_per_s: float = 2000.0,
        seed: int = 0,
    ) -> None:
        self.name = model
        self.base_url = base_url.rstrip("/")
        self.context_window = context_window
        self.prefill_tokens_per_s = prefill_tokens_per_s
        self.retries = retries
        self.seed = seed
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=timeout_s, headers=headers)

    def count_tokens(self, text: str) -> int:
        # Servers tokenise differently; about 4 characters per token for English text.
        return max(1, len(text) // 4)

    def _post(self, path: str, payload: dict) -> dict:  # type: ignore[type-arg]
        url = f"{self.base_url}{path}"
        delay = 0.5
        for attempt in range(self.retries + 1):
            try:
                resp = self._client.post(url, json=payload)
            except httpx.TimeoutException as exc:
                err: Exception = exc
                msg = f"the LLM server at {self.base_url} did not answer in time"
            except httpx.TransportError as exc:
                err = exc
                msg = f"the LLM server at {self.base_url} did not answer ({exc}); check that it is running"
            else:
                if resp.status_code < 500:
                    if resp.status_code >= 400:
                        raise LLMError(
                            f"the LLM server at {self.base_url} refused the request "
                            f"(HTTP {resp.status_code}: {resp.text[:200]})"
                        )
                    return resp.json()  # type: ignore[no-any-return]
                err = RuntimeError(resp.text[:200])
                msg = f"the LLM server at {self.base_url} failed (HTTP {resp.status_code})"
            if attempt == self.retries:
                raise LLMError(msg) from err
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def generate(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
    ) -> Generation:
        payload = {
            "model": self.name,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "max_tokens": max_tokens,
            "temperature": temperature,
            "seed": self.seed,
        }
        if stop:
            payload["stop"] = list(stop)
        t0 = time.perf_counter()
        data = self._post("/chat/completions", payload)
        seconds = time.perf_counter() - t0
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
        except (KeyError, IndexError, TypeError) as exc:
            raise LLMError(f"the LLM server at {self.base_url} sent an unexpected reply") from exc
        usage = data.get("usage") or {}
        details = usage.get("prompt_tokens_details") or {}
        return Generation(
            text=text.strip(),
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            seconds=seconds,
            cached_tokens=int(details.get("cached_tokens") or 0),
            finish_reason=str(choice.get("finish_reason") or ""),
        )
