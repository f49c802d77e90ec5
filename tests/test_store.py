"""The store on SQLite and PostgreSQL: documents, chunks and their vectors in one transaction,
the generation that caches follow, and crash recovery by writer leases."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from app.ingest import reconcile
from indexes.cache import VectorCache
from pipeline.chunking import ChunkingConfig, chunk_document
from pipeline.lease import Owner, process_start
from pipeline.loaders import load_document
from pipeline.store import MetadataStore
from pipeline.tokens import RegexTokenCounter
from tests.conftest import shared


def _doc_and_chunks(rel: str):  # type: ignore[no-untyped-def]
    doc = load_document(shared(rel))
    return doc, chunk_document(doc, RegexTokenCounter(), ChunkingConfig(200, 20))


def _vectors(n: int, seed: int, dim: int = 8) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _dead_owner() -> Owner:
    """The identity of a process of this host that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    started = process_start(proc.pid)
    proc.wait()
    return Owner(Owner.current().host, proc.pid, started)


def test_round_trip(db_url: str) -> None:
    store = MetadataStore(db_url)
    doc, chunks = _doc_and_chunks("pdf/docling_multi_page.pdf")
    g0 = store.generation()
    assert store.stage(doc).status == "staged"
    assert store.list_documents()[0].status == "pending"
    assert store.find_by_hash(doc.content_hash) is None  # not ready yet
    assert store.all_vec_ids() == set() and store.generation() == g0  # no chunks while pending
    vecs = _vectors(len(chunks), 0)
    done = store.commit(doc, chunks, vecs)
    vec_ids = done.vec_ids
    assert done.status == "ingested" and len(vec_ids) == len(chunks) == len(set(vec_ids))
    assert store.generation() == g0 + 1
    assert store.find_by_hash(doc.content_hash) is not None
    assert store.get_document(doc.doc_id) == doc
    assert store.chunks_of(doc.doc_id) == chunks
    got = store.chunks_by_vec_ids(vec_ids[:3])
    assert [got[v] for v in vec_ids[:3]] == chunks[:3]
    ids, docs, texts = store.all_chunk_texts()
    assert ids == sorted(vec_ids) and texts[0] == chunks[0].text and set(docs) == {doc.doc_id}
    (back_ids, back), *_ = list(store.vectors())
    assert back_ids.tolist() == vec_ids and np.array_equal(back, vecs)
    assert store.counts() == (len(chunks), len(chunks))
    # The same content again: already there, nothing written.
    assert store.stage(doc).status == "ready"
    store.close()


def test_replace_and_delete_never_reuse_ids(db_url: str) -> None:
    store = MetadataStore(db_url)
    a, ca = _doc_and_chunks("pdf/docling_multi_page.pdf")
    b, cb = _doc_and_chunks("pdf/docling_amt_handbook_sample.pdf")
    ids_a = store.add(a, ca, _vectors(len(ca), 1))
    b = replace(b, source_path=a.source_path)  # a new version of the same file
    store.stage(b)
    done = store.commit(b, cb, _vectors(len(cb), 2))
    assert done.replaced == [a.doc_id]
    assert [d.doc_id for d in store.list_documents()] == [b.doc_id]
    assert store.chunks_of(a.doc_id) == []
    assert min(done.vec_ids) > max(ids_a)  # ids of deleted chunks are never handed out again
    removed = store.delete_documents([b.doc_id])
    assert sorted(removed) == done.vec_ids
    assert store.list_documents() == [] and store.all_vec_ids() == set()
    again = store.add(a, ca, _vectors(len(ca), 1))
    assert min(again) > max(done.vec_ids)
    store.close()


