"""The Generator protocol every LLM backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol


@dataclass(frozen=True)
class Message:
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True)
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    cached_tokens: int = 0
    finish_reason: str = ""


class LLMError(RuntimeError):
    """The backend failed; the message names the backend and the fix."""


class Generator(Protocol):
    name: str
    context_window: int
    prefill_tokens_per_s: float

    def count_tokens(self, text: str) -> int: ...

    def generate(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
    ) -> Generation: ...
