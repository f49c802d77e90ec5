"""Write app/routing/router_profiles.json: each of the 13 LaRA models' long-context advantage by
document length (LaRA 32k and, when given, 128k published answers, deterministic judge), shrunk
toward its class's prior, and the class priors that unmeasured models get.

    .venv/bin/python benchmarks/router_profiles.py [--lara32 ../shared/data/lara]
        [--lara128 ~/.cache/longqa/lara128k]

Keeps each model's single 32k number (``lc_advantage``) beside the points. The policy weights
(router_policy.json) are untouched: benchmarks/router_train.py writes them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from app.routing.router import PROFILES_PATH  # noqa: E402
from benchmarks.router_crosslength import load  # noqa: E402
from eval.router_length import length_profiles  # noqa: E402
from eval.router_study import measured_profiles  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lara32", type=Path, default=ROOT.parent / "shared" / "data" / "lara")
    ap.add_argument("--lara128", type=Path, default=None)
    ap.add_argument("--study-cache", type=Path, default=None, help="keep the judged studies here (pickles)")
    args = ap.parse_args()
    s32 = load(args.lara32, "32k", args.study_cache)
    cases = list(s32.cases)
    used = "LaRA 32k"
    if args.lara128 is not None:
        s128 = load(args.lara128, "128k", args.study_cache)
        cases += s128.cases
        used += " and 128k"
    single = measured_profiles(s32.cases)
    profiles, priors = length_profiles(cases)
    models = {}
    for m, p in sorted(profiles.items()):
        d = p.to_json()
        d["lc_advantage"] = single[m].lc_advantage
        d["source"] = f"published {used} answers"
        models[m] = d
    data = {
        "kind": "longqa-model-profiles",
        "version": 2,
        "note": (
            f"lc_advantage: LC minus RAG accuracy at 32k (mean over LaRA's 4 tasks, deterministic judge); "
            f"points: the same by document length ({used}, tokens by {s32.tokenizer}), shrunk toward the "
            "class prior; classes: priors for unmeasured models (sd = spread between the class's models)"
        ),
        "models": models,
        "classes": {c: {**p.to_json(), "source": p.source} for c, p in sorted(priors.items())},
    }
    PROFILES_PATH.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {PROFILES_PATH} ({len(models)} models, classes {', '.join(sorted(priors))})")


if __name__ == "__main__":
    main()
