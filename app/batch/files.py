"""Batch files: reading question files (CSV, TSV, JSONL, JSON, plain text) and writing result
tables (CSV, JSONL, Parquet).

A problem with the whole file (it does not exist, a CSV without a question column) raises
``QuestionFileError`` with a one-line message. A problem with one row (invalid JSON, bytes that
are not UTF-8, an empty question) becomes a row with ``error`` set, so the rest of the run goes
on and the output table says what was wrong and where.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import LongqaError
from pipeline.types import MODES

QUESTION_KEYS = ("question", "query", "q")
DOC_KEYS = ("doc", "document", "file", "doc_id", "source")
MODE_KEYS = ("mode",)
ID_KEYS = ("id", "qid", "question_id")
OUTPUT_SUFFIXES = (".csv", ".jsonl", ".parquet")

_BAD_BYTES = re.compile("[\udc80-\udcff]")


class QuestionFileError(LongqaError, ValueError):
    """The questions file as a whole cannot be used: ``reason`` names the file, ``fix`` what to do."""


@dataclass(frozen=True)
class QuestionRow:
    """One question from the file. ``line`` is where it starts (1-based); ``doc`` is empty when
    the question applies to every document; ``error`` is set when the row cannot be asked."""

    line: int
    question: str
    doc: str = ""
    mode: str = ""
    row_id: str = ""
    extra: tuple[tuple[str, str], ...] = ()
    error: str = ""


@dataclass(frozen=True)
class QuestionFile:
    path: str
    rows: tuple[QuestionRow, ...]
    notes: tuple[str, ...] = ()  # one-line messages: skipped empty lines, ignored fields


def _decode(path: Path, data: bytes) -> str:
    """Text of the file; bytes that are not UTF-8 survive as lone surrogates, flagged per row."""
    if data.startswith(codecs.BOM_UTF8):
        return data[len(codecs.BOM_UTF8) :].decode("utf-8", errors="surrogateescape")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise QuestionFileError(f"'{path}' starts like UTF-16 but is not valid UTF-16 ({exc})") from exc
    if b"\x00" in data[:4096]:
        raise QuestionFileError(
            f"'{path}' looks binary (it holds NUL bytes)", "give a CSV, JSONL or plain text file in UTF-8"
        )
    return data.decode("utf-8", errors="surrogateescape")


def _utf8_error(line: int, *values: str) -> str:
    for v in values:
        m = _BAD_BYTES.search(v)
        if m:
            byte = ord(m.group()) - 0xDC00
            return (
                f"line {line} is not valid UTF-8 (byte 0x{byte:02x} at character {m.start() + 1}); "
                "save the questions file as UTF-8"
            )
    return ""


def _clean(value: str) -> str:
    return _BAD_BYTES.sub("\ufffd", value)


def _pick(fields: dict[str, str], keys: Sequence[str]) -> tuple[str | None, str]:
    """The first of ``keys`` present (case-insensitive): (its original name, its value)."""
    lower = {k.strip().lower(): k for k in fields}
    for k in keys:
        if k in lower:
            name = lower[k]
            return name, fields[name]
    return None, ""


def _row(line: int, fields: dict[str, str]) -> QuestionRow:
    """A row from named fields (CSV row or JSON object), with per-row problems as ``error``."""
    qname, question = _pick(fields, QUESTION_KEYS)
    dname, doc = _pick(fields, DOC_KEYS)
    mname, mode = _pick(fields, MODE_KEYS)
    iname, row_id = _pick(fields, ID_KEYS)
    used = {qname, dname, mname, iname}
    extra = tuple((k, _clean(v)) for k, v in fields.items() if k not in used and k)
    question, doc, mode, row_id = question.strip(), doc.strip(), mode.strip().lower(), row_id.strip()
    error = _utf8_error(line, question, doc, mode, row_id)
    if not error and qname is None:
        names = ", ".join(fields) or "none"
        error = f"line {line} has no question field (fields: {names}); name it 'question'"
    elif not error and not question:
        error = f"line {line}: the question is empty"
    elif not error and mode and mode not in MODES:
        error = f"line {line}: unknown mode '{mode}'; use auto, rag or lc (or leave it empty)"
    return QuestionRow(line, _clean(question), _clean(doc), mode, _clean(row_id), extra, error)


def _scalar(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    return json.dumps(v, ensure_ascii=False)


def _read_delimited(path: Path, text: str, delimiter: str) -> QuestionFile:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(reader, [])
    if not any(h.strip() for h in header):
        raise QuestionFileError(f"'{path}' is empty", "put a header row with a 'question' column first")
    if _pick(dict.fromkeys(header, ""), QUESTION_KEYS)[0] is None:
        raise QuestionFileError(
            f"'{path}' has no question column (columns: {', '.join(h.strip() for h in header)})",
            "name the column that holds the questions 'question'",
        )
    rows: list[QuestionRow] = []
    empty: list[int] = []
    long_rows: list[int] = []
    for cells in reader:
        line = reader.line_num  # the line the record ends on; records rarely span lines
        if len(cells) > len(header) and any(c.strip() for c in cells[len(header) :]):
            long_rows.append(line)
        fields = {h: (cells[i] if i < len(cells) else "") for i, h in enumerate(header)}
        if not any(v.strip() for v in fields.values()):
            empty.append(line)
            continue
        rows.append(_row(line, fields))
    notes = []
    if empty:
        notes.append(f"skipped {len(empty)} empty row(s) at line(s) {_lines(empty)}")
    if long_rows:
        notes.append(f"ignored extra cells beyond the header at line(s) {_lines(long_rows)}")
    return QuestionFile(str(path), tuple(rows), tuple(notes))


def _read_jsonl(path: Path, text: str) -> QuestionFile:
    rows: list[QuestionRow] = []
    empty: list[int] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            empty.append(n)
            continue
        bad = _utf8_error(n, raw)
        if bad:
            rows.append(QuestionRow(n, _clean(raw.strip())[:200], error=bad))
            continue
        rows.append(_json_row(n, raw))
    notes = (f"skipped {len(empty)} empty line(s): {_lines(empty)}",) if empty else ()
    return QuestionFile(str(path), tuple(rows), notes)


def _json_row(n: int, raw: str) -> QuestionRow:
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        return QuestionRow(n, raw.strip()[:200], error=f"line {n} is not valid JSON ({exc.msg})")
    return _json_value_row(n, obj)


def _json_value_row(n: int, obj: Any) -> QuestionRow:
    if isinstance(obj, str):
        return _row(n, {"question": obj})
    if not isinstance(obj, dict):
        return QuestionRow(
            n, _scalar(obj)[:200], error=f"line {n} is a JSON {type(obj).__name__}, not an object"
        )
    return _row(n, {str(k): _scalar(v) for k, v in obj.items()})


def _read_json(path: Path, text: str) -> QuestionFile:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise QuestionFileError(
            f"'{path}' is not valid JSON ({exc.msg} at line {exc.lineno})", "give a JSON list, or JSONL"
        ) from exc
    if not isinstance(data, list):
        raise QuestionFileError(f"'{path}' holds a JSON {type(data).__name__}", "give a list of questions")
    return QuestionFile(str(path), tuple(_json_value_row(i, v) for i, v in enumerate(data, start=1)))


def _read_text(path: Path, text: str) -> QuestionFile:
    rows: list[QuestionRow] = []
    empty: list[int] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        q = raw.strip()
        if not q:
            empty.append(n)
            continue
        bad = _utf8_error(n, q)
        rows.append(QuestionRow(n, _clean(q), error=bad))
    notes = (f"skipped {len(empty)} empty line(s): {_lines(empty)}",) if empty else ()
    return QuestionFile(str(path), tuple(rows), notes)


def _lines(numbers: Sequence[int], most: int = 8) -> str:
    shown = ", ".join(str(n) for n in numbers[:most])
    return shown + (f" and {len(numbers) - most} more" if len(numbers) > most else "")


def read_questions(path: str | Path) -> QuestionFile:
    """Questions from CSV/TSV (a header with a 'question' column; optional doc, mode and id
    columns), JSONL or a JSON list (objects with the same fields, or plain strings), or any
    other file as plain text, one question a line. Other columns pass through to the output."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError as exc:
        raise QuestionFileError(f"questions file '{p}' does not exist") from exc
    except IsADirectoryError as exc:
        raise QuestionFileError(
            f"questions file '{p}' is a folder", "give a CSV, JSONL or text file"
        ) from exc
    except OSError as exc:
        raise QuestionFileError(f"cannot read questions file '{p}': {exc.strerror}") from exc
    text = _decode(p, data)
    suffix = p.suffix.lower()
    if suffix == ".csv":
        qf = _read_delimited(p, text, ",")
    elif suffix == ".tsv":
        qf = _read_delimited(p, text, "\t")
    elif suffix in (".jsonl", ".ndjson"):
        qf = _read_jsonl(p, text)
    elif suffix == ".json":
        qf = _read_json(p, text)
    else:
        qf = _read_text(p, text)
    if not qf.rows:
        raise QuestionFileError(f"'{p}' holds no questions")
    return qf


