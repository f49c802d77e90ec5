"""GGUF models on the embedded llama.cpp engine (the default backend).

The engine runs in a child process (``app.llm.engine``): a crash in native code costs one
answer, never the app, a batch run or an eval. This module is its client: it renders chat
prompts with the model's own template, counts tokens in the model's own tokenizer, streams
answers, and reads each document once.

Reading a document once. The engine keeps the KV cache of its last prompt and evaluates only
the tokens after the longest common prefix; it also keeps states of recent prompts in memory.
A prompt whose messages mark a reusable prefix (instructions + document, see
``app.llm.base``) has that prefix tokenized on its own, so its tokens are identical whatever
question follows; its KV state is saved to disk (:class:`~app.llm.kvcache.PrefixStateCache`,
keyed by engine, model and prefix tokens) and restored by a later process. A follow-up
question on a document read before then costs only its own tokens.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx

from app.llm import control
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
from app.llm.engine import (
    EngineConfig,
    EngineDied,
    EngineProcess,
    SafetyRecord,
    choose_kind,
    cpu_signature,
    describe_exit,
    is_fault,
    safer,
)
from app.llm.kvcache import LRUBySize, PrefixStateCache, prefix_key

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]  # (tokens evaluated so far, tokens to evaluate)
EngineChoice = Literal["auto", "xllamacpp", "native"]
# KV bytes a prompt token takes, before the first saved state tells the real figure.
_KV_BYTES_PER_TOKEN = 32 << 10
# After a stop, how long the engine may take to send its next event before it is killed (and
# started again in the background): a token comes within this while decoding; reading a prompt
# sends one event per batch, which can take many seconds.
CANCEL_GRACE_S = 0.4


@dataclass(frozen=True)
class PrefillResult:
    """What reading a prompt's marked prefix cost."""

    prefix_tokens: int
    reused_tokens: int  # already in the live KV cache or restored from a saved state
    evaluated_tokens: int
    seconds: float
    source: str  # "live", "ram", "disk", "evaluated" or "none" (no marked prefix)


