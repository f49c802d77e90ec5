"""Read a document once: saved KV states of document prefixes (memory and disk), and the
llama.cpp backend restoring them with the real SmolLM2 model."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.answering.prompts import lc_messages
from app.llm.kvcache import LRUBySize, PrefixStateCache, prefix_key
from pipeline.loaders import load_document
from tests.conftest import shared


def test_keys_depend_on_model_and_every_token() -> None:
    assert prefix_key("m", [1, 2, 3]) == prefix_key("m", [1, 2, 3])
    assert prefix_key("m", [1, 2, 3]) != prefix_key("m", [1, 2, 4])
    assert prefix_key("m", [1, 2, 3]) != prefix_key("other", [1, 2, 3])


def test_memory_tier_evicts_least_recently_used_by_size() -> None:
    lru: LRUBySize[str] = LRUBySize(100)
    assert lru.put("a", "A", 40) and lru.put("b", "B", 40)
    assert lru.get("a") == "A"  # a is now the most recent
    lru.put("c", "C", 40)  # over budget: b goes
    assert "b" not in lru and lru.get("a") == "A" and lru.get("c") == "C"
    assert not lru.put("huge", "H", 101) and "huge" not in lru
    assert lru.nbytes <= 100 and lru.evicted == 1


def _saved(cache: PrefixStateCache, key: str, size: int) -> None:
    """What the engine does on a slot save: write under the temporary name, then commit."""
    assert cache.directory is not None
    cache.directory.mkdir(parents=True, exist_ok=True)
    (cache.directory / cache.temp_name(key)).write_bytes(b"k" * size)
    cache.commit(cache.temp_name(key), key)


def test_disk_tier_survives_a_restart_and_evicts_least_recently_used(tmp_path: Path) -> None:
    import os
    import time

    cache = PrefixStateCache(tmp_path, ram_bytes=1 << 20, disk_bytes=2500)
    first, second, third = (prefix_key("m", list(range(n))) for n in (10, 20, 30))
    _saved(cache, first, 1000)
    _saved(cache, second, 1000)
    again = PrefixStateCache(tmp_path, ram_bytes=1 << 20, disk_bytes=2500)  # a new process
    assert again.has(first) and again.has(second) and not again.has(third)
    past = time.time() - 60
    os.utime(again.path(second), (past, past))
    again.touch(first)  # first was used last: second is now the oldest
    _saved(cache, third, 1000)  # three files > 2500 bytes: the least recently used goes
    assert cache.disk_usage() <= 2500 and cache.stats.evicted == 1
    assert cache.has(first) and cache.has(third) and not cache.has(second)
    assert not list(tmp_path.glob("*.tmp*"))  # a state is visible only once complete


def test_a_state_larger_than_the_disk_budget_is_not_kept(tmp_path: Path) -> None:
    cache = PrefixStateCache(tmp_path, ram_bytes=0, disk_bytes=100)
    key = prefix_key("m", [1, 2])
    _saved(cache, key, 1000)
    assert not cache.has(key) and not list(tmp_path.iterdir())


@pytest.fixture(scope="module")
def smol_path(model_cache: Path) -> Path:
    from app.catalog import load_catalog, resolve_generator

    return resolve_generator(load_catalog().generators["smollm2-135m"], model_cache)


def _llama(path: Path, kv_dir: Path):  # type: ignore[no-untyped-def]
    from app.llm.llamacpp import LlamaCppGenerator

    cache = PrefixStateCache(kv_dir, ram_bytes=1 << 30, disk_bytes=1 << 30)
    return LlamaCppGenerator(path, context_window=2048, threads=2, decode_threads=1, kv_cache=cache)


def test_follow_up_after_restart_reads_only_the_question(smol_path: Path, tmp_path: Path) -> None:
    text = load_document(shared("lara/32k/book/The Pearl.txt")).text
    doc_a, doc_b = text[:2500], text[2500:5000]
    q1 = lc_messages("Which poems does the manuscript contain?", [("Pearl", doc_a)])
    q2 = lc_messages("Where was the writer from?", [("Pearl", doc_a)])
    gen = _llama(smol_path, tmp_path)
    pre = gen.prefill(q1)
    assert pre.source == "evaluated" and pre.prefix_tokens > 500 and pre.evaluated_tokens == pre.prefix_tokens
    assert gen.prefill(q2).source == "live"  # same document, already in the KV cache
    first = gen.generate(q2, max_tokens=12)
    assert first.cached_tokens == pre.prefix_tokens
    # Another document, then back: the first document's state comes from memory.
    gen.generate(lc_messages("Who translated it?", [("Pearl", doc_b)]), max_tokens=4)
    assert gen.prefill(q1).source == "ram"
    # A restart: a new model instance finds the state on disk and reads only the question.
    fresh = _llama(smol_path, tmp_path)
    assert fresh.cached_prefix_tokens(q2) == pre.prefix_tokens
    again = fresh.generate(q2, max_tokens=12)
    assert again.cached_tokens == pre.prefix_tokens
    assert again.prompt_tokens - again.cached_tokens < 40
    assert again.text == first.text  # the restored state is the same state
    fresh.close()


def test_a_damaged_saved_state_is_dropped_and_the_document_read_again(
    smol_path: Path, tmp_path: Path
) -> None:
    text = load_document(shared("lara/32k/book/The Pearl.txt")).text[:2500]
    q = lc_messages("Where was the writer from?", [("Pearl", text)])
    gen = _llama(smol_path, tmp_path)
    assert gen.prefill(q).source == "evaluated"
    gen.close()
    (state,) = tmp_path.glob("*.slot")
    state.write_bytes(state.read_bytes()[:4096])  # a torn file from some other tool
    fresh = _llama(smol_path, tmp_path)
    pre = fresh.prefill(q)
    assert pre.source == "evaluated" and pre.evaluated_tokens == pre.prefix_tokens
    assert fresh.generate(q, max_tokens=4).completion_tokens > 0
    fresh.close()
