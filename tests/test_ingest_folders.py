"""Folder ingest: globs, ignore patterns, pruning, and upload paths that stay inside the data dir."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.ingest import WalkOptions, expand_paths, safe_destination
from tests.conftest import shared


def _tree(root: Path) -> None:
    (root / "a").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "node_modules").mkdir()
    (root / "a" / "one.md").write_text("# One\n\nAlpha text about glaciers.\n")
    (root / "a" / "two.txt").write_text("Beta text about fjords.\n")
    (root / "three.srt").write_text("1\n00:00:01,000 --> 00:00:02,000\nGamma text about tides.\n")
    (root / ".git" / "x.md").write_text("hidden")
    (root / "node_modules" / "y.md").write_text("vendored")
    (root / "image.png").write_bytes(b"\x89PNG")
    (root / "draft.md~").write_text("backup")


def test_walk_skips_hidden_vendored_and_unsupported(tmp_path: Path) -> None:
    _tree(tmp_path)
    names = [p.relative_to(tmp_path).as_posix() for p in expand_paths([tmp_path])]
    assert names == ["a/one.md", "a/two.txt", "three.srt"]
    only_md = expand_paths([tmp_path], WalkOptions(include=("**/*.md", "*.md")))
    assert [p.name for p in only_md] == ["one.md"]
    no_a = expand_paths([tmp_path], WalkOptions(exclude=(".*", "node_modules", "a")))
    assert [p.name for p in no_a] == ["three.srt"]


def test_folder_ingest_then_prune_vanished_files(service, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "docs"
    _tree(folder)
    events = []
    report = service.ingest([folder], events.append)
    assert len(report.ingested) == 3 and report.failed == []
    assert [e.stage for e in events][-1] == "finished" and events[-1].files_done == 3
    assert events[-1].chunks == report.chunks > 0
    (folder / "a" / "two.txt").unlink()
    kept = service.ingest([folder])
    assert len(kept.unchanged) == 2 and kept.removed == []
    assert len(service.documents()) == 3  # vanished files stay unless asked
    pruned = service.ingest([folder], prune=True)
    assert [Path(p).name for p in pruned.removed] == ["two.txt"]
    assert sorted(Path(d.source_path).name for d in service.documents()) == ["one.md", "three.srt"]
    assert service.index.ids() == service.store.all_vec_ids()


def test_same_content_under_another_name_is_not_duplicated(service, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pdf = shared("pdf/docling_multi_page.pdf")
    copy = tmp_path / "copy.pdf"
    shutil.copy(pdf, copy)
    service.ingest([pdf])
    report = service.ingest([copy])
    assert report.unchanged == [str(copy)] and len(service.documents()) == 1


@pytest.mark.parametrize(
    "name, expected",
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("/abs/path/notes.md", "notes.md"),
        ("..\\..\\windows\\evil.txt", "evil.txt"),
        ("sub/dir/../x.srt", "x.srt"),
        (".bashrc", "bashrc"),
        ("we\x00ird\nname.txt", "we_ird_name.txt"),
    ],
)
def test_upload_names_cannot_escape_the_data_dir(tmp_path: Path, name: str, expected: str) -> None:
    root = tmp_path / "uploads"
    root.mkdir()
    target = safe_destination(root, name)
    assert target == (root / expected).resolve()
    assert target.parent == root.resolve()


@pytest.mark.parametrize("name", ["", "..", "../", "/", "...", "a/.."])
def test_unusable_upload_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="cannot store an upload"):
        safe_destination(tmp_path, name)


def test_the_exclude_default_is_defined_once() -> None:
    from app.settings import DEFAULT_EXCLUDE, Settings

    assert WalkOptions().exclude == DEFAULT_EXCLUDE
    assert Settings().ingest.exclude == list(DEFAULT_EXCLUDE)
