"""Any local Hugging Face causal LM directory through transformers (GPU when present).

Reading a document once: the prompt's marked prefix (instructions + document) is run through
the model once, in slices, and its ``past_key_values`` are kept in memory (LRU by size,
keyed by model and prefix tokens). A question on that prefix runs only its own tokens on
top of the kept cache, which is cut back to the prefix afterwards, so it serves the next
question unchanged. Decoding is a plain loop (greedy, or sampling with a seeded generator)
so the backend streams without threads and measures time to first token.

On CUDA (``lc_engine="auto"``) documents go through :class:`gpu.lc.LongContextEngine` instead:
one fast prefill of the prefix into a preallocated KV cache with ``answer_room`` rows after it,
and each question and its answer written into those rows, so the document's rows are never
touched and the next question reuses them as they are (docs/gpu.md).
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from app.llm.base import (
    DecodingLoop,
    Generation,
    LLMError,
    Message,
    SpeedMeter,
    TokenChoices,
    check_window,
    render_with_mark,
    split_at_mark,
)
from app.llm.kvcache import LRUBySize, prefix_key
from app.settings import setting_device


def _cache_layers(cache: Any) -> list[tuple[Any, Any]]:
    if hasattr(cache, "layers"):  # transformers >= 4.56
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(getattr(cache, "key_cache", []), getattr(cache, "value_cache", [])))


def cache_nbytes(cache: Any) -> int:
    total = 0
    for k, v in _cache_layers(cache):
        for t in (k, v):
            if t is not None and hasattr(t, "numel"):
                total += t.numel() * t.element_size()
    return total


def truncate_cache(cache: Any, n_tokens: int) -> None:
    """Cut a DynamicCache back to its first ``n_tokens``.

    ``crop`` changed meaning across transformers versions (older: the length to keep; newer: a
    negative count of tokens to remove), so the result is checked."""
    current = cache.get_seq_length()
    if current <= n_tokens:
        return
    params = list(inspect.signature(cache.crop).parameters)
    if params and params[0] == "tokens_to_remove":
        cache.crop(n_tokens - current)
    else:
        cache.crop(n_tokens)
    if cache.get_seq_length() != n_tokens:
        raise LLMError(
            f"could not cut the KV cache back to {n_tokens} tokens (it holds {cache.get_seq_length()}); "
            "this transformers version is not supported for prefix reuse"
        )


class TransformersGenerator(DecodingLoop):
    def __init__(
        self,
        model_dir: str | Path,
        *,
        name: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        context_window: int | None = None,
        gguf_file: str | None = None,
        prefill_tokens_per_s: float = 200.0,
        decode_tokens_per_s: float = 10.0,
        fixed_speed: bool = False,
        cache_bytes: int = 2 << 30,
        min_prefix_tokens: int = 256,
        prefill_slice: int = 2048,
        seed: int = 0,
        lc_engine: str = "auto",
        answer_room: int = 2048,
    ) -> None:
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:  # pragma: no cover - declared dependencies
            raise LLMError(
                "the transformers backend needs torch and transformers", "pip install longqa"
            ) from exc
        path = Path(model_dir)
        if not path.is_dir():
            raise LLMError(
                f"'{path}' is not a Hugging Face model directory",
                "pass a local directory with config.json and the weights (models are never downloaded)",
            )
        self.device = setting_device("llm.device", device)
        if dtype == "auto":
            torch_dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        else:
            torch_dtype = getattr(torch, dtype)
        kw: dict[str, Any] = {"local_files_only": True}
        if gguf_file:
            kw["gguf_file"] = gguf_file
        try:
            self._tok = AutoTokenizer.from_pretrained(str(path), **kw)
            self._model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch_dtype, **kw)
        except (OSError, ValueError) as exc:
            raise LLMError(f"cannot load a causal LM from '{path}': {exc}") from exc
        self._model.to(self.device).eval()  # type: ignore[arg-type]
        self._torch = torch
        cfg = self._model.config
        self.name = name or path.name
        self.context_window = context_window or int(getattr(cfg, "max_position_embeddings", 4096))
        self.model_id = f"{path.resolve()}:{gguf_file or ''}:{torch_dtype}"
        self.min_prefix_tokens = min_prefix_tokens
        self.prefill_slice = prefill_slice
        self.prefix_cache: LRUBySize[Any] = LRUBySize(cache_bytes)
        self._speed = SpeedMeter(prefill_tokens_per_s, decode_tokens_per_s, fixed=fixed_speed)
        self._lock = threading.RLock()
        self._gen = torch.Generator(device="cpu").manual_seed(seed)
        eos = self._model.generation_config.eos_token_id
        eos_ids = eos if isinstance(eos, list) else [eos]
        self._eos = {int(e) for e in [*eos_ids, self._tok.eos_token_id] if e is not None}
        self.forwarded_tokens = 0  # prompt tokens run through the model (for tests and metrics)
        self.answer_room = answer_room
        # Tokenised prompt prefixes, the 8 most recently used (each counts 1 against the budget).
        self._prefix_tokens: LRUBySize[list[int]] = LRUBySize(8)
        if lc_engine not in ("auto", "on", "off"):
            raise LLMError(f"unknown lc_engine '{lc_engine}'; use auto, on or off")
        self._engine_mode = lc_engine
        # Built on first use (it fuses the model's projections into shared weights).
        self._engine: Any = None
        self._engine_wanted = lc_engine == "on" or (lc_engine == "auto" and self.device.startswith("cuda"))

    def _get_engine(self) -> Any:
        """``gpu.lc.LongContextEngine`` over this model for documents (``auto``: on CUDA, for
        the Llama-family decoders it supports; ``on``: also on the CPU; ``off``: never)."""
        if self._engine is None and self._engine_wanted:
            from gpu.lc import LCConfig, LongContextEngine

            try:
                self._engine = LongContextEngine(self._model, LCConfig(question_capacity=self.answer_room))
            except (AttributeError, TypeError, ValueError) as exc:
                if self._engine_mode == "on":
                    raise LLMError(
                        f"{self.name}: the long-context engine does not support this model: {exc}"
                    ) from exc
                self._engine_wanted = False
        return self._engine

    @property
    def uses_engine(self) -> bool:
        """Whether documents are read with the long-context engine."""
        return self._engine_wanted

    # -- speeds and tokens ----------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        return len(self._tok.encode(text, add_special_tokens=False))

    def _render(self, messages: Sequence[Message]) -> tuple[list[int], int]:
        marked = render_with_mark(messages)
        if getattr(self._tok, "chat_template", None):
            text = self._tok.apply_chat_template(marked, tokenize=False, add_generation_prompt=True)
            specials = False  # the template writes the special tokens itself
        else:
            text = "".join(f"{m['role']}: {m['content']}\n" for m in marked) + "assistant: "
            specials = True
        head, tail = split_at_mark(str(text))
        enc = self._tok.encode
        if not head:
            return enc(tail, add_special_tokens=specials), 0
        # A follow-up question renders the same document prefix again: tokenise it once (on a GPU,
        # tokenising a 30k-token document costs more than reading the question).
        key = hashlib.sha1(head.encode()).hexdigest()
        prefix = self._prefix_tokens.get(key)
        if prefix is None:
            prefix = enc(head, add_special_tokens=specials)
            self._prefix_tokens.put(key, prefix, 1)
        return prefix + enc(tail, add_special_tokens=False), len(prefix)

    def lc_memory_tokens(self) -> int | None:
        """The most prompt tokens whose KV cache and activations fit the GPU's free memory now
        (``gpu.memory``'s estimate, prefill in slices of ``prefill_slice``); None on the CPU or
        for a model whose shape the estimate does not know. The router reads it."""
        if not self.device.startswith("cuda"):
            return None
        from gpu.memory import ModelShape, free_gpu_bytes, max_lc_tokens

        torch = self._torch
        try:
            shape = ModelShape.from_config(self._model.config)
        except (AttributeError, TypeError):
            return None
        dev = torch.device(self.device)
        # Blocks PyTorch's allocator holds but does not use are free for the prefill too.
        free = (
            free_gpu_bytes(self.device) + torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev)
        )
        dtype_bytes = next(self._model.parameters()).element_size()
        if self._engine_wanted:
            from gpu.lc import LCConfig

            chunk = LCConfig().chunk_tokens
        else:
            chunk = self.prefill_slice
        return max_lc_tokens(
            shape, free, dtype_bytes=dtype_bytes, chunk_tokens=chunk, question_capacity=self.answer_room
        )

    def cached_prefix_tokens(self, messages: Sequence[Message]) -> int:
        tokens, n_prefix = self._render(messages)
        if n_prefix and prefix_key(self.model_id, tokens[:n_prefix]) in self.prefix_cache:
            return n_prefix
        return 0

    # -- model calls ------------------------------------------------------------------------
    def _forward(self, ids: Sequence[int], cache: Any) -> Any:
        """Run ``ids`` after what ``cache`` holds; the logits of the last position."""
        torch = self._torch
        logits = None
        with torch.inference_mode():
            for i in range(0, len(ids), self.prefill_slice):
                piece = torch.tensor([list(ids[i : i + self.prefill_slice])], device=self.device)
                out = self._model(input_ids=piece, past_key_values=cache, use_cache=True, logits_to_keep=1)
                logits = out.logits[0, -1]
        self.forwarded_tokens += len(ids)
        return logits

    def _prefix_state(self, tokens: Sequence[int], n_prefix: int) -> tuple[Any, int, bool]:
        """A cache holding the prompt's prefix: (cache, tokens reused, whether it is shared)."""
        from transformers import DynamicCache

        if n_prefix < self.min_prefix_tokens:
            return DynamicCache(), 0, False
        key = prefix_key(self.model_id, tokens[:n_prefix])
        cache = self.prefix_cache.get(key)
        if cache is not None:
            return cache, n_prefix, True
        if self._get_engine() is not None:
            prefix = self._engine.prefill(list(tokens[:n_prefix]))
            self.forwarded_tokens += n_prefix
            return prefix, 0, self.prefix_cache.put(key, prefix, prefix.nbytes)
        cache = DynamicCache()
        self._forward(tokens[:n_prefix], cache)
        shared = self.prefix_cache.put(key, cache, cache_nbytes(cache))
        return cache, 0, shared

    def prefill(self, messages: Sequence[Message]) -> int:
        """Read the prompt's marked prefix now; returns its length in tokens."""
        with self._lock:
            tokens, n_prefix = self._render(messages)
            self._prefix_state(tokens, n_prefix)
            return n_prefix

    def _sample(self, logits: Any, temperature: float) -> int:
        if temperature <= 0:
            return int(logits.argmax())
        probs = self._torch.softmax(logits.float().cpu() / temperature, dim=-1)
        return int(self._torch.multinomial(probs, 1, generator=self._gen))

    # -- generation ---------------------------------------------------------------------------
    def first_token_probs(self, messages: Sequence[Message], n: int = 10) -> TokenChoices:
        """The ``n`` most likely first tokens of the reply and their probabilities (the whole
        prompt read afresh: the checks that ask this are short prompts of their own)."""
        from transformers import DynamicCache

        with self._lock:
            t0 = time.perf_counter()
            tokens, _ = self._render(messages)
            check_window(self.name, len(tokens), self.context_window)
            logits = self._forward(tokens, DynamicCache())
            probs = self._torch.softmax(logits.float().cpu(), dim=-1)
            top = self._torch.topk(probs, min(n, probs.shape[-1]))
            cands = tuple(
                (str(self._tok.decode([int(i)])), float(p))
                for p, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)
            )
            seconds = time.perf_counter() - t0
            self._speed.record(len(tokens), seconds, 1, seconds)
        gen = Generation(
            text=cands[0][0] if cands else "",
            prompt_tokens=len(tokens),
            completion_tokens=1,
            seconds=seconds,
            finish_reason="length",
            first_token_s=seconds,
        )
        return TokenChoices(cands, gen)

    def _run(
        self,
        messages: Sequence[Message],
        max_tokens: int,
        temperature: float,
        stop: Sequence[str] | None,
        done: Callable[[Generation], None] | None,
    ) -> Iterator[str]:
        stops = [s for s in (stop or []) if s]
        hold = max((len(s) for s in stops), default=0)
        with self._lock:
            t0 = time.perf_counter()
            tokens, n_prefix = self._render(messages)
            check_window(self.name, len(tokens), self.context_window)
            max_tokens = min(max_tokens, self.context_window - len(tokens) - 1)
            cache, reused, shared = self._prefix_state(tokens, n_prefix)
            start = n_prefix if n_prefix >= self.min_prefix_tokens else 0
            engine = self._engine is not None and start > 0
            if engine and len(tokens) - start + max_tokens > cache.capacity - cache.length:
                raise LLMError(
                    f"{self.name}: the question and answer ({len(tokens) - start} + {max_tokens} tokens) "
                    f"exceed the {self.answer_room}-token room after the document; raise answer_room"
                )
            if not engine and shared and not getattr(cache, "is_croppable", True):
                cache, shared = copy.deepcopy(cache), False
            out_ids: list[int] = []
            text, sent, finish, first = "", 0, "length", None
            pos = len(tokens)
            try:
                if engine:  # the question on top of the document's cached keys and values
                    logits = self._engine.extend(cache, tokens[start:], start)
                    self.forwarded_tokens += len(tokens) - start
                else:
                    logits = self._forward(tokens[start:], cache)
                for step in range(max_tokens):
                    tok = self._sample(logits, temperature)
                    if first is None:
                        first = time.perf_counter() - t0
                    if tok in self._eos:
                        finish = "stop"
                        break
                    out_ids.append(tok)
                    text = str(self._tok.decode(out_ids, skip_special_tokens=True))
                    cut = min((text.find(s) for s in stops if s in text), default=-1)
                    if cut >= 0:
                        text, finish = text[:cut], "stop"
                        break
                    ready = len(text) - hold if not text.endswith("\ufffd") else sent
                    if ready > sent:
                        yield text[sent:ready]
                        sent = ready
                    if step + 1 < max_tokens:
                        if engine:
                            logits = self._engine.extend(cache, [tok], pos)
                            pos += 1
                            self.forwarded_tokens += 1
                        else:
                            logits = self._forward([tok], cache)
                if len(text) > sent:
                    yield text[sent:]
            finally:
                if shared and not engine:
                    truncate_cache(cache, n_prefix)  # the next question finds the prefix unchanged
            seconds = time.perf_counter() - t0
            first_s = first if first is not None else seconds
            self._speed.record(len(tokens) - reused, first_s, len(out_ids), seconds)
        if done is not None:
            done(
                Generation(
                    text=text,
                    prompt_tokens=len(tokens),
                    completion_tokens=len(out_ids),
                    seconds=seconds,
                    cached_tokens=reused,
                    finish_reason=finish,
                    first_token_s=first_s,
                )
            )
