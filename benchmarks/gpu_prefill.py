"""Long-context prefill and follow-up questions on the GPU: stock transformers vs gpu.lc.

The model is the Qwen2.5-7B architecture (config values written by hand below) in bf16 with
RANDOM weights: prefill time does not depend on weight values. The document is random token ids.

- stock: ``model(ids, use_cache=True, logits_to_keep=1)`` with transformers' SDPA attention; a
  follow-up question runs on ``copy.deepcopy`` of the prefix cache (the documented way to reuse
  a prompt cache) and, second variant, on the cache itself cropped back after each question.
- ours: :class:`gpu.lc.LongContextEngine` (chunked per-token work, fused projections, one causal
  attention call per layer, split-KV attention for questions over the untouched prefix).

Also checks :func:`gpu.memory.estimate_lc_memory` against the measured peak.

    python benchmarks/gpu_prefill.py --out $OUT/prefill.json     # on the GPU machine
    python benchmarks/gpu_prefill.py --smoke                     # a tiny dry run on the CPU
"""

from __future__ import annotations

import argparse
import copy
import gc
from typing import Any

import torch  # noqa: E402
from gpu_common import device_info, fmt, measure_ceilings, p50, sync, wall, write_report

from gpu.lc import LCConfig, LongContextEngine  # noqa: E402
from gpu.memory import ModelShape, estimate_lc_memory  # noqa: E402

GIB = 1024**3
# The issue's FLOP-limit figures (H100, bf16): GEMMs at ~790 TFLOP/s, attention at ~600.
ISSUE_LIMIT_S = {32768: 0.9, 131072: 7.9}


def qwen25_7b_config() -> Any:
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=152064,
        hidden_size=3584,
        intermediate_size=18944,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        max_position_embeddings=131072,
        rope_theta=1_000_000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        use_sliding_window=False,
        hidden_act="silu",
    )


def tiny_config() -> Any:
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=1000,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=8,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        tie_word_embeddings=False,
    )


def build_model(cfg: Any, device: str, dtype: torch.dtype) -> Any:
    from transformers import Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg._attn_implementation = "sdpa"
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = Qwen2ForCausalLM(cfg)
    finally:
        torch.set_default_dtype(old)
    return model.eval()


def free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def peak_since_reset() -> int:
    return torch.cuda.max_memory_allocated() if torch.cuda.is_available() else 0


def reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def probe_attention(cfg: Any, device: str, length: int) -> dict[str, Any]:
    """Time each SDPA backend on one layer's causal attention at ``length``; check each output."""
    from gpu.lc import ATTENTION_BACKENDS, causal_attention

    h, kv, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.hidden_size // cfg.num_attention_heads
    g = torch.Generator(device=device).manual_seed(0)
    dt = torch.bfloat16 if device == "cuda" else torch.float32
    q = torch.randn(length, h, d, device=device, dtype=dt, generator=g)
    k = torch.randn(length, kv, d, device=device, dtype=dt, generator=g)
    v = torch.randn(length, kv, d, device=device, dtype=dt, generator=g)
    flops = 2.0 * length * length * h * d  # causal: QK^T and PV over half the square
    out: dict[str, Any] = {"length": length}
    ref = None
    for backend in ATTENTION_BACKENDS:
        if backend == "math" and length > 8192 or backend == "efficient" and length > 32768:
            continue
        try:
            res = causal_attention(q, k, v, scale=d**-0.5, backend=backend)
            t = p50(wall(lambda b=backend: causal_attention(q, k, v, scale=d**-0.5, backend=b), 5, warmup=2))
            if ref is None:
                ref = res.float()
            err = float((res.float() - ref).norm() / ref.norm())
            out[backend] = {"ms": 1e3 * t, "tflops": flops / t / 1e12, "rel_err_vs_first": err}
        except Exception as exc:
            out[backend] = {"error": repr(exc)[:300]}
    return out


