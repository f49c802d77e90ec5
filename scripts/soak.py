"""Soak test: ingest a real corpus plus generated hostile variants, in bounded time and memory.

Not part of the default test run. Each file is loaded and chunked (with the encoder's own
tokenizer) in a worker process whose resident memory the parent watches (over the cap:
killed, a crash); a file over its time limit kills the worker (a hang); an exception other
than IngestError is a crash (a bug); every IngestError must be one line naming the file.
Prints and writes (--out) a JSON summary:
files tried, ingested, failed by cause, crashes, hangs, bad messages, peak memory, pages/s
and chunks/s. See docs/ingestion.md, "Soak".

    # real documents nobody here wrote: Debian's documentation packages
    apt-get download texlive-latex-recommended-doc python3.11-doc debian-reference-en
    for d in *.deb; do dpkg -x "$d" corpus/; done
    .venv/bin/python scripts/soak.py corpus --hostile 300 --out soak.json
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import os
import random
import re
import resource
import sys
import tempfile
import time
import zipfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


# -- the worker -------------------------------------------------------------------------------
def _worker(conn, tokenizer_dir: str) -> None:  # type: ignore[no-untyped-def]
    from pipeline.chunking import ChunkingConfig, chunk_document
    from pipeline.errors import IngestError
    from pipeline.loaders import load_document
    from pipeline.tokens import HFTokenCounter

    counter = HFTokenCounter(tokenizer_dir)
    cfg = ChunkingConfig(240, 40)
    conn.send(("ready", None))
    while True:
        path = conn.recv()
        if path is None:
            return
        t0 = time.perf_counter()
        try:
            doc = load_document(path)
            chunks = chunk_document(doc, counter, cfg)
            ids = {c.chunk_id for c in chunks}
            bad = len(ids) != len(chunks) or any(
                doc.text[c.span.start : c.span.end] != c.text for c in chunks
            )
            result = {
                "status": "crash" if bad else "ingested",
                "cause": "chunk invariant broken" if bad else "",
                "pages": len(doc.pages or ()),
                "chunks": len(chunks),
                "warnings": list(doc.warnings),
            }
        except IngestError as exc:
            msg = str(exc)
            ok = "\n" not in msg and msg.startswith(f"cannot read '{path}': ")
            result = {"status": "failed", "cause": _cause(exc.reason), "message": msg, "one_line": ok}
        except MemoryError:
            result = {"status": "crash", "cause": "MemoryError"}
        except Exception as exc:  # noqa: BLE001 - a crash is what the soak looks for
            result = {"status": "crash", "cause": f"{type(exc).__name__}: {str(exc)[:200]}"}
        result["seconds"] = time.perf_counter() - t0
        result["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        conn.send(("done", result))


def _cause(reason: str) -> str:
    """A failure's reason without its particulars (numbers, quoted text, offsets)."""
    reason = re.sub(r"'[^']*'", "'…'", reason)
    reason = re.sub(r"\([^)]*\d[^)]*\)", "(…)", reason)
    return re.sub(r"\d[\d,.]*", "N", reason)


