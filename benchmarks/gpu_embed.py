"""Embedding throughput on the GPU: stock sentence-transformers vs gpu.embed.FastEmbedder.

Models are built from configs with RANDOM weights (throughput does not depend on weight values):
the all-MiniLM-L6-v2 architecture (BERT, 6 layers, hidden 384), BERT-base, and ModernBERT-base.
The texts are the LaRA 32k documents cut by the project's chunker (benchmarks/gpu_prepare_data.py
writes them into .gpu_bench/ with the MiniLM tokenizer; carry that folder to the GPU machine).

    python benchmarks/gpu_embed.py --out $OUT/embed.json          # on the GPU machine
    python benchmarks/gpu_embed.py --smoke                         # a tiny dry run on the CPU

Every figure is tokens per second over the whole corpus (special tokens included, texts cut at
the model's window); "end to end" means text in, float32 vectors in host memory out.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch  # noqa: E402  (after gpu_common, which puts the repo on sys.path)
import torch.nn.functional as F  # noqa: E402
from gpu_common import ROOT, device_info, fmt, measure_ceilings, p50, sync, wall, write_report

from gpu.embed import BatchTokenizer, EmbedConfig, FastEmbedder  # noqa: E402

DATA = ROOT / ".gpu_bench"


def load_texts(name: str, limit: int | None) -> list[str]:
    with gzip.open(DATA / name, "rt", encoding="utf-8") as fh:
        texts = [json.loads(line) for line in fh]
    return texts[:limit] if limit else texts


def st_dir(tmp: Path, cfg: Any, max_seq_length: int, seed: int) -> Path:
    """A sentence-transformers model folder (Transformer, mean Pooling, Normalize), random weights."""
    from transformers import BertModel

    d = tmp / f"st_{cfg.hidden_size}_{cfg.num_hidden_layers}"
    torch.manual_seed(seed)
    BertModel(cfg).save_pretrained(d)
    for f in (DATA / "tokenizer").iterdir():
        shutil.copy(f, d / f.name)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (d / "modules.json").write_text(json.dumps(modules))
    (d / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length}))
    (d / "1_Pooling").mkdir(exist_ok=True)
    pooling = {"word_embedding_dimension": cfg.hidden_size, "pooling_mode_mean_tokens": True}
    (d / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    (d / "2_Normalize").mkdir(exist_ok=True)
    return d


def padded_batches(
    flat: np.ndarray, lens: np.ndarray, batch: int, device: str
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Length-sorted, pre-tokenised padded batches already on the device (the 'bare forward')."""
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
    order = np.argsort(-lens, kind="stable")
    out = []
    for i in range(0, len(order), batch):
        sel = order[i : i + batch]
        width = int(lens[sel].max())
        ids = np.zeros((len(sel), width), dtype=np.int64)
        mask = np.zeros((len(sel), width), dtype=np.int64)
        for r, s in enumerate(sel):
            ids[r, : lens[s]] = flat[starts[s] : starts[s] + lens[s]]
            mask[r, : lens[s]] = 1
        out.append((torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)))
    return out


