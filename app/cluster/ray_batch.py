"""``longqa batch --ray ADDRESS``: the questions answered by Ray workers, each holding its own
service (the LLM loaded once, retrieval over the shared store).

The run itself stays here (``app.batch.run``): the questions file, the journal, resuming,
Ctrl-C and the output table are exactly those of a local batch; only ``RayAnswerer`` replaces
the answering threads. A worker answers one row at a time; rows about a document go to the
worker that last answered about it when it is free, so a document's KV prefix is reused there.
The workers open the store themselves, so it must be one they can reach: on one machine the
SQLite file in the data directory; across machines PostgreSQL (``LONGQA_DATABASE_URL``).
"""

from __future__ import annotations

import os
import socket
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from app.batch.run import InFlight, RowResult, Task, _answer, _warm_up
from app.cluster.ray_session import ClusterError, RayOptions, connect, worker_count
from app.service import QAService
from app.settings import Settings


class BatchWorker:
    """A Ray actor with its own QAService over the shared store; ``error`` says why it cannot
    answer (reported by ``ready``)."""

    def __init__(self, settings: Settings, store_id: str) -> None:
        self.node = socket.gethostname()
        self.error = ""
        self.svc: QAService | None = None
        url = settings.resolved_database_url
        db = Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None
        if db is not None and not db.exists():
            self.error = (
                f"the store {db} is not on Ray node {self.node}: a SQLite store is one machine's file; "
                "use PostgreSQL (LONGQA_DATABASE_URL) for a batch across machines"
            )
            return
        try:
            self.svc = QAService(settings)
            if self.svc.store.store_id != store_id:
                self.error = f"Ray node {self.node} opened another store than this batch's ({url})"
                return
            _warm_up(self.svc)  # the LLM and the retriever, once
        except Exception as exc:
            self.error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__

    def ready(self) -> tuple[str, int, str]:
        return self.node, os.getpid(), self.error

    def answer(self, task: Task) -> RowResult:
        assert self.svc is not None
        return _answer(self.svc, task, InFlight())


class RayAnswerer:
    """``app.batch.run.Answerer`` on a Ray cluster: one worker (and one row in flight) per slot."""

    def __init__(self, svc: QAService, opts: RayOptions) -> None:
        self.ray: Any = connect(opts.address)
        self.opts = opts
        threads = svc.settings.llm.threads
        self.cpus = float(threads) if threads else opts.cpus_per_worker
        self.slots = worker_count(self.ray, RayOptions(opts.address, opts.workers, self.cpus))
        self.gauge = InFlight()
        llm = svc.settings.llm.model_copy(update={"threads": threads or max(1, int(self.cpus))})
        self.settings = svc.settings.model_copy(
            update={
                "data_dir": svc.settings.data_dir.resolve(),
                "model_cache": svc.settings.model_cache.resolve(),
                "llm": llm,
            }
        )
        self.store_id = svc.store.store_id
        self.actors: list[Any] = []
        self.running: dict[int, Future[RowResult]] = {}
        self.last_doc: dict[str, int] = {}

    def start(self, rows: int) -> None:
        n = min(self.slots, rows)
        cls = self.ray.remote(num_cpus=self.cpus, max_restarts=3)(BatchWorker)
        self.actors = [cls.remote(self.settings, self.store_id) for _ in range(n)]
        self.slots = n
        for node, _pid, error in self.ray.get([a.ready.remote() for a in self.actors]):
            if error:
                raise ClusterError(f"a Ray worker on {node} cannot answer: {error}")

    def _pick(self, task: Task) -> int:
        free = [i for i in range(len(self.actors)) if i not in self.running or self.running[i].done()]
        doc = task.doc.doc_id if task.doc else ""
        same = self.last_doc.get(doc)
        if same is not None and same in free:
            return same
        seen = set(self.last_doc.values())
        return next((i for i in free if i not in seen), free[0] if free else 0)

    def submit(self, task: Task) -> Future[RowResult]:
        i = self._pick(task)
        if task.doc:
            self.last_doc[task.doc.doc_id] = i
        self.gauge.__enter__()
        out: Future[RowResult] = Future()
        self.running[i] = out
        inner: Future[RowResult] = self.actors[i].answer.remote(task).future()

        def done(f: Future[RowResult]) -> None:
            self.gauge.__exit__()
            exc = f.exception()
            if exc is None:
                out.set_result(f.result())
                return
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            out.set_result(RowResult(key=task.key, status="failed", error=f"the Ray worker failed: {first}"))

        inner.add_done_callback(done)
        return out

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a)
        self.actors = []
