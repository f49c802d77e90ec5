"""A light question-type classifier (location, reasoning, comparison or likely unanswerable).
(The detectors of answers that say the text does not contain the answer are in ``app.refusals``.)

It runs in well under a millisecond on a CPU: the question becomes a bag of words,
word pairs and hand-written cues, and a multinomial logistic regression (weights in
``app/routing/router_qtype.json``, trained by ``benchmarks/router_train.py`` on LaRA's
questions) turns it into probabilities. Training needs scikit-learn; prediction
needs only numpy.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import import_extra

QTYPES = ("location", "reasoning", "comp", "hallu")
QTYPE_WORDS = {
    "location": "single-fact lookup",
    "reasoning": "multi-step reasoning",
    "comp": "comparison across parts",
    "hallu": "likely unanswerable",
}
DEFAULT_WEIGHTS = Path(__file__).with_name("router_qtype.json")

_WORD = re.compile(r"[a-z]+|\d+")
# Hand-written cues: name -> pattern. They are features the model weighs, not rules.
CUES: dict[str, re.Pattern[str]] = {
    "two_parts": re.compile(r"\b(?:papers?|parts?|sections?|chapters?)\s+\d+\s+(?:and|&|or)\s+\d+\b"),
    "compare": re.compile(
        r"\b(?:compare|compared|comparison|differ|differs|difference|differences|distinguish\w*|contrast\w*|"
        r"versus|vs|similar\w*|both|relate|relationship|evolve|evolution)\b"
    ),
    "change": re.compile(r"\bfrom\b.{3,60}\bto\b|\bchange[sd]?\b|\bincrease[sd]?\b|\bdecrease[sd]?\b"),
    "why_how": re.compile(r"^(?:why|how)\b|\bwhy\b|\bhow (?:does|did|do|might|could|would)\b"),
    "implication": re.compile(
        r"\b(?:impact|affect\w*|implication\w*|suggest\w*|reflect\w*|indicate\w*|reason)\b"
    ),
    "future": re.compile(
        r"\b(?:future|projected|projection\w*|forecast\w*|expected|anticipated|plans?|planned|next "
        r"(?:year|quarter|fiscal)|upcoming|will|long-term|over the next)\b"
    ),
    "trivia": re.compile(
        r"\b(?:favou?rite|colou?r|secret|exact (?:wording|words|name)|nickname|hobby|pet|birthday|recipe|"
        r"name of (?:the|his|her)|brand of)\b"
    ),
    "what_was": re.compile(r"^(?:what|who|where|when|which) (?:was|is|were|are|did)\b"),
    "how_much": re.compile(r"\bhow (?:much|many)\b|\bwhat (?:was|is) the (?:amount|total|number|value)\b"),
    "in_paper": re.compile(r"^in paper \d+\b|\bin paper \d+,"),
    "has_number": re.compile(r"\d"),
}


def featurize(question: str) -> list[str]:
    """Feature names of a question: words, adjacent word pairs, cue flags and a length bucket."""
    q = question.lower().strip()
    words = _WORD.findall(q)
    words = ["<num>" if w.isdigit() else w for w in words]
    feats = [f"w:{w}" for w in words]
    feats += [f"b:{a}_{b}" for a, b in zip(words, words[1:])]
    feats += [f"first:{w}" for w in words[:2]]
    feats += [f"cue:{name}" for name, pat in CUES.items() if pat.search(q)]
    n = len(words)
    feats.append("len:short" if n <= 12 else "len:medium" if n <= 22 else "len:long")
    return feats


@dataclass(frozen=True)
class QTypePrediction:
    label: str
    probs: dict[str, float]
    cues: tuple[str, ...]

    @property
    def description(self) -> str:
        return QTYPE_WORDS.get(self.label, self.label)


class QuestionTypeClassifier:
    """Multinomial logistic regression over sparse binary features, applied with numpy."""

    def __init__(
        self, vocab: dict[str, int], coef: np.ndarray, intercept: np.ndarray, labels: Sequence[str] = QTYPES
    ) -> None:
        coef = np.asarray(coef, dtype=np.float64)
        intercept = np.asarray(intercept, dtype=np.float64)
        if coef.shape != (len(labels), len(vocab)) or intercept.shape != (len(labels),):
            raise ValueError(
                f"question-type weights do not fit: coef {coef.shape}, intercept {intercept.shape}, "
                f"{len(labels)} labels and {len(vocab)} features; retrain with benchmarks/router_train.py"
            )
        self.vocab = vocab
        self.coef = coef
        self.intercept = intercept
        self.labels = tuple(labels)

    def _indices(self, question: str) -> list[int]:
        return sorted({self.vocab[f] for f in featurize(question) if f in self.vocab})

    def predict(self, question: str) -> QTypePrediction:
        idx = self._indices(question)
        z = self.intercept + (self.coef[:, idx].sum(axis=1) if idx else 0.0)
        p = np.exp(z - z.max())
        p /= p.sum()
        probs = {lab: round(float(v), 4) for lab, v in zip(self.labels, p)}
        q = question.lower()
        cues = tuple(name for name, pat in CUES.items() if pat.search(q))
        return QTypePrediction(self.labels[int(np.argmax(p))], probs, cues)

    # -- persistence ------------------------------------------------------------------
    def to_json(self) -> dict:
        names = sorted(self.vocab, key=self.vocab.__getitem__)
        return {
            "kind": "longqa-question-type",
            "labels": list(self.labels),
            "features": names,
            "intercept": [round(float(v), 5) for v in self.intercept],
            "coef": [[round(float(v), 5) for v in row] for row in self.coef],
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), separators=(",", ":")) + "\n", encoding="utf-8")

    @classmethod
    def from_json(cls, data: dict) -> QuestionTypeClassifier:
        if data.get("kind") != "longqa-question-type":
            raise ValueError("not a question-type weights file (kind != 'longqa-question-type')")
        vocab = {f: i for i, f in enumerate(data["features"])}
        return cls(vocab, np.array(data["coef"]), np.array(data["intercept"]), data["labels"])

    @classmethod
    def load(cls, path: str | Path = DEFAULT_WEIGHTS) -> QuestionTypeClassifier:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(
                f"question-type weights '{p}' are missing; run benchmarks/router_train.py to create them"
            )
        return cls.from_json(json.loads(p.read_text(encoding="utf-8")))


def train_qtype(
    questions: Sequence[str], labels: Sequence[str], *, c: float = 2.0, min_count: int = 2
) -> QuestionTypeClassifier:
    """Fit the classifier (needs scikit-learn, the 'eval' extra). Features seen fewer than
    ``min_count`` times are dropped."""
    linear = import_extra(
        "sklearn.linear_model", "eval", "training the question-type classifier", "scikit-learn"
    )

    unknown = sorted(set(labels) - set(QTYPES))
    if unknown:
        raise ValueError(f"unknown question types {unknown}; use {', '.join(QTYPES)}")
    counts: dict[str, int] = {}
    rows = [featurize(q) for q in questions]
    for feats in rows:
        for f in set(feats):
            counts[f] = counts.get(f, 0) + 1
    vocab = {f: i for i, f in enumerate(sorted(f for f, n in counts.items() if n >= min_count))}
    x = np.zeros((len(rows), len(vocab)), dtype=np.float32)
    for i, feats in enumerate(rows):
        for f in feats:
            j = vocab.get(f)
            if j is not None:
                x[i, j] = 1.0
    model = linear.LogisticRegression(C=c, max_iter=2000)
    model.fit(x, list(labels))
    coef = np.zeros((len(QTYPES), len(vocab)))
    intercept = np.full(len(QTYPES), -30.0)  # a type never seen in training gets ~0 probability
    for k, lab in enumerate(model.classes_):
        row = QTYPES.index(lab)
        if len(model.classes_) == 2:  # binary case: sklearn keeps one row
            sign = 1.0 if k == 1 else -1.0
            coef[row], intercept[row] = sign * model.coef_[0] / 2, sign * model.intercept_[0] / 2
        else:
            coef[row], intercept[row] = model.coef_[k], model.intercept_[k]
    return QuestionTypeClassifier(vocab, coef, intercept, QTYPES)
