"""Model profiles for the router: a model's long-context advantage as a function of document length.

A profile says, at a few document lengths, how much better (or worse) the model answers with the
whole document in its window (LC) than with retrieved passages (RAG): LC accuracy minus RAG
accuracy, on LaRA-like questions, overall and per question type. Between measured lengths the
advantage is interpolated in log-length; outside them it stays at the nearest measured value (no
slope is extrapolated: a model measured only at 32k says nothing about 128k).

Every measured value is shrunk toward its class's prior (normal-normal: the class mean and the
spread between the class's models at that length, against the measurement's standard error), so a
profile from a few questions stays near the prior. A model never measured gets its class's prior
and the class's spread as its uncertainty; the router uses ``advantage_at(..., penalty)`` =
mean - penalty x sd, so an uncertain profile leans to the cheap, safe side (RAG, with the
Self-Route fallback).

Where profiles come from: ``app/routing/router_profiles.json`` (the 13 models with published LaRA
answers at 32k and 128k; ``benchmarks/router_train.py``), or a file written by ``longqa calibrate``
for the configured model (``calibrated_path``), which wins when it names that model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

TASK_NAMES = ("location", "reasoning", "comp", "hallu")
# Questions of a task type whose per-task advantage counts as much as the point's overall one.
TASK_SHRINK_N = 20.0


@dataclass(frozen=True)
class LengthPoint:
    """The model measured on documents of about ``tokens`` tokens."""

    tokens: int
    lc_adv: float  # LC minus RAG accuracy, mean over task types (0..1 scale), after shrinkage
    sd: float  # its uncertainty (posterior standard deviation)
    n: int = 0  # questions measured (0: a prior, not a measurement)
    by_task: Mapping[str, float] = field(default_factory=dict)  # per task type, after shrinkage

    def to_json(self) -> dict:
        return {
            "tokens": self.tokens,
            "lc_adv": round(self.lc_adv, 4),
            "sd": round(self.sd, 4),
            "n": self.n,
            "by_task": {t: round(v, 4) for t, v in self.by_task.items()},
        }

    @classmethod
    def from_json(cls, d: Mapping) -> LengthPoint:
        return cls(
            int(d["tokens"]),
            float(d["lc_adv"]),
            float(d.get("sd", 0.0)),
            int(d.get("n", 0)),
            {str(k): float(v) for k, v in (d.get("by_task") or {}).items()},
        )


@dataclass(frozen=True)
class ModelProfile:
    """What the router knows about the generator: size and measured long-context strength."""

    name: str = ""
    params_b: float | None = None
    # LC minus RAG accuracy at LaRA's 32k documents (the single number of earlier profiles); None: unknown.
    lc_advantage: float | None = None
    points: tuple[LengthPoint, ...] = ()  # by length, ascending; empty: only ``lc_advantage`` is known
    source: str = ""  # "published LaRA answers", "calibrated", "class prior (...)"
    measured_at: str = ""  # when a calibration measured it (ISO time), else ""

    def _interp(self, tokens: int, value) -> float:  # type: ignore[no-untyped-def]
        pts = self.points
        x = math.log2(max(tokens, 1))
        if x <= math.log2(pts[0].tokens):
            return value(pts[0])
        for a, b in zip(pts, pts[1:]):
            xa, xb = math.log2(a.tokens), math.log2(b.tokens)
            if x <= xb:
                w = (x - xa) / (xb - xa) if xb > xa else 1.0
                return (1 - w) * value(a) + w * value(b)
        return value(pts[-1])

    def advantage_at(self, tokens: int, penalty: float = 0.0) -> float | None:
        """LC advantage on a document of ``tokens`` tokens, minus ``penalty`` x its uncertainty."""
        if not self.points:
            return self.lc_advantage
        return self._interp(tokens, lambda p: p.lc_adv - penalty * p.sd)

    def sd_at(self, tokens: int) -> float:
        return self._interp(tokens, lambda p: p.sd) if self.points else 0.0

    def task_advantage_at(self, tokens: int, task: str, penalty: float = 0.0) -> float | None:
        if not self.points:
            return self.lc_advantage
        return self._interp(tokens, lambda p: p.by_task.get(task, p.lc_adv) - penalty * p.sd)

    def to_json(self) -> dict:
        return {
            "params_b": self.params_b,
            "lc_advantage": None if self.lc_advantage is None else round(self.lc_advantage, 4),
            "source": self.source,
            "measured_at": self.measured_at,
            "points": [p.to_json() for p in self.points],
        }

    @classmethod
    def from_json(cls, name: str, d: Mapping) -> ModelProfile:
        pts = tuple(sorted((LengthPoint.from_json(p) for p in d.get("points") or ()), key=lambda p: p.tokens))
        adv = d.get("lc_advantage")
        return cls(
            name,
            None if d.get("params_b") is None else float(d["params_b"]),
            None if adv is None else float(adv),
            pts,
            str(d.get("source", "")),
            str(d.get("measured_at", "")),
        )


def size_class(params_b: float | None) -> str:
    if params_b is None:
        return "unknown"
    return "small" if params_b < 10 else "medium" if params_b < 40 else "large"


# -- fitting ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    """Paired verdicts of one model on questions of documents near one length."""

    tokens: int  # a representative (median) document length
    task: str
    diffs: tuple[int, ...]  # per question: lc_ok - rag_ok (-1, 0, 1)


def raw_point(ms: Sequence[Measurement]) -> tuple[float, float, int, dict[str, tuple[float, int]]]:
    """Mean over tasks of LC-minus-RAG, its standard error, questions, and per task (mean, n)."""
    per: dict[str, list[int]] = {}
    for m in ms:
        per.setdefault(m.task, []).extend(m.diffs)
    per = {t: v for t, v in per.items() if v}
    means = {t: sum(v) / len(v) for t, v in per.items()}
    adv = sum(means.values()) / len(means)
    # Var of a mean over tasks of per-task means: sum of var_t / n_t, over (tasks)^2.
    var = 0.0
    for t, v in per.items():
        mu = means[t]
        var += (sum((d - mu) ** 2 for d in v) / max(len(v) - 1, 1)) / len(v)
    se = math.sqrt(var) / len(per)
    return adv, se, sum(len(v) for v in per.values()), {t: (means[t], len(per[t])) for t in per}


def shrink(adv: float, se: float, prior: float, tau: float) -> tuple[float, float]:
    """Normal-normal posterior of a measured advantage (se) under a prior N(prior, tau^2)."""
    if tau <= 0:
        return prior, 0.0
    if se <= 0:
        return adv, 0.0
    w_obs, w_prior = 1 / se**2, 1 / tau**2
    return (w_obs * adv + w_prior * prior) / (w_obs + w_prior), math.sqrt(1 / (w_obs + w_prior))


def shrink_tasks(
    by_task: Mapping[str, tuple[float, int]], overall: float, raw_overall: float
) -> dict[str, float]:
    """Per-task advantages pulled toward the point's overall one (``TASK_SHRINK_N`` questions' worth),
    kept relative to the shrunk overall value."""
    out = {}
    for t, (mu, n) in by_task.items():
        w = n / (n + TASK_SHRINK_N)
        out[t] = overall + w * (mu - raw_overall)
    return out


def fit_profiles(
    measurements: Mapping[str, Sequence[Measurement]],
    params_b: Mapping[str, float | None],
    *,
    class_of=None,  # type: ignore[no-untyped-def]
    min_tau: float = 0.02,
) -> tuple[dict[str, ModelProfile], dict[str, ModelProfile]]:
    """Length profiles of each model and each class's prior from paired verdicts.

    ``measurements``: per model, measurements grouped by length bucket (``Measurement.tokens`` is
    the bucket's representative length; the same set of bucket lengths for every model). Returns
    (profiles by model, priors by class; the class ``unknown`` pools all models)."""
    class_of = class_of or (lambda m: size_class(params_b.get(m)))
    raw: dict[str, dict[int, tuple[float, float, int, dict]]] = {}
    for m, ms in measurements.items():
        by_len: dict[int, list[Measurement]] = {}
        for x in ms:
            by_len.setdefault(x.tokens, []).append(x)
        raw[m] = {L: raw_point(v) for L, v in sorted(by_len.items())}
    lengths = sorted({L for r in raw.values() for L in r})
    classes = {class_of(m) for m in raw} | {"unknown"}
    priors: dict[str, ModelProfile] = {}
    for c in sorted(classes):
        members = [m for m in raw if c == "unknown" or class_of(m) == c]
        pts = []
        for L in lengths:
            vals = [raw[m][L][0] for m in members if L in raw[m]]
            if not vals:
                continue
            mu = sum(vals) / len(vals)
            sd_all = [raw[m][L][0] for m in raw if L in raw[m]]
            # Spread between models; a class of one borrows the spread of all models.
            spread = vals if len(vals) > 1 else sd_all
            mu_all = sum(spread) / len(spread)
            tau = max(min_tau, math.sqrt(sum((v - mu_all) ** 2 for v in spread) / max(len(spread) - 1, 1)))
            tasks = {t for m in members if L in raw[m] for t in raw[m][L][3]}
            by_task = {
                t: sum(raw[m][L][3][t][0] for m in members if L in raw[m] and t in raw[m][L][3])
                / sum(1 for m in members if L in raw[m] and t in raw[m][L][3])
                for t in tasks
            }
            pts.append(LengthPoint(L, mu, tau, 0, by_task))
        priors[c] = ModelProfile(
            f"class:{c}", None, None, tuple(pts), f"class prior ({c}, {len(members)} models)"
        )
    profiles: dict[str, ModelProfile] = {}
    for m, r in raw.items():
        prior = priors[class_of(m)]
        pts = []
        for L, (adv, se, n, by_task) in r.items():
            pp = next(p for p in prior.points if p.tokens == L)
            mean, sd = shrink(adv, se, pp.lc_adv, pp.sd)
            pts.append(LengthPoint(L, mean, sd, n, shrink_tasks(by_task, mean, adv)))
        profiles[m] = ModelProfile(m, params_b.get(m), None, tuple(pts), "measured")
    return profiles, priors


# -- files --------------------------------------------------------------------------------------

CALIBRATED_KIND = "longqa-calibrated-profile"
CALIBRATED_FILE = "router_profile.json"  # in the data directory: the service loads it when it names the model


def load_calibrated(path: str | Path) -> ModelProfile | None:
    """A profile written by ``longqa calibrate``; None when the file is absent."""
    p = Path(path)
    if not p.is_file():
        return None
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"'{p}' is not valid JSON ({exc.msg}); delete it (the router then uses the published profiles)"
        ) from exc
    if data.get("kind") != CALIBRATED_KIND:
        raise ValueError(f"'{p}' is not a calibrated profile (kind != '{CALIBRATED_KIND}')")
    return ModelProfile.from_json(str(data["model"]), data["profile"])


def save_calibrated(path: str | Path, profile: ModelProfile, extra: Mapping | None = None) -> None:
    data = {"kind": CALIBRATED_KIND, "model": profile.name, "profile": profile.to_json(), **(extra or {})}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)


def profile_caption(profile: ModelProfile) -> str:
    """One line for the app: which profile the router uses for this model, and when it was measured."""
    if profile.source == "calibrated":
        when = profile.measured_at.replace("T", " ")[:16] or "at an unknown time"
        lengths = ", ".join(f"{p.tokens // 1000}k" for p in profile.points)
        return f"Router profile: calibrated for this model on {when} UTC (lengths {lengths})"
    if profile.source.startswith("class prior"):
        return f"Router profile: not measured for this model; the {profile.source}"
    if profile.points or profile.lc_advantage is not None:
        return f"Router profile: {profile.source or 'published LaRA answers'}"
    return "Router profile: none (the router uses its defaults)"
