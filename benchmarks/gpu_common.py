"""Helpers shared by the GPU benchmarks: timing, the device's ceilings, reports.

Run from the repository root (``python benchmarks/gpu_*.py``); the benchmarks import ``gpu/`` only,
so they run on the device machine with its stock torch/transformers and no project install.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def wall(fn: Callable[[], Any], reps: int = 1, warmup: int = 0) -> list[float]:
    """Seconds per call by the host clock, the device synchronised around each call."""
    for _ in range(warmup):
        fn()
    sync()
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t0)
    return out


def cuda_times(fn: Callable[[int], Any], reps: int, warmup: int = 5) -> list[float]:
    """Seconds per call measured with CUDA events; ``fn(i)`` gets the repetition number."""
    for i in range(warmup):
        fn(i)
    sync()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    for i in range(reps):
        starts[i].record()
        fn(i)
        ends[i].record()
    sync()
    return [s.elapsed_time(e) / 1e3 for s, e in zip(starts, ends)]


def p50(xs: list[float]) -> float:
    return statistics.median(xs)


def device_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(
            gpu=p.name,
            gpus=torch.cuda.device_count(),
            gpu_mem_gib=round(p.total_memory / 1024**3, 1),
            sms=p.multi_processor_count,
            cudnn=torch.backends.cudnn.version(),
        )
    return info


def measure_ceilings(size: int = 8192) -> dict[str, float]:
    """The dense bf16 matrix rate (TFLOP/s, random data) and device-copy bandwidth (TB/s)."""
    if not torch.cuda.is_available():
        return {}
    a = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    t = p50(cuda_times(lambda i, a=a, b=b: a @ b, reps=10, warmup=3))
    src = torch.randn(1 << 30, device="cuda", dtype=torch.float16)  # 2 GiB
    dst = torch.empty_like(src)
    tc = p50(cuda_times(lambda i, dst=dst, src=src: dst.copy_(src), reps=10, warmup=2))
    del a, b, src, dst
    torch.cuda.empty_cache()
    return {
        "bf16_tflops": 2 * size**3 / t / 1e12,
        "copy_tb_s": 2 * (1 << 30) * 2 / tc / 1e12,
    }


def write_report(out: str | None, name: str, payload: dict[str, Any], table: list[list[str]]) -> None:
    """Write the JSON payload and print a markdown table (the reply shows the end of the output)."""
    payload = {"benchmark": name, "command": " ".join([Path(sys.executable).name, *sys.argv]), **payload}
    text = json.dumps(payload, indent=2, default=float)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)
    print()
    print(
        f"## {name}  ({payload.get('device', {}).get('gpu', 'cpu')}, {payload.get('device', {}).get('date')})"
    )
    if table:
        print("| " + " | ".join(table[0]) + " |")
        print("|" + "---|" * len(table[0]))
        for row in table[1:]:
            print("| " + " | ".join(row) + " |")
    sys.stdout.flush()


def fmt(x: float | None, digits: int = 2) -> str:
    if x is None:
        return "-"
    return f"{x:,.{digits}f}"
