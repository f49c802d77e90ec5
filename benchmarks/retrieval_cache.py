"""A content-addressed on-disk cache of embeddings for the retrieval benchmarks.

Embedding every LaRA 32k document takes minutes on 2 cores; the benchmarks embed
each distinct text once per encoder setting and keep the vectors under
``/tmp/longqa-bench/`` (never in the repository). Keys are sha1 of the text.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

DEFAULT_DIR = Path("/tmp/longqa-bench/vectors")


def text_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class VectorCache:
    """Vectors of one encoder setting (``tag``), stored as append-only .npz shards."""

    def __init__(self, tag: str, root: Path = DEFAULT_DIR) -> None:
        self.dir = root / tag
        self.dir.mkdir(parents=True, exist_ok=True)
        self._vecs: dict[str, np.ndarray] = {}
        for shard in sorted(self.dir.glob("shard-*.npz")):
            with np.load(shard) as z:
                for k, v in zip(z["keys"], z["vectors"]):
                    self._vecs[str(k)] = v

    def __len__(self) -> int:
        return len(self._vecs)

    def __contains__(self, key: str) -> bool:
        return key in self._vecs

    def put(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Store vectors under explicit keys (for vectors that are not a function of one text)."""
        if not len(keys):
            return
        np.savez(self.dir / f"shard-{time.time_ns()}.npz", keys=np.array(list(keys)), vectors=vectors)
        for k, v in zip(keys, vectors):
            self._vecs[k] = np.asarray(v, dtype=np.float32)

    def lookup(self, keys: Sequence[str]) -> np.ndarray:
        return np.stack([self._vecs[k] for k in keys]).astype(np.float32)

    def pack(self, dtype: str = "float32", max_bytes: int = 15_000_000) -> list[Path]:
        """Rewrite the cache as few shards of at most ``max_bytes`` (to move it between machines)."""
        keys = sorted(self._vecs)
        if not keys:
            return []
        dim = next(iter(self._vecs.values())).shape[0]
        per = max(1, max_bytes // (dim * np.dtype(dtype).itemsize + 48))
        old = sorted(self.dir.glob("shard-*.npz"))
        out = []
        for s in range(0, len(keys), per):
            part = keys[s : s + per]
            path = self.dir / f"shard-packed-{s // per:03d}.npz.tmp"
            with open(path, "wb") as fh:
                np.savez(
                    fh, keys=np.array(part), vectors=np.stack([self._vecs[k] for k in part]).astype(dtype)
                )
            out.append(path)
        for f in old:
            f.unlink()
        final = []
        for path in out:
            dest = path.with_name(path.name.removesuffix(".tmp"))
            path.rename(dest)
            final.append(dest)
        return final

    def get(
        self,
        texts: Sequence[str],
        embed: Callable[[list[str]], np.ndarray],
        *,
        batch: int = 512,
        log: Callable[[str], None] = print,
    ) -> np.ndarray:
        """Vectors of ``texts``; the missing ones are embedded (longest first) and saved."""
        keys = [text_key(t) for t in texts]
        missing: dict[str, str] = {}
        for k, t in zip(keys, texts):
            if k not in self._vecs and k not in missing:
                missing[k] = t
        if missing:
            todo = sorted(missing.items(), key=lambda kv: -len(kv[1]))
            t0 = time.perf_counter()
            for s in range(0, len(todo), batch):
                part = todo[s : s + batch]
                vecs = embed([t for _, t in part]).astype(np.float32)
                shard = self.dir / f"shard-{time.time_ns()}.npz"
                np.savez(shard, keys=np.array([k for k, _ in part]), vectors=vecs)
                for (k, _), v in zip(part, vecs):
                    self._vecs[k] = v
                done = s + len(part)
                rate = done / max(1e-9, time.perf_counter() - t0)
                log(f"  embedded {done}/{len(todo)} texts ({rate:.1f}/s) into {self.dir.name}")
        if not keys:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self._vecs[k] for k in keys]).astype(np.float32)


def pack_tree(root: Path, fp32: Sequence[str] = ()) -> None:
    """Pack every cache under ``root`` (``root/<chunking>/<tag>``); float16 except the
    ``chunking/tag`` names in ``fp32``."""
    for d in sorted(p for p in root.glob("*/*") if p.is_dir()):
        name = f"{d.parent.name}/{d.name}"
        dtype = "float32" if name in fp32 else "float16"
        VectorCache(d.name, d.parent).pack(dtype)
        print(f"packed {name} as {dtype}")
