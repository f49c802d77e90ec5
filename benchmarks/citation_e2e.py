"""End-to-end citation figures from an eval or calibration run (docs/citations.md, "End to end").

    .venv/bin/python -m benchmarks.citation_e2e <work dir>/calibration/results.jsonl [--skip 96]

Per mode: answers, answers showing a citation, citations shown, how many of them are verified in
the final answer, and the first try's (before the re-check) where the run recorded it
(``first_citations``/``first_verified``). ``--skip N`` leaves out the first N result rows (an
earlier part of a resumed run made with another setting).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def table(rows: list[dict]) -> list[str]:
    out = [
        "| mode | answers | showing a citation | citations shown | verified (final) | first try, verified"
        " | right (judge) |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode in ("rag", "lc", "all"):
        rs = [r for r in rows if mode == "all" or r["mode_requested"] == mode]
        if not rs:
            continue
        shown = sum(r["citations"] for r in rs)
        ver = sum(r["verified"] for r in rs)
        rec = [r for r in rs if r.get("first_citations") is not None]
        fc = sum(r["first_citations"] for r in rec)
        fv = sum(r["first_verified"] for r in rec)
        pct = f" ({100 * ver / shown:.0f}%)" if shown else ""
        cells = [
            mode.upper() if mode != "all" else "**all**",
            len(rs),
            sum(r["citations"] > 0 for r in rs),
            shown,
            f"{ver}{pct}",
            f"{fv} of {fc} ({len(rec)} answers recorded it)",
            sum(bool(r.get("correct")) for r in rs),
        ]
        out.append("| " + " | ".join(str(c) for c in cells) + " |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path)
    ap.add_argument("--skip", type=int, default=0, help="leave out the first N rows")
    args = ap.parse_args()
    rows = [json.loads(x) for x in args.results.read_text().splitlines() if x.strip()][args.skip :]
    rows = [r for r in rows if not r.get("error")]
    print("\n".join(table(rows)))
    cut = [r for r in rows if r.get("cut_off")]
    if any("cut_off" in r for r in rows):  # recorded since the cut-off answers were (ddca5e1)
        print(f"\nanswers cut at the token limit: {len(cut)} of {len(rows)}")


if __name__ == "__main__":
    main()
