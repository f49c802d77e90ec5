"""The batch command's terminal progress bar: throughput and ETA on stderr."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.batch.run import BatchProgress
from app.ingest import Progress as IngestProgress
from app.locations import fmt_time
from app.terminal.text import shown_name


class RichProgress:
    """A progress bar with throughput and ETA on stderr, for the CLI."""

    def __init__(self, console: Any) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self._bar = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}", markup=False),
            TextColumn("{task.fields[eta]}", markup=False),
            # File names and questions: plain text, one line (app.terminal.text).
            TextColumn("{task.fields[current]}", markup=False, style="dim"),
            console=console,
            transient=True,
        )
        self._task = self._bar.add_task("answering", total=None, rate="", eta="", current="")

    def __enter__(self) -> RichProgress:
        self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.__exit__(None, None, None)

    def ingest(self, ev: IngestProgress) -> None:
        self._bar.update(
            self._task,
            description="ingesting",
            total=ev.files_total,
            completed=ev.files_done,
            rate="",
            eta="",
            current=shown_name(Path(ev.path).name)[:50],
        )

    def __call__(self, p: BatchProgress) -> None:
        eta = f"ETA {fmt_time(p.eta_s)}" if p.eta_s is not None else ""
        fails = f", {p.failed} failed" if p.failed else ""
        self._bar.update(
            self._task,
            description="answering",
            total=p.total,
            completed=p.done,
            rate=f"{p.per_minute:.1f} q/min{fails}",
            eta=eta,
            current=shown_name(p.current)[:50],
        )
