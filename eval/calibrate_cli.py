"""``longqa calibrate``: measure the configured model in RAG and long-context mode and write the
router profile it then uses (``eval.calibrate``; docs/router.md, "Calibrating your model").

Plugged into the ``longqa`` command through the ``longqa.commands`` entry-point group.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated

import typer

from app.terminal.text import line, shown_name
from eval.calibrate import calibrated_profile, cut_items, describe, measurements, pairs
from eval.datasets import load_dataset
from eval.lara import KINDS, TASKS
from eval.runner import RESULTS, ResultStore, RunOptions
from eval.terminal import console, fail, run_with_progress, settings_for

app = typer.Typer(add_completion=False, help="Measure the configured model for the router.")
DEFAULT_LARA = Path("../shared/data/lara")


def parse_lengths(spec: str | None) -> tuple[int, ...]:
    """'4000,8k' -> (4000, 8000); one clear line for anything else."""
    out = []
    for part in (spec or "").split(","):
        part = part.strip().lower()
        if not part:
            continue
        try:
            n = int(float(part[:-1]) * 1000) if part.endswith("k") else int(part)
        except ValueError:
            n = 0
        if n < 500:
            fail(f"--lengths: '{part}' is not a length in tokens of at least 500 (e.g. --lengths 4000,8000)")
        out.append(n)
    return tuple(out)


@app.command()
def calibrate(
    dataset: Annotated[
        Path | None,
        typer.Argument(
            help="A LaRA directory (query/ and 32k/) or a .jsonl file of your own documents and "
            "questions (as for longqa eval). Default: ../shared/data/lara."
        ),
    ] = None,
    limit: Annotated[int, typer.Option(help="At most N questions, taking turns over task types.")] = 40,
    budget_minutes: Annotated[
        float | None,
        typer.Option(help="Start no answer that would end past this many minutes (rerun to go on)."),
    ] = None,
    docs: Annotated[
        str | None,
        typer.Option(help="LaRA: only documents whose file name contains one of these (comma-separated)."),
    ] = None,
    lengths: Annotated[
        str | None,
        typer.Option(
            help="Cut each text document to these lengths in tokens, taking turns (e.g. 4000,8000): "
            "the window where the question's words are. Shorter documents answer faster; several "
            "lengths give the profile its shape. Default: the documents whole."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Work folder: answers (resumable) and the calibration library "
            "(default: <data dir>/calibration)."
        ),
    ] = None,
    backend: Annotated[str | None, typer.Option(help="llamacpp (embedded) or openai.")] = None,
    model: Annotated[str | None, typer.Option(help="Catalog name, .gguf path or served model.")] = None,
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible server URL.")] = None,
) -> None:
    """Answer a calibration set in RAG and long-context mode with the configured model, judge both,
    and write the model's router profile (<data dir>/router_profile.json). Resumable: rerun the
    same command to go on where it stopped."""
    from app.routing.profiles import CALIBRATED_FILE, save_calibrated
    from app.routing.router import class_prior
    from app.settings import Settings

    base = Settings()  # the user's library: the profile goes there, the documents do not
    home = Path(base.data_dir)
    work = out or home / "calibration"
    spec = dataset or DEFAULT_LARA
    try:
        items = load_dataset(
            spec,
            limit=limit,
            kinds=KINDS,
            tasks=TASKS,
            docs=tuple(d.strip() for d in (docs or "").split(",") if d.strip()),
        )
    except (FileNotFoundError, ValueError) as exc:
        fail(f"{exc} (give a LaRA directory or a .jsonl file as the first argument)")
    cut = parse_lengths(lengths)
    items = cut_items(items, cut)
    settings = settings_for(work / "library", backend, model, base_url, None)
    run = {
        "dataset": str(spec.resolve()),
        "backend": settings.llm.backend,
        "model": settings.llm.model,
        "lengths": list(cut),
    }
    meta = work / "run.json"
    if meta.is_file():
        before = json.loads(meta.read_text(encoding="utf-8"))
        if any(before.get(k, [] if k == "lengths" else None) != v for k, v in run.items()):
            fail(
                f"'{work}' holds a calibration of {before.get('model')} on {before.get('dataset')} "
                f"(lengths {before.get('lengths') or 'whole'}); "
                "use --out for another folder, or delete it to start over"
            )
    work.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps(run, indent=1) + "\n", encoding="utf-8")

    from app.service import QAService

    svc = QAService(settings)
    store = ResultStore(work / RESULTS)
    name = svc.generator.name
    params_b = svc.router_profile().params_b
    summary = run_with_progress(
        svc,
        items,
        store,
        RunOptions(modes=("rag", "lc"), retrieval_recall=False),
        label="calibrating",
        budget_s=None if budget_minutes is None else budget_minutes * 60,
    )
    for note in summary.notes:
        console.print(line(("note:", "yellow"), " ", note), highlight=False)
    ps = pairs(store.all())
    if not ps:
        fail(
            "no question was answered and judged in both modes yet; rerun with a larger "
            "--budget-minutes, or see the errors in " + str(work / RESULTS)
        )
    prior = class_prior(params_b)
    measured_at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    profile = calibrated_profile(
        name, params_b, measurements(ps), prior, measured_at, pooled=class_prior(None)
    )
    target = home / CALIBRATED_FILE
    save_calibrated(
        target,
        profile,
        {"questions": len(ps), "dataset": run["dataset"], "answers": str(work / RESULTS)},
    )
    console.print(
        f"{summary.answered} answered, {summary.skipped} already done, {summary.errors} errors "
        f"in {summary.seconds:.0f} s",
        highlight=False,
    )
    for text in describe(profile, ps):
        console.print(line(shown_name(text)), highlight=False)
    console.print(
        line(f"router profile for {shown_name(name)} written to {shown_name(str(target))}"), highlight=False
    )


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    app()