# -- output ----------------------------------------------------------------------------------------


def check_output_path(path: str | Path) -> Path:
    """The output path, or a clear error for an unknown suffix or a missing Parquet engine."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise QuestionFileError(
            f"cannot write '{p}': unknown output type '{suffix or '(no suffix)'}'",
            f"end the name with {', '.join(OUTPUT_SUFFIXES)}",
        )
    if suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError as exc:
            raise QuestionFileError(
                f"cannot write '{p}': Parquet needs pyarrow", "pip install pyarrow, or use .csv or .jsonl"
            ) from exc
    if p.parent and not p.parent.exists():
        raise QuestionFileError(f"cannot write '{p}': the folder '{p.parent}' does not exist")
    return p


def write_table(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """Write rows atomically (temp file, then rename): a reader never sees half a table.
    ``citations`` is a list of objects in JSONL and Parquet, JSON text in CSV."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            with open(tmp, "w", encoding="utf-8", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
                w.writeheader()
                for r in rows:
                    w.writerow({k: _csv_cell(r.get(k)) for k in columns})
        elif suffix == ".jsonl":
            with open(tmp, "w", encoding="utf-8") as fh:
                for r in rows:
                    fh.write(json.dumps({k: r.get(k) for k in columns}, ensure_ascii=False) + "\n")
        elif suffix == ".parquet":
            _write_parquet(tmp, rows, columns)
        else:
            raise QuestionFileError(f"unknown output type '{suffix}'")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _csv_cell(v: Any) -> Any:
    if isinstance(v, list | dict):
        return json.dumps(v, ensure_ascii=False)
    return "" if v is None else v


