"""The transformers backend reading a document once, on a GPU: cold LC prefill of a ~32k-token
document, then time to first token of follow-up questions that reuse its ``past_key_values``.

Runs the real Qwen2.5-1.5B architecture built from its config with random weights (no weights
travel to the GPU machine; throughput does not depend on weight values) and a word-level
tokenizer made here, so every word is one token:

    python -m benchmarks.answer_lc_gpu --doc-tokens 30000 --out result.json
    python -m benchmarks.answer_lc_gpu --doc-tokens 30000 --lc-engine off   # the model's own forward

For comparison, the same follow-up question answered without reuse (reading everything).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from app.answering.prompts import lc_messages
from app.llm.base import Message
from app.llm.transformers_backend import TransformersGenerator

QWEN25_15B = dict(
    vocab_size=151936,
    hidden_size=1536,
    intermediate_size=8960,
    num_hidden_layers=28,
    num_attention_heads=12,
    num_key_value_heads=2,
    max_position_embeddings=32768,
    rope_theta=1000000.0,
    tie_word_embeddings=True,
)
TEMPLATE = (
    "{% for m in messages %}<|im_start|> {{ m['role'] }} {{ m['content'] }} <|im_end|> {% endfor %}"
    "{% if add_generation_prompt %}<|im_start|> assistant {% endif %}"
)


def build(model_dir: Path, vocab: int, dtype: str):  # type: ignore[no-untyped-def]
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    words = {f"w{i}": i for i in range(vocab - 8)}
    for j, special in enumerate(["<|im_start|>", "<|im_end|>", "<unk>"]):
        words[special] = vocab - 8 + j
    tok = Tokenizer(models.WordLevel(words, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<|im_end|>")
    fast.chat_template = TEMPLATE
    fast.save_pretrained(model_dir)
    cfg = Qwen2Config(**QWEN25_15B, eos_token_id=vocab - 7, bos_token_id=vocab - 8)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = Qwen2ForCausalLM(cfg).to(getattr(torch, dtype))
    model.save_pretrained(model_dir)
    return fast


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--doc-tokens", type=int, default=30000)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--lc-engine", default="auto", help="auto (the engine on CUDA), on or off")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    import torch

    vocab = QWEN25_15B["vocab_size"]
    model_dir = Path(tempfile.mkdtemp(prefix="qwen25-random-"))
    t0 = time.perf_counter()
    fast = build(model_dir, vocab, args.dtype)
    gen = TransformersGenerator(
        model_dir,
        name="qwen2.5-1.5b-arch-random",
        dtype=args.dtype,
        cache_bytes=8 << 30,
        lc_engine=args.lc_engine,
    )
    cold_ref = TransformersGenerator(model_dir, dtype=args.dtype, min_prefix_tokens=10**9)
    print(f"built and loaded in {time.perf_counter() - t0:.1f} s on {gen.device}", flush=True)
    for g in (gen, cold_ref):  # some transformers versions lose the word-level tokenizer on loading
        if g.count_tokens("w1 w2 w3") != 3:
            print("using the word-level tokenizer built here", flush=True)
            g._tok = fast
        assert g.count_tokens("w1 w2 w3") == 3, "the word-level tokenizer does not split words"
    rng = random.Random(0)
    doc = " ".join(f"w{rng.randrange(vocab - 8)}" for _ in range(args.doc_tokens))
    questions = [" ".join(f"w{rng.randrange(vocab - 8)}" for _ in range(30)) for _ in range(3)]

    def msgs(q: str) -> list[Message]:
        return lc_messages(q, [("doc", doc)])

    # Warm-up (CUDA kernels, allocator) on a short prompt.
    gen.generate(lc_messages(questions[0], [("warm", " ".join(doc.split()[:600]))]), max_tokens=4)
    torch.cuda.synchronize() if torch.cuda.is_available() else None
    t0 = time.perf_counter()
    n_prefix = gen.prefill(msgs(questions[0]))
    torch.cuda.synchronize() if torch.cuda.is_available() else None
    cold = time.perf_counter() - t0
    print(f"cold prefill: {n_prefix:,} tokens in {cold:.2f} s ({n_prefix / cold:,.0f} tok/s)", flush=True)
    runs = []
    for i, q in enumerate(questions):
        out = gen.generate(msgs(q), max_tokens=args.max_tokens)
        runs.append(
            {
                "ttft_s": round(out.first_token_s, 4),
                "new_tokens": out.prompt_tokens - out.cached_tokens,
                "decode_tok_s": round(
                    (out.completion_tokens - 1) / max(out.seconds - out.first_token_s, 1e-9), 1
                ),
            }
        )
        print(f"question {i + 1}: {runs[-1]}", flush=True)
    ref = cold_ref.generate(msgs(questions[1]), max_tokens=args.max_tokens)  # no reuse: reads it all
    record = {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "model": "Qwen2.5-1.5B architecture, random weights, " + args.dtype,
        "lc_engine": gen.uses_engine,
        "prefix_tokens": n_prefix,
        "cold_prefill_s": round(cold, 3),
        "cold_reference_ttft_s": round(ref.first_token_s, 3),
        "runs": runs,
        "followup_over_cold": round(runs[1]["ttft_s"] / cold, 4),
        "torch": torch.__version__,
    }
    print(json.dumps(record, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
