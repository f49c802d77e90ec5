"""The Generator protocol every LLM backend implements, and what backends share.

A backend takes chat messages and returns text (``generate``) or text pieces as they are
decoded (``stream``). It counts tokens in its own tokenizer, knows its context window and
reports the prefill and decode speeds it has measured on this machine.

Reading a document once: a prompt may mark a *reusable prefix* (``Message.prefix_chars``:
the leading characters of that message which, together with every message before it, stay
the same across questions, such as instructions + document). Backends that keep KV state
(llama.cpp, transformers) evaluate that prefix once and reuse it; HTTP backends send the
prompt unchanged and rely on the server's prefix caching (vLLM, SGLang, llama.cpp server).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Literal, Protocol

from pipeline.errors import LongqaError

# A private-use character that never occurs in real text: marks the end of the reusable
# prefix inside a rendered chat prompt, and is removed before tokenization.
PREFIX_MARK = "\ue000"


@dataclass(frozen=True)
class Message:
    role: Literal["system", "user", "assistant"]
    content: str
    # Leading characters of ``content`` that end the reusable prefix (with all messages
    # before this one). None: this message is not where the prefix ends.
    prefix_chars: int | None = None


@dataclass(frozen=True)
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    cached_tokens: int = 0  # prompt tokens not evaluated again (KV prefix reused)
    finish_reason: str = ""
    first_token_s: float = 0.0  # time to first token: prefill of the uncached prompt tokens


@dataclass(frozen=True)
class TokenChoices:
    """The most likely first tokens after a prompt, with their probabilities (``first_token_probs``
    of the backends that can read them: llama.cpp's ``n_probs``, OpenAI's ``top_logprobs``, the
    transformers logits). ``generation`` counts the call (one token decoded)."""

    candidates: tuple[tuple[str, float], ...]
    generation: Generation


class LLMError(LongqaError, RuntimeError):
    """The backend failed: ``reason`` names the backend, ``fix`` what to do (when one is known;
    the app adds advice for the configured backend to those without)."""


class Generator(Protocol):
    name: str
    context_window: int

    @property
    def prefill_tokens_per_s(self) -> float: ...

    @property
    def decode_tokens_per_s(self) -> float: ...

    def count_tokens(self, text: str) -> int: ...

    def cached_prefix_tokens(self, messages: Sequence[Message]) -> int:
        """Tokens of this prompt's marked prefix that are already evaluated (0 if unknown)."""
        ...

    def generate(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> Generation:
        """The whole answer; ``on_text`` (when given) receives each piece as it is decoded."""
        ...

    def stream(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
    ) -> Iterator[str]: ...


class DecodingLoop:
    """The measured speeds, and ``generate`` and ``stream``, for a backend that implements one
    decoding loop, ``_run``: it yields text pieces as they are decoded and hands the finished
    ``Generation`` (usage, timings; its text is filled in here) to ``done`` when given."""

    _speed: SpeedMeter  # set by each backend: measured prefill and decode speeds

    @property
    def prefill_tokens_per_s(self) -> float:
        return self._speed.prefill

    @property
    def decode_tokens_per_s(self) -> float:
        return self._speed.decode

    def _run(
        self,
        messages: Sequence[Message],
        max_tokens: int,
        temperature: float,
        stop: Sequence[str] | None,
        done: Callable[[Generation], None] | None,
    ) -> Iterator[str]:
        raise NotImplementedError

    def generate(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> Generation:
        finished: list[Generation] = []
        pieces: list[str] = []
        for piece in self._run(messages, max_tokens, temperature, stop, finished.append):
            pieces.append(piece)
            if on_text is not None:
                on_text(piece)
        return replace(finished[0], text="".join(pieces).strip())

    def stream(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
    ) -> Iterator[str]:
        yield from self._run(messages, max_tokens, temperature, stop, None)


def check_window(name: str, n_tokens: int, window: int) -> None:
    """Raise a clear error when a prompt leaves no room in the window for an answer."""
    if n_tokens + 1 >= window:
        raise LLMError(
            f"{name}: the prompt has {n_tokens:,} tokens, more than the {window:,}-token window",
            "use RAG mode or an LC overflow strategy (middle_cut, map_reduce), or a model with a "
            "larger window",
        )


def render_with_mark(messages: Sequence[Message]) -> list[dict[str, str]]:
    """Messages as role/content dicts, with PREFIX_MARK inserted where the prefix ends."""
    out: list[dict[str, str]] = []
    for m in messages:
        content = m.content.replace(PREFIX_MARK, "")
        if m.prefix_chars is not None:
            k = max(0, min(m.prefix_chars, len(m.content)))
            content = m.content[:k].replace(PREFIX_MARK, "") + PREFIX_MARK + m.content[k:]
        out.append({"role": m.role, "content": content})
    return out


def plain_messages(messages: Sequence[Message]) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content.replace(PREFIX_MARK, "")} for m in messages]


def split_at_mark(rendered: str) -> tuple[str, str]:
    """A rendered prompt cut at the prefix mark: (prefix, rest); ("", text) when unmarked."""
    if rendered.count(PREFIX_MARK) != 1:
        return "", rendered.replace(PREFIX_MARK, "")
    head, tail = rendered.split(PREFIX_MARK)
    return head, tail


class SpeedMeter:
    """Prefill and decode speed measured on this machine (moving average), with a prior.

    Prefill speed is uncached prompt tokens over time to first token; decode speed is
    generated tokens after the first over the time they took. With ``fixed`` (a speed the
    user configured), the reported speeds stay at the priors; measurements are still kept in
    ``last_prefill`` / ``last_decode``.
    """

    def __init__(
        self, prefill_prior: float, decode_prior: float, *, fixed: bool = False, weight: float = 0.3
    ) -> None:
        self.fixed = fixed
        self.last_prefill = 0.0
        self.last_decode = 0.0
        self._prefill = prefill_prior
        self._decode = decode_prior
        self._weight = weight
        self._lock = threading.Lock()
        self.measured = False  # whether the prefill speed is measured (not the prior)
        self._decode_measured = False

    @property
    def prefill(self) -> float:
        return self._prefill

    @property
    def decode(self) -> float:
        return self._decode

    def record(self, new_prompt_tokens: int, first_token_s: float, gen_tokens: int, total_s: float) -> None:
        w = self._weight
        decode_s = total_s - first_token_s
        with self._lock:
            # Only prompts long enough to dominate the first-token time say much about prefill.
            if new_prompt_tokens >= 64 and first_token_s > 0:
                self.last_prefill = rate = new_prompt_tokens / first_token_s
                if not self.fixed:
                    self._prefill = rate if not self.measured else (1 - w) * self._prefill + w * rate
                    self.measured = True
            if gen_tokens > 1 and decode_s > 0:
                self.last_decode = rate = (gen_tokens - 1) / decode_s
                if not self.fixed:
                    self._decode = rate if not self._decode_measured else (1 - w) * self._decode + w * rate
                    self._decode_measured = True
