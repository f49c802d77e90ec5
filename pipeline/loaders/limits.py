"""Per-file limits that the byte-size cap cannot see: pages, media minutes, wall time.

A :class:`Deadline` is checked by loaders between units of work (a PDF page, a transcribed
segment), so a file that would run for hours fails alone, with its reason, and the rest of a
folder goes on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from pipeline.errors import IngestError


@dataclass
class Deadline:
    path: str
    seconds: float
    _start: float = field(default_factory=time.monotonic)

    def check(self, where: str) -> None:
        spent = time.monotonic() - self._start
        if spent > self.seconds:
            raise IngestError(
                self.path,
                f"reading it took over {self.seconds:,.0f} s (stopped at {where})",
                "split it, or raise LONGQA_INGEST__MAX_SECONDS_PER_FILE",
            )
