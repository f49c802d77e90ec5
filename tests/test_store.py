"""The metadata store on SQLite and PostgreSQL, and its agreement with the vector index."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.ingest import reconcile
from indexes.vector import VectorIndex
from pipeline.chunking import ChunkingConfig, chunk_document
from pipeline.loaders import load_document
from pipeline.store import MetadataStore
from pipeline.tokens import RegexTokenCounter
from tests.conftest import shared


def _doc_and_chunks(rel: str):  # type: ignore[no-untyped-def]
    doc = load_document(shared(rel))
    return doc, chunk_document(doc, RegexTokenCounter(), ChunkingConfig(200, 20))


def test_round_trip(db_url: str) -> None:
    store = MetadataStore(db_url)
    doc, chunks = _doc_and_chunks("pdf/docling_multi_page.pdf")
    vec_ids = store.stage(doc, chunks)
    assert len(vec_ids) == len(chunks) == len(set(vec_ids))
    assert store.list_documents()[0].status == "pending"
    assert store.find_by_hash(doc.content_hash) is None  # not ready yet
    store.mark_ready(doc.doc_id)
    assert store.find_by_hash(doc.content_hash) is not None
    back = store.get_document(doc.doc_id)
    assert back == doc
    assert store.chunks_of(doc.doc_id) == chunks
    got = store.chunks_by_vec_ids(vec_ids[:3])
    assert [got[v] for v in vec_ids[:3]] == chunks[:3]
    ids, docs, texts = store.all_chunk_texts()
    assert ids == sorted(vec_ids) and texts[0] == chunks[0].text and set(docs) == {doc.doc_id}
    store.close()


def test_replace_and_delete(db_url: str) -> None:
    store = MetadataStore(db_url)
    a, ca = _doc_and_chunks("pdf/docling_multi_page.pdf")
    b, cb = _doc_and_chunks("pdf/docling_amt_handbook_sample.pdf")
    store.stage(a, ca)
    store.mark_ready(a.doc_id)
    store.stage(b, cb, replaces=[a.doc_id])
    store.mark_ready(b.doc_id)
    assert [d.doc_id for d in store.list_documents()] == [b.doc_id]
    assert store.chunks_of(a.doc_id) == []
    removed = store.delete_documents([b.doc_id])
    assert len(removed) == len(cb)
    assert store.list_documents() == [] and store.all_vec_ids() == set()
    store.close()


def test_reconcile_after_interrupted_ingest(db_url: str, tmp_path: Path) -> None:
    store = MetadataStore(db_url)
    index = VectorIndex(8)
    a, ca = _doc_and_chunks("pdf/docling_multi_page.pdf")
    ids_a = store.stage(a, ca)
    index.add(ids_a, np.eye(len(ids_a), 8, dtype=np.float32))
    store.mark_ready(a.doc_id)
    # Crash 1: the second document was staged, its vectors never reached the index.
    b, cb = _doc_and_chunks("pdf/docling_amt_handbook_sample.pdf")
    store.stage(b, cb)
    # Crash 2 (earlier run): vectors in the index whose chunks were never committed.
    index.add([10_000, 10_001], np.ones((2, 8), dtype=np.float32))
    removed, orphans = reconcile(store, index)
    assert orphans == 2
    assert [d.doc_id for d in store.list_documents()] == [a.doc_id]
    assert index.ids() == set(ids_a) == store.all_vec_ids()
    store.close()