def test_reconcile_removes_only_dead_writers(db_url: str) -> None:
    store = MetadataStore(db_url)
    a, ca = _doc_and_chunks("pdf/docling_multi_page.pdf")
    b, _cb = _doc_and_chunks("pdf/docling_amt_handbook_sample.pdf")
    c, _cc = _doc_and_chunks("pdf/docling_redp5110_sampled.pdf")
    store.add(a, ca, _vectors(len(ca), 1))
    assert store.stage(b, owner=_dead_owner()).status == "staged"  # a writer that died
    assert store.stage(c).status == "staged"  # this live process, lease long expired
    store.renew_leases(lease_s=-3600)
    far = Owner("another-host", 4242, 1)
    d = load_document(shared("pdf/docling_multi_page.md"))
    store.stage(d, owner=far, lease_s=3600)  # another host, lease running
    debris = reconcile(store)
    assert [x.doc_id for x in debris] == [b.doc_id]
    assert "not running" in debris[0].why
    status = {x.doc_id: x.status for x in store.list_documents()}
    assert status == {a.doc_id: "ready", c.doc_id: "pending", d.doc_id: "pending"}
    # A live writer elsewhere is busy with d; once its lease expires it counts as dead.
    assert store.stage(d).status == "busy"
    store.stage(d, owner=far, lease_s=-60)
    assert [x.doc_id for x in reconcile(store)] == [d.doc_id]
    store.close()


def test_commit_after_lost_lease_still_lands_once(db_url: str) -> None:
    store = MetadataStore(db_url)
    a, ca = _doc_and_chunks("pdf/docling_multi_page.pdf")
    me = Owner("host-a", 11, 1)
    store.stage(a, owner=me, lease_s=-60)
    assert [x.doc_id for x in reconcile(store)] == [a.doc_id]  # presumed dead, removed
    done = store.commit(a, ca, _vectors(len(ca), 1), owner=me)  # ...but it was only slow
    assert done.status == "ingested"
    assert [(x.doc_id, x.status) for x in store.list_documents()] == [(a.doc_id, "ready")]
    assert store.commit(a, ca, _vectors(len(ca), 1), owner=me).status == "unchanged"
    assert store.counts() == (len(ca), len(ca))
    store.close()


def test_vector_cache_follows_the_generation(db_url: str, tmp_path: Path) -> None:
    store = MetadataStore(db_url)
    a, ca = _doc_and_chunks("pdf/docling_multi_page.pdf")
    b, cb = _doc_and_chunks("pdf/docling_amt_handbook_sample.pdf")
    ids_a = store.add(a, ca, _vectors(len(ca), 1))
    path = tmp_path / "index.faiss"
    cache = VectorCache(store, path, 8)
    assert cache.open() == f"index cache '{path}' was missing; rebuilt from the database: {len(ca)} vectors"
    assert path.exists()
    assert cache.index.ids() == set(ids_a)
    other = MetadataStore(db_url)  # another process's writes
    ids_b = other.add(b, cb, _vectors(len(cb), 2))
    other.delete_documents([a.doc_id])
    assert cache.refresh() is True
    assert cache.index.ids() == set(ids_b)
    assert cache.refresh() is False
    _, got = cache.index.vectors_of(ids_b[:2])
    assert np.allclose(got, _vectors(len(cb), 2)[:2])
    cache.save()
    # A new process finds the file current; then truncated, and then missing: rebuilt, one line.
    fresh = VectorCache(store, path, 8)
    assert fresh.open() is None and fresh.index.ids() == set(ids_b)
    path.write_bytes(path.read_bytes()[:100])
    notice = VectorCache(store, path, 8).open()
    assert notice is not None and "was unreadable (truncated" in notice
    assert notice.endswith(f"rebuilt from the database: {len(cb)} vectors") and "\n" not in notice
    path.unlink()
    broken = VectorCache(store, path, 8)
    assert broken.open() == f"index cache '{path}' was missing; rebuilt from the database: {len(cb)} vectors"
    assert broken.index.ids() == set(ids_b)
    other.close()
    store.close()


def test_heartbeat_keeps_the_lease(db_url: str) -> None:
    from pipeline.lease import Heartbeat

    store = MetadataStore(db_url)
    a, _ = _doc_and_chunks("pdf/docling_multi_page.pdf")
    store.stage(a, lease_s=0.5)
    with Heartbeat(lambda: store.renew_leases(lease_s=30), 0.1):
        time.sleep(0.4)
    from sqlalchemy import select

    from pipeline.store import DocumentRow

    with store.engine.connect() as conn:
        lease = conn.execute(select(DocumentRow.lease_until)).scalar_one()
    assert lease > time.time() + 20
    store.close()


