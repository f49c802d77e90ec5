"""Concurrency torture: writers and readers as separate processes on one data dir, SIGKILLed at
random moments, on SQLite or PostgreSQL; after every round the store is checked against what
the processes were told.

Each round starts ``--writers`` writer and ``--readers`` reader processes on one ``LONGQA_HOME``
(and one database). Every ``--kill-every`` seconds on average the harness SIGKILLs a random
live process (writers twice as often as readers) and starts a replacement in its slot; at the
end of the round every process left is SIGKILLed too. Some rounds start with ``index.faiss``
truncated or deleted.

- A **writer** owns the files of its slot (mixed sizes, 1 to 80 paragraphs) and, in a loop,
  ingests one (``QAService.ingest``) or deletes one that is there (``QAService.delete``). Before
  each operation it appends what it is about to do to its own log and fsyncs it; after the
  operation it appends what it was told ('ingested' / 'unchanged' / 'deleted') and fsyncs.
- A **reader** opens the service (which runs crash recovery: ``reconcile``, while writers are
  between staging and committing), asks a few questions through the retriever with no
  document filter (so a half-ingested document would show), logs each question's start and
  end times and every cited chunk's document id and text, and reopens.

After a round, with every process dead, the harness opens the service (crash recovery) and
checks:

- every document a writer was last told is ingested is there, ready, exactly once (a
  *loss* otherwise), and every document last told deleted is absent; a document whose last
  operation was cut by a kill may be either;
- no pending rows are left; every ready document has its ``n_chunks`` chunks, each with a
  vector; the store holds no chunk of a document that is not ready; chunks = vectors;
- the FAISS cache (the file the processes left, brought up to date) holds exactly the
  vec_ids of the ready chunks, as does one rebuilt from the database;
- every chunk a reader cited belongs to a document that was ready at that time: its writer's
  log shows it ingested (or, when the ingest was killed, that the document turned out to be
  there), not deleted, with no operation on it overlapping the question; and the chunk's
  text is that document's;
- no process printed a traceback.

Run (2-core machine; see docs/design.md, "Consistency protocol", for the figures)::

    flock /work/cpu.lock python -m benchmarks.torture --db sqlite --rounds 3 --minutes 8
    source scripts/postgres.sh && flock /work/cpu.lock python -m benchmarks.torture --db postgresql ...

Exit status 1 when any loss or violation was found.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORDS = [
    *("river", "lantern", "copper", "orchard", "violin", "glacier", "meadow", "harbor"),
    *("falcon", "ember", "quartz", "willow", "saddle", "beacon", "marble", "thistle"),
    *("canyon", "pepper", "walnut", "compass", "tundra", "velvet", "anchor", "cobalt"),
]
SIZES = (1, 2, 4, 10, 25, 80)  # paragraphs per document: mixed sizes, a few chunks to ~40
CHILD_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "LONGQA_EMBEDDING__DEVICE": "cpu",
    "LONGQA_LOG": "WARNING",
}


# -- the durable per-process log ---------------------------------------------------------------
class Log:
    """Append-only JSON lines, each fsynced before the caller goes on."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, **rec: Any) -> None:
        rec.setdefault("t", time.time())
        os.write(self._fd, (json.dumps(rec) + "\n").encode())
        os.fsync(self._fd)


