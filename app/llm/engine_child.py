"""The engine's child process: ``python -m app.llm.engine_child --model M --port P ...``.

It is also a plain OpenAI-compatible server (``/v1/chat/completions``, ``/v1/models``) for
anyone who wants one on this machine, e.g. for ``llm.backend = "openai"`` or the batch tests.

Hosts llama.cpp's HTTP server on 127.0.0.1: in this process through xllamacpp (the prebuilt
default), or as a ``llama-server`` grandchild (``--native BINARY``). It exits when its standard
input closes, which happens when the parent process ends for any reason, SIGKILL included, so
no engine outlives the program that started it. A native server that dies from a signal is
reported as this process dying from the same signal, so the parent sees what happened.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time

PR_SET_PDEATHSIG = 1


def _exit_when_parent_goes(on_exit: list[subprocess.Popen[bytes]]) -> None:
    def watch() -> None:
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except (OSError, ValueError):
            pass
        for proc in on_exit:
            proc.kill()
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _die_with_parent() -> None:  # pragma: no cover - runs in the grandchild before exec
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def run_native(args: argparse.Namespace) -> int:
    cmd = [
        args.native,
        "--model", args.model,
        "--host", "127.0.0.1",
        "--port", str(args.port),
        "--ctx-size", str(args.ctx),
        "--threads", str(args.threads),
        "--threads-batch", str(args.threads_batch),
        "--batch-size", str(args.batch),
        "--ubatch-size", str(args.batch),
        "--parallel", str(args.parallel),
        "--slots",
        "--cache-ram", str(args.cache_ram),
        "--n-gpu-layers", str(args.gpu_layers),
        "--poll", str(args.poll),
        "--no-webui",
    ]  # fmt: skip
    if args.slot_dir:
        cmd += ["--slot-save-path", os.path.join(args.slot_dir, "")]
    if args.alias:
        cmd += ["--alias", args.alias]
    if args.safe:
        cmd.append("--no-repack")
    proc = subprocess.Popen(cmd, preexec_fn=_die_with_parent)  # noqa: PLW1509 - prctl only
    _exit_when_parent_goes([proc])
    code = proc.wait()
    if code < 0:  # die the same way, so the parent can tell a fault from an exit
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


def run_xllamacpp(args: argparse.Namespace) -> int:
    import xllamacpp

    p = xllamacpp.CommonParams()
    p.model.path = args.model
    p.n_ctx = args.ctx
    p.n_parallel = args.parallel
    if args.alias:
        p.model_alias = {args.alias}
    p.n_batch = args.batch
    p.n_ubatch = args.batch
    p.cpuparams.n_threads = args.threads
    p.cpuparams_batch.n_threads = args.threads_batch
    p.cpuparams.poll = args.poll
    p.cpuparams_batch.poll = args.poll
    p.n_gpu_layers = args.gpu_layers
    p.hostnames = ["127.0.0.1"]
    p.port = args.port
    p.endpoint_slots = True
    p.cache_ram_mib = args.cache_ram
    p.no_extra_bufts = bool(args.safe)
    if args.slot_dir:
        p.slot_save_path = os.path.join(args.slot_dir, "")  # llama.cpp appends the file name as is
    _exit_when_parent_goes([])
    server = xllamacpp.Server(p)  # loads the model and starts listening
    print(f"engine listening on {server.listening_address}", flush=True)
    while True:
        time.sleep(3600)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ctx", type=int, default=8192)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--threads-batch", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--cache-ram", type=int, default=0)
    ap.add_argument("--gpu-layers", type=int, default=0)
    ap.add_argument("--poll", type=int, default=0, help="0-100: how hard idle threads spin for work")
    ap.add_argument("--slot-dir", default="")
    ap.add_argument("--parallel", type=int, default=1, help="slots: requests decoded together")
    ap.add_argument("--alias", default="", help="the model name the OpenAI-compatible API answers to")
    ap.add_argument("--safe", action="store_true", help="no repacked weights / extra buffer types")
    ap.add_argument("--native", default="", help="path of a llama-server binary to run instead")
    args = ap.parse_args(argv)
    return run_native(args) if args.native else run_xllamacpp(args)


if __name__ == "__main__":
    sys.exit(main())
