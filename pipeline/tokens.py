"""Token counting used by the chunker.

Chunks are measured in the tokens of the model that reads them (the encoder by
default), so a chunk never silently exceeds the encoder's window.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

_WORD = re.compile(r"\w+|[^\w\s]")


class TokenCounter(Protocol):
    name: str

    def count(self, texts: Sequence[str]) -> list[int]:
        """Number of tokens of each text, without special tokens."""
        ...


class RegexTokenCounter:
    """Counts words and punctuation marks: a dependency-free approximation."""

    name = "regex-words"

    def count(self, texts: Sequence[str]) -> list[int]:
        return [len(_WORD.findall(t)) for t in texts]


class HFTokenCounter:
    """Counts tokens with a Hugging Face tokenizer loaded from a local directory."""

    def __init__(self, tokenizer_dir: str | Path) -> None:
        from transformers import AutoTokenizer

        self._tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
        # We count tokens of whole documents, not feed them to the model: no length warning.
        self._tok.model_max_length = 1 << 40
        self.name = f"hf:{Path(tokenizer_dir).name}"

    def count(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        enc = self._tok(list(texts), add_special_tokens=False, return_attention_mask=False)
        return [len(ids) for ids in enc["input_ids"]]