def _common(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class MeasuredSpeeds:
    """Prefill and decode speeds measured on this machine, kept per engine, model and CPU, so a
    new process starts from this machine's figures instead of a catalog constant."""

    def __init__(self, path: Path | None, key: str) -> None:
        self.path = path
        self.key = key

    def load(self) -> tuple[float, float] | None:
        if self.path is None or not self.path.is_file():
            return None
        try:
            got = json.loads(self.path.read_text(encoding="utf-8")).get(self.key)
            return (float(got["prefill"]), float(got["decode"])) if got else None
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def save(self, prefill: float, decode: float) -> None:
        if self.path is None:
            return
        try:
            data = json.loads(self.path.read_text(encoding="utf-8")) if self.path.is_file() else {}
            if not isinstance(data, dict):
                data = {}
        except (OSError, ValueError):
            data = {}
        data[self.key] = {"prefill": round(prefill, 2), "decode": round(decode, 2), "at": int(time.time())}
        tmp = self.path.with_suffix(f".tmp{os.getpid()}.{threading.get_ident()}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError:
            tmp.unlink(missing_ok=True)


def measured_here(state_dir: Path) -> dict[str, tuple[str, float, float]]:
    """Speeds measured on this CPU, by model file name: (engine kind, prefill, decode) tokens/s."""
    path = state_dir / "engine-speeds.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        return {}
    here = cpu_signature()
    out: dict[str, tuple[str, float, float]] = {}
    for key, v in data.items() if isinstance(data, dict) else ():
        parts = str(key).split(":")
        if len(parts) == 4 and parts[3] == here and isinstance(v, dict):
            out[parts[1]] = (parts[0], float(v.get("prefill", 0)), float(v.get("decode", 0)))
    return out


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
        engine: EngineChoice = "auto",
        safe: bool = False,
        poll: int = 0,
        state_dir: Path | None = None,
        log_path: Path | None = None,
    ) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise LLMError(
                f"GGUF model file '{path}' does not exist",
                "check llm.model: a catalog name (see 'longqa models') or the path to a .gguf file",
            )
        self.name = name or path.stem
        self.context_window = context_window
        self.kv_cache = kv_cache
        self.min_prefix_tokens = min_prefix_tokens
        self.notices: list[str] = []  # one line each time the engine had to change course
        self._seed = seed
        self._lock = threading.RLock()
        self._record = SafetyRecord(state_dir / "engine-safety.json" if state_dir else None)
        kind = choose_kind(engine, self._record)
        cores = os.cpu_count() or 2
        self._config = EngineConfig(
            model_path=path,
            context_window=context_window,
            threads=decode_threads or threads or cores,
            batch_threads=threads or cores,
            kind=kind,
            safe=safe or bool(self._record.get(kind)),
            slot_dir=kv_cache.directory if kv_cache is not None else None,
            cache_ram_mib=(kv_cache.ram_bytes >> 20) if kv_cache is not None else 0,
            n_batch=n_batch,
            gpu_layers=gpu_layers,
            poll=poll,
            log_path=log_path,
        )
        if kv_cache is not None and kv_cache.directory is not None:
            kv_cache.directory.mkdir(parents=True, exist_ok=True)
        self._engine: EngineProcess | None = None
        self._live: list[int] = []  # the prompt tokens whose KV the engine's slot holds
        self._ram: LRUBySize[int] = LRUBySize(kv_cache.ram_bytes if kv_cache is not None else 0)
        self._kv_bytes_per_token = _KV_BYTES_PER_TOKEN
        self._speeds = MeasuredSpeeds(
            state_dir / "engine-speeds.json" if state_dir else None, self._speed_key(path)
        )
        self._speed = SpeedMeter(prefill_tokens_per_s, decode_tokens_per_s, fixed=fixed_speed)
        known = None if fixed_speed else self._speeds.load()
        if known is not None:
            self._speed = SpeedMeter(*known)
            self._speed.measured = True

    # -- the engine -------------------------------------------------------------------
    def _speed_key(self, path: Path) -> str:
        return f"{self._config.kind}:{path.name}:{path.stat().st_size}:{cpu_signature()}"

    @property
    def engine_label(self) -> str:
        """Which engine runs this model, as users see it."""
        return self._config.label

    @property
    def model_id(self) -> str:
        """The model and the engine build: saved KV states are only valid for both."""
        p = self._config.model_path
        return f"{p.name}:{p.stat().st_size}:{self._config.label}"

    def _notice(self, line: str) -> None:
        log.warning("%s", line)
        self.notices.append(line)

    def _ensure(self) -> EngineProcess:
        """The running engine, started (again) as needed, on safer settings after a crash."""
        if self._engine is not None and self._engine.alive():
            return self._engine
        if self._engine is not None:  # it died since the last request: start it again
            code = self._engine.exit_code(0.1)
            self._engine.stop()
            self._engine = None
            if is_fault(code):
                self._after_crash(code, f"the llama.cpp engine was {describe_exit(code)} while idle")
            else:
                self._live = []
                self._notice(f"the llama.cpp engine was {describe_exit(code)} while idle; starting it again")
        while True:
            eng = EngineProcess(self._config)
            try:
                eng.start()
            except EngineDied as exc:
                self._after_crash(exc.code, str(exc))
                continue
            self._engine = eng
            return eng

    def _after_crash(self, code: int | None, message: str) -> None:
        """Pick safer settings after the engine died from ``code``, or raise ``message``."""
        self._live = []
        self._ram = LRUBySize(self._ram.max_bytes)
        nxt = safer(self._config, self._record, code) if is_fault(code) else None
        if nxt is None:
            raise LLMError(f"{self.name}: {message}")
        self._config, notice = nxt
        self._speeds.key = self._speed_key(self._config.model_path)
        self._notice(notice)

    def _lost(self, code: int | None, during: str) -> None:
        """The engine died while in use: forget its state, choose what runs next, and say so."""
        eng, self._engine = self._engine, None
        if eng is not None:
            eng.stop()
        what = f"the llama.cpp engine was {describe_exit(code)} {during}"
        self._after_crash(code, f"{what}; it restarts for the next question")
        raise EngineDied(code, f"{self.name}: {what}; it restarts on safe settings for the next question")

    def _post(self, path: str, body: dict[str, Any], timeout: float = 600.0) -> dict[str, Any]:
        control.check()
        eng = self._ensure()
        try:
            r = httpx.post(f"{eng.url}{path}", json=body, timeout=timeout, headers={"Connection": "close"})
        except httpx.TransportError as exc:
            code = eng.exit_code()
            if code is not None:
                self._lost(code, f"during {path}")
            raise LLMError(f"{self.name}: the llama.cpp engine did not answer {path}: {exc}") from exc
        if r.status_code != 200:
            raise LLMError(f"{self.name}: the llama.cpp engine refused {path}: {r.text[:300]}")
        out: dict[str, Any] = r.json()
        return out

    def close(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.stop()
                self._engine = None
            self._live = []

    def __del__(self) -> None:  # the child also exits on its own when we are gone
        with contextlib.suppress(Exception):  # interpreter shutdown
            self.close()

    # -- tokens and prompts ------------------------------------------------------------
    def tokenize(self, text: str, *, special: bool = False, add_bos: bool = False) -> list[int]:
        with self._lock:
            got = self._post("/tokenize", {"content": text, "add_special": add_bos, "parse_special": special})
        return [int(t) for t in got["tokens"]]

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text)) if text else 0

    def _render(self, messages: Sequence[Message]) -> tuple[list[int], int]:
        """Prompt tokens and how many of them form the marked prefix.

        The prefix text and the rest are tokenized separately, so the prefix tokens do not
        depend on what follows them."""
        marked = render_with_mark(messages)
        text = str(self._post("/apply-template", {"messages": marked})["prompt"])
        head, tail = split_at_mark(text)
        if not head:
            return self.tokenize(tail, special=True, add_bos=True), 0
        prefix = self.tokenize(head, special=True, add_bos=True)
        rest = self.tokenize(tail, special=True)
        return prefix + rest, len(prefix)

    def cached_prefix_tokens(self, messages: Sequence[Message]) -> int:
        """Tokens of the prompt's marked prefix already read (live KV, memory or disk)."""
        with self._lock:
            tokens, n_prefix = self._render(messages)
            if n_prefix == 0:
                return 0
            prefix = tokens[:n_prefix]
            if _common(self._live, prefix) >= n_prefix:
                return n_prefix
            key = prefix_key(self.model_id, prefix)
            if key in self._ram or (self.kv_cache is not None and self.kv_cache.has(key)):
                return n_prefix
            return 0

    # -- prefix states -----------------------------------------------------------------
    def _save(self, key: str, n_tokens: int) -> None:
        assert self.kv_cache is not None
        temp = self.kv_cache.temp_name(key)
        got = self._post("/slots/0?action=save", {"filename": temp})
        if int(got.get("n_saved", 0)) > 0:
            self._kv_bytes_per_token = max(1, int(got.get("n_written", 0)) // int(got["n_saved"]))
        self.kv_cache.commit(temp, key)

    def _restore(self, key: str, n_tokens: int) -> bool:
        assert self.kv_cache is not None
        t0 = time.perf_counter()
        try:
            got = self._post("/slots/0?action=restore", {"filename": self.kv_cache.name(key)})
        except EngineDied:
            raise
        except LLMError as exc:
            self.kv_cache.discard(key, f"the engine could not restore it: {str(exc)[-160:]}")
            return False
        if int(got.get("n_restored", 0)) != n_tokens:
            self.kv_cache.discard(key, f"it held {got.get('n_restored')} tokens, expected {n_tokens}")
            return False
        self.kv_cache.touch(key)
        self.kv_cache.stats.disk_hits += 1
        self.kv_cache.stats.load_seconds.append(time.perf_counter() - t0)
        return True

    def _evaluate(self, tokens: Sequence[int], progress: ProgressFn | None) -> dict[str, Any]:
        """Read ``tokens`` into the slot (generating nothing); the engine's timings."""
        body = {
            "prompt": list(tokens),
            "n_predict": 0,
            "cache_prompt": True,
            "id_slot": 0,
            "stream": True,
            "return_progress": progress is not None,
        }
        final: dict[str, Any] = {}
        for event in self._events(body):
            pp = event.get("prompt_progress")
            if pp and progress is not None:
                done, total = int(pp["processed"]), int(pp["total"]) - int(pp.get("cache", 0))
                progress(max(0, done - int(pp.get("cache", 0))), max(total, 1))
            if event.get("stop"):
                final = event
        return final

    def _prepare_prefix(
        self, tokens: Sequence[int], n_prefix: int, progress: ProgressFn | None
    ) -> PrefillResult:
        """Make the engine's slot hold ``tokens[:n_prefix]``, reusing whatever is live or saved."""
        t0 = time.perf_counter()
        if n_prefix == 0:
            return PrefillResult(0, 0, 0, 0.0, "none")
        prefix = list(tokens[:n_prefix])
        live = _common(self._live, prefix)
        if live >= n_prefix:
            return PrefillResult(n_prefix, n_prefix, 0, time.perf_counter() - t0, "live")
        use_store = self.kv_cache is not None and n_prefix >= self.min_prefix_tokens
        key = prefix_key(self.model_id, prefix)
        in_ram = key in self._ram
        on_disk = use_store and not in_ram and self.kv_cache is not None and self.kv_cache.has(key)
        if on_disk and self._restore(key, n_prefix):
            self._live = prefix
            self._ram.put(key, n_prefix, n_prefix * self._kv_bytes_per_token)
            return PrefillResult(n_prefix, n_prefix, 0, time.perf_counter() - t0, "disk")
        final = self._evaluate(prefix, progress)
        self._live = prefix
        timings = final.get("timings") or {}
        reused = max(live, int(timings.get("cache_n", 0)))
        seconds = time.perf_counter() - t0
        if reused >= n_prefix - 1 and live < n_prefix - 1:  # the engine had it in memory
            if self.kv_cache is not None:
                self.kv_cache.stats.ram_hits += 1
            return PrefillResult(n_prefix, n_prefix, 0, seconds, "ram")
        self._record_speed(timings)
        if use_store and self.kv_cache is not None and not self.kv_cache.has(key):
            self._save(key, n_prefix)
        self._ram.put(key, n_prefix, n_prefix * self._kv_bytes_per_token)
        return PrefillResult(n_prefix, reused, n_prefix - reused, time.perf_counter() - t0, "evaluated")

    def prefill(self, messages: Sequence[Message], progress: ProgressFn | None = None) -> PrefillResult:
        """Read the prompt's marked prefix (a document) now, so later questions skip it."""
        with self._lock:
            tokens, n_prefix = self._render(messages)
            return self._prepare_prefix(tokens, n_prefix, progress)

    # -- generation ---------------------------------------------------------------------
    def first_token_probs(self, messages: Sequence[Message], n: int = 10) -> TokenChoices:
        """The ``n`` most likely first tokens of the reply and their probabilities (one token
        decoded, greedy). A prompt with a marked prefix reuses it as ``generate`` does; one
        without is read whole every time: llama.cpp's probabilities move with how much of a
        prompt comes from the slot's cache (the batch it was read in), and a verdict read from
        them must not depend on what was asked before (docs/citations.md, "Same claim, same
        probability")."""
        with self._lock:
            t0 = time.perf_counter()
            tokens, n_prefix = self._render(messages)
            check_window(self.name, len(tokens), self.context_window)
            pre = self._prepare_prefix(tokens, n_prefix, None)
            body = {
                "prompt": tokens,
                "n_predict": 1,
                "n_probs": n,
                "temperature": 0.0,
                "seed": self._seed,
                "cache_prompt": n_prefix > 0,
                "id_slot": 0,
            }
            self._live = []
            got = self._post("/completion", body)
            self._live = list(tokens)
            timings = got.get("timings") or {}
            self._record_speed(timings)
            probs = got.get("completion_probabilities") or [{}]
            top = probs[0].get("top_logprobs") or []
            seconds = time.perf_counter() - t0
        cands = tuple((str(t.get("token", "")), math.exp(float(t.get("logprob", -1e9)))) for t in top)
        cached = max(pre.reused_tokens, int(timings.get("cache_n", 0)))
        gen = Generation(
            text=str(got.get("content") or ""),
            prompt_tokens=len(tokens),
            completion_tokens=int(timings.get("predicted_n", 1)),
            seconds=seconds,
            cached_tokens=cached,
            finish_reason="length",
            first_token_s=seconds,
        )
        return TokenChoices(cands, gen)

    def _to_read(self, tokens: Sequence[int], n_prefix: int) -> int:
        """Prompt tokens the engine will evaluate: those after what its slot holds, or after
        the prefix when that is saved in memory or on disk."""
        have = _common(self._live, tokens)
        if n_prefix and have < n_prefix:
            key = prefix_key(self.model_id, list(tokens[:n_prefix]))
            if key in self._ram or (self.kv_cache is not None and self.kv_cache.has(key)):
                have = n_prefix
        return max(1, len(tokens) - have)

    def _events(self, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Server-sent events of one streamed /completion; closing this iterator early closes
        the connection, which makes the engine stop decoding.

        Under a :class:`~app.llm.control.Control`, a stop ends the stream at the next event, or,
        when none comes within ``CANCEL_GRACE_S`` (the engine is reading a long prompt), kills
        the engine, which starts again in the background; either way :class:`Cancelled`."""
        ctl = control.current()
        if ctl is None:
            yield from self._stream_events(body, None)
            return
        ctl.check()
        eng = self._ensure()
        open_ = threading.Event()
        open_.set()

        def kill_if_busy() -> None:
            if open_.is_set():
                log.info("stopped while the engine was busy: killing it (it restarts in the background)")
                eng.kill()

        def on_cancel() -> None:
            timer = threading.Timer(CANCEL_GRACE_S, kill_if_busy)
            timer.daemon = True
            timer.start()

        try:
            with ctl.on_cancel(on_cancel):
                yield from self._stream_events(body, ctl)
        finally:
            open_.clear()

    def _restart_after_stop(self) -> None:
        """The engine was killed to stop a request: forget its state and start it again in the
        background, so the next question finds it ready."""
        eng, self._engine = self._engine, None
        if eng is not None:
            eng.stop()
        self._live = []
        self._ram = LRUBySize(self._ram.max_bytes)

        def respawn() -> None:
            try:
                with self._lock:
                    self._ensure()
            except Exception as exc:  # noqa: BLE001 - the next question will say it
                log.warning("the llama.cpp engine did not start again after a stop: %s", exc)

        threading.Thread(target=respawn, daemon=True, name="engine-respawn").start()

    def _stream_events(self, body: dict[str, Any], ctl: control.Control | None) -> Iterator[dict[str, Any]]:
        eng = self._ensure()
        try:
            with httpx.stream(
                "POST",
                f"{eng.url}/completion",
                json=body,
                timeout=httpx.Timeout(None, connect=10.0),
                headers={"Connection": "close"},
            ) as r:
                if r.status_code != 200:
                    r.read()
                    raise LLMError(f"{self.name}: the llama.cpp engine refused the prompt: {r.text[:300]}")
                for line in r.iter_lines():
                    if ctl is not None and ctl.cancelled:
                        raise control.Cancelled()  # leaving closes the connection: the engine stops
                    if line.startswith("data: "):
                        event = json.loads(line[6:])
                        if "error" in event:
                            raise LLMError(f"{self.name}: the llama.cpp engine failed: {event['error']}")
                        yield event
        except httpx.TransportError as exc:
            if ctl is not None and ctl.cancelled:  # killed to stop it
                self._restart_after_stop()
                raise control.Cancelled() from None
            code = eng.exit_code()
            if code is not None:
                self._lost(code, "while reading the prompt or answering")
            raise LLMError(f"{self.name}: the connection to the llama.cpp engine failed: {exc}") from exc

    def _record_speed(self, timings: dict[str, Any]) -> None:
        n_prompt = int(timings.get("prompt_n", 0))
        prompt_s = float(timings.get("prompt_ms", 0.0)) / 1000
        n_out = int(timings.get("predicted_n", 0))
        decode_s = float(timings.get("predicted_ms", 0.0)) / 1000
        before = (self._speed.prefill, self._speed.decode)
        self._speed.record(n_prompt, prompt_s, n_out, prompt_s + decode_s)
        if (self._speed.prefill, self._speed.decode) != before and not self._speed.fixed:
            self._speeds.save(self._speed.prefill, self._speed.decode)

    def _run(
        self,
        messages: Sequence[Message],
        max_tokens: int,
        temperature: float,
        stop: Sequence[str] | None,
        done: Callable[[Generation], None] | None,
    ) -> Iterator[str]:
        ctl = control.current()
        with self._lock:
            t0 = time.perf_counter()
            tokens, n_prefix = self._render(messages)
            check_window(self.name, len(tokens), self.context_window)
            max_tokens = max(1, min(max_tokens, self.context_window - len(tokens) - 1))
            reading = None
            progress: ProgressFn | None = None
            if ctl is not None:
                reading = ctl.reading(self._to_read(tokens, n_prefix), self._speed.prefill)

                def progress(done: int, total: int) -> None:
                    reading.done = min(reading.tokens, done)

            pre = self._prepare_prefix(tokens, n_prefix, progress)
            body = {
                "prompt": tokens,
                "n_predict": max_tokens,
                "temperature": temperature,
                "seed": self._seed,
                "stop": list(stop or []),
                "cache_prompt": True,
                "id_slot": 0,
                "stream": True,
                "return_progress": reading is not None,
            }
            first: float | None = None
            pieces: list[str] = []
            final: dict[str, Any] = {}
            self._live = []  # until the answer is complete, what the slot holds is unknown
            for event in self._events(body):
                pp = event.get("prompt_progress")
                if pp and reading is not None:
                    got = int(pp["processed"]) - int(pp.get("cache", 0))
                    reading.done = min(reading.tokens, pre.evaluated_tokens + max(0, got))
                piece = str(event.get("content") or "")
                if piece:
                    if first is None:
                        first = time.perf_counter() - t0
                        if reading is not None:
                            reading.finished = True
                    pieces.append(piece)
                    yield piece
                if event.get("stop"):
                    final = event
            self._live = list(tokens)
            seconds = time.perf_counter() - t0
            timings = final.get("timings") or {}
            self._record_speed(timings)
            cached = pre.reused_tokens if pre.source == "evaluated" else int(timings.get("cache_n", 0))
            if pre.source in ("live", "ram", "disk"):
                cached = max(cached, pre.prefix_tokens)
            stop_type = str(final.get("stop_type", ""))
            finish = {"eos": "stop", "word": "stop", "limit": "length"}.get(stop_type, stop_type)
        if done is not None:
            done(
                Generation(
                    text="".join(pieces),
                    prompt_tokens=len(tokens),
                    completion_tokens=int(timings.get("predicted_n", 0)),
                    seconds=seconds,
                    cached_tokens=cached,
                    finish_reason=finish,
                    first_token_s=first if first is not None else seconds,
                )
            )
