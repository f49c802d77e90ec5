"""What a person waits for in the app, measured through the app's own code path (app/ui/asking.py:
the worker thread the page polls, the Stop switch, the service and the embedded engine).

- upload to searchable: ingesting the two bundled samples into an empty library, then the
  first search that finds them (the embedder is loaded before the clock starts);
- RAG and LC: time to first token and to the complete answer (citations checked), median over
  the questions below, each asked once per mode, in that order on one engine (as in the app: a
  document read whole once is reused by the next LC question; saved states on disk too);
- stop: from the click (``Control.cancel``) until the worker has stopped and until the engine
  answers the next prompt, while it reads a long prompt and while it writes.

    flock /work/cpu.lock .venv/bin/python benchmarks/app_latency.py --model qwen2.5-coder-1.5b
    flock /work/cpu.lock .venv/bin/python benchmarks/app_latency.py --model smollm2-135m --only stop

Prints one JSON object; docs/app.md has the figures and the machine they came from.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from app.catalog import SAMPLES_DIR  # noqa: E402
from app.llm.base import Message  # noqa: E402
from app.llm.control import Cancelled, Control, controlled  # noqa: E402
from app.service import QAService  # noqa: E402
from app.settings import Settings  # noqa: E402
from app.ui.asking import AskJob  # noqa: E402
from app.ui.library import Library  # noqa: E402

QUESTIONS = [
    "Who developed WordStar, and for which operating system?",
    "What did the typewriter contribute to word processing?",
    "What does Legrand find on the beach?",
]


def median(xs: list[float]) -> float:
    return round(statistics.median(xs), 2) if xs else float("nan")


def answers(lib: Library, svc: QAService, mode: str) -> dict[str, object]:
    ttft, total = [], []
    asked: list[int] = []
    for q in QUESTIONS:
        job = AskJob(lib, svc, q, mode, []).start()  # type: ignore[arg-type]
        job.wait()
        out = job.outcome
        if out is None or out.answer is None:
            continue
        ttft.append(job.first_text_s or out.seconds)
        total.append(out.seconds)
        # Citations the model check was asked about (llm.entail_claims; Citation.model_check).
        cites = out.answer.citations
        asked.append(sum(bool(c.model_check) for c in cites))
    return {
        "n": len(total),
        "ttft_s": median(ttft),
        "answer_s": median(total),
        "all_answer_s": total,
        "model_checks": asked,
    }


def stop_once(gen, messages: list[Message], phase: str) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    ctl = Control()
    got: dict[str, float] = {}
    pieces: list[str] = []

    def work() -> None:
        with controlled(ctl):
            try:
                gen.generate(messages, max_tokens=400, on_text=pieces.append)
            except Cancelled:
                got["stopped"] = time.monotonic()

    t = threading.Thread(target=work, daemon=True)
    t.start()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if phase == "reading" and ctl.prefill is not None and ctl.prefill.elapsed_s > 0.5:
            break
        if phase == "writing" and len(pieces) >= 3:
            break
        time.sleep(0.01)
    t0 = time.monotonic()
    ctl.cancel()
    t.join(60)
    stopped = got.get("stopped", float("nan")) - t0
    gen.generate([Message("user", "Name a colour.")], max_tokens=4)  # waits for the engine
    return stopped, time.monotonic() - t0


def stops(gen, rounds: int) -> dict[str, object]:  # type: ignore[no-untyped-def]
    text = (SAMPLES_DIR / "gold-bug-opening.txt").read_text(encoding="utf-8").split()
    long = [Message("user", " ".join((text * 4)[:5000]) + "\n\nSummarise the story.")]
    write = [Message("user", "Count from one to three hundred in words, one per line.")]
    out: dict[str, object] = {}
    for phase, msgs in (("reading", long), ("writing", write)):
        got = [stop_once(gen, msgs, phase) for _ in range(rounds)]
        out[phase] = {
            "stopped_s": median([g[0] for g in got]),
            "max_stopped_s": round(max(g[0] for g in got), 2),
            "engine_free_s": median([g[1] for g in got]),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen2.5-coder-1.5b")
    ap.add_argument("--only", choices=["all", "stop", "answer"], default="all")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    result: dict[str, object] = {"model": args.model, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(  # type: ignore[call-arg]
            data_dir=Path(tmp) / "home",
            llm={"model": args.model, "threads": os.cpu_count() or 2},
            embedding={"device": "cpu"},
        )
        svc = QAService(settings)
        _ = svc.embedder  # loaded before the clock: the app loads it once per process
        if args.only in ("all", "answer"):
            t0 = time.perf_counter()
            svc.ingest([SAMPLES_DIR])
            hits = svc.retrieve("WordStar")
            result["upload_to_searchable_s"] = round(time.perf_counter() - t0, 2)
            assert hits, "the samples were not found after ingest"
            lib = Library(settings, service=svc)
            result["rag"] = answers(lib, svc, "rag")
            result["lc"] = answers(lib, svc, "lc")
        if args.only in ("all", "stop"):
            result["stop"] = stops(svc.generator, args.rounds)
        svc.close()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
