"""Eval datasets: LaRA (its directory layout), a generic JSONL format and LongBench-v2-style JSON.

Generic JSONL, one object a line::

    {"doc": "reports/q1.pdf", "question": "...", "answer": "...", "task": "location"}
    {"id": "q7", "context": "the document's text", "question": "...",
     "options": ["...", "...", "..."], "answer": "AC", "source": "kept in the results"}
    {"doc": "q1.pdf", "question": "...", "answer": "Paris", "alt_answers": ["the capital"]}

``doc`` is a path (relative to the JSONL file's folder, or absolute) or the id of an
already ingested document; ``context`` gives the document's text inline instead (ingested
once per distinct text). ``options`` (a list, lettered A, B, ..., or a dict letter -> text)
makes the question multiple choice: ``answer`` is then the correct letters ("B", "ABD",
["A", "B"]), scored by exact set match. ``alt_answers`` are more correct answers. A gold
answer "Unanswerable" (or ``task`` ``hallu``) marks a question the text cannot answer.
``task``, ``kind``, ``evidence`` and ``id`` are optional; any other field is kept in the
results. A line that cannot be used becomes an item with ``error`` set ("file:line: reason;
fix"): the run records it as an error row and goes on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from app.answering.prompts import multiple_choice_question
from eval.choices import ChoiceError, Options, option_texts, parse_gold_letters, parse_options
from eval.judge import unanswerable
from eval.lara import KINDS, TASKS, check_root, document_path, load_questions


@dataclass(frozen=True)
class EvalItem:
    item_id: str
    question: str
    answer: str
    task: str
    doc: str  # a file path, or the id of an ingested document ("" when ``context`` is given)
    kind: str = ""
    evidence: str = ""  # the passage the question was written from, when the dataset gives it
    error: str = ""  # why this item cannot be run; recorded as an error row
    options: Options = ()  # multiple choice: (letter, text) pairs; ``answer`` holds the gold letters
    alt_answers: tuple[str, ...] = ()  # more correct answers (open questions): right if any matches
    context: str = ""  # the document's text given inline in the record
    extra: dict[str, Any] = field(default_factory=dict)  # the record's other fields, kept in results

    @property
    def is_mc(self) -> bool:
        return bool(self.options)

    @property
    def golds(self) -> tuple[str, ...]:
        return (self.answer, *self.alt_answers) if self.answer else self.alt_answers

    @property
    def gold_text(self) -> str:
        """The gold answer as words (for MC the correct options' texts): what evidence is sought for."""
        return option_texts(self.answer, self.options) if self.options else self.answer

    def prompt_question(self) -> str:
        """The question as the model sees it: with its lettered options for MC."""
        return multiple_choice_question(self.question, self.options) if self.options else self.question


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


JSONL_FIELDS = frozenset(
    {"id", "doc", "context", "question", "answer", "alt_answers", "options", "task", "kind", "evidence"}
)


def _text(value: object) -> str:
    return "" if value is None else str(value).strip()


def record_item(row: dict[str, Any], where: str, item_id: str, base: Path) -> EvalItem:
    """One generic record (a JSONL line) as an item; ``where`` ("set.jsonl:4") starts every error."""
    question = _text(row.get("question"))
    doc = _text(row.get("doc"))
    context = row.get("context")
    extra = {k: v for k, v in row.items() if k not in JSONL_FIELDS}
    err = ""
    options: Options = ()
    answer_raw = row.get("answer")
    answer = ""
    alts: tuple[str, ...] = ()
    if context is not None and not isinstance(context, str):
        err = (
            f"{where}: 'context' is {type(context).__name__}, not text; give the document's text as a string"
        )
    elif not question:
        err = f"{where}: no 'question'; add the question text"
    elif not doc and not (context or "").strip():
        err = (
            f"{where}: no 'doc' and no 'context'; give a file path or document id as 'doc', "
            "or the text as 'context'"
        )
    elif doc and (context or "").strip():
        err = f"{where}: both 'doc' and 'context'; keep one of them"
    if not err and row.get("options") is not None:
        try:
            options = parse_options(row["options"])
            answer = parse_gold_letters(answer_raw, options)
        except ChoiceError as exc:
            err = f"{where}: {exc}"
    elif not err:
        raw_alts = row.get("alt_answers") or []
        if isinstance(answer_raw, list):  # several gold answers given as a list
            raw_alts = list(answer_raw[1:]) + list(raw_alts if isinstance(raw_alts, list) else [])
            answer_raw = answer_raw[0] if answer_raw else ""
        if not isinstance(raw_alts, list) or not all(isinstance(a, str | int | float) for a in raw_alts):
            err = f'{where}: \'alt_answers\' must be a list of texts, e.g. ["Paris", "the capital"]'
        else:
            answer = _text(answer_raw)
            alts = tuple(a for a in (_text(x) for x in raw_alts) if a)
            if not answer and not alts:
                err = (
                    f"{where}: no 'answer'; add the gold answer "
                    '("Unanswerable" if the text cannot answer it)'
                )
    task = _text(row.get("task"))
    if not options and not task and unanswerable(answer, task):
        task = "unanswerable"
    if doc and not Path(doc).is_absolute() and (base / doc).exists():
        doc = str((base / doc).resolve())
    return EvalItem(
        item_id=item_id,
        question=question,
        answer=answer,
        task=task,
        doc=doc,
        kind=_text(row.get("kind")),
        evidence=_text(row.get("evidence")),
        error=err,
        options=options,
        alt_answers=alts,
        context=context if isinstance(context, str) and not doc else "",
        extra=extra,
    )


def load_jsonl(path: Path, *, limit: int | None = None) -> list[EvalItem]:
    """The generic JSONL format (module docstring, docs/eval.md); a bad line becomes an error item."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset '{path}' does not exist")
    items: list[EvalItem] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path.name}:{n}"
            item_id = f"{path.stem}:{n}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                why = f"{where}: not valid JSON ({exc.msg}); write one JSON object per line"
                items.append(EvalItem(item_id, "", "", "", "", error=why))
                continue
            if not isinstance(row, dict):
                why = f'{where}: not a JSON object; write {{"question": ..., "answer": ...}} per line'
                items.append(EvalItem(item_id, "", "", "", "", error=why))
                continue
            if row.get("id") is not None:
                item_id = f"{path.stem}:{row['id']}"
            item = record_item(row, where, item_id, path.parent)
            if item_id in seen and not item.error:
                item = replace(
                    item,
                    item_id=f"{path.stem}:{n}",
                    error=f"{where}: id {row.get('id')!r} repeats an earlier line; give each line its own id",
                )
            seen.add(item_id)
            items.append(item)
    return round_robin(items, limit)


LONGBENCH_FIELDS = ("_id", "question", "choice_A", "choice_B", "choice_C", "choice_D", "answer", "context")


def load_longbench(path: Path, *, limit: int | None = None) -> list[EvalItem]:
    """LongBench-v2-style JSON: a list of records with ``_id``, ``domain``, ``sub_domain``,
    ``difficulty``, ``length``, ``question``, ``choice_A``..``choice_D``, ``answer`` (a letter)
    and ``context`` (the document's text). ``domain`` is the task, ``length`` the kind; the other
    fields are kept in the results."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset '{path}' does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path.name}: not valid JSON ({exc}); give a JSON list of records") from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise ValueError(
            f"{path.name}: a JSON {type(data).__name__}, not a list of records; LongBench v2 style is "
            '[{"_id", "question", "choice_A".."choice_D", "answer", "context"}, ...]'
        )
    items: list[EvalItem] = []
    for n, rec in enumerate(data, start=1):
        where = f"{path.name}: record {n}"
        if not isinstance(rec, dict):
            items.append(EvalItem(f"{path.stem}:{n}", "", "", "", "", error=f"{where}: not a JSON object"))
            continue
        missing = [f for f in LONGBENCH_FIELDS if rec.get(f) in (None, "")]
        item_id = f"{path.stem}:{rec.get('_id') or n}"
        if missing:
            why = (
                f"{where}: no {', '.join(repr(m) for m in missing)}; LongBench v2 records need "
                f"all of {', '.join(LONGBENCH_FIELDS)}"
            )
            items.append(EvalItem(item_id, _text(rec.get("question")), "", "", "", error=why))
            continue
        letters = [x for x in "ABCDEFGHIJ" if f"choice_{x}" in rec]
        row = {
            "question": rec["question"],
            "options": {x: rec[f"choice_{x}"] for x in letters},
            "answer": rec["answer"],
            "context": rec["context"],
            "task": rec.get("domain") or "",
            "kind": rec.get("length") or "",
            **{
                k: v
                for k, v in rec.items()
                if k not in (*LONGBENCH_FIELDS, "domain", "length") and not k.startswith("choice_")
            },
            **({"length": rec["length"]} if rec.get("length") else {}),
        }
        items.append(record_item(row, where, item_id, path.parent))
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
    if spec.suffix.lower() == ".json":
        return load_longbench(spec, limit=limit)
    raise ValueError(
        f"cannot read dataset '{spec}': give a LaRA directory (with query/ and 32k/), a .jsonl file "
        'with {"doc" or "context", "question", "answer"} per line, or a LongBench-v2-style .json list'
    )
