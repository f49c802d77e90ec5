"""The embedded LLM engine: llama.cpp's HTTP server in a child process of ours.

Why a child process: a fault in native code (a CPU that advertises AMX without granting its
tile state, an instruction the CPU lacks, a bug in a kernel) kills the process it runs in. In
a child, it costs one answer: the parent sees the connection drop, says which signal ended the
engine, and starts it again for the next question. Streamlit, batch runs and evals live on.

Two engines speak the same protocol (llama.cpp's server: /tokenize, /apply-template,
/completion with streaming, /slots save and restore):

- ``xllamacpp`` (default): a prebuilt llama.cpp on PyPI (manylinux, AVX2/FMA/F16C), hosted by
  ``python -m app.llm.engine_child``. Installs in seconds; nothing is compiled.
- ``native``: llama.cpp's own ``llama-server`` built by ``scripts/build-native-engine.sh`` with
  portable flags and runtime CPU dispatch (AVX-512, VNNI, AMX variants picked at run time).

Risky fast paths (repacked weights and the extra buffer types behind them, which is where
llama.cpp's AMX kernels live) are on by default. If the engine dies from a signal on this CPU,
the crash is recorded once per machine (``engine-safety.json`` in the model cache) and the
engine is started again with them off (``no_extra_bufts`` / ``--no-repack``), with a one-line
notice. A native engine that crashes even then is replaced by the prebuilt one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import httpx

from app.llm.base import LLMError

log = logging.getLogger(__name__)

EngineKind = Literal["xllamacpp", "native"]
# Signals that mean the engine's native code faulted (as opposed to being stopped by us).
FAULT_SIGNALS = {signal.SIGSEGV, signal.SIGILL, signal.SIGBUS, signal.SIGFPE, signal.SIGABRT}


def native_engine_dir() -> Path:
    """Where scripts/build-native-engine.sh puts llama-server (inside the virtual environment)."""
    return Path(sys.prefix) / "engine" / "native"


def native_binary() -> Path | None:
    path = native_engine_dir() / "bin" / "llama-server"
    return path if path.is_file() and os.access(path, os.X_OK) else None


def cpu_features() -> set[str]:
    """The CPU's feature flags as Linux reports them (empty where /proc/cpuinfo is absent)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_signature() -> str:
    """A short id of this CPU model and its flags: crash records are kept per CPU."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = " ".join(sorted(cpu_features()))
    return hashlib.sha256(f"{model}|{flags}".encode()).hexdigest()[:16]


def cpu_summary() -> str:
    """The instruction sets that matter to llama.cpp's CPU kernels, as a short list."""
    have = cpu_features()
    names = [
        ("avx2", "AVX2"),
        ("fma", "FMA"),
        ("f16c", "F16C"),
        ("avx512f", "AVX-512"),
        ("avx512_vnni", "AVX512-VNNI"),
        ("avx_vnni", "AVX-VNNI"),
        ("amx_tile", "AMX"),
    ]
    return ", ".join(label for flag, label in names if flag in have) or "unknown"


def xllamacpp_version() -> str:
    try:
        from importlib.metadata import version

        return version("xllamacpp")
    except Exception:  # noqa: BLE001 - not installed
        return ""


def describe_exit(code: int | None) -> str:
    """'killed by SIGSEGV' / 'exited with status 1' / 'still running'."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


def is_fault(code: int | None) -> bool:
    return code is not None and code < 0 and -code in {int(s) for s in FAULT_SIGNALS}


@dataclass(frozen=True)
class EngineConfig:
    """What the engine process is started with."""

    model_path: Path
    context_window: int
    threads: int
    batch_threads: int
    kind: EngineKind = "xllamacpp"
    safe: bool = False  # no repacked weights / extra buffer types (AMX kernels live there)
    slot_dir: Path | None = None  # where KV states are saved and restored (the disk tier)
    cache_ram_mib: int = 0  # the server's own in-memory prompt cache (the memory tier)
    n_batch: int = 512
    gpu_layers: int = 0
    poll: int = 0  # 0: idle threads sleep instead of spinning (see llm.poll)
    log_path: Path | None = None

    @property
    def label(self) -> str:
        """The engine as users see it: 'xllamacpp 2026.10.11549 (prebuilt, AVX2)'."""
        if self.kind == "native":
            what = f"llama.cpp native build ({cpu_summary()})"
        else:
            what = f"xllamacpp {xllamacpp_version()} (prebuilt, AVX2)"
        return what + (", safe mode" if self.safe else "")

    def command(self, port: int) -> list[str]:
        common = [
            "--model", str(self.model_path),
            "--ctx", str(self.context_window),
            "--threads", str(self.threads),
            "--threads-batch", str(self.batch_threads),
            "--port", str(port),
            "--batch", str(self.n_batch),
            "--cache-ram", str(self.cache_ram_mib),
            "--gpu-layers", str(self.gpu_layers),
            "--poll", str(self.poll),
        ]  # fmt: skip
        if self.slot_dir is not None:
            common += ["--slot-dir", str(self.slot_dir)]
        if self.safe:
            common.append("--safe")
        if self.kind == "native":
            binary = native_binary()
            if binary is None:
                raise LLMError(
                    "the native llama.cpp engine is not built",
                    "build it with 'bash scripts/build-native-engine.sh' or use llm.engine = 'xllamacpp'",
                )
            common += ["--native", str(binary)]
        return [sys.executable, "-m", "app.llm.engine_child", *common]


class SafetyRecord:
    """Per machine: which engines crashed here with their fast paths on (a small JSON file)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()

    def _key(self, kind: str) -> str:
        version = xllamacpp_version() if kind == "xllamacpp" else "native"
        return f"{kind}:{version}:{cpu_signature()}"

    def _read(self) -> dict[str, dict[str, str]]:
        if self.path is None or not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def get(self, kind: str) -> dict[str, str] | None:
        return self._read().get(self._key(kind))

    def put(self, kind: str, level: Literal["safe", "broken"], reason: str) -> None:
        if self.path is None:
            return
        with self._lock:
            data = self._read()
            data[self._key(kind)] = {"level": level, "reason": reason, "cpu": cpu_summary()}
            tmp = self.path.with_suffix(f".tmp{os.getpid()}")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
                os.replace(tmp, self.path)
            except OSError as exc:
                log.warning("could not record the engine crash in %s: %s", self.path, exc)


