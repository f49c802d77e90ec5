"""The FAISS index as a cache of the vectors in the store.

The store holds every vector (``pipeline.store``); this file only saves the time of building
the index. Each process:

1. reads the cache file if there is one and checks it: its header names the store
   (``store_id``) and the store ``generation`` it reflects, and a CRC covers the index;
2. when the store's generation moved on, updates the index from the store: vectors of chunks
   that appeared since are added, those of chunks that are gone removed (vec_ids are never
   reused, so an id present in both is the same vector);
3. when the file is missing, unreadable, truncated or from another store, rebuilds the index
   from the store and says so in one line.

Files are written atomically (a temporary file of this process, fsync, rename): processes
saving at once never mix their bytes; the last rename wins, and any file is a complete index
of some generation, which the next reader brings up to date.

File layout: ``MAGIC``, a 4-byte little-endian header length, the JSON header, the bytes of
``faiss.serialize_index``.
"""

from __future__ import annotations

import json
import logging
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np

from indexes.vector import VectorIndex, atomic_write
from pipeline.store import MetadataStore, StoreError

log = logging.getLogger(__name__)

MAGIC = b"LONGQA-VECTOR-CACHE\x01"
SAVE_INTERVAL_S = 60.0


class CacheUnreadable(Exception):
    """The cache file cannot be used; the message says why."""


def write_cache(path: Path, index: VectorIndex, store_id: str, generation: int) -> None:
    payload = index.to_bytes()
    header = json.dumps(
        {
            "store_id": store_id,
            "generation": generation,
            "dim": index.dim,
            "factory": index.factory,
            "auto": index.auto,
            "n": len(index),
            "bytes": len(payload),
            "crc32": zlib.crc32(payload),
        }
    ).encode()
    atomic_write(path, MAGIC + struct.pack("<I", len(header)) + header + payload)


def read_cache(path: Path, dim: int, store_id: str, nprobe: int) -> tuple[VectorIndex, int]:
    """(index, generation) from ``path``; raises ``CacheUnreadable`` saying why it cannot be used,
    FileNotFoundError when there is no file."""
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        raise CacheUnreadable("not a vector cache of this version")
    at = len(MAGIC)
    if len(data) < at + 4:
        raise CacheUnreadable(f"truncated at {len(data)} bytes")
    (hlen,) = struct.unpack("<I", data[at : at + 4])
    try:
        header = json.loads(data[at + 4 : at + 4 + hlen])
    except ValueError as exc:
        raise CacheUnreadable(f"truncated or damaged header ({exc})") from exc
    payload = data[at + 4 + hlen :]
    if len(payload) != header["bytes"]:
        raise CacheUnreadable(f"truncated: {len(payload)} of {header['bytes']} index bytes")
    if zlib.crc32(payload) != header["crc32"]:
        raise CacheUnreadable("checksum mismatch")
    if header["store_id"] != store_id:
        raise CacheUnreadable("it belongs to another database")
    if header["dim"] != dim:
        raise CacheUnreadable(f"its vectors have dimension {header['dim']}, the store's have {dim}")
    try:
        factory = "auto" if header.get("auto") else header["factory"]
        index = VectorIndex.from_bytes(payload, dim, factory, nprobe=nprobe)
        if factory == "auto":
            index.factory = header["factory"]
    except (RuntimeError, ValueError) as exc:
        raise CacheUnreadable(f"FAISS cannot read it ({str(exc).splitlines()[0][:120]})") from exc
    return index, int(header["generation"])


