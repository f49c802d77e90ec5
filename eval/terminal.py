"""What the eval-layer commands (``longqa eval``, ``longqa calibrate``) share on the terminal: the
error line and a run of the harness under a progress bar with a time estimate."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from app.terminal.text import line, shown_name
from eval.datasets import EvalItem
from eval.judge import Judge
from eval.runner import ResultStore, RunOptions, RunSummary, run_eval

console = Console(stderr=True, soft_wrap=True)


def fail(msg: str, code: int = 2) -> None:
    """One line on stderr, then exit: the reason and the fix, never a traceback."""
    console.print(line(("error:", "red"), " ", shown_name(msg)), highlight=False)
    raise typer.Exit(code)


def run_with_progress(
    svc,  # type: ignore[no-untyped-def]  # app.service.QAService
    items: Sequence[EvalItem],
    store: ResultStore,
    options: RunOptions,
    *,
    label: str = "eval",
    llm_judge: Judge | None = None,
    budget_s: float | None = None,
) -> RunSummary:
    """``run_eval`` with a progress bar (done/total, elapsed, ETA); Ctrl-C ends it with a line
    saying that a rerun goes on. Closes ``svc``."""
    columns = (
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    try:
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task(label, total=None)

            def progress(done: int, total: int, what: str) -> None:
                bar.update(task, total=total, completed=done, description=shown_name(what)[:48])

            return run_eval(
                svc, items, store, options, llm_judge=llm_judge, progress=progress, budget_s=budget_s
            )
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]: rerun the same command to continue", highlight=False)
        raise typer.Exit(130) from None
    finally:
        svc.close()


def settings_for(
    data_dir: Path, backend: str | None, model: str | None, base_url: str | None, timeout: float | None
):  # type: ignore[no-untyped-def]
    """Settings for a run's own library, with the command line's backend choices applied."""
    from app.settings import Settings

    s = Settings(data_dir=data_dir)
    if backend:
        s.llm.backend = backend  # type: ignore[assignment]
    if model:
        s.llm.model = model
    if base_url:
        s.llm.base_url = base_url
    if timeout:
        s.llm.timeout_s = timeout
    return s
