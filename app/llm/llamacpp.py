"""In-process GGUF models through llama-cpp-python (the embedded default).

llama.cpp keeps the KV cache of the previous prompt and re-evaluates only the
tokens after the longest common prefix, so prompts laid out document-first let
a follow-up question on the same document skip re-reading it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from app.llm.base import Generation, LLMError, Message


class LlamaCppGenerator:
    def __init__(
        self,
        model_path: str | Path,
        *,
        name: str | None = None,
        context_window: int = 8192,
        threads: int | None = None,
        gpu_layers: int = 0,
        seed: int = 0,
        prefill_tokens_per_s: float = 50.0,
    ) -> None:
        try:
            from llama_cpp import Llama
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise LLMError("llama-cpp-python is not installed; pip install llama-cpp-python") from exc
        path = Path(model_path)
        if not path.is_file():
            raise LLMError(f"GGUF model file '{path}' does not exist")
        self.name = name or path.stem
        self.context_window = context_window
        self.prefill_tokens_per_s = prefill_tokens_per_s
        self._lock = threading.Lock()
        self._llm = Llama(
            model_path=str(path),
            n_ctx=context_window,
            n_threads=threads or os.cpu_count() or 2,
            n_gpu_layers=gpu_layers,
            seed=seed,
            n_batch=512,
            verbose=False,
        )

    def count_tokens(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def cached_prefix_tokens(self, messages: Sequence[Message]) -> int:
        """How many leading tokens of this prompt are already in the KV cache."""
        prompt = self._render(messages)
        return int(self._llm.longest_token_prefix(self._llm._input_ids.tolist(), prompt))

    def _render(self, messages: Sequence[Message]) -> list[int]:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = self._llm.metadata.get("tokenizer.chat_template")
        if not template:
            text = "".join(f"{m.role}: {m.content}\n" for m in messages) + "assistant: "
            return self._llm.tokenize(text.encode(), add_bos=True, special=True)
        fmt = Jinja2ChatFormatter(
            template=template,
            eos_token=self._llm._model.token_get_text(self._llm.token_eos()),
            bos_token=self._llm._model.token_get_text(self._llm.token_bos()),
        )
        result = fmt(messages=[{"role": m.role, "content": m.content} for m in messages])
        return self._llm.tokenize(result.prompt.encode(), add_bos=not result.added_special, special=True)

    def generate(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
    ) -> Generation:
        with self._lock:
            cached = self.cached_prefix_tokens(messages) if self._llm.n_tokens else 0
            t0 = time.perf_counter()
            try:
                out = self._llm.create_chat_completion(
                    messages=[{"role": m.role, "content": m.content} for m in messages],  # type: ignore[misc]
                    max_tokens=max_tokens,
                    temperature=temperature,
                    stop=list(stop) if stop else None,
                )
            except ValueError as exc:
                raise LLMError(f"{self.name}: {exc}") from exc
            seconds = time.perf_counter() - t0
        choice = out["choices"][0]  # type: ignore[index]
        usage = out.get("usage") or {}  # type: ignore[union-attr]
        return Generation(
            text=(choice["message"]["content"] or "").strip(),
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            seconds=seconds,
            cached_tokens=cached,
            finish_reason=str(choice.get("finish_reason") or ""),
        )