def probe_split(cfg: Any, device: str, length: int, backend: str) -> dict[str, Any]:
    """One layer's causal attention at ``length``: one call vs :func:`gpu.lc.split_causal_attention`
    with several block sizes (time, TFLOP/s, error against the one call)."""
    from gpu.lc import causal_attention, split_causal_attention

    h, kv, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.hidden_size // cfg.num_attention_heads
    g = torch.Generator(device=device).manual_seed(0)
    q = torch.randn(length, h, d, device=device, dtype=torch.bfloat16, generator=g)
    k = torch.randn(length, kv, d, device=device, dtype=torch.bfloat16, generator=g)
    v = torch.randn(length, kv, d, device=device, dtype=torch.bfloat16, generator=g)
    flops = 2.0 * length * length * h * d
    sc = d**-0.5
    ref = causal_attention(q, k, v, scale=sc, backend=backend).float()
    t = p50(wall(lambda: causal_attention(q, k, v, scale=sc, backend=backend), 5, warmup=2))
    out: dict[str, Any] = {"length": length, "one_call": {"ms": 1e3 * t, "tflops": flops / t / 1e12}}
    for block in (4096, 8192, 16384, 32768):
        if block >= length:
            continue
        try:
            res = split_causal_attention(q, k, v, scale=sc, block=block, backend=backend).float()
            err = float((res - ref).norm() / ref.norm())
            fn = lambda b=block: split_causal_attention(q, k, v, scale=sc, block=b, backend=backend)  # noqa: E731
            t = p50(wall(fn, 5, warmup=2))
            out[block] = {"ms": 1e3 * t, "tflops": flops / t / 1e12, "rel_err": err}
        except Exception as exc:
            out[block] = {"error": repr(exc)[:300]}
    return out


def time_prefill_stock(model: Any, ids: torch.Tensor, question: torch.Tensor, reps: int) -> dict[str, Any]:
    reset_peak()
    base = torch.cuda.memory_allocated() if torch.cuda.is_available() else 0
    holder: dict[str, Any] = {}

    def run() -> None:
        holder.pop("out", None)
        holder["out"] = model(ids[None], use_cache=True, logits_to_keep=1)

    with torch.inference_mode():
        times = wall(run, reps)
        cache = holder["out"].past_key_values
        holder.clear()
        r: dict[str, Any] = {"prefill_s": min(times), "prefill_all_s": times}
        r["peak_gib"] = peak_since_reset() / GIB
        r["peak_over_weights_gib"] = (peak_since_reset() - base) / GIB
        n = ids.shape[0]

        def follow_deepcopy() -> None:
            model(question[None], past_key_values=copy.deepcopy(cache), use_cache=True, logits_to_keep=1)

        def follow_crop() -> None:
            model(question[None], past_key_values=cache, use_cache=True, logits_to_keep=1)
            cache.crop(-int(question.shape[0]))  # drop the question again
            assert cache.get_seq_length() == n

        for name, fn in (("followup_deepcopy_s", follow_deepcopy), ("followup_crop_s", follow_crop)):
            try:
                r[name] = p50(wall(fn, 5, warmup=1))
            except Exception as exc:
                r[name] = None
                r[name.replace("_s", "_error")] = repr(exc)[:300]
    cache = None
    free()
    return r


def time_prefill_ours(
    engine: LongContextEngine, ids: torch.Tensor, question: torch.Tensor, reps: int, shape: ModelShape
) -> dict[str, Any]:
    free()
    reset_peak()
    holder: dict[str, Any] = {}
    times = []
    peak = 0
    for _ in range(reps):
        holder.pop("p", None)
        free()
        reset_peak()
        times += wall(lambda: holder.__setitem__("p", engine.prefill(ids)), 1)
        peak = max(peak, peak_since_reset())
    prefix = holder["p"]
    est = estimate_lc_memory(
        shape,
        int(ids.shape[0]),
        chunk_tokens=engine.config.chunk_tokens,
        question_capacity=engine.config.question_capacity,
        kv_repeat=engine.config.attention in ("cudnn", "efficient"),
    )
    r: dict[str, Any] = {"prefill_s": min(times), "prefill_all_s": times}
    r["peak_gib"] = peak / GIB
    r["estimate_gib"] = est.total / GIB
    r["estimate_error"] = (est.total - peak) / peak if peak else None
    r["estimate"] = est.describe()
    asks = wall(lambda: engine.ask(prefix, question), 7, warmup=2)
    r["followup_s"] = p50(asks)
    r["followup_all_s"] = asks
    r["followup_eager_s"] = p50(wall(lambda: engine._extend(prefix, question, prefix.length), 5, warmup=1))
    r["followup_graph_vs_eager_rel_diff"] = float(
        (engine.ask(prefix, question) - engine._extend(prefix, question, prefix.length)).norm()
        / engine._extend(prefix, question, prefix.length).norm()
    )
    gen_tokens = 16
    t = wall(lambda: engine.generate(prefix, question, gen_tokens), 1, warmup=0)[0]
    r["generate_16_tokens_s"] = t
    prefix = None
    holder.clear()
    free()
    return r