def read_log(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:  # the last line of a process killed while writing it
            continue
    return out


# -- the corpus ------------------------------------------------------------------------------
def code_of(slot: int, k: int) -> str:
    return f"zq{slot}x{k}q"


def make_files(folder: Path, slot: int, n: int, seed: int) -> list[Path]:
    """``n`` text files of mixed sizes; every paragraph carries the document's code word."""
    rnd = random.Random(seed * 1000 + slot)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for k in range(n):
        code = code_of(slot, k)
        paras = []
        for p in range(SIZES[k % len(SIZES)]):
            words = " ".join(rnd.choice(WORDS) for _ in range(40))
            paras.append(f"Record {code} part {p}: {words}. The {code} entry ends here.")
        path = folder / f"doc-{slot}-{k}.txt"
        path.write_text("\n\n".join(paras) + "\n")
        out.append(path.resolve())
    return out


# -- the processes -----------------------------------------------------------------------------
def _service(embedder: Any = None) -> Any:
    from app.service import QAService
    from app.settings import Settings

    return QAService(Settings(), embedder=embedder)


def writer(work: Path, slot: int, log_path: Path, p_delete: float) -> None:
    from pipeline.loaders.common import content_hash, doc_id_for

    log = Log(log_path)
    files = sorted((work / "files" / f"w{slot}").glob("*.txt"))
    rnd = random.Random(os.getpid())
    svc = _service()
    _ = svc.embedder
    log.write(op="up", pid=os.getpid())
    while True:
        path = rnd.choice(files)
        doc_id = doc_id_for(content_hash(path.read_bytes()))
        seen = [(d.doc_id, d.status) for d in svc.store.find_by_path(str(path))]
        if any(s == "ready" for _d, s in seen) and rnd.random() < p_delete:
            log.write(op="delete-start", path=str(path), doc_id=doc_id, seen=seen)
            svc.delete([d for d, _s in seen])
            log.write(op="delete-done", path=str(path), doc_id=doc_id)
            continue
        log.write(op="ingest-start", path=str(path), doc_id=doc_id, seen=seen)
        rep = svc.ingest([path])
        result = (
            "ingested"
            if rep.ingested
            else "unchanged"
            if rep.unchanged
            else "busy"
            if rep.busy
            else "failed: " + "; ".join(w for _p, w in rep.failed)
        )
        log.write(op="ingest-done", path=str(path), doc_id=doc_id, result=result)


def reader(work: Path, slot: int, log_path: Path) -> None:
    from app.factories import build_embedder
    from app.settings import Settings

    log = Log(log_path)
    rnd = random.Random(os.getpid())
    embedder = build_embedder(Settings())
    log.write(op="up", pid=os.getpid())
    while True:
        svc = _service(embedder)  # opening runs crash recovery, while writers are mid-ingest
        log.write(op="opened", debris=[d.source_path for d in svc.debris])
        for _ in range(rnd.randint(1, 6)):
            words = rnd.sample(WORDS, 3)
            query = f"which record mentions the {words[0]} {words[1]} and {words[2]}?"
            t0 = time.time()
            hits = svc.retriever.retrieve(query, k=8)
            t1 = time.time()
            cited = [[r.chunk.doc_id, r.chunk.chunk_id, r.chunk.text[:160]] for r in hits]
            log.write(op="read", t0=t0, t1=t1, hits=cited)
        svc.close()


# -- the harness ---------------------------------------------------------------------------------
@dataclass
class Proc:
    role: str
    slot: int
    popen: subprocess.Popen  # type: ignore[type-arg]
    log: Path
    err: Path


@dataclass
class RoundResult:
    db: str
    round: int
    seconds: float
    kills: int
    writer_ops: Counter = field(default_factory=Counter)  # type: ignore[type-arg]
    docs_expected_present: int = 0
    docs_expected_absent: int = 0
    docs_ambiguous: int = 0
    reads: int = 0
    cited_chunks: int = 0
    cited_ambiguous: int = 0
    recovered_debris: int = 0
    cache_event: str = ""
    losses: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["writer_ops"] = dict(self.writer_ops)
        return d


class Harness:
    def __init__(self, args: argparse.Namespace, db: str, url: str | None) -> None:
        self.args = args
        self.db = db
        self.work = Path(args.work).resolve() / db
        self.home = self.work / "home"
        self.url = url
        self.rnd = random.Random(args.seed)
        self.procs: list[Proc] = []
        self.kills: list[tuple[int, float]] = []  # (pid, time of the SIGKILL)
        self.files: dict[str, tuple[int, int]] = {}  # path -> (slot, k)
        for slot in range(args.writers):
            for k, p in enumerate(make_files(self.work / "files" / f"w{slot}", slot, args.files, args.seed)):
                self.files[str(p)] = (slot, k)

    def env(self) -> dict[str, str]:
        env = {**os.environ, **CHILD_ENV, "LONGQA_HOME": str(self.home), "PYTHONPATH": str(ROOT)}
        if self.url:
            env["LONGQA_DATABASE_URL"] = self.url
        else:
            env.pop("LONGQA_DATABASE_URL", None)
        return env

    def spawn(self, role: str, slot: int, rnd_no: int) -> Proc:
        logs = self.work / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        n = sum(1 for p in self.procs if p.role == role and p.slot == slot)
        log = logs / f"{role}-{slot}-r{rnd_no}-{n}.jsonl"
        err = logs / f"{role}-{slot}-r{rnd_no}-{n}.err"
        cmd = [sys.executable, "-m", "benchmarks.torture", "--role", role, "--slot", str(slot)]
        cmd += ["--work", str(self.work), "--log", str(log), "--p-delete", str(self.args.p_delete)]
        with open(err, "wb") as fh:
            popen = subprocess.Popen(cmd, env=self.env(), cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
        proc = Proc(role, slot, popen, log, err)
        self.procs.append(proc)
        return proc

    def kill(self, proc: Proc) -> bool:
        if proc.popen.poll() is not None:
            return False
        proc.popen.send_signal(signal.SIGKILL)
        t = time.time()
        proc.popen.wait()
        self.kills.append((proc.popen.pid, t))
        return True

    def damage_cache(self, rnd_no: int) -> str:
        cache = self.home / "index.faiss"
        if not cache.exists() or rnd_no % 3 == 0:
            return ""
        if rnd_no % 3 == 1:
            cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])
            return "truncated index.faiss"
        cache.unlink()
        return "deleted index.faiss"

    def run_round(self, rnd_no: int) -> RoundResult:
        a = self.args
        event = self.damage_cache(rnd_no)
        t_start = time.time()
        first = len(self.procs)
        live = [self.spawn("writer", s, rnd_no) for s in range(a.writers)]
        live += [self.spawn("reader", s, rnd_no) for s in range(a.readers)]
        kills = 0
        end = time.monotonic() + a.round_seconds
        next_kill = time.monotonic() + self.rnd.expovariate(1 / a.kill_every)
        while time.monotonic() < end:
            time.sleep(0.1)
            for i, p in enumerate(live):
                if p.popen.poll() is not None:  # died on its own: a crash, reported by the check
                    live[i] = self.spawn(p.role, p.slot, rnd_no)
            # Kill only processes that are working (their model loaded), not ones still starting.
            up = [i for i, p in enumerate(live) if p.log.exists() and p.log.stat().st_size]
            if time.monotonic() >= next_kill and up:
                weights = [2 if live[i].role == "writer" else 1 for i in up]
                victim = self.rnd.choices(up, weights)[0]
                p = live[victim]
                kills += self.kill(p)
                live[victim] = self.spawn(p.role, p.slot, rnd_no)
                next_kill = time.monotonic() + self.rnd.expovariate(1 / a.kill_every)
        for p in live:
            kills += self.kill(p)
        res = RoundResult(self.db, rnd_no, time.time() - t_start, kills, cache_event=event)
        self.check(res, self.procs[first:])
        return res

    # -- the check ----------------------------------------------------------------------------
    def check(self, res: RoundResult, this_round: list[Proc]) -> None:
        os.environ["LONGQA_HOME"] = str(self.home)
        if self.url:
            os.environ["LONGQA_DATABASE_URL"] = self.url
        else:
            os.environ.pop("LONGQA_DATABASE_URL", None)
        svc = _service(self.embedder())
        res.recovered_debris = len(svc.debris)
        store = svc.store
        for p in this_round:
            text = p.err.read_text(errors="replace")
            if "Traceback" in text:
                res.violations.append(f"{p.role} {p.slot} ({p.err.name}) printed a traceback: {text[-600:]}")
            if p.popen.returncode != -signal.SIGKILL:
                res.violations.append(f"{p.role} {p.slot} exited by itself ({p.popen.returncode})")
        self.check_store(res, store)
        self.check_cache(res, svc)
        ops = self.writer_ops()
        snapshot = {d.source_path: d for d in store.list_documents()}
        self.check_writers(res, ops, snapshot)
        self.check_readers(res, ops, snapshot, [p for p in this_round if p.role == "reader"])
        for p in this_round:
            if p.role == "writer":
                for r in read_log(p.log):
                    if r["op"].endswith("-done"):
                        res.writer_ops[r["op"] + (":" + r["result"] if "result" in r else "")] += 1
        svc.close()

    _embedder: Any = None

    def embedder(self) -> Any:
        if Harness._embedder is None:
            from app.factories import build_embedder
            from app.settings import Settings

            Harness._embedder = build_embedder(Settings(embedding={"device": "cpu"}))
        return Harness._embedder

    def check_store(self, res: RoundResult, store: Any) -> None:
        from sqlalchemy import func, select

        from pipeline.store import ChunkRow, DocumentRow

        docs = store.list_documents()
        pending = [d.source_path for d in docs if d.status != "ready"]
        if pending:
            res.violations.append(f"{len(pending)} pending rows left after recovery: {pending[:3]}")
        dup = [p for p, n in Counter(d.source_path for d in docs).items() if n > 1]
        if dup:
            res.violations.append(f"{len(dup)} documents stored more than once: {dup[:3]}")
        with store.engine.connect() as conn:
            per_doc = dict(
                conn.execute(select(ChunkRow.doc_id, func.count()).group_by(ChunkRow.doc_id)).all()
            )
            orphans = conn.execute(
                select(func.count())
                .select_from(ChunkRow)
                .outerjoin(DocumentRow, DocumentRow.doc_id == ChunkRow.doc_id)
                .where((DocumentRow.doc_id.is_(None)) | (DocumentRow.status != "ready"))
            ).scalar_one()
        if orphans:
            res.violations.append(f"{orphans} chunks of documents that are not ready")
        for d in docs:
            if d.status == "ready" and per_doc.get(d.doc_id, 0) != d.n_chunks:
                res.violations.append(
                    f"'{d.source_path}' has {per_doc.get(d.doc_id, 0)} chunks, its row says {d.n_chunks}"
                )
            if d.status == "ready":
                ordinals = sorted(c.ordinal for c in store.chunks_of(d.doc_id))
                if ordinals != list(range(d.n_chunks)):
                    res.violations.append(f"'{d.source_path}' has chunk ordinals {ordinals[:10]}…")
        chunks, vectors = store.counts()
        if chunks != vectors:
            res.violations.append(f"{chunks} chunks but {vectors} vectors")

    def check_cache(self, res: RoundResult, svc: Any) -> None:
        from indexes.cache import VectorCache

        want = set(svc.store.ready_vec_ids().tolist())
        svc.cache.refresh()
        have = set(svc.cache.index.id_array().tolist())
        if have != want:
            res.violations.append(
                f"the FAISS cache holds {len(have)} vectors, the store {len(want)} "
                f"({len(have - want)} extra, {len(want - have)} missing)"
            )
        fresh = VectorCache(svc.store, None, svc.embedder.dim)
        fresh.open()
        if set(fresh.index.id_array().tolist()) != want:
            res.violations.append("a FAISS index rebuilt from the store differs from the store")

    def writer_ops(self) -> dict[str, list[dict[str, Any]]]:
        """Per path, the writers' operations in order: {kind, t0, t1 (None: killed), result, seen}."""
        killed_at = dict(self.kills)
        per_path: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for p in self.procs:
            if p.role != "writer" or not p.log.exists():
                continue
            open_op: dict[str, Any] | None = None
            for r in read_log(p.log):
                if r["op"].endswith("-start"):
                    open_op = {
                        "kind": r["op"][: -len("-start")],
                        "path": r["path"],
                        "doc_id": r["doc_id"],
                        "t0": r["t"],
                        "t1": None,
                        "end": killed_at.get(p.popen.pid, time.time()),
                        "result": None,
                        "seen": r.get("seen", []),
                    }
                    per_path[r["path"]].append(open_op)
                elif r["op"].endswith("-done") and open_op is not None:
                    open_op["t1"] = open_op["end"] = r["t"]
                    open_op["result"] = r.get("result", "deleted")
                    open_op = None
        for ops in per_path.values():
            ops.sort(key=lambda o: o["t0"])
        return per_path

    def check_writers(
        self, res: RoundResult, ops: dict[str, list[dict[str, Any]]], snapshot: dict[str, Any]
    ) -> None:
        for path, seq in ops.items():
            last = seq[-1]
            there = path in snapshot and snapshot[path].status == "ready"
            if last["result"] in ("ingested", "unchanged"):
                res.docs_expected_present += 1
                if not there:
                    res.losses.append(f"'{path}' was reported {last['result']} and is missing")
                elif snapshot[path].doc_id != last["doc_id"]:
                    res.losses.append(f"'{path}' holds another version ({snapshot[path].doc_id})")
            elif last["result"] == "deleted":
                res.docs_expected_absent += 1
                if path in snapshot:
                    res.violations.append(f"'{path}' was reported deleted and is still there")
            elif last["result"] is None:
                res.docs_ambiguous += 1
            else:
                res.violations.append(f"'{path}': writer was told {last['result']}")
        for path in snapshot:
            if path not in ops:
                res.violations.append(f"'{path}' is in the store but no writer ever ingested it")

    def check_readers(
        self,
        res: RoundResult,
        ops: dict[str, list[dict[str, Any]]],
        snapshot: dict[str, Any],
        readers: list[Proc],
    ) -> None:
        by_doc = {}
        for path, (slot, k) in self.files.items():
            from pipeline.loaders.common import content_hash, doc_id_for

            by_doc[doc_id_for(content_hash(Path(path).read_bytes()))] = (path, code_of(slot, k))
        code_re = re.compile(r"zq\d+x\d+q")
        for p in readers:
            if not p.log.exists():
                continue
            for r in read_log(p.log):
                if r["op"] != "read":
                    continue
                res.reads += 1
                for doc_id, chunk_id, text in r["hits"]:
                    res.cited_chunks += 1
                    if doc_id not in by_doc:
                        res.violations.append(f"a reader cited an unknown document {doc_id}")
                        continue
                    path, code = by_doc[doc_id]
                    codes = set(code_re.findall(text))
                    if codes and codes != {code}:
                        res.violations.append(f"chunk {chunk_id} of '{path}' holds text of {sorted(codes)}")
                    verdict = self.ready_during(ops.get(path, []), r["t0"], r["t1"], path in snapshot)
                    if verdict == "ambiguous":
                        res.cited_ambiguous += 1
                    elif verdict != "ok":
                        res.violations.append(
                            f"a reader cited '{Path(path).name}' at {r['t0']:.2f}–{r['t1']:.2f}: {verdict}"
                        )

    @staticmethod
    def ready_during(seq: list[dict[str, Any]], t0: float, t1: float, there_now: bool) -> str:
        """'ok' when the writers' logs show the document ready throughout [t0, t1], 'ambiguous'
        when an operation on it overlaps that time, else what was wrong."""
        if any(o["t0"] < t1 and o["end"] > t0 for o in seq):
            return "ambiguous"
        before = [o for o in seq if o["end"] <= t0]
        if not before:
            return "no ingest of it had started"
        last = before[-1]
        if last["kind"] == "ingest" and last["result"] in ("ingested", "unchanged"):
            return "ok"
        if last["kind"] == "delete":
            return "ambiguous" if last["result"] is None else "it had been deleted"
        if last["kind"] == "ingest" and last["result"] is None:  # killed: was it committed?
            later = [o for o in seq if o["t0"] >= last["end"]]
            if not later:
                return "ok" if there_now else "its ingest was killed and never committed"
            # The next writer of this file looked before its own operation; nobody else touched it.
            seen = dict(map(tuple, later[0]["seen"]))
            if seen.get(last["doc_id"]) == "ready":
                return "ok"
            return "its ingest was killed before committing (the next writer found it not ready)"
        return f"its ingest ended with '{last['result']}'"


