"""``longqa eval``: RAG vs long context vs routed on a dataset, one command, a report with plots.

Plugged into the ``longqa`` command through the ``longqa.commands`` entry-point group
(app/ must not import eval/).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from app.terminal.text import line, shown_name
from eval.datasets import load_dataset
from eval.lara import KINDS, TASKS
from eval.metrics import compute
from eval.report import PLOTS_NEED, write_report
from eval.runner import MODES, RESULTS, ResultStore, RunOptions
from eval.terminal import console, fail, run_with_progress, settings_for
from pipeline.errors import import_extra

app = typer.Typer(add_completion=False, help="Compare RAG, long context and the router on a dataset.")


def _split(value: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    parts = tuple(p.strip() for p in value.split(",") if p.strip())
    bad = [p for p in parts if p not in allowed]
    if bad or not parts:
        fail(
            f"unknown {what} {', '.join(bad) or '(none)'}; use a comma-separated list of {', '.join(allowed)}"
        )
    return parts


def _check_run(out: Path, config: dict) -> None:
    """Refuse to mix results of another model or dataset into an output folder."""
    path = out / "run.json"
    if path.is_file():
        before = json.loads(path.read_text(encoding="utf-8"))
        for key in ("dataset", "backend", "model"):
            if before.get(key) != config.get(key):
                fail(
                    f"'{out}' holds results for {key} '{before.get(key)}', not '{config.get(key)}'; "
                    "use another --out, or delete that folder to start over"
                )
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")


@app.command()
def eval_command(
    dataset: Annotated[Path, typer.Argument(help="A LaRA directory (query/ and 32k/) or a .jsonl file.")],
    modes: Annotated[str, typer.Option(help="Comma-separated: rag, lc, auto.")] = "rag,lc,auto",
    limit: Annotated[
        int | None, typer.Option(help="At most N questions, taking turns over task types.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default: <data dir>/reports/<dataset>).")
    ] = None,
    backend: Annotated[
        str | None, typer.Option(help="llamacpp (embedded) or openai (any compatible server).")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Generator: catalog name, .gguf path or served model.")
    ] = None,
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible server URL.")] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Seconds before a backend request is given up.")
    ] = None,
    judge: Annotated[
        str, typer.Option(help="deterministic, llm or both (LLM judge: the answering model).")
    ] = "deterministic",
    judge_model: Annotated[
        str | None, typer.Option(help="Catalog name or .gguf path of the LLM judge.")
    ] = None,
    kinds: Annotated[str, typer.Option(help="LaRA document kinds.")] = ",".join(KINDS),
    tasks: Annotated[str, typer.Option(help="LaRA task types.")] = ",".join(TASKS),
    docs: Annotated[
        str | None,
        typer.Option(help="LaRA: only documents whose file name contains one of these (comma-separated)."),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Library for the documents (default: <out>/library).")
    ] = None,
    report_only: Annotated[
        bool, typer.Option("--report-only", help="Only rebuild the report from results.")
    ] = False,
    recall: Annotated[
        bool, typer.Option(help="Measure retrieval recall where gold evidence is locatable.")
    ] = True,
) -> None:
    """Run every question in every mode, judge the answers and write report.md/.html with plots.

    Results are stored as they come (results.jsonl in the output folder); rerun the same
    command to resume.
    """
    import_extra("matplotlib", "eval", PLOTS_NEED)  # before any work: the report draws plots
    mode_list = _split(modes, MODES, "modes")
    judge_kind = _split(judge, ("deterministic", "llm", "both"), "judge")[0]
    home = Path(os.environ.get("LONGQA_HOME", ".longqa"))
    out = out or home / "reports" / (dataset.stem or "eval")
    store = ResultStore(out / RESULTS)
    if report_only:
        if not store.rows:
            fail(f"no results in '{out / RESULTS}' yet; run without --report-only first")
        _report(store, out, {})
        return
    try:
        items = load_dataset(
            dataset,
            limit=limit,
            kinds=_split(kinds, KINDS, "kinds"),
            tasks=_split(tasks, TASKS, "tasks"),
            docs=tuple(d.strip() for d in (docs or "").split(",") if d.strip()),
        )
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    settings = settings_for(data_dir or out / "library", backend, model, base_url, timeout)
    config = {
        "dataset": str(dataset.resolve()),
        "backend": settings.llm.backend,
        "model": settings.llm.model,
        "modes": ",".join(mode_list),
        "questions": len(items),
        "judge": judge_kind,
        "embedding": settings.embedding.model,
        "retrieval": f"{settings.retrieval.method} top-{settings.retrieval.top_k}",
    }
    _check_run(out, config)

    from app.service import QAService

    svc = QAService(settings)
    llm_judge = None
    if judge_kind in ("llm", "both"):
        from app.factories import build_generator
        from eval.judge import LLMJudge

        if judge_model:
            js = settings.model_copy(deep=True)
            js.llm.model = judge_model
            llm_judge = LLMJudge(build_generator(js))
        else:
            llm_judge = LLMJudge(svc.generator)
    summary = run_with_progress(
        svc, items, store, RunOptions(modes=mode_list, retrieval_recall=recall), llm_judge=llm_judge
    )
    console.print(
        f"{summary.answered} answered, {summary.skipped} already done, {summary.errors} errors "
        f"in {summary.seconds:.0f} s",
        highlight=False,
    )
    _report(store, out, config)


def _report(store: ResultStore, out: Path, config: dict) -> None:
    if not config and (out / "run.json").is_file():
        config = json.loads((out / "run.json").read_text(encoding="utf-8"))
    rows = store.all()
    md = write_report(
        compute(rows),
        rows,
        out,
        title=f"longqa eval: {Path(str(config.get('dataset', out))).name}",
        config=config,
    )
    console.print(line(f"report: {shown_name(md)} (and report.html, plots, summary.json)"), highlight=False)
