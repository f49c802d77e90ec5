"""Eval datasets: LaRA (its directory layout) and a generic JSONL format.

Generic JSONL, one object a line::

    {"doc": "reports/q1.pdf", "question": "...", "answer": "...", "task": "location"}

``doc`` is a path (relative to the JSONL file's folder, or absolute) or the id of an
already ingested document; ``task`` is optional (``hallu`` marks questions the text
cannot answer). A line that cannot be used becomes an item with ``error`` set: the run
records it as an error row and goes on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from eval.lara import KINDS, TASKS, check_root, document_path, load_questions


@dataclass(frozen=True)
class EvalItem:
    item_id: str
    question: str
    answer: str
    task: str
    doc: str  # a file path, or the id of an ingested document
    kind: str = ""
    evidence: str = ""  # the passage the question was written from, when the dataset gives it
    error: str = ""  # why this item cannot be run; recorded as an error row


def round_robin(items: list[EvalItem], limit: int | None) -> list[EvalItem]:
    """The first ``limit`` items taking turns over (kind, task) groups, so a small limit still
    covers every task type; all items in their order when there is no limit."""
    if limit is None or limit >= len(items):
        return items
    groups: dict[tuple[str, str], list[EvalItem]] = {}
    for it in items:
        groups.setdefault((it.kind, it.task), []).append(it)
    out: list[EvalItem] = []
    i = 0
    while len(out) < limit:
        for g in groups.values():
            if i < len(g) and len(out) < limit:
                out.append(g[i])
        i += 1
    return out


def load_lara(
    root: Path,
    *,
    kinds: tuple[str, ...] = KINDS,
    tasks: tuple[str, ...] = TASKS,
    limit: int | None = None,
    docs: tuple[str, ...] = (),
) -> list[EvalItem]:
    """LaRA questions; ``docs`` keeps those whose document file name contains one of the
    given strings (case-insensitive), before ``limit`` is applied."""
    root = check_root(root)
    bad = [k for k in kinds if k not in KINDS] + [t for t in tasks if t not in TASKS]
    if bad:
        raise ValueError(
            f"unknown LaRA kinds or tasks {bad}; kinds: {', '.join(KINDS)}; tasks: {', '.join(TASKS)}"
        )
    items = []
    for q in load_questions(root, kinds, tasks):
        path = document_path(root, q)
        if docs and not any(d.lower() in path.name.lower() for d in docs):
            continue
        error = "" if path.is_file() else f"document '{path}' does not exist"
        if not q.question.strip():
            error = f"question {q.qid} has no question text"
        items.append(
            EvalItem(
                item_id=f"lara:{q.qid}",
                question=q.question,
                answer=q.answer,
                task=q.task,
                doc=str(path),
                kind=q.kind,
                evidence=q.context,
                error=error,
            )
        )
    return round_robin(items, limit)


def load_jsonl(path: Path, *, limit: int | None = None) -> list[EvalItem]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset '{path}' does not exist")
    items: list[EvalItem] = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            item_id = f"{path.stem}:{n}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                why = f"line {n} is not valid JSON: {exc.msg}"
                items.append(EvalItem(item_id, "", "", "", "", error=why))
                continue
            if not isinstance(row, dict):
                items.append(EvalItem(item_id, "", "", "", "", error=f"line {n} is not a JSON object"))
                continue
            question = str(row.get("question") or "").strip()
            doc = str(row.get("doc") or "").strip()
            item_id = f"{path.stem}:{row['id']}" if row.get("id") is not None else item_id
            error = ""
            if not question:
                error = f"line {n} has no 'question'"
            elif not doc:
                error = f"line {n} has no 'doc' (a file path or a document id)"
            if doc and not Path(doc).is_absolute() and (path.parent / doc).exists():
                doc = str((path.parent / doc).resolve())
            items.append(
                EvalItem(
                    item_id=item_id,
                    question=question,
                    answer=str(row.get("answer") or ""),
                    task=str(row.get("task") or ""),
                    doc=doc,
                    kind=str(row.get("kind") or ""),
                    evidence=str(row.get("evidence") or ""),
                    error=error,
                )
            )
    return round_robin(items, limit)


def load_dataset(
    spec: Path,
    *,
    limit: int | None = None,
    kinds: tuple[str, ...] = KINDS,
    tasks: tuple[str, ...] = TASKS,
    docs: tuple[str, ...] = (),
) -> list[EvalItem]:
    """A LaRA directory (it has 'query/') or a generic .jsonl file."""
    spec = Path(spec)
    if spec.is_dir():
        items = load_lara(spec, kinds=kinds, tasks=tasks, limit=limit, docs=docs)
        if docs and not items:
            raise ValueError(f"no LaRA document name contains any of {list(docs)}")
        return items
    if spec.suffix.lower() == ".jsonl":
        return load_jsonl(spec, limit=limit)
    raise ValueError(
        f"cannot read dataset '{spec}': give a LaRA directory (with query/ and 32k/) or a .jsonl file "
        'with {"doc", "question", "answer", "task"} per line'
    )
