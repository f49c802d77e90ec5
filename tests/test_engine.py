"""The embedded engine survives its own crashes: a real SIGSEGV of the llama.cpp child process
mid-answer costs that answer only; the engine comes back on safe settings, recorded per CPU.
Also: the engine with its risky fast paths forced off, and the default 1.5B model decoding."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from app.llm.base import LLMError, Message
from app.llm.engine import EngineConfig, SafetyRecord, cpu_summary, describe_exit, engine_status, is_fault
from app.llm.kvcache import PrefixStateCache
from app.llm.llamacpp import LlamaCppGenerator

QUESTION = [
    Message("system", "You answer briefly."),
    Message("user", "The harbour of Vardo was rebuilt in 1998. When was the harbour rebuilt?"),
]


@pytest.fixture(scope="module")
def smol_path(model_cache: Path) -> Path:
    from app.catalog import load_catalog, resolve_generator

    return resolve_generator(load_catalog().generators["smollm2-135m"], model_cache)


def _gen(path: Path, state: Path, **kw) -> LlamaCppGenerator:  # type: ignore[no-untyped-def]
    kw.setdefault("engine", "xllamacpp")  # the default engine, even where a native one is built
    return LlamaCppGenerator(path, context_window=2048, threads=2, decode_threads=1, state_dir=state, **kw)


def test_exit_descriptions_tell_faults_from_stops() -> None:
    assert describe_exit(-11) == "killed by SIGSEGV" and is_fault(-11) and is_fault(-4)
    assert describe_exit(1) == "exited with status 1" and not is_fault(1) and not is_fault(-15)
    assert "AVX2" in cpu_summary() or cpu_summary() == "unknown"


def test_a_segfault_mid_answer_costs_one_answer_not_the_process(smol_path: Path, tmp_path: Path) -> None:
    gen = _gen(smol_path, tmp_path)
    assert "1998" in gen.generate(QUESTION, max_tokens=16).text
    assert not gen._config.safe
    eng = gen._engine
    assert eng is not None and eng.proc is not None

    # The engine's native code faults while it writes the answer (a real SIGSEGV).
    pieces: list[str] = []
    crash = threading.Timer(0.5, lambda: os.kill(eng.proc.pid, signal.SIGSEGV))  # type: ignore[union-attr]
    long_q = [QUESTION[0], Message("user", "Write a long story about a harbour, in many sentences.")]
    crash.start()
    with pytest.raises(LLMError, match=r"killed by SIGSEGV.*restarts on safe settings"):
        gen.generate(long_q, max_tokens=400, on_text=pieces.append)
    crash.cancel()

    # This process lives; the next question is answered by a fresh engine on safe settings.
    again = gen.generate(QUESTION, max_tokens=16)
    assert "1998" in again.text
    assert gen._config.safe and "safe mode" in gen.engine_label
    assert any("SIGSEGV" in n and "without them" in n for n in gen.notices)
    # Recorded for this machine: a new process starts safe at once and says so.
    record = json.loads((tmp_path / "engine-safety.json").read_text())
    (entry,) = record.values()
    assert entry["level"] == "safe" and "SIGSEGV" in entry["reason"]
    fresh = _gen(smol_path, tmp_path)
    assert fresh._config.safe
    assert "fast paths off here" in engine_status("xllamacpp", False, tmp_path)
    gen.close()
    fresh.close()


def test_the_engine_with_its_fast_paths_forced_off_answers(smol_path: Path, tmp_path: Path) -> None:
    """What runs on a CPU that advertised a fast path it could not run (no repack, no AMX)."""
    safe = _gen(smol_path, tmp_path, safe=True)
    fast = _gen(smol_path, tmp_path / "fast")
    a, b = safe.generate(QUESTION, max_tokens=16), fast.generate(QUESTION, max_tokens=16)
    assert "1998" in a.text and a.text == b.text  # same weights, same greedy answer
    assert "safe mode" in safe.engine_label and "safe mode" not in fast.engine_label
    log = safe._config
    assert isinstance(log, EngineConfig) and "--safe" in log.command(1)
    safe.close()
    fast.close()


def test_a_dead_idle_engine_is_started_again(smol_path: Path, tmp_path: Path) -> None:
    gen = _gen(smol_path, tmp_path)
    n = gen.count_tokens("one two three")
    eng = gen._engine
    assert eng is not None and eng.proc is not None
    os.kill(eng.proc.pid, signal.SIGKILL)  # e.g. the OOM killer, between two questions
    eng.proc.wait(timeout=10)
    assert gen.count_tokens("one two three") == n
    assert any("SIGKILL while idle" in x for x in gen.notices)
    assert not gen._config.safe  # a kill is not a fault of the engine's code
    gen.close()


def test_the_engine_exits_when_its_parent_is_killed(smol_path: Path, tmp_path: Path) -> None:
    """No orphaned engines: the child watches a pipe from its parent (SIGKILL included)."""
    import subprocess
    import sys

    script = (
        "import sys,time\n"
        "from pathlib import Path\n"
        "from app.llm.llamacpp import LlamaCppGenerator\n"
        f"g = LlamaCppGenerator(Path({str(smol_path)!r}), context_window=1024, threads=1)\n"
        "g.count_tokens('x')\n"
        "print(g._engine.proc.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    parent.kill()
    parent.wait(timeout=10)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and Path(f"/proc/{child}").exists():
        status = Path(f"/proc/{child}/status").read_text() if Path(f"/proc/{child}").exists() else ""
        if "zombie" in status:
            break
        time.sleep(0.2)
    alive = (
        Path(f"/proc/{child}/status").exists() and "zombie" not in Path(f"/proc/{child}/status").read_text()
    )
    assert not alive, "the engine outlived its parent"


def test_the_native_build_answers_like_the_prebuilt_one(smol_path: Path, tmp_path: Path) -> None:
    from app.llm.engine import native_binary

    if native_binary() is None:
        pytest.skip("no native engine built here (bash scripts/build-native-engine.sh)")
    native = _gen(smol_path, tmp_path, engine="native")
    prebuilt = _gen(smol_path, tmp_path / "p")
    assert "native build" in native.engine_label
    assert native.generate(QUESTION, max_tokens=16).text == prebuilt.generate(QUESTION, max_tokens=16).text
    assert native.count_tokens("The harbour of Vardo") == prebuilt.count_tokens("The harbour of Vardo")
    native.close()
    prebuilt.close()


def test_safety_records_are_per_engine(tmp_path: Path) -> None:
    rec = SafetyRecord(tmp_path / "s.json")
    assert rec.get("xllamacpp") is None
    rec.put("native", "broken", "killed by SIGILL")
    assert rec.get("native") == {"level": "broken", "reason": "killed by SIGILL", "cpu": cpu_summary()}
    assert rec.get("xllamacpp") is None


def test_the_default_model_loads_and_decodes(model_cache: Path, tmp_path: Path) -> None:
    """The embedded default (Qwen2.5-Coder-1.5B) on the default engine, as every user runs it."""
    from app.catalog import load_catalog, resolve_generator

    path = resolve_generator(load_catalog().generators["qwen2.5-coder-1.5b"], model_cache)
    kv = PrefixStateCache(tmp_path / "kv", ram_bytes=256 << 20, disk_bytes=1 << 30)
    gen = LlamaCppGenerator(path, context_window=1024, threads=2, kv_cache=kv, state_dir=tmp_path)
    pieces = list(gen.stream(QUESTION, max_tokens=20))
    assert len(pieces) >= 2 and "1998" in "".join(pieces)
    assert gen.count_tokens("The harbour of Vardo") == len(gen.tokenize("The harbour of Vardo")) > 3
    assert gen.decode_tokens_per_s > 0
    speeds = json.loads((tmp_path / "engine-speeds.json").read_text())
    assert any("qwen2.5-coder-1.5b" in k for k in speeds)
    gen.close()


def _complete(url: str, prompt: str) -> str:
    import httpx

    body = {"prompt": prompt, "n_predict": 12, "temperature": 0, "seed": 0, "cache_prompt": False}
    return str(httpx.post(f"{url}/completion", json=body, timeout=600).json()["content"])


def test_the_prebuilt_engine_runs_on_an_emulated_avx2_only_cpu(smol_path: Path, tmp_path: Path) -> None:
    """The default engine under qemu-x86_64 -cpu Haswell (AVX2, FMA, F16C, BMI2; no AVX-512, no
    VNNI, no AMX): the oldest CPU docs/engine.md promises answers like the host does."""
    import shutil
    import subprocess

    import httpx

    from app.llm.engine import _free_port

    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        pytest.skip("qemu-x86_64 is not installed (apt-get install qemu-user; scripts/test.sh does)")
    prompt = "The harbour of Vardo was rebuilt in 1998. Question: when was the harbour rebuilt? Answer:"
    host = _gen(smol_path, tmp_path)
    host.count_tokens("x")  # starts the engine on the host CPU
    assert host._engine is not None
    expected = _complete(host._engine.url, prompt)
    host.close()
    assert "1998" in expected

    port = _free_port()
    cfg = EngineConfig(smol_path, 1024, threads=2, batch_threads=2)
    log = (tmp_path / "qemu-engine.log").open("wb")
    proc = subprocess.Popen(
        [qemu, "-cpu", "Haswell", *cfg.command(port)],
        stdin=subprocess.PIPE,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 600
        while True:
            assert proc.poll() is None, (tmp_path / "qemu-engine.log").read_text(errors="replace")[-2000:]
            try:
                if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the emulated engine did not start in 10 minutes"
            time.sleep(1)
        assert _complete(url, prompt) == expected  # same kernels, same greedy answer
    finally:
        proc.kill()
        proc.wait(timeout=30)