@dataclass
class EngineProcess:
    """One running engine: the child process and the URL of its server."""

    config: EngineConfig
    start_timeout_s: float = 180.0
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)
    url: str = field(default="", init=False)
    _log_fh: object = field(default=None, init=False, repr=False)

    def start(self) -> None:
        if self.config.kind == "xllamacpp" and "avx2" not in cpu_features() and cpu_features():
            raise LLMError(
                "this CPU has no AVX2, which the prebuilt llama.cpp engine (xllamacpp) needs",
                "build the native engine (bash scripts/build-native-engine.sh) or use "
                "llm.backend = 'openai' with a server elsewhere",
            )
        port = _free_port()
        log_path = self.config.log_path
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_fh = out = open(log_path, "ab")  # noqa: SIM115 - lives as long as the child
        else:
            out = subprocess.DEVNULL  # type: ignore[assignment]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            self.config.command(port),
            stdin=subprocess.PIPE,  # the child exits when this pipe closes (we died)
            stdout=out,  # type: ignore[arg-type]
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # Ctrl-C in a terminal reaches us, not the engine mid-answer
        )
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            code = self.proc.poll()
            if code is not None:
                raise EngineDied(code, f"the llama.cpp engine {describe_exit(code)} while loading the model"
                                 f"{self._log_tail()}")  # fmt: skip
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                took = f"{self.start_timeout_s:.0f} s"
                raise LLMError(f"the llama.cpp engine did not start within {took}{self._log_tail()}")
            time.sleep(0.1)

    def _log_tail(self) -> str:
        path = self.config.log_path
        if path is None or not path.is_file():
            return ""
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
        return f" (last log line: {lines[-1][:200]})" if lines else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exit_code(self, wait_s: float = 1.0) -> int | None:
        """The child's exit status, waiting a moment for a dying child to be reaped."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """End the engine at once, whatever it is doing (the user stopped a request that it
        would otherwise keep computing); the process is reaped by :meth:`stop`."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)  # its own session: the native grandchild too

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.stdin.close()  # type: ignore[union-attr]
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self._log_fh is not None:
            self._log_fh.close()  # type: ignore[attr-defined]
            self._log_fh = None


class EngineDied(LLMError):
    """The engine process ended while we needed it; ``code`` is its exit status."""

    def __init__(self, code: int | None, message: str) -> None:
        super().__init__(message)
        self.code = code


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def safer(config: EngineConfig, record: SafetyRecord, code: int | None) -> tuple[EngineConfig, str] | None:
    """The next configuration to try after the engine died from ``code``, and the notice to give;
    None when there is nothing safer left."""
    why = describe_exit(code)
    if not config.safe:
        record.put(config.kind, "safe", why)
        return replace(config, safe=True), (
            f"the llama.cpp engine ({config.label}) was {why} on this CPU ({cpu_summary()}) with its fast "
            "paths on (repacked weights, AMX); running it without them from now on on this machine"
        )
    if config.kind == "native":
        record.put("native", "broken", why)
        return replace(config, kind="xllamacpp", safe=False), (
            f"the native llama.cpp engine was {why} on this CPU even in safe mode; using the prebuilt "
            "engine (xllamacpp) instead on this machine"
        )
    return None


def choose_kind(choice: str, record: SafetyRecord) -> EngineKind:
    """'native' when asked for, or with 'auto' when it is built and has not failed here."""
    if choice == "native":
        return "native"
    if choice == "auto" and native_binary() is not None:
        got = record.get("native")
        if not got or got.get("level") != "broken":
            return "native"
    return "xllamacpp"


def engine_status(choice: str, safe: bool, state_dir: Path) -> str:
    """One line for 'longqa models' and the app: which engine runs GGUF models here, and why."""
    record = SafetyRecord(state_dir / "engine-safety.json")
    native = native_binary()
    kind = choose_kind(choice, record)
    got = record.get(kind)
    cfg = EngineConfig(Path("-"), 0, 0, 0, kind=kind, safe=safe or bool(got))
    line = f"engine: {cfg.label}; this CPU: {cpu_summary()}"
    if got:
        line += f"; fast paths off here since it was {got.get('reason', 'crashing')}"
    if kind == "xllamacpp" and native is None:
        line += "; a faster native build for AVX-512/AMX CPUs: bash scripts/build-native-engine.sh"
    return line