@torch.inference_mode()
def bare_forward(model: Any, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    for ids, mask in batches:
        h = model(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(h.dtype)
        F.normalize((h * m).sum(1).float() / m.sum(1).float(), dim=-1)


def encoder_flops(cfg: Any, lens: np.ndarray, kind: str) -> float:
    """Matrix FLOPs to encode all sequences (linear layers + attention), for the FLOP limit."""
    h, n_layers = cfg.hidden_size, cfg.num_hidden_layers
    tokens, sq = float(lens.sum()), float((lens.astype(np.float64) ** 2).sum())
    if kind == "modernbert":
        i = cfg.intermediate_size
        linear = 2 * (3 * h * h + h * h + h * 2 * i + i * h)
        # Local layers see a sliding window; the others ("full_attention") the whole sequence.
        win = getattr(cfg, "local_attention", 128)
        per_global = 4 * h * sq
        per_local = 4 * h * float(np.minimum(lens, win).astype(np.float64).dot(lens))
        types = getattr(cfg, "layer_types", None)
        if types:
            n_global = sum(1 for t in types if t == "full_attention")
        else:
            n_global = len(range(0, n_layers, getattr(cfg, "global_attn_every_n_layers", 3)))
        attn = n_global * per_global + (n_layers - n_global) * per_local
        return n_layers * linear * tokens + attn
    linear = 2 * (4 * h * h + 2 * h * cfg.intermediate_size)
    return n_layers * (linear * tokens + 4 * h * sq)


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(1).min())


def run_encoder(
    name: str,
    cfg: Any,
    texts: list[str],
    max_len: int,
    half: torch.dtype,
    st_batches: list[tuple[str, int, torch.dtype]],
    bare_batch: int,
    budgets: list[int],
    device: str,
    tmp: Path,
    peak: float | None,
    reps: int,
    quick: bool = False,
) -> dict[str, Any]:
    from sentence_transformers import SentenceTransformer
    from transformers import BertModel

    res: dict[str, Any] = {"model": name, "texts": len(texts), "random_weights": True}
    d = st_dir(tmp, cfg, max_len, seed=0)
    tok = BatchTokenizer(SentenceTransformer(str(d), device="cpu")[0].tokenizer, max_len)
    flat, lens = tok.encode(texts)
    n_tok = int(lens.sum())
    res["tokens"] = n_tok
    res["mean_len"] = n_tok / len(texts)
    t_tok = p50(wall(lambda: tok.encode(texts), reps=3))
    res["tokenize_only_tok_s"] = n_tok / t_tok
    slow = BatchTokenizer(SentenceTransformer(str(d), device="cpu")[0].tokenizer, max_len, fast=False)
    res["tokenize_only_with_offsets_tok_s"] = n_tok / p50(wall(lambda: slow.encode(texts), reps=3))
    flops = encoder_flops(cfg, lens, "bert")
    if peak:
        res["flop_limit_tok_s"] = n_tok / (flops / (peak * 1e12))
    rows: dict[str, float] = {}
    vectors: dict[str, np.ndarray] = {}

    # Stock sentence-transformers encode (sorts by length itself), end to end.
    for label, bs, dtype in st_batches:
        st = SentenceTransformer(str(d), device=device)
        if dtype != torch.float32:
            st = st.to(dtype)
        st.encode(texts[:256], batch_size=bs)
        times = wall(
            lambda st=st, bs=bs, lb=label: vectors.__setitem__(lb, st.encode(texts, batch_size=bs)), reps
        )
        rows[label] = n_tok / min(times)
        del st
        gc.collect()
        torch.cuda.empty_cache() if torch.cuda.is_available() else None

    # A plain half-precision SDPA forward over length-sorted, pre-tokenised batches (model only).
    if bare_batch:
        hf = BertModel.from_pretrained(str(d), attn_implementation="sdpa", dtype=half).to(device).eval()
        batches = padded_batches(flat, lens, bare_batch, device)
        bare_forward(hf, batches[:2])
        label = f"bare {str(half).split('.')[-1]} SDPA forward, sorted batches of {bare_batch} (model only)"
        rows[label] = n_tok / min(wall(lambda hf=hf, b=batches: bare_forward(hf, b), reps))
        del hf, batches
        gc.collect()

    # FastEmbedder: packed, no padding, flash varlen; eager for each budget, then variants.
    st32 = SentenceTransformer(str(d), device="cpu")
    best_budget, best_rate = budgets[0], 0.0
    dname = str(half).split(".")[-1]

    def make(**kw: Any) -> FastEmbedder:
        return FastEmbedder.from_sentence_transformer(st32, EmbedConfig(device=device, dtype=dname, **kw))

    for budget in budgets:
        fe = make(token_budget=budget)
        fe.embed_tokens(flat[: lens[:64].sum()], lens[:64])
        rate = n_tok / min(wall(lambda fe=fe: fe.embed_tokens(flat, lens), reps))
        rows[f"FastEmbedder {dname}, packs of {budget:,} tokens (model only)"] = rate
        if rate > best_rate:
            best_budget, best_rate = budget, rate
    res["best_budget"] = best_budget

    def model_only(label: str, **kw: Any) -> float | None:
        try:
            fe = make(token_budget=best_budget, **kw)
            fe.embed_tokens(flat[: lens[:64].sum()], lens[:64])
            rate = n_tok / min(wall(lambda fe=fe: fe.embed_tokens(flat, lens), reps))
        except Exception as exc:  # report and go on: the other figures still count
            res[f"error {label}"] = repr(exc)[:500]
            return None
        rows[f"FastEmbedder {dname}, {label} (model only)"] = rate
        return rate

    model_only("unfused GELU", fused_gelu=False)
    model_only("eager add + LayerNorm (no Triton)", kernels="torch")
    model_only("cuDNN ragged attention", attention="cudnn")

    # End to end (text in, vectors in host memory out): the default, then variants.
    e2e = [("default (thread, groups of 512, part-filled packs carried)", {})]  # at the best budget
    if not quick:
        e2e += [
            ("tokenised in a worker process", {"tokenize": "process"}),
            ("groups of 1,024", {"group_size": 1024}),
            ("groups of 256", {"group_size": 256}),
            ("no carrying of part-filled packs", {"carry_partial": False}),
            ("tokenised in a worker process, groups of 1,024", {"tokenize": "process", "group_size": 1024}),
        ]
    for tag, kw in e2e:
        fe = None
        try:
            fe = make(token_budget=best_budget, **kw)
            for n in (64, 700, 2000):  # warm up a few pack shapes (and start the worker process)
                fe.embed(texts[:n])
            label = f"FastEmbedder {dname}, end to end, {tag}"
            times = wall(lambda fe=fe, label=label: vectors.__setitem__(label, fe.embed(texts)), reps + 1)
            rows[label] = n_tok / min(times)
            res[f"end_to_end_all_s {tag}"] = times
        except Exception as exc:  # report and go on: the other figures still count
            res[f"error end to end {tag}"] = repr(exc)[:500]
        finally:
            if fe is not None:
                fe.close()
    ref = next(iter(vectors))
    res["baseline"] = next(iter(rows)) if not st_batches else ref
    res["min_cosine_vs_" + ref] = {k: min_cosine(vectors[ref], v) for k, v in vectors.items() if k != ref}
    res["throughput_tok_s"] = rows
    if peak:
        res["fraction_of_flop_limit"] = {k: v / res["flop_limit_tok_s"] for k, v in rows.items()}
    return res


@torch.inference_mode()
def run_modernbert(
    texts_flat: np.ndarray, lens: np.ndarray, device: str, peak: float | None, smoke: bool
) -> dict:
    from transformers import ModernBertConfig, ModernBertModel

    cfg = ModernBertConfig(reference_compile=False)
    if smoke:
        cfg = ModernBertConfig(
            num_hidden_layers=3,
            hidden_size=64,
            intermediate_size=96,
            num_attention_heads=4,
            reference_compile=False,
        )
    torch.manual_seed(0)
    model = (
        ModernBertModel._from_config(cfg, attn_implementation="sdpa", dtype=torch.bfloat16).to(device).eval()
    )
    batches = padded_batches(texts_flat, lens, 256, device)
    bare_forward(model, batches[:2])
    n_tok = int(lens.sum())
    t = min(wall(lambda m=model, b=batches: bare_forward(m, b), 2))
    res = {
        "model": "ModernBERT-base (random weights, BERT token ids)",
        "tokens": n_tok,
        "bf16_sdpa_sorted_256_tok_s": n_tok / t,
    }
    if peak:
        limit = n_tok / (encoder_flops(cfg, lens, "modernbert") / (peak * 1e12))
        res["flop_limit_tok_s"] = limit
        res["fraction_of_flop_limit"] = res["bf16_sdpa_sorted_256_tok_s"] / limit
    del model
    return res


def main() -> None:
    from transformers import BertConfig

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="write the JSON report here")
    ap.add_argument("--smoke", action="store_true", help="tiny models and few texts (CPU dry run)")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: minilm,base,modernbert")
    ap.add_argument("--no-stock", action="store_true", help="skip stock encode and the bare forward")
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    skip = set(filter(None, args.skip.split(",")))
    limit = 48 if args.smoke else None
    reps = 1 if args.smoke else 2
    info = device_info()
    ceilings = {} if args.smoke else measure_ceilings()
    peak = ceilings.get("bf16_tflops")
    half = torch.float16 if device == "cuda" else torch.float32
    bhalf = torch.bfloat16 if device == "cuda" else torch.float32
    small = dict(num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=4)
    payload: dict[str, Any] = {"device": info, "ceilings": ceilings, "results": []}
    table = [["model", "method", "tokens/s", "x stock encode", "% FLOP limit"]]
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        jobs = []
        if "minilm" not in skip:
            cfg = BertConfig(
                hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536
            )
            jobs.append(
                (
                    "MiniLM-L6 (all-MiniLM-L6-v2 architecture)",
                    cfg,
                    "lara_chunks_240.jsonl.gz",
                    256,
                    half,
                    [
                        ("st encode fp32 batch 32 (default)", 32, torch.float32),
                        ("st encode fp16 batch 512", 512, half),
                    ],
                    512,
                    [65536, 131072],
                )
            )
        if "base" not in skip:
            jobs.append(
                (
                    "BERT-base",
                    BertConfig(),
                    "lara_chunks_490.jsonl.gz",
                    512,
                    bhalf,
                    [("st encode fp32 batch 32 (default)", 32, torch.float32)],
                    256,
                    [65536, 131072, 262144],
                )
            )
        for name, cfg, data, max_len, dt, st_b, bare_b, budgets in jobs:
            if args.smoke:
                cfg = BertConfig(**small)
                budgets = [512, 2048]
            texts = load_texts(data, limit)
            if args.no_stock:
                st_b, bare_b = [], 0
            quick = name.startswith("MiniLM")
            res = run_encoder(
                name, cfg, texts, max_len, dt, st_b, bare_b, budgets, device, tmp, peak, reps, quick
            )
            payload["results"].append(res)
            base = res["throughput_tok_s"][res["baseline"]]
            for method, rate in res["throughput_tok_s"].items():
                frac = res.get("fraction_of_flop_limit", {}).get(method)
                table.append(
                    [name, method, fmt(rate, 0), fmt(rate / base), fmt(frac * 100 if frac else None, 1)]
                )
            print(json.dumps(res, indent=1, default=float), flush=True)
        if "modernbert" not in skip:
            texts = load_texts("lara_chunks_490.jsonl.gz", limit)
            from transformers import AutoTokenizer

            tok = BatchTokenizer(AutoTokenizer.from_pretrained(str(DATA / "tokenizer")), 512)
            flat, lens = tok.encode(texts)
            try:
                res = run_modernbert(flat, lens, device, peak, args.smoke)
                payload["results"].append(res)
                frac = res.get("fraction_of_flop_limit")
                table.append(
                    [
                        res["model"],
                        "HF bf16 SDPA, sorted batches of 256 (model only)",
                        fmt(res["bf16_sdpa_sorted_256_tok_s"], 0),
                        "-",
                        fmt(frac * 100 if frac else None, 1),
                    ]
                )
            except Exception as exc:
                payload["modernbert_error"] = repr(exc)[:500]
    sync()
    write_report(args.out, "gpu_embed", payload, table)


if __name__ == "__main__":
    main()