def profile_prefill(engine: LongContextEngine, ids: torch.Tensor) -> dict[str, Any]:
    """CUDA time of one prefill by kind of kernel (from torch.profiler), and the top kernels."""
    from torch.profiler import ProfilerActivity, profile

    engine.prefill(ids)
    sync()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        engine.prefill(ids)
        sync()
    kinds: dict[str, float] = {}
    top = []
    for ev in prof.key_averages():
        t = getattr(ev, "device_time_total", None) or getattr(ev, "cuda_time_total", 0)
        if not t or ev.key.startswith(("ProfilerStep", "cuda")):
            continue
        name = ev.key.lower()
        if "gemm" in name or "cutlass" in name or "sm90" in name and "xmma" in name or "nvjet" in name:
            kind = "matmul"
        elif "flash" in name or "fmha" in name or "cudnn" in name or "attention" in name:
            kind = "attention"
        elif "triton" in name:
            kind = "fused elementwise (triton)"
        else:
            kind = "other elementwise / copies"
        kinds[kind] = kinds.get(kind, 0.0) + t / 1e6
        top.append((t / 1e6, ev.key[:90], ev.count))
    top.sort(reverse=True)
    return {"seconds_by_kind": kinds, "top_kernels": top[:12]}


def executed_flops(shape: ModelShape, n: int) -> tuple[float, float]:
    """The FLOPs the engine actually runs with ``prune_last_layer``: the last layer projects only
    keys and values for every token and does the rest for the last token alone."""
    lin, att = shape.prefill_flops(n)
    h, q, kv = shape.hidden, shape.n_heads * shape.head_dim, shape.n_kv_heads * shape.head_dim
    per_layer_token = 2 * (h * q + 2 * h * kv + q * h + 3 * h * shape.intermediate)
    lin_x = lin - per_layer_token * n + 2 * (2 * h * kv) * n + per_layer_token
    att_x = att * (shape.n_layers - 1) / shape.n_layers + 4.0 * n * q
    return lin_x, att_x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--lengths", default="8192,32768,131072")
    ap.add_argument("--attention", default="best", help="best (probe), or one of gpu.lc.ATTENTION_BACKENDS")
    ap.add_argument("--no-stock", action="store_true")
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    cfg = tiny_config() if args.smoke else qwen25_7b_config()
    lengths = [256, 1024] if args.smoke else [int(x) for x in args.lengths.split(",")]
    shape = ModelShape.from_config(cfg)
    payload: dict[str, Any] = {"device": device_info(), "ceilings": {} if args.smoke else measure_ceilings()}
    payload["model"] = "Qwen2.5-7B architecture, bf16, random weights" if not args.smoke else "tiny Qwen2"
    payload["params"] = shape.n_params
    peak_tflops = payload["ceilings"].get("bf16_tflops")

    probes = [probe_attention(cfg, device, n) for n in ([512] if args.smoke else [8192, 32768, 131072])]
    payload["attention_probe"] = probes
    print(probes, flush=True)

    def best_backend(probe: dict[str, Any]) -> str:
        ok = {
            b: v["ms"]
            for b, v in probe.items()
            if isinstance(v, dict) and "ms" in v and v["rel_err_vs_first"] < 2e-2
        }
        return min(ok, key=lambda b: ok[b]) if ok else "auto"

    # The kernel for each length: the fastest in the probe at that length (else at the longest).
    by_len = {p["length"]: best_backend(p) for p in probes}
    backend_for = {
        n: (by_len.get(n, best_backend(probes[-1])) if args.attention == "best" else args.attention)
        for n in lengths
    }
    payload["attention_by_length"] = backend_for
    split_for = {n: 0 for n in lengths}
    if device == "cuda":
        payload["split_probe"] = [probe_split(cfg, device, n, backend_for[n]) for n in lengths if n >= 16384]
        print(payload["split_probe"], flush=True)
        for sp in payload["split_probe"]:
            ok = {
                b: v["ms"] for b, v in sp.items() if isinstance(b, int) and "ms" in v and v["rel_err"] < 1e-2
            }
            if ok and min(ok.values()) < 0.98 * sp["one_call"]["ms"]:
                split_for[sp["length"]] = min(ok, key=lambda b: ok[b])
    payload["attention_split_by_length"] = split_for

    model = build_model(cfg, device, dtype)
    g = torch.Generator(device=device).manual_seed(1)
    question = torch.randint(0, cfg.vocab_size, (100,), device=device, generator=g)
    docs = {n: torch.randint(0, cfg.vocab_size, (n,), device=device, generator=g) for n in lengths}
    stock: dict[int, Any] = {}
    if not args.no_stock:
        with torch.inference_mode():
            model(docs[lengths[0]][None], use_cache=True, logits_to_keep=1)  # warm-up
        for n in lengths:
            try:
                stock[n] = time_prefill_stock(model, docs[n], question, reps=1 if n > 65536 else 2)
            except torch.OutOfMemoryError as exc:
                stock[n] = {"error": repr(exc)[:300]}
            free()
            print("stock", n, stock[n], flush=True)
    payload["stock"] = stock

    ours: dict[int, Any] = {}
    variants: dict[str, Any] = {}
    mid = 32768 if 32768 in lengths else lengths[min(1, len(lengths) - 1)]
    backend = backend_for[mid]
    for kernels, chunk, prune, split, streams in (
        ("triton", 8192, True, 0, 1),
        ("triton", 16384, True, 0, 1),
        ("triton", 8192, True, 0, 2),
        ("triton", 4096, True, 0, 2),
        ("triton", 8192, True, 0, 3),
        ("triton", 4096, True, 0, 3),
        ("triton", 8192, True, 16384, 1),
        ("triton", 8192, True, 16384, 2),
        ("triton", 16384, False, 0, 1),
        ("torch", 16384, True, 0, 1),
    ):
        name = f"kernels={kernels},chunk={chunk},prune={prune},split={split},streams={streams}"
        if kernels == "triton" and device != "cuda" or split and device != "cuda":
            continue
        try:
            cfg_v = LCConfig(
                attention=backend,
                kernels=kernels,
                chunk_tokens=chunk,
                prune_last_layer=prune,
                attention_split=split,
                streams=streams,
            )
            eng = LongContextEngine(model, cfg_v)
            eng.prefill(docs[lengths[0]])  # warm-up
            variants[name] = p50(wall(lambda eng=eng: eng.prefill(docs[mid]), 3))
            del eng
        except Exception as exc:
            variants[name + "_error"] = repr(exc)[:300]
        free()
    payload["variants_at_mid_length"] = variants
    print(variants, flush=True)
    timed = {k: v for k, v in variants.items() if "error" not in k and "prune=True" in k}
    best = (
        min(timed, key=lambda k: timed[k])
        if timed
        else "kernels=torch,chunk=8192,prune=True,split=0,streams=1"
    )
    pick = dict(part.split("=") for part in best.split(","))
    kernels, chunk, streams = pick["kernels"], int(pick["chunk"]), int(pick["streams"])
    split_for[mid] = int(pick["split"])  # measured on the whole prefill at this length

    def make_engine(n: int) -> LongContextEngine:
        return LongContextEngine(
            model,
            LCConfig(
                attention=backend_for[n],
                kernels=kernels,
                chunk_tokens=chunk,
                attention_split=split_for[n],
                streams=streams,
            ),
        )

    payload["ours_config"] = {
        "attention": backend_for,
        "kernels": kernels,
        "chunk_tokens": chunk,
        "graphs": True,
        "prune_last_layer": True,
        "attention_split": split_for,
        "streams": streams,
    }
    if device == "cuda":
        payload["profile_mid_length"] = profile_prefill(make_engine(mid), docs[mid])
        print(payload["profile_mid_length"], flush=True)
    for n in lengths:
        try:
            engine = make_engine(n)
            engine.prefill(docs[lengths[0]])  # warm-up of this engine's kernels
            ours[n] = time_prefill_ours(engine, docs[n], question, reps=1 if n > 65536 else 2, shape=shape)
        except torch.OutOfMemoryError as exc:
            ours[n] = {"error": repr(exc)[:300]}
        print("ours", n, ours[n], flush=True)
        free()
    payload["ours"] = ours

    table = [
        [
            "tokens",
            "method",
            "prefill (s)",
            "x stock",
            "FLOP-limit s (issue / all at peak)",
            "x limit",
            "100-token follow-up (ms)",
            "follow-up % of prefill",
            "peak GiB (est.)",
        ]
    ]
    for n in lengths:
        lin, att = shape.prefill_flops(n)
        at_peak = (lin + att) / (peak_tflops * 1e12) if peak_tflops else None
        limit = ISSUE_LIMIT_S.get(n, at_peak)
        lin_x, att_x = executed_flops(shape, n)
        payload.setdefault("flop_limit_s", {})[n] = {
            "issue": ISSUE_LIMIT_S.get(n),
            "issue_formula": "linear FLOPs / 790e12 + causal attention FLOPs / 600e12",
            "all_at_peak": at_peak,
            "linear_tflop": lin / 1e12,
            "attention_tflop": att / 1e12,
            "formula": "linear = 2 * n * layers * (h*q + 2*h*kv + q*h + 3*h*inter) + 2*h*vocab; "
            "attention = 2 * n^2 * q * layers (QK^T and PV, 2*n^2*q each, half the square: causal)",
            "issue_style_limit_s": lin / 790e12 + att / 600e12,
            "executed_with_pruned_last_layer_tflop": {"linear": lin_x / 1e12, "attention": att_x / 1e12},
            "executed_limit_issue_style_s": lin_x / 790e12 + att_x / 600e12,
        }
        s, o = stock.get(n, {}), ours.get(n, {})
        if "prefill_s" in s:
            fu = min(x for x in (s.get("followup_deepcopy_s"), s.get("followup_crop_s")) if x is not None)
            table.append(
                [
                    f"{n:,}",
                    "transformers SDPA (stock)",
                    fmt(s["prefill_s"], 3),
                    "1.00",
                    f"{fmt(ISSUE_LIMIT_S.get(n))} / {fmt(at_peak)}",
                    fmt(s["prefill_s"] / limit if limit else None),
                    fmt(1e3 * fu, 1),
                    fmt(100 * fu / s["prefill_s"], 2),
                    fmt(s["peak_gib"], 1),
                ]
            )
        if "prefill_s" in o:
            base = s.get("prefill_s")
            table.append(
                [
                    f"{n:,}",
                    "gpu.lc LongContextEngine",
                    fmt(o["prefill_s"], 3),
                    fmt(base / o["prefill_s"] if base else None),
                    f"{fmt(ISSUE_LIMIT_S.get(n))} / {fmt(at_peak)}",
                    fmt(o["prefill_s"] / limit if limit else None),
                    fmt(1e3 * o["followup_s"], 1),
                    fmt(100 * o["followup_s"] / o["prefill_s"], 2),
                    f"{fmt(o['peak_gib'], 1)} ({fmt(o['estimate_gib'], 1)})",
                ]
            )
    sync()
    write_report(args.out, "gpu_prefill", payload, table)


if __name__ == "__main__":
    main()
