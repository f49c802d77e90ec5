"""One format for where a passage is (app/locations.py), as the prompt, CLI, batch and app show it."""

from __future__ import annotations

from app.locations import fmt_time, location_text, time_range
from pipeline.types import Span


def test_clock_times() -> None:
    assert fmt_time(0) == "00:00" and fmt_time(72.9) == "01:12" and fmt_time(3605) == "1:00:05"
    assert time_range((72, 161)) == "01:12-02:41" and time_range((72, 161), typeset=True) == "01:12–02:41"


def test_pages_then_times_then_characters() -> None:
    span = Span(1200, 4800)
    assert location_text((3, 3), (1.0, 2.0), span) == "p. 3"  # pages win
    assert location_text((3, 4), None, span) == "pp. 3-4"
    assert location_text((3, 4), None, span, typeset=True) == "pp. 3–4"
    assert location_text(None, (72, 161), span) == "01:12-02:41"
    assert location_text(None, None, span) == "chars 1200-4800"
    assert location_text(None, None, span, typeset=True) == "chars 1,200–4,800"
    assert location_text(None, None) == ""  # the prompt shows no character offsets
