"""Small text helpers shared by chunking, BM25 and citation checking."""

from __future__ import annotations

import re

_TOKEN = re.compile(r"[a-z0-9]+(?:[.,][0-9]+)*")
_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
SENTENCE_END = re.compile(r"(?<=[.!?])[\"'\)\]\u201d\u2019]*\s+|\n\s*\n")

# A compact English stop-word list: function words that carry no topic.
STOPWORDS = frozenset(
    """
    a an and are as at be been but by can could did do does for from had has have he her his
    how i if in into is it its may might more most no not of on or our she should so than that
    the their them then there these they this those to was we were what when where which while
    who whom why will with would you your
    """.split()  # noqa: SIM905
)


def terms(text: str) -> list[str]:
    """Lower-cased word and number tokens without stop words."""
    return [t for t in _TOKEN.findall(text.lower()) if t not in STOPWORDS]


def numbers(text: str) -> set[str]:
    """Numbers in the text, normalised (thousands separators and trailing zeros dropped)."""
    out = set()
    for m in _NUMBER.findall(text):
        n = m.replace(",", "").rstrip(".")
        if "." in n:
            n = n.rstrip("0").rstrip(".")
        out.add(n)
    return out


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Sentence ranges in text[start:end], trimmed of surrounding white space."""
    end = len(text) if end is None else end
    out: list[tuple[int, int]] = []
    cur = start
    for m in SENTENCE_END.finditer(text, start, end):
        out.append((cur, m.start()))
        cur = m.end()
    out.append((cur, end))
    trimmed = []
    for a, b in out:
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if b > a:
            trimmed.append((a, b))
    return trimmed