def _rss_mb(pid: int, field: str = "VmRSS") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Worker:
    """One process that loads and chunks files; the parent watches its resident memory
    (killed over ``mem_mb``: a crash) and its time (killed over the timeout: a hang)."""

    def __init__(self, tokenizer_dir: str, mem_mb: int) -> None:
        self.tokenizer_dir = tokenizer_dir
        self.mem_mb = mem_mb
        self.peak_mb = 0.0
        self._start()

    def _start(self) -> None:
        self.conn, child = mp.Pipe()
        self.proc = mp.Process(target=_worker, args=(child, self.tokenizer_dir), daemon=True)
        self.proc.start()
        if not self.conn.poll(300):
            raise RuntimeError("the worker did not start")
        self.conn.recv()

    def run(self, path: str, timeout: float) -> dict:  # type: ignore[type-arg]
        self.conn.send(path)
        t0 = time.perf_counter()
        pid = self.proc.pid or 0
        while True:
            if self.conn.poll(0.1):
                try:
                    result = self.conn.recv()[1]
                    self.peak_mb = max(self.peak_mb, _rss_mb(pid, "VmHWM"))
                    return result
                except EOFError:
                    self.proc.join(5)
                    return self._restart("crash", f"worker died (exit {self.proc.exitcode})", t0)
            rss = _rss_mb(pid)
            self.peak_mb = max(self.peak_mb, rss)
            if rss > self.mem_mb:
                return self._restart("crash", f"over {self.mem_mb} MB resident memory", t0)
            if time.perf_counter() - t0 > timeout:
                return self._restart("hang", f"over {timeout:.0f} s", t0)

    def _restart(self, status: str, cause: str, t0: float) -> dict:  # type: ignore[type-arg]
        self.peak_mb = max(self.peak_mb, _rss_mb(self.proc.pid or 0, "VmHWM"))
        self.proc.kill()
        self.proc.join()
        self._start()
        return {"status": status, "cause": cause, "seconds": time.perf_counter() - t0, "rss_mb": 0}

    def close(self) -> None:
        self.conn.send(None)
        self.proc.join(10)