def test_upgrade_from_a_store_without_vectors(db_url: str, tmp_path: Path) -> None:
    """A store of the earlier layout (no vector column, no store_state) and its FAISS file:
    vectors move into the store; a document missing from the old file is removed, said once."""
    from sqlalchemy import text

    from indexes.cache import upgrade_legacy_store
    from indexes.vector import VectorIndex

    store = MetadataStore(db_url)
    a, ca = _doc_and_chunks("pdf/docling_multi_page.pdf")
    b, cb = _doc_and_chunks("pdf/docling_amt_handbook_sample.pdf")
    va = _vectors(len(ca), 1)
    ids_a = store.add(a, ca, va)
    store.add(b, cb, _vectors(len(cb), 2))
    with store.engine.begin() as conn:  # back to the old layout
        conn.execute(text("ALTER TABLE chunks DROP COLUMN vector"))
        for col in ("owner_host", "owner_pid", "owner_started", "lease_until"):
            conn.execute(text(f"ALTER TABLE documents DROP COLUMN {col}"))
        conn.execute(text("DROP TABLE store_state"))
    store.close()
    old = VectorIndex(8)
    old.add(ids_a, va)  # the old index file knew only a's vectors
    path = tmp_path / "index.faiss"
    old.save(path)
    store = MetadataStore(db_url)
    notice = upgrade_legacy_store(store, path)
    assert notice == (
        f"moved {len(ca)} vectors from the old index '{path}' into the database; 1 documents had no "
        "vectors there and were removed (ingest them again)"
    )
    assert [d.doc_id for d in store.list_documents()] == [a.doc_id]
    (ids, back), *_ = list(store.vectors())
    assert ids.tolist() == ids_a and np.array_equal(back, va)
    assert upgrade_legacy_store(store, path) is None
    cache = VectorCache(store, path, 8)
    assert "not a vector cache of this version" in (cache.open() or "")
    assert cache.index.ids() == set(ids_a)
    assert min(store.add(b, cb, _vectors(len(cb), 2))) > max(ids_a)
    store.close()


def test_retriever_follows_a_cache_rebuilt_by_another_caller(db_url: str) -> None:
    """When most vectors are deleted, ``VectorCache.refresh`` rebuilds the index as a new
    object; a retriever whose cache was refreshed by another caller (``QAService.index``)
    must search the new index, not the old one with the deleted vectors."""
    from indexes.hybrid import HybridRetriever, RetrievalConfig
    from pipeline.types import Chunk, Document, Span

    def doc(tag: str, n: int) -> tuple[Document, list[Chunk]]:
        text = " ".join(f"{tag}{i}" for i in range(n))
        d = Document(tag, f"/{tag}.txt", "text", text, tag * 4)
        return d, [Chunk(f"{tag}-{i}", tag, f"{tag}{i}", Span(0, 1), i, 1) for i in range(n)]

    store = MetadataStore(db_url)
    big, big_chunks = doc("big", 1500)
    store.add(big, big_chunks, _vectors(1500, 1))
    cache = VectorCache(store, None, 8)
    cache.open()
    retriever = HybridRetriever(store, cache.index, None, RetrievalConfig(method="bm25"), cache=cache)  # type: ignore[arg-type]
    assert [h.chunk.text for h in retriever.retrieve("big7", k=3)] == ["big7"]
    store.delete_documents(["big"])
    small, small_chunks = doc("small", 3)
    store.add(small, small_chunks, _vectors(3, 2))
    assert cache.refresh()  # another caller refreshes: 1500 of 1503 gone, so a new index
    hits = retriever.retrieve("small1", k=3)
    assert [h.chunk.text for h in hits][:1] == ["small1"]
    assert retriever.index is cache.index and len(retriever.index) == 3
    store.close()
