"""In-process GGUF models through llama-cpp-python (the embedded default).

Reading a document once. llama.cpp keeps the KV cache of the previous prompt and evaluates
only the tokens after the longest common prefix. On top of that, a prompt whose messages
mark a reusable prefix (instructions + document, see ``app.llm.base``) has that prefix
tokenized on its own, so its tokens are identical whatever question follows, and its KV
state is saved in a :class:`~app.llm.kvcache.PrefixStateCache` (memory and disk, keyed by
model and prefix tokens). A follow-up question on a document read before, in this process
or an earlier one, then costs only its own tokens.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.llm.base import (
    DecodingLoop,
    Generation,
    LLMError,
    Message,
    SpeedMeter,
    check_window,
    render_with_mark,
    split_at_mark,
)
from app.llm.kvcache import PrefixStateCache, SavedPrefix, prefix_key

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]  # (tokens evaluated so far, tokens to evaluate)


@dataclass(frozen=True)
class PrefillResult:
    """What reading a prompt's marked prefix cost."""

    prefix_tokens: int
    reused_tokens: int  # already in the live KV cache or restored from a saved state
    evaluated_tokens: int
    seconds: float
    source: str  # "live", "ram", "disk", "evaluated" or "none" (no marked prefix)


class LlamaCppGenerator(DecodingLoop):
    def __init__(
        self,
        model_path: str | Path,
        *,
        name: str | None = None,
        context_window: int = 8192,
        threads: int | None = None,
        decode_threads: int | None = None,
        gpu_layers: int = 0,
        seed: int = 0,
        prefill_tokens_per_s: float = 50.0,
        decode_tokens_per_s: float = 15.0,
        fixed_speed: bool = False,
        kv_cache: PrefixStateCache | None = None,
        min_prefix_tokens: int = 256,
        n_batch: int = 512,
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
        self.model_id = f"{path.name}:{path.stat().st_size}"
        self.kv_cache = kv_cache
        self.min_prefix_tokens = min_prefix_tokens
        self._speed = SpeedMeter(prefill_tokens_per_s, decode_tokens_per_s, fixed=fixed_speed)
        self._lock = threading.RLock()
        self._llm = Llama(
            model_path=str(path),
            n_ctx=context_window,
            n_threads=decode_threads or threads or os.cpu_count() or 2,
            n_threads_batch=threads or os.cpu_count() or 2,
            n_gpu_layers=gpu_layers,
            seed=seed,
            n_batch=n_batch,
            verbose=False,
        )
        self._seed = seed
        self._formatter = self._make_formatter()

    # -- speeds and tokens ------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    # -- prompt rendering -------------------------------------------------------------
    def _make_formatter(self) -> Any:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = self._llm.metadata.get("tokenizer.chat_template")
        if not template:
            return None
        llm = self._llm
        return Jinja2ChatFormatter(
            template=template,
            eos_token=llm._model.token_get_text(llm.token_eos()),
            bos_token=llm._model.token_get_text(llm.token_bos()),
        )

    def _render(self, messages: Sequence[Message]) -> tuple[list[int], int, list[str]]:
        """Prompt tokens, how many of them form the marked prefix, and stop strings.

        The prefix text and the rest are tokenized separately, so the prefix tokens do not
        depend on what follows them."""
        marked = render_with_mark(messages)
        stops: list[str] = []
        if self._formatter is None:
            text = "".join(f"{m['role']}: {m['content']}\n" for m in marked) + "assistant: "
            add_bos = True
        else:
            result = self._formatter(messages=marked)
            text = result.prompt
            add_bos = not result.added_special
            if isinstance(result.stop, str):
                stops = [result.stop]
            elif result.stop:
                stops = list(result.stop)
        head, tail = split_at_mark(text)
        tok = self._llm.tokenize
        if not head:
            return tok(tail.encode("utf-8"), add_bos=add_bos, special=True), 0, stops
        prefix = tok(head.encode("utf-8"), add_bos=add_bos, special=True)
        rest = tok(tail.encode("utf-8"), add_bos=False, special=True)
        return prefix + rest, len(prefix), stops

    def _live_match(self, tokens: Sequence[int]) -> int:
        from llama_cpp import Llama

        return int(Llama.longest_token_prefix(self._llm._input_ids.tolist(), tokens))

    def cached_prefix_tokens(self, messages: Sequence[Message]) -> int:
        """Tokens of the prompt's marked prefix already read (live KV or a saved state)."""
        with self._lock:
            tokens, n_prefix, _ = self._render(messages)
            if n_prefix == 0:
                return 0
            if self._live_match(tokens[:n_prefix]) >= n_prefix:
                return n_prefix
            if self.kv_cache is not None and self.kv_cache.has(prefix_key(self.model_id, tokens[:n_prefix])):
                return n_prefix
            return 0

    # -- prefix states ------------------------------------------------------------------
    def _save_state(self, tokens: Sequence[int]) -> SavedPrefix:
        import llama_cpp

        ctx = self._llm.ctx
        size = int(llama_cpp.llama_state_seq_get_size(ctx, 0))
        buf = (ctypes.c_uint8 * size)()
        n = int(llama_cpp.llama_state_seq_get_data(ctx, buf, size, 0))
        if n == 0 or n > size:
            raise LLMError(f"{self.name}: llama.cpp could not copy the KV state ({n} of {size} bytes)")
        state = bytes(memoryview(buf)[:n])
        return SavedPrefix(prefix_key(self.model_id, tokens), tuple(tokens), state, self.model_id)

    def _restore_state(self, saved: SavedPrefix) -> bool:
        import llama_cpp

        n = len(saved.tokens)
        if n >= self.context_window:
            return False
        self._llm._ctx.kv_cache_seq_rm(-1, 0, -1)
        self._llm.n_tokens = 0
        ptr = ctypes.cast(ctypes.c_char_p(saved.state), ctypes.POINTER(ctypes.c_uint8))
        if int(llama_cpp.llama_state_seq_set_data(self._llm.ctx, ptr, len(saved.state), 0)) == 0:
            log.warning("llama.cpp refused saved KV state %s; reading the document again", saved.key)
            return False
        self._llm.input_ids[:n] = saved.tokens
        self._llm.n_tokens = n
        self._llm._requires_eval = True
        return True

    def _eval(self, tokens: Sequence[int], start: int, progress: ProgressFn | None, step: int = 2048) -> None:
        """Evaluate ``tokens[start:]`` after the first ``start`` tokens already in the KV cache."""
        llm = self._llm
        llm.n_tokens = start
        for i in range(start, len(tokens), step):
            piece = list(tokens[i : min(len(tokens), i + step)])
            try:
                llm.eval(piece)
            except RuntimeError as exc:
                raise LLMError(f"{self.name}: llama.cpp failed to read the prompt: {exc}") from exc
            if progress is not None:
                progress(i + len(piece) - start, len(tokens) - start)

    def _prepare_prefix(
        self, tokens: Sequence[int], n_prefix: int, progress: ProgressFn | None
    ) -> PrefillResult:
        """Make the KV cache hold ``tokens[:n_prefix]``, reusing whatever is live or saved."""
        t0 = time.perf_counter()
        if n_prefix == 0:
            return PrefillResult(0, 0, 0, 0.0, "none")
        prefix = list(tokens[:n_prefix])
        live = self._live_match(prefix)
        if live >= n_prefix:
            return PrefillResult(n_prefix, n_prefix, 0, time.perf_counter() - t0, "live")
        use_store = self.kv_cache is not None and n_prefix >= self.min_prefix_tokens
        if use_store:
            assert self.kv_cache is not None
            before = self.kv_cache.stats.ram_hits
            saved = self.kv_cache.get(prefix_key(self.model_id, prefix))
            if saved is not None and list(saved.tokens) == prefix and self._restore_state(saved):
                where = "ram" if self.kv_cache.stats.ram_hits > before else "disk"
                seconds = time.perf_counter() - t0
                self.kv_cache.stats.load_seconds.append(seconds)
                return PrefillResult(n_prefix, n_prefix, 0, seconds, where)
            live = self._live_match(prefix)
        self._eval(prefix, live, progress)
        if use_store:
            assert self.kv_cache is not None
            self.kv_cache.put(self._save_state(prefix))
        return PrefillResult(n_prefix, live, n_prefix - live, time.perf_counter() - t0, "evaluated")

    def prefill(self, messages: Sequence[Message], progress: ProgressFn | None = None) -> PrefillResult:
        """Read the prompt's marked prefix (a document) now, so later questions skip it."""
        with self._lock:
            tokens, n_prefix, _ = self._render(messages)
            return self._prepare_prefix(tokens, n_prefix, progress)

    # -- generation ---------------------------------------------------------------------
    def _run(
        self,
        messages: Sequence[Message],
        max_tokens: int,
        temperature: float,
        stop: Sequence[str] | None,
        done: Callable[[Generation], None] | None,
    ) -> Iterator[str]:
        with self._lock:
            t0 = time.perf_counter()
            tokens, n_prefix, stops = self._render(messages)
            check_window(self.name, len(tokens), self.context_window)
            max_tokens = min(max_tokens, self.context_window - len(tokens) - 1)
            pre = self._prepare_prefix(tokens, n_prefix, None)
            reused = max(pre.reused_tokens, self._live_match(tokens))
            if pre.source == "evaluated":
                reused = pre.reused_tokens
            all_stops = list(dict.fromkeys([*(stop or []), *stops]))
            try:
                chunks = self._llm.create_completion(
                    prompt=tokens,
                    max_tokens=max_tokens,
                    temperature=temperature,
                    stop=all_stops or None,
                    stream=True,
                    seed=self._seed,
                )
                first: float | None = None
                finish = ""
                pieces: list[str] = []
                for chunk in chunks:
                    choice: dict[str, Any] = chunk["choices"][0]  # type: ignore[index,assignment]
                    piece = choice.get("text") or ""
                    if first is None:
                        first = time.perf_counter() - t0
                    if choice.get("finish_reason"):
                        finish = str(choice["finish_reason"])
                    if piece:
                        pieces.append(piece)
                        yield piece
            except ValueError as exc:
                raise LLMError(f"{self.name}: {exc}") from exc
            seconds = time.perf_counter() - t0
            first_s = first if first is not None else seconds
            n_out = self.count_tokens("".join(pieces)) if pieces else 0
            self._speed.record(len(tokens) - reused, first_s, n_out, seconds)
        if done is not None:
            done(
                Generation(
                    text="".join(pieces),
                    prompt_tokens=len(tokens),
                    completion_tokens=n_out,
                    seconds=seconds,
                    cached_tokens=reused,
                    finish_reason=finish,
                    first_token_s=first_s,
                )
            )