# -- hostile variants -------------------------------------------------------------------------
def _docx_bomb(mb: int) -> bytes:
    buf = io.BytesIO()
    para = b"<w:p><w:r><w:t>x</w:t></w:r></w:p>"
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr(
            "word/document.xml",
            b"<w:document><w:body>" + para * (mb * 2**20 // len(para)) + b"</w:body></w:document>",
        )
    return buf.getvalue()


def make_hostile(seeds: list[Path], out: Path, n: int, rnd: random.Random) -> list[Path]:
    """n variants: truncations, bit flips, re-encodings, NULs, bombs, giant lines and words,
    markup and control characters in names, links and pipes."""
    out.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []

    def put(name: str, data: bytes) -> None:
        p = out / f"{len(made):04d}_{name}"
        p.write_bytes(data)
        made.append(p)

    fixed = [
        ("bomb.docx", lambda: _docx_bomb(120)),
        (
            "line48.txt",
            lambda: " ".join(
                rnd.choice(["alpha", "beta", "1,234", "x" * 150]) for _ in range(1_500_000)
            ).encode()[:48_000_000],
        ),
        ("word200k.txt", lambda: b"a" * 200_000),
        ("nul_tail.txt", lambda: b"word " * 3000 + b"\x00" * 10),
        ("utf32.txt", lambda: "Kestrels hover.\n".encode("utf-32")),
        ("utf16nobom.txt", lambda: ("Kestrels hover over fields.\n" * 50).encode("utf-16-le")),
        ("srt999.srt", lambda: b"1\n999:00:00,000 --> 999:00:01,000\nLate.\n"),
        ("t14_dir[/]kestrel [link=x].md", lambda: b"A document with [/bold] and [link=http://x]y[/link].\n"),
        ("new\nline.txt", lambda: b"a name with a newline\n"),
    ]
    for name, make in fixed:
        put(name.replace("/", "_"), make())
    loop = out / f"{len(made):04d}_loop.txt"
    loop.symlink_to(loop)
    made.append(loop)
    fifo = out / f"{len(made):04d}_fifo.txt"
    os.mkfifo(fifo)
    made.append(fifo)
    while len(made) < n:
        seed = rnd.choice(seeds)
        data = seed.read_bytes()[:5_000_000]
        kind = rnd.choice(["truncate", "flip", "junk", "zero", "utf16", "latin1", "dup"])
        if kind == "truncate":
            data = data[: rnd.randrange(1, max(2, len(data)))]
        elif kind == "flip":
            b = bytearray(data)
            for _ in range(rnd.randint(1, 50)):
                if b:
                    b[rnd.randrange(len(b))] ^= 1 << rnd.randrange(8)
            data = bytes(b)
        elif kind == "junk":
            k = rnd.randrange(len(data) + 1)
            data = data[:k] + os.urandom(rnd.randint(1, 4096)) + data[k:]
        elif kind == "zero":
            k = rnd.randrange(len(data) + 1)
            data = data[:k] + b"\x00" * rnd.randint(1, 8192) + data[k + 8192 :]
        elif kind in ("utf16", "latin1"):
            text = data.decode("utf-8", "replace")
            data = text.encode("utf-16" if kind == "utf16" else "latin-1", "replace")
        else:
            data = data * 3
        put(f"{kind}_{seed.name}", data)
    return made


# -- the run ------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus", type=Path, nargs="+", help="Folders of real documents.")
    ap.add_argument("--hostile", type=int, default=300, help="Hostile variants to generate.")
    ap.add_argument("--limit", type=int, default=0, help="At most this many real files (0: all).")
    ap.add_argument("--timeout", type=float, default=120.0, help="Seconds per file before it is a hang.")
    ap.add_argument("--memory-mb", type=int, default=2048, help="Resident memory cap of the worker.")
    ap.add_argument("--out", type=Path, default=None, help="Write the JSON summary here.")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from app.factories import build_embedder
    from app.ingest import expand_paths
    from app.settings import Settings

    tokenizer_dir = str(build_embedder(Settings(embedding={"device": "cpu"})).tokenizer_dir)
    rnd = random.Random(args.seed)
    real = [str(p) for p in expand_paths(args.corpus)]
    if args.limit:
        real = rnd.sample(real, min(args.limit, len(real)))
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        seeds = [Path(p) for p in real if Path(p).suffix.lower() in (".pdf", ".html", ".txt", ".md")]
        hostile = [str(p) for p in make_hostile(seeds, Path(tmp), args.hostile, rnd)] if args.hostile else []
        worker = Worker(tokenizer_dir, args.memory_mb)
        rows = []
        t0 = time.perf_counter()
        for k, (kind, path) in enumerate([("real", p) for p in real] + [("hostile", p) for p in hostile]):
            r = worker.run(path, args.timeout)
            r.update(kind=kind, path=path)
            rows.append(r)
            if r["status"] in ("crash", "hang"):
                print(f"{r['status'].upper()} {path!r}: {r['cause']}", file=sys.stderr, flush=True)
            if (k + 1) % 100 == 0:
                print(f"{k + 1} files, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        worker.close()
        wall = time.perf_counter() - t0
    summary: dict = {"wall_s": round(wall, 1), "cpus": os.cpu_count()}
    for kind in ("real", "hostile"):
        rs = [r for r in rows if r["kind"] == kind]
        ok = [r for r in rs if r["status"] == "ingested"]
        busy = sum(r["seconds"] for r in ok) or 1e-9
        summary[kind] = {
            "tried": len(rs),
            "ingested": len(ok),
            "failed": sum(r["status"] == "failed" for r in rs),
            "crashes": sum(r["status"] == "crash" for r in rs),
            "hangs": sum(r["status"] == "hang" for r in rs),
            "failures_not_one_line": sum(r["status"] == "failed" and not r["one_line"] for r in rs),
            "failed_by_cause": dict(Counter(r["cause"] for r in rs if r["status"] == "failed").most_common()),
            "crash_causes": [f"{r['path']}: {r['cause']}" for r in rs if r["status"] in ("crash", "hang")],
            "pages": sum(r.get("pages", 0) for r in ok),
            "chunks": sum(r.get("chunks", 0) for r in ok),
            "pages_per_s": round(sum(r.get("pages", 0) for r in ok) / busy, 1),
            "chunks_per_s": round(sum(r.get("chunks", 0) for r in ok) / busy, 1),
            "warnings": sum(len(r.get("warnings", [])) for r in ok),
        }
    summary["peak_worker_rss_mb"] = round(max([worker.peak_mb, *(r["rss_mb"] for r in rows)]))
    text = json.dumps(summary, indent=2, ensure_ascii=False)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
