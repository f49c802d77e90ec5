"""The eval report: report.md, a self-contained report.html, PNG plots and summary.json.

The app's Eval tab shows the folder as it is (markdown, images, tables).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from dataclasses import asdict
from html import escape
from pathlib import Path

from eval.metrics import ORACLE_LABELS, CellMetrics, Metrics
from eval.runner import ResultRow
from pipeline.errors import import_extra

# What the eval extra is for, in the one-line error when it is missing.
PLOTS_NEED = "'longqa eval' (its report's plots)"

PLOTS = {
    "accuracy_by_task.png": "Accuracy by task type and mode",
    "accuracy_by_length.png": "Accuracy by document length and mode",
    "accuracy_vs_tokens.png": "Accuracy vs prompt tokens",
    "latency.png": "Latency distribution",
    "routing_confusion.png": "Routing decisions vs the oracle",
}
MODE_COLORS = {"rag": "#4C72B0", "lc": "#DD8452", "auto": "#55A868"}


def _cites(c: CellMetrics) -> str:
    """Shown citations verified, before the re-check when recorded, and how many there were."""
    first = "" if c.citation_verified_first is None else f" ({_fmt(c.citation_verified_first, '%')})"
    return f"{_fmt(c.citation_verified, '%')}{first} of {c.citations}"


def _fmt(v: float | None, unit: str = "", digits: int = 1) -> str:
    return "–" if v is None else f"{v:,.{digits}f}{unit}"


def plot(metrics: Metrics, rows: Sequence[ResultRow], out: Path) -> list[str]:
    """Write the plots that the data supports; returns their file names."""
    import_extra("matplotlib", "eval", PLOTS_NEED).use("Agg")
    import matplotlib.pyplot as plt

    made = []
    modes, tasks = list(metrics.modes), list(metrics.tasks)

    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.8 / max(len(modes), 1)
    for i, m in enumerate(modes):
        cells = [metrics.cell(m, t) for t in tasks + ["all"]]
        ys = [(c.accuracy or 0.0) if c is not None else 0.0 for c in cells]
        xs = [j + i * width for j in range(len(tasks) + 1)]
        ax.bar(xs, ys, width, label=m, color=MODE_COLORS.get(m))
    ax.set_xticks([j + width * (len(modes) - 1) / 2 for j in range(len(tasks) + 1)], tasks + ["all"])
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(frameon=False)
    ax.set_title(PLOTS["accuracy_by_task.png"])
    fig.tight_layout()
    fig.savefig(out / "accuracy_by_task.png", dpi=110)
    plt.close(fig)
    made.append("accuracy_by_task.png")

    if metrics.buckets:
        buckets = list(metrics.buckets)
        fig, ax = plt.subplots(figsize=(7, 3.6))
        for i, m in enumerate(modes):
            cells = [metrics.length_cell(m, b) for b in buckets]
            ys = [(c.accuracy or 0.0) if c is not None else 0.0 for c in cells]
            xs = [j + i * width for j in range(len(buckets))]
            ax.bar(xs, ys, width, label=m, color=MODE_COLORS.get(m))
            for x, y, c in zip(xs, ys, cells):
                if c is not None and c.n:
                    ax.text(x, y + 1, f"n={c.n}", ha="center", va="bottom", fontsize=7)
        ax.set_xticks([j + width * (len(modes) - 1) / 2 for j in range(len(buckets))], buckets)
        ax.set_xlabel("document length (tokens)")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 105)
        ax.legend(frameon=False)
        ax.set_title(PLOTS["accuracy_by_length.png"])
        fig.tight_layout()
        fig.savefig(out / "accuracy_by_length.png", dpi=110)
        plt.close(fig)
        made.append("accuracy_by_length.png")

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for m in modes:
        for t in tasks:
            c = metrics.cell(m, t)
            if c and c.accuracy is not None and c.prompt_tokens is not None:
                ax.scatter(c.prompt_tokens, c.accuracy, color=MODE_COLORS.get(m), s=25, alpha=0.6)
        c = metrics.cell(m, "all")
        if c and c.accuracy is not None and c.prompt_tokens is not None:
            ax.scatter(c.prompt_tokens, c.accuracy, color=MODE_COLORS.get(m), s=110, marker="*", label=m)
    ax.set_xlabel("mean prompt tokens per question")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Accuracy vs prompt tokens (dots: task types, stars: all)")
    ax.legend(frameon=False)
    fig.tight_layout()
    fig.savefig(out / "accuracy_vs_tokens.png", dpi=110)
    plt.close(fig)
    made.append("accuracy_vs_tokens.png")

    data = [[r.seconds for r in rows if r.ok and r.mode_requested == m] for m in modes]
    if any(data):
        fig, ax = plt.subplots(figsize=(6, 3.4))
        ax.boxplot([d or [0.0] for d in data], tick_labels=modes, showfliers=True)
        ax.set_ylabel("seconds per question")
        ax.set_title(PLOTS["latency.png"])
        fig.tight_layout()
        fig.savefig(out / "latency.png", dpi=110)
        plt.close(fig)
        made.append("latency.png")

    rt = metrics.routing
    if rt is not None and rt.oracle_n:
        choices = [m for m in ("rag", "lc") if m in rt.confusion]
        grid = [[rt.confusion[m][lab] for lab in ORACLE_LABELS] for m in choices]
        fig, ax = plt.subplots(figsize=(5.5, 2.6))
        ax.imshow(grid, cmap="Greens")
        top = max((v for row in grid for v in row), default=0)
        for i, row in enumerate(grid):
            for j, v in enumerate(row):  # white on the dark cells, so every count stays readable
                ink = "white" if top and v > 0.6 * top else "black"
                ax.text(j, i, str(v), ha="center", va="center", color=ink)
        ax.set_xticks(range(len(ORACLE_LABELS)), [f"{lab} right" for lab in ORACLE_LABELS])
        ax.set_yticks(range(len(choices)), [f"router: {m}" for m in choices])
        ax.set_title("Router's choice vs which mode was right")
        fig.tight_layout()
        fig.savefig(out / "routing_confusion.png", dpi=110)
        plt.close(fig)
        made.append("routing_confusion.png")
    return made


# A shown citation the check did not verify: (item, mode, claim, reason).
Unverified = tuple[str, str, str, str]
SHOWN_UNVERIFIED = 50


# What could make a table cell's text into markup: emphasis, code, links and images, HTML,
# a cell break, and the app's Eval tab's Streamlit markers (``:red[...]``, ``$`` math).
_MARKUP = re.compile(r"([\\`*_\[\]<>|~$&])")


def _cell(text: object, limit: int = 200) -> str:
    """Text from users, documents or models as a literal table cell: one line, at most
    ``limit`` characters, every markdown and HTML marker escaped."""
    return _MARKUP.sub(r"\\\1", " ".join(str(text).split())[:limit])


def unverified_citations(rows: Sequence[ResultRow]) -> list[Unverified]:
    return [
        (r.item_id, r.mode or r.mode_requested, str(v.get("claim", "")), str(v.get("reason", "")))
        for r in rows
        for v in r.verdicts
        if not v.get("verified")
    ]


def markdown(
    metrics: Metrics,
    title: str,
    plots: Sequence[str],
    config: dict,
    unverified: Sequence[Unverified] = (),
) -> str:
    lines = [f"# {_cell(title)}", ""]
    if config:
        lines += ["| setting | value |", "|---|---|"]
        lines += [f"| {_cell(k)} | {_cell(v)} |" for k, v in config.items()]
        lines.append("")
    lines += [
        "## Per mode",
        "",
        "| mode | answered | errors | accuracy | LLM-judge accuracy | answered from whole doc | "
        "citations shown: verified (first try) of n | answers showing one / a verified one | "
        "retrieval recall (n) | prompt tokens | "
        "completion tokens | latency mean / p50 / p90 (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in metrics.modes:
        c = metrics.cell(m)
        if c is None:
            continue
        lines.append(
            f"| {m} | {c.n} | {c.errors} | {_fmt(c.accuracy, '%')} | {_fmt(c.llm_accuracy, '%')} | "
            f"{_fmt(c.lc_share, '%', 0)} | {_cites(c)} | "
            f"{_fmt(c.answers_with_citation, '%', 0)} / {_fmt(c.answers_with_verified, '%', 0)} | "
            f"{_fmt(c.retrieval_recall, '%')} ({c.recall_n}) | {_fmt(c.prompt_tokens, '', 0)} | "
            f"{_fmt(c.completion_tokens, '', 0)} | {_fmt(c.latency_mean, '', 1)} / "
            f"{_fmt(c.latency_p50, '', 1)} / "
            f"{_fmt(c.latency_p90, '', 1)} |"
        )
    lines += ["", "## Accuracy by task type (deterministic judge)", ""]
    lines.append("| task | " + " | ".join(metrics.modes) + " |")
    lines.append("|---|" + "---|" * len(metrics.modes))
    for t in metrics.tasks:
        if all((c := metrics.cell(m, t)) is None or not c.n for m in metrics.modes):
            continue  # only errors (e.g. lines without a question)
        vals = []
        for m in metrics.modes:
            c = metrics.cell(m, t)
            vals.append(f"{_fmt(c.accuracy, '%')} (n={c.n})" if c else "–")
        lines.append(f"| {t} | " + " | ".join(vals) + " |")
    if metrics.buckets:
        lines += ["", "## Accuracy by document length (tokens)", ""]
        lines.append("| length | " + " | ".join(metrics.modes) + " |")
        lines.append("|---|" + "---|" * len(metrics.modes))
        for b in metrics.buckets:
            vals = []
            for m in metrics.modes:
                c = metrics.length_cell(m, b)
                vals.append(f"{_fmt(c.accuracy, '%')} (n={c.n})" if c and c.n else "–")
            lines.append(f"| {b} | " + " | ".join(vals) + " |")
    if metrics.mc:
        lines += [
            "",
            "Multiple-choice questions are scored by exact set match of the letters read from the "
            "answer. Answers from which no option could be read: "
            + ", ".join(f"{m} {bad} of {n}" for m, (n, bad) in metrics.mc.items())
            + ".",
        ]
    rt = metrics.routing
    if rt is not None:
        lines += [
            "",
            "## Routing",
            "",
            f"{rt.n} routed answers: {rt.chose_lc} from the whole document, {rt.n - rt.chose_lc} from "
            f"retrieved passages; {rt.fallbacks} fell back to reading more after a RAG answer.",
            "",
        ]
        if rt.oracle_n:
            lines.append(
                f"On the {rt.oracle_n} items also run in both fixed modes: routed accuracy "
                f"{_fmt(rt.routed_accuracy, '%')}, oracle (best mode per question) "
                f"{_fmt(rt.oracle_accuracy, '%')}."
            )
            lines += ["", "| router chose | " + " | ".join(f"{lab} right" for lab in ORACLE_LABELS) + " |"]
            lines.append("|---|" + "---|" * len(ORACLE_LABELS))
            for m, row in rt.confusion.items():
                lines.append(f"| {m} | " + " | ".join(str(row[lab]) for lab in ORACLE_LABELS) + " |")
        lines += ["", "Most frequent reasons:", ""]
        lines += [f"- {n} × {_cell(reason, 400)}" for reason, n in list(rt.reasons.items())[:8]]
    if metrics.judges is not None:
        j = metrics.judges
        lines += [
            "",
            "## Judges",
            "",
            f"The deterministic and the LLM judge agree on {j.agree:.1%} of {j.n} answers "
            f"(Cohen's kappa {j.kappa:.2f}).",
        ]
        if metrics.judge_table:
            lines += [
                "",
                "| task | answers | agree | Cohen's kappa | deterministic: right | LLM: right | "
                "right for deterministic only | right for LLM only |",
                "|---|---|---|---|---|---|---|---|",
            ]
            for a in metrics.judge_table:
                lines.append(
                    f"| {a.task} | {a.n} | {a.agree:.1f}% | {a.kappa:.2f} | {a.deterministic:.1f}% | "
                    f"{a.llm:.1f}% | {a.det_only} | {a.llm_only} |"
                )
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{PLOTS.get(p, p)}]({p})" for p in plots]
    if unverified:
        lines += [
            "",
            f"## Citations shown unverified ({len(unverified)})",
            "",
            "What the check said about each shown citation it did not verify (`verdicts` in "
            "results.jsonl has every citation's).",
            "",
            "| item | mode | claim | why not verified |",
            "|---|---|---|---|",
        ]
        for item, mode, claim, why in unverified[:SHOWN_UNVERIFIED]:
            lines.append(f"| {_cell(item)} | {mode} | {_cell(claim)} | {_cell(why)} |")
        if len(unverified) > SHOWN_UNVERIFIED:
            lines.append(f"| … | | | {len(unverified) - SHOWN_UNVERIFIED} more in results.jsonl |")
    if metrics.errors:
        lines += ["", f"## Errors ({len(metrics.errors)})", "", "| item | mode | reason |", "|---|---|---|"]
        for item, mode, why in metrics.errors[:50]:
            lines.append(f"| {_cell(item)} | {mode} | {_cell(why)} |")
        if len(metrics.errors) > 50:
            lines.append(f"| … | | {len(metrics.errors) - 50} more in results.jsonl |")
    return "\n".join(lines) + "\n"


def html(md: str, folder: Path, title: str) -> str:
    """The markdown as a self-contained HTML page (plots inlined as data URIs)."""
    from markdown_it import MarkdownIt

    # No raw HTML: the report holds text from documents, file names and models.
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(md)

    def inline(m: re.Match[str]) -> str:
        p = folder / m.group(1)
        if not p.is_file():
            return m.group(0)
        return f'src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}"'

    body = re.sub(r'src="([^"]+\.png)"', inline, body)
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:1em 0;font-size:14px}"
        "td,th{border:1px solid #ccc;padding:4px 8px}"
        "th{background:#f3f3f3}img{max-width:100%;display:block;margin:1em 0}"
    )
    head = f'<meta charset="utf-8"><title>{escape(title)}</title><style>{style}</style>'
    return f"<!doctype html><html><head>{head}</head><body>{body}</body></html>\n"


def write_report(
    metrics: Metrics,
    rows: Sequence[ResultRow],
    out: Path,
    *,
    title: str = "longqa eval",
    config: dict | None = None,
) -> Path:
    """Write report.md, report.html, the plots and summary.json into ``out``; returns report.md."""
    out.mkdir(parents=True, exist_ok=True)
    plots = plot(metrics, rows, out) if rows else []
    md = markdown(metrics, title, plots, config or {}, unverified_citations(rows))
    (out / "report.md").write_text(md, encoding="utf-8")
    (out / "report.html").write_text(html(md, out, title), encoding="utf-8")
    (out / "summary.json").write_text(
        json.dumps(asdict(metrics), indent=1, default=str) + "\n", encoding="utf-8"
    )
    return out / "report.md"
