"""Ingest through the service: no-op re-ingest, replacement, bad files beside good ones."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import shared


def test_reingest_unchanged_is_a_noop(service, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pdf = shared("pdf/docling_multi_page.pdf")
    first = service.ingest([pdf])
    assert first.ingested == [str(pdf)] and first.chunks > 0
    n_vectors = len(service.index)
    assert n_vectors == first.chunks == len(service.store.all_vec_ids())
    second = service.ingest([pdf])
    assert second.ingested == [] and second.unchanged == [str(pdf)] and second.chunks == 0
    assert len(service.index) == n_vectors
    assert len(service.documents()) == 1


def test_changed_file_replaces_its_chunks(service, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = shared("lara/32k/book/The Pearl.txt").read_text()
    path = tmp_path / "pearl.txt"
    path.write_text(src[:20000])
    service.ingest([path])
    old = service.documents()[0]
    path.write_text(src[:20000] + "\n\nA new closing paragraph about the pearl diver Kino.")
    report = service.ingest([path])
    assert report.ingested == [str(path)]
    docs = service.documents()
    assert len(docs) == 1 and docs[0].doc_id != old.doc_id
    assert service.store.chunks_of(old.doc_id) == []
    assert service.index.ids() == service.store.all_vec_ids()
    assert len(service.index) == docs[0].n_chunks


def test_bad_files_do_not_stop_the_others(service, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(shared("pdf/docling_multi_page.pdf"), folder / "good.pdf")
    (folder / "notes.md").write_text("# Notes\n\nThe warehouse in Tromsø stores 4,200 crates of cod.\n")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    (folder / "table.xyz").write_text("unsupported")  # skipped by the folder walk
    missing = tmp_path / "missing.txt"
    report = service.ingest([folder, missing, folder / "table.xyz"])
    assert sorted(Path(p).name for p in report.ingested) == ["good.pdf", "notes.md"]
    reasons = dict(report.failed)
    assert set(reasons) == {str(folder / "broken.pdf"), str(missing), str(folder / "table.xyz")}
    for path, why in reasons.items():
        assert path in why and "\n" not in why
    assert "not a readable PDF" in reasons[str(folder / "broken.pdf")]
    assert "unsupported file type" in reasons[str(folder / "table.xyz")]
    assert len(service.documents()) == 2
    assert service.index.ids() == service.store.all_vec_ids()


def test_reopen_repairs_an_interrupted_ingest(settings, embedder, smol) -> None:  # type: ignore[no-untyped-def]
    from app.service import QAService
    from pipeline.chunking import ChunkingConfig, chunk_document
    from pipeline.lease import Owner, process_start
    from pipeline.loaders import load_document
    from pipeline.tokens import RegexTokenCounter

    svc = QAService(settings, embedder=embedder, generator=smol)
    svc.ingest([shared("pdf/docling_multi_page.pdf")])
    good = svc.documents()[0].doc_id
    # A writer that died after staging its document (a process of this host that has exited).
    doc = load_document(shared("pdf/docling_amt_handbook_sample.pdf"))
    assert chunk_document(doc, RegexTokenCounter(), ChunkingConfig(200, 20))
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    owner = Owner(Owner.current().host, proc.pid, process_start(proc.pid))
    proc.wait()
    svc.store.stage(doc, owner=owner)
    svc.close()
    again = QAService(settings, embedder=embedder, generator=smol)
    assert [d.doc_id for d in again.debris] == [doc.doc_id]
    assert [d.doc_id for d in again.documents()] == [good]
    assert again.index.ids() == again.store.all_vec_ids()
    assert again.store.list_documents()[0].status == "ready"
    again.close()
