"""Where a passage is, in words, and clock times: one home for the formats the prompt's source
labels, the CLI, the batch table and the app show.

A location is pages ("p. 3", "pp. 3-4") where the document has pages, else a time range for
transcripts ("01:02-01:10", hours when needed: "1:00:05-1:00:09"), else a character range
("chars 120-480"). ``typeset`` (the app) puts an en dash in ranges and groups the digits of
character offsets ("pp. 3–4", "chars 1,200–4,800").
"""

from __future__ import annotations

from pipeline.types import Span


def fmt_time(seconds: float) -> str:
    """Seconds as ``MM:SS``, or ``H:MM:SS`` from an hour on (fractions dropped)."""
    s = int(seconds)
    return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


def time_range(t: tuple[float, float], *, typeset: bool = False) -> str:
    """``start-end`` in clock times (an en dash when ``typeset``)."""
    return f"{fmt_time(t[0])}{'–' if typeset else '-'}{fmt_time(t[1])}"


def location_text(
    pages: tuple[int, int] | None,
    time: tuple[float, float] | None,
    span: Span | None = None,
    *,
    typeset: bool = False,
) -> str:
    """Pages, else the time range, else the character range of ``span``; "" when there is none
    of them (no ``span`` given: the prompt shows the model pages or times, never offsets)."""
    dash = "–" if typeset else "-"
    if pages:
        a, b = pages
        return f"p. {a}" if a == b else f"pp. {a}{dash}{b}"
    if time:
        return time_range(time, typeset=typeset)
    if span is None:
        return ""
    return f"chars {span.start:,}{dash}{span.end:,}" if typeset else f"chars {span.start}{dash}{span.end}"