def pg_schema_url(base: str, schema: str) -> str:
    from sqlalchemy import create_engine, text

    engine = create_engine(base)
    with engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    engine.dispose()
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


def run(args: argparse.Namespace) -> list[RoundResult]:
    dbs = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    results: list[RoundResult] = []
    deadline = time.monotonic() + args.minutes * 60
    for db in dbs:
        url = None
        if db == "postgresql":
            base = args.pg_url or os.environ.get("LONGQA_TEST_PG_URL")
            if not base:
                sys.exit("no PostgreSQL: pass --pg-url or source scripts/postgres.sh (LONGQA_TEST_PG_URL)")
            url = pg_schema_url(base, f"torture_{args.seed}")
        h = Harness(args, db, url)
        try:
            for i in range(args.rounds):
                if time.monotonic() + args.round_seconds + 30 > deadline:
                    break
                res = h.run_round(i)
                results.append(res)
                print(json.dumps(res.as_dict()), flush=True)
        finally:
            for p in h.procs:
                h.kill(p)
            if url is not None and not args.keep:
                drop_schema(base, f"torture_{args.seed}")
    return results


def drop_schema(base: str, schema: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(base)
    with engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
    engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="sqlite")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--minutes", type=float, default=9.0, help="stop starting rounds after this long")
    ap.add_argument("--round-seconds", type=float, default=60.0)
    ap.add_argument("--kill-every", type=float, default=6.0, help="mean seconds between SIGKILLs")
    ap.add_argument("--writers", type=int, default=3)
    ap.add_argument("--readers", type=int, default=2)
    ap.add_argument("--files", type=int, default=8, help="files per writer")
    ap.add_argument("--p-delete", type=float, default=0.35)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--work", default="/tmp/longqa-torture")
    ap.add_argument("--pg-url", default=None)
    ap.add_argument("--keep", action="store_true", help="keep the PostgreSQL schema afterwards")
    ap.add_argument("--out", default=None, help="write the rounds' results here (JSON)")
    ap.add_argument("--role", choices=["writer", "reader"], help=argparse.SUPPRESS)
    ap.add_argument("--slot", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--log", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role == "writer":
        writer(Path(args.work), args.slot, Path(args.log), args.p_delete)
        return
    if args.role == "reader":
        reader(Path(args.work), args.slot, Path(args.log))
        return
    results = run(args)
    total = {
        "rounds": len(results),
        "kills": sum(r.kills for r in results),
        "docs_checked": sum(r.docs_expected_present + r.docs_expected_absent for r in results),
        "cited_chunks_checked": sum(r.cited_chunks - r.cited_ambiguous for r in results),
        "losses": sum(len(r.losses) for r in results),
        "violations": sum(len(r.violations) for r in results),
    }
    print(json.dumps({"total": total}))
    for r in results:
        for line in r.losses + r.violations:
            print(f"{r.db} round {r.round}: {line}")
    if args.out:
        Path(args.out).write_text(
            json.dumps({"total": total, "rounds": [r.as_dict() for r in results]}, indent=1)
        )
    sys.exit(1 if total["losses"] or total["violations"] else 0)


if __name__ == "__main__":
    main()
