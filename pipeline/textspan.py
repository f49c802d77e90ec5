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


# A full stop that ends an abbreviation, not a sentence (for the sentences of answers, passages
# and evidence; the chunker keeps SENTENCE_END as it is, so stored chunks do not move):
# a title before a name ("Mr. Green") never ends one; initials ("C.H. Robinson", "met J. Smith";
# not one letter after a capitalised word, as in "Part B."), a
# company's suffix ("Block, Inc. reported") or a reference word ("et al. (2022)", "Fig. 3",
# "e.g. the") end one only before a word that usually opens a sentence ("in the U.S. The ...").
_TITLE = re.compile(r"(?:\b(?:Mr|Mrs|Ms|Mx|Dr|Prof|Sr|Jr|St|Rev|Gen|Col|Capt|Lt|Sgt|Hon|Mme|Mlle)\.)$")
_ABBREV = re.compile(
    r"(?:(?<![\w.])(?:[A-Z]\.)+"  # initials: "C.H.", "J.", "U.S."
    r"|\b(?:Inc|Corp|Co|Ltd|Bros|LLC|plc|al|etc|vs|cf|e\.g|i\.e|Fig|Figs|Eq|Eqs|No|Nos|Vol|Sec|pp|approx)\.)$"
)
_OPENERS = frozenset(
    """the this that these those it its a an in on at as for if we our they their he she his her
    there then however but and also such when while after before during since although because
    i you one some many most all each both no not so thus therefore finally moreover
    additionally furthermore""".split()  # noqa: SIM905
)


def _abbreviation_stop(text: str, at: int, nxt: int) -> bool:
    """The break at ``at`` (the text after it starts at ``nxt``) follows an abbreviation."""
    before = text[max(0, at - 12) : at]
    if _TITLE.search(before):
        return True
    m = _ABBREV.search(before)
    if not m:
        return False
    if len(m.group(0)) == 2:  # one initial: "met J. Smith", but "Medicare Part B. Medicare Part D"
        prev = re.search(r"(\S+)\s+$", text[max(0, at - 40) : at - 2])
        if prev and prev.group(1)[:1].isupper():
            return False
    word = re.match(r"[A-Za-z]+", text[nxt : nxt + 20])
    return not (word and word.group(0).lower() in _OPENERS and word.group(0)[0].isupper())


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Sentence ranges in text[start:end], trimmed of surrounding white space; a full stop after
    an abbreviation ("Mr.", "C.H.", "et al.") does not end one."""
    end = len(text) if end is None else end
    out: list[tuple[int, int]] = []
    cur = start
    for m in SENTENCE_END.finditer(text, start, end):
        if "\n" not in m.group(0) and _abbreviation_stop(text, m.start(), m.end()):
            continue
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
