"""Saved KV states of document prefixes: read a document once, answer many questions.

A state is keyed by the model and the exact prefix tokens (instructions + document), so a
changed document, prompt or model never reuses a stale state. Two tiers, each evicted by
size, least recently used first:

- memory: states of this process (``ram_bytes``);
- disk: one file per state under a directory (``disk_bytes``), shared across processes and
  restarts; files are written atomically (temp file + rename), so a crash leaves no half
  state, and a damaged file is deleted and treated as a miss.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np

log = logging.getLogger(__name__)

_MAGIC = b"LQKV1\n"
T = TypeVar("T")


def prefix_key(model_id: str, tokens: Sequence[int]) -> str:
    """Key of a prefix state: the model and the exact token ids (hence the document's content)."""
    h = hashlib.sha256(model_id.encode())
    h.update(np.asarray(tokens, dtype=np.int32).tobytes())
    return h.hexdigest()[:40]


@dataclass(frozen=True)
class SavedPrefix:
    key: str
    tokens: tuple[int, ...]
    state: bytes
    model_id: str = ""

    @property
    def nbytes(self) -> int:
        return len(self.state) + 4 * len(self.tokens)


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
    """Prefix KV states in memory and on disk, keyed by :func:`prefix_key`."""

    def __init__(self, directory: str | Path | None, *, ram_bytes: int, disk_bytes: int) -> None:
        self.directory = Path(directory) if directory else None
        self.disk_bytes = disk_bytes
        self.ram: LRUBySize[SavedPrefix] = LRUBySize(ram_bytes)
        self.stats = CacheStats()
        self._lock = threading.Lock()

    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / f"{key}.kv"

    def has(self, key: str) -> bool:
        return key in self.ram or (self.directory is not None and self._path(key).is_file())

    def get(self, key: str) -> SavedPrefix | None:
        item = self.ram.get(key)
        if item is not None:
            self.stats.ram_hits += 1
            return item
        item = self._read(key) if self.directory is not None else None
        if item is None:
            self.stats.misses += 1
            return None
        self.stats.disk_hits += 1
        self.ram.put(key, item, item.nbytes)
        return item

    def put(self, item: SavedPrefix) -> None:
        self.ram.put(item.key, item, item.nbytes)
        self.stats.saved += 1
        if self.directory is not None and item.nbytes <= self.disk_bytes:
            self._write(item)
            self._evict_disk()

    # -- disk tier --------------------------------------------------------------------
    def _write(self, item: SavedPrefix) -> None:
        path = self._path(item.key)
        header = json.dumps({"model_id": item.model_id, "n_tokens": len(item.tokens)}).encode()
        tmp = path.with_suffix(f".tmp{os.getpid()}.{threading.get_ident()}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as fh:
                fh.write(_MAGIC)
                fh.write(struct.pack("<Q", len(header)))
                fh.write(header)
                fh.write(np.asarray(item.tokens, dtype=np.int32).tobytes())
                fh.write(item.state)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("could not save the KV state %s under %s: %s", item.key, self.directory, exc)
            tmp.unlink(missing_ok=True)

    def _read(self, key: str) -> SavedPrefix | None:
        path = self._path(key)
        try:
            with open(path, "rb") as fh:
                if fh.read(len(_MAGIC)) != _MAGIC:
                    raise ValueError("bad magic")
                (n_header,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(n_header))
                n = int(header["n_tokens"])
                tokens = np.frombuffer(fh.read(4 * n), dtype=np.int32)
                if len(tokens) != n:
                    raise ValueError("truncated token list")
                state = fh.read()
            if not state:
                raise ValueError("empty state")
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, struct.error) as exc:
            log.warning("removing damaged KV state file %s (%s)", path, exc)
            path.unlink(missing_ok=True)
            return None
        os.utime(path)  # mark as recently used for eviction
        return SavedPrefix(key, tuple(int(t) for t in tokens), state, str(header.get("model_id", "")))

    def _evict_disk(self) -> None:
        assert self.directory is not None
        with self._lock:
            files = []
            for p in self.directory.glob("*.kv"):
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
        return sum(p.stat().st_size for p in self.directory.glob("*.kv"))
