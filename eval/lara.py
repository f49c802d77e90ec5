"""The LaRA benchmark on disk: questions, published predictions of 13 models, the paper's table.

Layout (``../shared/data/lara``)::

    32k/{book,financial,paper}/<file>
    query/32k_<kind>_<task>.jsonl
    predictions-32k/<model>/{full,rag}_preds_<name>_32k_<kind>_<task>.jsonl
    paper_table_32k.csv

Prediction files list the questions in the same order as the query files, so a
question is identified by ``(kind, task, line)``.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

KINDS = ("book", "financial", "paper")
TASKS = ("location", "reasoning", "comp", "hallu")
# Column names of the paper's table for our task names.
PAPER_COLUMNS = {
    "location": "location",
    "reasoning": "reasoning",
    "comp": "comparison",
    "hallu": "hallucination",
}
# Prediction files say "full" for the long-context mode.
MODE_FILES = {"lc": "full", "rag": "rag"}


@dataclass(frozen=True)
class Question:
    qid: str  # "<kind>/<task>/<line>"
    kind: str
    task: str
    file: str  # document file name under 32k/<kind>/
    question: str
    answer: str
    comp_parts: tuple[int, ...] = ()
    context: str = ""  # the part of the document the question was written from, when given

    @property
    def doc_key(self) -> str:
        return f"{self.kind}/{self.file}"


@dataclass(frozen=True)
class PublishedAnswer:
    model: str  # prediction directory name
    mode: str  # "lc" or "rag"
    qid: str
    prediction: str


@dataclass(frozen=True)
class PaperRow:
    model: str
    prediction_dir: str
    mode: str
    accuracy: dict[str, float]  # task -> accuracy in %, tasks as in TASKS
    overall: float


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"'{path}' line {n} is not valid JSON: {exc.msg}") from exc
    return rows


def check_root(root: Path) -> Path:
    root = Path(root)
    if not (root / "query").is_dir():
        raise FileNotFoundError(
            f"'{root}' is not a LaRA directory: it has no 'query/' folder "
            "(expected the layout of ../shared/data/lara)"
        )
    return root


def load_questions(
    root: Path, kinds: tuple[str, ...] = KINDS, tasks: tuple[str, ...] = TASKS, *, split: str = "32k"
) -> list[Question]:
    """All questions of a split ("32k"; "128k" in the unpacked lara-128k archive), in file
    order (kind, then task, then line)."""
    root = check_root(root)
    out: list[Question] = []
    for kind in kinds:
        for task in tasks:
            path = root / "query" / f"{split}_{kind}_{task}.jsonl"
            if not path.is_file():
                raise FileNotFoundError(f"LaRA question file '{path}' is missing")
            for i, r in enumerate(_read_jsonl(path)):
                out.append(
                    Question(
                        qid=f"{kind}/{task}/{i}",
                        kind=kind,
                        task=task,
                        file=str(r.get("file", "")),
                        question=str(r.get("question", "")),
                        answer=str(r.get("answer", "")),
                        comp_parts=tuple(r.get("comp_parts") or ()),
                        context=str(r.get("context", "")),
                    )
                )
    return out


def document_path(root: Path, q: Question, split: str = "32k") -> Path:
    return Path(root) / split / q.kind / q.file


def prediction_models(root: Path, split: str = "32k") -> list[str]:
    pred = Path(root) / f"predictions-{split}"
    if not pred.is_dir():
        raise FileNotFoundError(f"no published predictions under '{pred}'")
    return sorted(p.name for p in pred.iterdir() if p.is_dir())


def load_predictions(
    root: Path,
    models: list[str] | None = None,
    questions: list[Question] | None = None,
    *,
    split: str = "32k",
    partial: bool = False,
    missing_ok: bool = False,
) -> dict[tuple[str, str, str], PublishedAnswer]:
    """Published answers keyed by (model, mode, qid); checks they line up with the questions.

    ``partial``: a prediction file with fewer rows than questions (LaRA 128k has one) is
    matched by question text, and questions without an answer are left out. ``missing_ok``:
    the same matching, but a question without an answer gets an empty one (judged wrong, as
    LaRA counts it)."""
    root = check_root(root)
    questions = questions if questions is not None else load_questions(root, split=split)
    by_file: dict[tuple[str, str], list[Question]] = {}
    for q in questions:
        by_file.setdefault((q.kind, q.task), []).append(q)
    out: dict[tuple[str, str, str], PublishedAnswer] = {}
    for model in models or prediction_models(root, split):
        folder = root / f"predictions-{split}" / model
        for mode, prefix in MODE_FILES.items():
            for (kind, task), qs in by_file.items():
                found = sorted(folder.glob(f"{prefix}_preds_*_{split}_{kind}_{task}.jsonl"))
                if not found:
                    raise FileNotFoundError(f"no {prefix} predictions for {kind}/{task} in '{folder}'")
                rows = _read_jsonl(found[0])
                lines = {q.qid: int(q.qid.rsplit("/", 1)[1]) for q in qs}
                if partial and len(rows) != len(qs):
                    by_text = {str(r.get("question")): r for r in rows}
                    for q in qs:
                        if q.question in by_text:
                            pred = str(by_text[q.question].get("prediction") or "")
                            out[(model, mode, q.qid)] = PublishedAnswer(model, mode, q.qid, pred)
                    continue
                by_text = {str(r.get("question")): r for r in rows} if missing_ok else {}
                for q in qs:
                    i = lines[q.qid]
                    if i < len(rows) and rows[i].get("question") == q.question:
                        row = rows[i]
                    elif missing_ok:
                        row = by_text.get(q.question, {})
                    else:
                        raise ValueError(f"'{found[0]}' line {i + 1} does not match question {q.qid}")
                    out[(model, mode, q.qid)] = PublishedAnswer(
                        model, mode, q.qid, str(row.get("prediction") or "")
                    )
    return out


def load_paper_table(path: Path) -> list[PaperRow]:
    """The paper's judged accuracy per model, mode and task (comment lines start with '#')."""
    path = Path(path)
    with path.open(encoding="utf-8") as fh:
        lines = [line for line in fh if not line.startswith("#")]
    out = []
    for r in csv.DictReader(lines):
        out.append(
            PaperRow(
                model=r["model"],
                prediction_dir=r["prediction_dir"],
                mode=r["mode"],
                accuracy={t: float(r[PAPER_COLUMNS[t]]) for t in TASKS},
                overall=float(r["overall"]),
            )
        )
    if not out:
        raise ValueError(f"'{path}' holds no rows")
    return out


def per_task_oracle(rows: list[PaperRow]) -> dict[str, dict[str, str]]:
    """For each prediction directory: the better mode per task according to the paper."""
    by: dict[str, dict[str, PaperRow]] = {}
    for r in rows:
        by.setdefault(r.prediction_dir, {})[r.mode] = r
    out: dict[str, dict[str, str]] = {}
    for model, modes in by.items():
        if set(modes) >= {"lc", "rag"}:
            out[model] = {
                t: ("lc" if modes["lc"].accuracy[t] >= modes["rag"].accuracy[t] else "rag") for t in TASKS
            }
    return out