def _write_parquet(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    # The citation shape of app/answer_json.py; rows journaled before it had no number, source,
    # span, support, origin, verdict, reason, claim or model_check (null here).
    citation = pa.struct(
        [
            ("number", pa.int32()),
            ("n", pa.int32()),
            ("doc_id", pa.string()),
            ("source", pa.string()),
            ("doc", pa.string()),
            ("where", pa.string()),
            ("pages", pa.list_(pa.int32())),
            ("time", pa.list_(pa.float64())),
            ("span", pa.list_(pa.int64())),
            ("quote", pa.string()),
            ("verified", pa.bool_()),
            ("support", pa.float64()),
            ("origin", pa.string()),
            ("verdict", pa.string()),
            ("reason", pa.string()),
            ("claim", pa.string()),
            ("model_check", pa.string()),
        ]
    )
    ints = {"row", "line", "tokens", "prompt_tokens", "completion_tokens", "cached_tokens"}
    fields = []
    for c in columns:
        if c == "citations":
            fields.append(pa.field(c, pa.list_(citation)))
        elif c in ints:
            fields.append(pa.field(c, pa.int64()))
        elif c == "seconds":
            fields.append(pa.field(c, pa.float64()))
        else:
            fields.append(pa.field(c, pa.string()))
    data = {
        c: [
            (r.get(c) if c in ints or c in ("citations", "seconds") else _str_or_none(r.get(c))) for r in rows
        ]
        for c in columns
    }
    pq.write_table(pa.table(data, schema=pa.schema(fields)), path)


def _str_or_none(v: Any) -> str | None:
    return None if v is None else str(v)


def read_table(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a table written by ``write_table`` (for tests and for joining results)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".csv":
        with open(p, encoding="utf-8", newline="") as fh:
            return [dict(r) for r in csv.DictReader(fh)]
    if suffix == ".jsonl":
        return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(p).to_pylist()
    raise QuestionFileError(f"unknown table type '{suffix}'")
