"""Multiple-choice answers: options and gold letters as datasets give them, and the letters a
model's free-text answer chose ("Answer: (B)", "B and D", "**C**", "the answer is A.", or
an option's text restated without its letter). Scoring is by exact set match.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence

from eval.textnorm import normalize_answer

LETTERS = string.ascii_uppercase[:10]  # A..J: enough for every benchmark seen so far

Options = tuple[tuple[str, str], ...]  # (letter, text), in order


class ChoiceError(ValueError):
    """Options or gold letters that cannot be used (the message names the fix)."""


def parse_options(raw: object) -> Options:
    """A list of option texts (lettered A, B, ...) or a dict letter -> text."""
    if isinstance(raw, Mapping):
        out = []
        for k, v in raw.items():
            key = str(k).strip().strip("().").upper()
            if len(key) != 1 or key not in LETTERS:
                raise ChoiceError(
                    f"option key {str(k)!r} is not a letter A-J; use a list of texts or a dict like "
                    '{"A": "...", "B": "..."}'
                )
            if not isinstance(v, str | int | float) or not str(v).strip():
                raise ChoiceError(f"option {key} has no text; give every option a text")
            out.append((key, str(v).strip()))
        out.sort()
    elif isinstance(raw, list | tuple):
        if len(raw) > len(LETTERS):
            raise ChoiceError(f"{len(raw)} options, more than the {len(LETTERS)} letters A-J")
        out = []
        for i, v in enumerate(raw):
            if not isinstance(v, str | int | float) or not str(v).strip():
                raise ChoiceError(f"option {i + 1} is empty or not text; give every option a text")
            out.append((LETTERS[i], str(v).strip()))
    else:
        raise ChoiceError(
            f"'options' must be a list of texts or a dict letter -> text, not {type(raw).__name__}"
        )
    if len(out) < 2:
        raise ChoiceError("'options' needs at least two options")
    return tuple(out)


def parse_gold_letters(raw: object, options: Options) -> str:
    """Gold letters as a sorted string: "ABD", "A, B", "(C)", ["A", "B"], or an option's exact
    text; every letter must name an option."""
    keys = {k for k, _ in options}
    if isinstance(raw, list | tuple):
        parts = [str(x).strip().strip("().").upper() for x in raw]
        if not all(len(p) == 1 for p in parts):
            raise ChoiceError(f'gold {raw!r} is not a list of letters; write e.g. ["A", "C"]')
        letters = set(parts)
    else:
        text = str(raw or "").strip()
        by_text = [k for k, v in options if normalize_answer(v) == normalize_answer(text)]
        if text and len(by_text) == 1 and len(text) > 1:
            return by_text[0]
        compact = re.sub(r"[\s,;/&()\[\]+.]|\band\b", "", text, flags=re.IGNORECASE).upper()
        if not compact or not compact.isalpha():
            raise ChoiceError(
                f'gold answer {text!r} is not option letters; write the correct letters, e.g. "B" or "ABD"'
            )
        letters = set(compact)
    bad = sorted(letters - keys)
    if bad:
        raise ChoiceError(f"gold letter(s) {''.join(bad)} name no option (options: {''.join(sorted(keys))})")
    if not letters:
        raise ChoiceError("no gold letters; give the correct option letters")
    return "".join(sorted(letters))


def format_options(options: Options) -> list[tuple[str, str]]:
    return [(k, v) for k, v in options]


# -- extraction ---------------------------------------------------------------------------------

_SEP = r"(?:\s*(?:,\s*(?:and\s+|or\s+)?|;|/|&|\+|\band\b|\bor\b)\s*|\s+)"


def _letter(valid: str) -> str:
    # A letter alone: not inside a word ("Because"), optionally in (), [], ** or followed by . or :
    return rf"[\(\[\*]*(?<![A-Za-z0-9'])([{valid}])(?![A-Za-z0-9'])[\)\]\*]*"


def _run(valid: str) -> str:
    one = _letter(valid)
    return rf"{one}(?:{_SEP}{one})*"


# "A" and "I" start English sentences: "Answer: A new law..." restates an option, it does not
# choose A. A letter followed by a lower-case word other than these is read as that word.
_LETTER_WORDS = {"and", "or", "is", "are", "because", "since", "as", "and/or", "only", "both"}


def _letters_in(run: str, valid: str, text_after: str) -> str:
    found = re.findall(_letter(valid), run)
    if len(found) == 1 and found[0] in "AI":
        nxt = re.match(r"\s+([a-z][a-z/]*)", text_after)
        if nxt and nxt.group(1) not in _LETTER_WORDS:
            return ""
    return "".join(sorted(set(found)))


def _first_run(pattern: str, text: str, valid: str, flags: int = 0) -> str:
    for m in re.finditer(pattern, text, flags):
        got = _letters_in(m.group("run"), valid, text[m.end("run") :])
        if got:
            return got
    return ""


def extract_letters(answer: str, options: Options) -> str:
    """The option letters ``answer`` chose, sorted ("" when it chose none or is ambiguous)."""
    valid = "".join(k for k, _ in options)
    text = answer.replace("\u2019", "'").strip()
    if not text:
        return ""
    run = rf"(?P<run>{_run(valid)})"
    # 1. "Answer: (B)", "the correct answers are A and C", "final answer is **D**"
    answer_cue = (
        r"(?i:\banswers?(?:\s+(?:is|are|would be|will be|should be))?\s*(?:[:=\-]\s*)?"
        r"(?:options?\s+|choices?\s+)?)"
    )
    got = _first_run(rf"{answer_cue}{run}", text, valid)
    if got:
        return got
    right_cue = (
        r"(?i:\b(?:correct|right|best|true)\s+(?:options?|choices?|statements?)"
        r"(?:\s+(?:is|are|would be))?\s*:?\s*)"
    )
    got = _first_run(rf"{right_cue}{run}", text, valid)
    if got:
        return got
    # 2. The answer opens with letters: "B", "B.", "(C) because", "**A**", "B and D"
    got = _first_run(rf"^[\s\*\"']*{run}", text, valid)
    if got:
        return got
    # 3. "I choose C", "select B"
    got = _first_run(rf"(?i:\b(?:choose|chose|select|pick)\s+(?:options?\s+)?){run}", text, valid)
    if got:
        return got
    # 4. Marked letters ("(B)", "**B**") or "option B" mentions anywhere, when they all agree
    marked = set(re.findall(rf"\(([{valid}])\)|\*\*([{valid}])\*\*", text))
    letters = {a or b for a, b in marked}
    if len(letters) == 1:
        return letters.pop()
    named = set(re.findall(rf"(?i:\b(?:option|choice))\s+\(?([{valid}])(?![A-Za-z0-9])", text))
    if len(named) == 1:
        return named.pop()
    # 5. An option's text restated without its letter, when only one option (or one option and
    #    options it contains) is there.
    said = f" {normalize_answer(text)} "
    hits = [(k, normalize_answer(v)) for k, v in options if normalize_answer(v)]
    hits = [(k, v) for k, v in hits if f" {v} " in said]
    if hits:
        longest = max(hits, key=lambda kv: len(kv[1]))
        if all(v in longest[1] for _, v in hits):
            return longest[0]
    return ""


def describe(letters: str, options: Options) -> str:
    """'B (Paris)' for reports."""
    texts = dict(options)
    return ", ".join(f"{x} ({texts.get(x, '?')[:40]})" for x in letters) or "none"


def score(chosen: str, gold: str) -> bool:
    return bool(chosen) and set(chosen) == set(gold)


def option_texts(letters: str, options: Sequence[tuple[str, str]]) -> str:
    texts = dict(options)
    return " ".join(texts[x] for x in letters if x in texts)
