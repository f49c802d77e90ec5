"""Read a document once: saved KV states of document prefixes (memory and disk), and the
llama.cpp backend restoring them with the real SmolLM2 model."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.llm.kvcache import LRUBySize, PrefixStateCache, SavedPrefix, prefix_key
from app.prompts import lc_messages
from pipeline.loaders import load_document
from tests.conftest import shared


def _item(model: str, tokens: list[int], size: int) -> SavedPrefix:
    return SavedPrefix(prefix_key(model, tokens), tuple(tokens), bytes([len(tokens) % 256]) * size, model)


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


def test_disk_tier_survives_a_restart_and_evicts_by_size(tmp_path: Path) -> None:
    cache = PrefixStateCache(tmp_path, ram_bytes=1 << 20, disk_bytes=2500)
    first = _item("m", list(range(10)), 1000)
    cache.put(first)
    cache.put(_item("m", list(range(20)), 1000))
    again = PrefixStateCache(tmp_path, ram_bytes=1 << 20, disk_bytes=2500)  # a new process
    got = again.get(first.key)
    assert got == first and again.stats.disk_hits == 1
    assert again.get(first.key) is not None and again.stats.ram_hits == 1
    cache.put(_item("m", list(range(30)), 1000))  # three files > 2500 bytes: the oldest goes
    assert cache.disk_usage() <= 2500 and cache.stats.evicted == 1
    assert not list(tmp_path.glob("*.tmp*"))  # atomic writes leave no temp files


def test_damaged_state_file_is_removed_and_missed(tmp_path: Path) -> None:
    cache = PrefixStateCache(tmp_path, ram_bytes=0, disk_bytes=1 << 20)
    item = _item("m", [5, 6, 7], 64)
    cache.put(item)
    path = tmp_path / f"{item.key}.kv"
    path.write_bytes(path.read_bytes()[:20])  # a torn write from some other tool
    fresh = PrefixStateCache(tmp_path, ram_bytes=0, disk_bytes=1 << 20)
    assert fresh.get(item.key) is None and not path.exists()


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
