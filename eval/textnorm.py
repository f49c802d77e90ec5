"""Text normalisation for judging: content words (stemmed), numbers with units and
scale words, and refusal detection ("the text does not say")."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

# Refusal detection lives with the router (app/ must not import eval/); re-exported here.
from app.refusals import is_pure_refusal, is_refusal  # noqa: F401

STOPWORDS = frozenset(
    """
    a about above after again against all also am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further had
    has have having he her here hers herself him himself his how i if in into is it its itself just
    me more most my myself no nor not now of off on once only or other our ours ourselves out over own
    same she should so some such than that the their theirs them themselves then there these they this
    those through to too under until up very was we were what when where which while who whom why will
    with would you your yours yourself yourselves according text document paper company s t
    """.split()  # noqa: SIM905
)

_WORD = re.compile(r"[a-z0-9]+(?:[.'][a-z0-9]+)*")
_SPACE = re.compile(r"\s+")


@lru_cache(maxsize=1)
def _stemmer():
    try:
        import Stemmer  # PyStemmer, a dependency of the BM25 index

        return Stemmer.Stemmer("english")
    except ImportError:  # pragma: no cover
        return None


def fold(text: str) -> str:
    """Lower case, ASCII quotes and dashes, accents removed, white space collapsed."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = (
        text.replace("\u2019", "'")
        .replace("\u2018", "'")
        .replace("\u201c", '"')
        .replace("\u201d", '"')
        .replace("\u2013", "-")
        .replace("\u2014", "-")
    )
    return _SPACE.sub(" ", text.lower()).strip()


def normalize_answer(text: str) -> str:
    """SQuAD-style: folded, punctuation and articles removed, for containment checks."""
    text = fold(text)
    text = re.sub(r"[^\w\s%$.]", " ", text)
    text = re.sub(r"(?<!\d)\.|\.(?!\d)", " ", text)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return _SPACE.sub(" ", text).strip()


def content_words(text: str) -> list[str]:
    """Stemmed content words (stop words and bare numbers dropped; numbers are judged apart)."""
    words = [w.strip("'.") for w in _WORD.findall(fold(text))]
    words = [w.removesuffix("'s") for w in words if w and w not in STOPWORDS and not w[0].isdigit()]
    stem = _stemmer()
    return list(stem.stemWords(words)) if stem is not None else words


# -- numbers ---------------------------------------------------------------------------------

_SCALES = {
    "thousand": 1e3,
    "k": 1e3,
    "million": 1e6,
    "millions": 1e6,
    "mn": 1e6,
    "m": 1e6,
    "billion": 1e9,
    "billions": 1e9,
    "bn": 1e9,
    "b": 1e9,
    "trillion": 1e12,
}
_NUM = re.compile(
    r"(?P<neg>[-(])?\s?(?P<cur>[$€£¥])?\s?(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"\)?(?:\s?(?P<pct>%|percent\b|per cent\b))?"
    r"(?:\s?(?P<scale>thousand|millions?|billions?|trillion|mn|bn|k|m|b)\b)?",
    re.IGNORECASE,
)
_MONTHS = (
    r"(?:january|february|march|april|may|june|july|august|september|october|november|december|"
    r"jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec)\.?"
)
_DATE = re.compile(
    rf"\b{_MONTHS}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+(?:19|20)\d\d\b|\b{_MONTHS}\s+(?:19|20)\d\d\b"
)
_WORD_NUMBERS = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "twenty": 20,
    "thirty": 30,
    "hundred": 100,
}


@dataclass(frozen=True)
class Quantity:
    """A number as written: its value after the scale word, and the precision it was given at."""

    value: float
    precision: float  # half a unit of the last written digit, scaled
    percent: bool
    text: str

    def matches(self, other: Quantity) -> bool:
        """Equal up to the coarser of the two roundings (e.g. 4,084,076 == 4.1 million)."""
        a, b = abs(self.value), abs(other.value)
        tol = max(self.precision, other.precision) + 1e-9 * max(a, b, 1.0)
        return abs(a - b) <= tol


def _is_year(q: Quantity) -> bool:
    return not q.percent and q.value.is_integer() and 1900 <= q.value <= 2100 and "," not in q.text


def quantities(text: str, *, drop_dates: bool = True) -> list[Quantity]:
    """Numbers in the text with their scale (thousand, million, ...) applied; dates and years dropped."""
    t = fold(text)
    if drop_dates:
        t = _DATE.sub(" ", t)
    out: list[Quantity] = []
    for m in _NUM.finditer(t):
        raw = m.group("num")
        digits = raw.replace(",", "")
        decimals = len(digits.split(".")[1]) if "." in digits else 0
        scale_word = (m.group("scale") or "").lower()
        scale = _SCALES.get(scale_word, 1.0)
        if scale_word in ("m", "b", "k") and not m.group("cur"):
            scale = 1.0  # a bare "m" or "b" after a number is too often a unit (metres, bytes)
        value = float(digits) * scale
        precision = 0.5 * 10 ** (-decimals) * scale
        q = Quantity(value, precision, bool(m.group("pct")), m.group(0).strip())
        if drop_dates and _is_year(q):
            continue
        out.append(q)
    for w in _WORD.findall(t):
        if w in _WORD_NUMBERS:
            out.append(Quantity(float(_WORD_NUMBERS[w]), 0.5, False, w))
    return out


def key_quantities(answer: str, question: str = "") -> list[Quantity]:
    """The answer's numbers that the question does not already contain, written as digits."""
    asked = quantities(question)
    found = [q for q in quantities(answer) if q.text not in _WORD_NUMBERS]
    keys: list[Quantity] = []
    for q in found:
        if any(q.matches(a) and q.precision == a.precision for a in asked):
            continue
        if not any(q.matches(k) and q.precision == k.precision for k in keys):
            keys.append(q)
    return keys


def number_recall(gold: list[Quantity], pred: list[Quantity]) -> float | None:
    """Share of the gold numbers the prediction states (None when the gold has none)."""
    if not gold:
        return None
    hit = sum(1 for g in gold if any(g.matches(p) for p in pred))
    return hit / len(gold)
