"""Saved KV states of document prefixes: read a document once, answer many questions.

A state is keyed by the engine, the model and the exact prefix tokens (instructions +
document), so a changed document, prompt, model or engine build never reuses a stale state.
Two tiers:

- memory: the engine's own prompt cache (llama.cpp's server keeps the states of recent prompts
  in RAM, ``ram_bytes``) and the live KV of its one slot;
- disk: one file per state under a directory (``disk_bytes``), written by the engine's slot
  save and read by its slot restore, shared across processes and restarts. A file is written
  under a temporary name and renamed when complete, so a crash or another process never sees
  half a state; a file the engine cannot restore is deleted and treated as a miss. Least
  recently used files are evicted past ``disk_bytes``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np

log = logging.getLogger(__name__)

T = TypeVar("T")


def prefix_key(model_id: str, tokens: Sequence[int]) -> str:
    """Key of a prefix state: the model and the exact token ids (hence the document's content)."""
    h = hashlib.sha256(model_id.encode())
    h.update(np.asarray(tokens, dtype=np.int32).tobytes())
    return h.hexdigest()[:40]


@dataclass
class CacheStats:
    ram_hits: int = 0
    disk_hits: int = 0
    misses: int = 0
    saved: int = 0
    evicted: int = 0
    load_seconds: list[float] = field(default_factory=list)


class LRUBySize(Generic[T]):
    """A thread-safe LRU map that evicts least recently used entries past ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[T, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.evicted = 0

    def get(self, key: str) -> T | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: str, value: T, nbytes: int) -> bool:
        """Store the value; False (nothing stored) when it alone exceeds the budget."""
        if nbytes > self.max_bytes:
            return False
        with self._lock:
            self._items.pop(key, None)
            self._items[key] = (value, nbytes)
            while self.nbytes > self.max_bytes:
                self._items.popitem(last=False)
                self.evicted += 1
        return True

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return sum(n for _, n in self._items.values())


class PrefixStateCache:
    """Where the engine's saved prefix states live on disk, and the memory budget it keeps."""

    SUFFIX = ".slot"

    def __init__(self, directory: str | Path | None, *, ram_bytes: int, disk_bytes: int) -> None:
        self.directory = Path(directory) if directory else None
        self.ram_bytes = ram_bytes
        self.disk_bytes = disk_bytes
        self.stats = CacheStats()
        self._lock = threading.Lock()

    def name(self, key: str) -> str:
        """The file name of a state, relative to ``directory`` (what the engine is given)."""
        return f"{key}{self.SUFFIX}"

    def temp_name(self, key: str) -> str:
        return f"{key}.tmp{os.getpid()}.{threading.get_ident()}"

    def path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / self.name(key)

    def has(self, key: str) -> bool:
        return self.directory is not None and self.path(key).is_file()

    def commit(self, temp: str, key: str) -> None:
        """Make a state the engine saved under ``temp`` visible as ``key``, then evict."""
        assert self.directory is not None
        src = self.directory / temp
        try:
            if src.stat().st_size > self.disk_bytes:
                src.unlink()
                return
            os.replace(src, self.path(key))
        except OSError as exc:
            log.warning("could not keep the KV state %s under %s: %s", key, self.directory, exc)
            src.unlink(missing_ok=True)
            return
        self.stats.saved += 1
        self.evict()

    def touch(self, key: str) -> None:
        """Mark a state as recently used (eviction is least recently used first)."""
        with contextlib.suppress(OSError):
            os.utime(self.path(key))

    def discard(self, key: str, why: str) -> None:
        log.warning("removing the saved KV state %s (%s)", key, why)
        if self.directory is not None:
            self.path(key).unlink(missing_ok=True)

    def evict(self) -> None:
        if self.directory is None:
            return
        with self._lock:
            files = []
            for p in self.directory.glob(f"*{self.SUFFIX}"):
                try:
                    st = p.stat()
                except FileNotFoundError:
                    continue
                files.append((st.st_mtime, st.st_size, p))
            total = sum(size for _, size, _ in files)
            for _, size, p in sorted(files, key=lambda f: f[0]):
                if total <= self.disk_bytes:
                    break
                p.unlink(missing_ok=True)
                total -= size
                self.stats.evicted += 1

    def disk_usage(self) -> int:
        if self.directory is None:
            return 0
        return sum(p.stat().st_size for p in self.directory.glob(f"*{self.SUFFIX}"))
