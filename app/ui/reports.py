"""Find and read eval reports for the app's Eval tab.

A report is a folder holding report files (Markdown, CSV/JSONL tables, JSON, images,
HTML), or a single Markdown or HTML file. Nothing here depends on how the harness
names its files: the tab shows whatever a report folder holds.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

FileKind = Literal["markdown", "table", "json", "image", "html", "text"]
KINDS: dict[str, FileKind] = {
    ".md": "markdown",
    ".csv": "table",
    ".tsv": "table",
    ".jsonl": "table",
    ".json": "json",
    ".png": "image",
    ".jpg": "image",
    ".jpeg": "image",
    ".svg": "image",
    ".html": "html",
    ".txt": "text",
    ".log": "text",
}
ORDER: dict[FileKind, int] = {"markdown": 0, "image": 1, "table": 2, "json": 3, "html": 4, "text": 5}
MAX_DEPTH = 3
MAX_FILE_BYTES = 20_000_000


@dataclass(frozen=True)
class ReportFile:
    path: Path
    kind: FileKind


@dataclass(frozen=True)
class Report:
    name: str  # relative to the root it was found under
    path: Path
    files: tuple[ReportFile, ...]
    modified: float


def _kind(p: Path) -> FileKind | None:
    return KINDS.get(p.suffix.lower())


def _files(folder: Path) -> list[ReportFile]:
    out = []
    for p in folder.iterdir():
        kind = _kind(p)
        if p.is_file() and kind and not p.name.startswith(".") and p.stat().st_size <= MAX_FILE_BYTES:
            out.append(ReportFile(p, kind))
    return sorted(out, key=lambda f: (ORDER[f.kind], f.path.name))


def _skipped(folder: Path) -> bool:
    """Hidden folders, and a longqa library (``longqa eval`` keeps one in ``<out>/library``):
    its engine log is not a report, and being the newest file it was offered first."""
    return folder.name.startswith(".") or (folder / "longqa.db").is_file()


def find_reports(roots: list[Path]) -> list[Report]:
    """Report folders (and lone .md/.html reports) under ``roots``, newest first."""
    found: dict[Path, Report] = {}
    for root in roots:
        if not root.is_dir():
            continue
        stack = [(root, 0)]
        while stack:
            folder, depth = stack.pop()
            try:
                entries = sorted(folder.iterdir())
            except OSError:
                continue
            files = _files(folder)
            if files and folder != root:
                mtime = max(f.path.stat().st_mtime for f in files)
                found[folder] = Report(str(folder.relative_to(root)), folder, tuple(files), mtime)
            elif folder == root:
                for f in files:
                    if f.kind in ("markdown", "html"):
                        found[f.path] = Report(f.path.name, f.path, (f,), f.path.stat().st_mtime)
            if depth < MAX_DEPTH:
                stack.extend((e, depth + 1) for e in entries if e.is_dir() and not _skipped(e))
    return sorted(found.values(), key=lambda r: -r.modified)


# ![alt](target) or ![alt](<target>), with an optional "title"; only a target naming a file
# of the report's own folder is taken (a URL or a path elsewhere stays as the Markdown has it).
_IMAGE = re.compile(r'!\[([^\]\n]*)\]\(\s*<?([^()<>\s]+)>?(?:\s+"[^"\n]*")?\s*\)')


@dataclass(frozen=True)
class InlineImage:
    path: Path  # resolved, inside the report's folder
    alt: str


def split_images(markdown: str, folder: Path) -> list[str | InlineImage]:
    """The Markdown cut at its links to images of ``folder``: text pieces, and in their place the
    image files, so the app can show each where the report puts it (Streamlit resolves no
    relative image path: the link showed as its alt text, and the image again at the end)."""
    out: list[str | InlineImage] = []
    at = 0
    base = folder.resolve()
    for m in _IMAGE.finditer(markdown):
        target = (folder / m.group(2)).resolve()
        if _kind(target) != "image" or target.parent != base or not target.is_file():
            continue
        out.append(markdown[at : m.start()])
        out.append(InlineImage(target, m.group(1).strip()))
        at = m.end()
    out.append(markdown[at:])
    return [x for x in out if not isinstance(x, str) or x.strip()]


def read_table(path: Path, limit: int = 2000) -> list[dict[str, object]]:
    """Rows of a CSV, TSV or JSONL file (at most ``limit``)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix.lower() == ".jsonl":
        rows: list[dict[str, object]] = []
        for line in text.splitlines():
            if line.strip():
                obj = json.loads(line)
                rows.append(obj if isinstance(obj, dict) else {"value": obj})
            if len(rows) >= limit:
                break
        return rows
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    return [dict(r) for _, r in zip(range(limit), reader)]