class VectorCache:
    """A FAISS index kept equal to the store's vectors of ready documents (module doc).

    ``path`` None: kept in memory only. ``index`` is replaced on rebuilds; read it anew after
    ``refresh``."""

    def __init__(
        self,
        store: MetadataStore,
        path: Path | None,
        dim: int,
        factory: str = "Flat",
        *,
        nprobe: int = 32,
        save_interval_s: float = SAVE_INTERVAL_S,
    ) -> None:
        have = store.dim()
        if have is not None and have != dim:
            raise StoreError(
                f"the store at {store.engine.url.render_as_string(hide_password=True)} holds vectors of "
                f"dimension {have} but the embedding model gives {dim}",
                "use the model the store was built with, or a new data directory / database",
            )
        self.store = store
        self.path = path
        self.dim = dim
        self.factory = factory
        self.nprobe = nprobe
        self.save_interval_s = save_interval_s
        self.index = VectorIndex(dim, factory, nprobe=nprobe)
        self.generation = -1  # the store generation the index reflects
        self._saved_generation = -1
        self._saved_at = 0.0
        self._lock = threading.RLock()

    def open(self) -> str | None:
        """Load the cache file and bring it up to date, or rebuild it from the store. Returns the
        one-line notice to show when it had to be rebuilt (None otherwise)."""
        with self._lock:
            generation = self.store.generation()
            reason = ""
            if self.path is not None:
                try:
                    self.index, self.generation = read_cache(
                        self.path, self.dim, self.store.store_id, self.nprobe
                    )
                    self._saved_generation = self.generation
                except FileNotFoundError:
                    reason = "missing"
                except (CacheUnreadable, KeyError, TypeError, OSError) as exc:
                    reason = f"unreadable ({exc})"
            else:
                reason = "in memory"
            if reason:
                self._rebuild(generation)
            else:
                self.refresh(generation, save=False)
            self.save()
            if not reason or reason == "in memory" or (reason == "missing" and not len(self.index)):
                return None
            return (
                f"index cache '{self.path}' was {reason}; rebuilt from the database: "
                f"{len(self.index)} vectors"
            )

    def _rebuild(self, generation: int) -> None:
        t0 = time.perf_counter()
        index = VectorIndex(self.dim, self.factory, nprobe=self.nprobe)
        for ids, vecs in self.store.vectors():
            index.add(ids.tolist(), vecs)
        self.index, self.generation = index, generation
        log.info(
            "built the vector index from the store: %d vectors in %.1f s",
            len(index),
            time.perf_counter() - t0,
        )

    def refresh(self, generation: int | None = None, *, save: bool = True) -> bool:
        """Bring the index up to the store's generation (read now when not given); True when it
        changed. Reads the generation before the rows, so the index is never labelled newer than
        what it holds."""
        with self._lock:
            generation = self.store.generation() if generation is None else generation
            if generation == self.generation:
                return False
            have = self.index.id_array()
            want = self.store.ready_vec_ids()
            gone = np.setdiff1d(have, want, assume_unique=True)
            new = np.setdiff1d(want, have, assume_unique=True)
            if len(gone) > len(want) // 2 and len(gone) > 1000:  # mostly deleted: rebuild smaller
                self._rebuild(generation)
            else:
                self.index.remove(gone.tolist())
                for ids, vecs in self.store.vectors(new.tolist()):
                    self.index.add(ids.tolist(), vecs)
                log.info(
                    "vector index updated to generation %d: +%d -%d vectors", generation, len(new), len(gone)
                )
                self.generation = generation
            if save and time.monotonic() - self._saved_at >= self.save_interval_s:
                self.save()
            return True

    def save(self) -> None:
        """Write the cache file when it is behind the index (atomically; last rename wins)."""
        with self._lock:
            if self.path is None or self._saved_generation == self.generation:
                return
            try:
                write_cache(self.path, self.index, self.store.store_id, self.generation)
            except OSError as exc:  # only a cache: the next process rebuilds it
                log.warning(
                    "could not write the index cache '%s' (%s); it is rebuilt when needed", self.path, exc
                )
                return
            self._saved_generation = self.generation
            self._saved_at = time.monotonic()


def upgrade_legacy_store(store: MetadataStore, path: Path) -> str | None:
    """A store written before vectors lived in it: copy its chunks' vectors from the old FAISS
    file at ``path`` into the store; documents whose vectors are not there are removed (a rerun
    of the ingest adds them again). Returns a one-line notice, or None when nothing was needed."""
    missing = store.chunks_without_vectors()
    if not missing:
        return None
    copied = 0
    try:
        import faiss

        old = faiss.read_index(str(path))
        legacy = VectorIndex(old.d)
        legacy._index = old
        legacy._prepare(old)
        found, vecs = legacy.vectors_of(missing)
        store.set_vectors(found.tolist(), vecs)
        copied = len(found)
    except Exception as exc:  # no old file, or unreadable: those documents are ingested again
        log.info("no vectors from the old index '%s': %s", path, exc)
    dropped = store.drop_chunks_without_vectors()
    text = f"moved {copied} vectors from the old index '{path}' into the database"
    if dropped:
        text += f"; {len(dropped)} documents had no vectors there and were removed (ingest them again)"
    return text
