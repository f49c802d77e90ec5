"""Shared fixtures: real models loaded once per session, real data from ../shared/data."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LONGQA_SHARED_DATA", ROOT.parent / "shared" / "data"))
REDP_PDF = SHARED_DATA / "pdf" / "docling_redp5110_sampled.pdf"


def shared(rel: str) -> Path:
    """A path under ../shared/data, or skip the test with the reason."""
    p = SHARED_DATA / rel
    if not p.exists():
        pytest.skip(f"shared data '{rel}' not found under {SHARED_DATA} (set LONGQA_SHARED_DATA)")
    return p


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def embedder():  # type: ignore[no-untyped-def]
    from app.service import build_embedder
    from app.settings import Settings

    return build_embedder(Settings(embedding={"device": "cpu"}))


@pytest.fixture(scope="session")
def smol(model_cache: Path):  # type: ignore[no-untyped-def]
    """SmolLM2-135M through llama.cpp: the real (weak, fast) embedded test model."""
    from app.service import build_generator
    from app.settings import Settings

    # One decode thread: llama.cpp's two threads wait for each other, very slow on a busy machine.
    llm = {"model": "smollm2-135m", "threads": 2, "decode_threads": 1}
    return build_generator(Settings(model_cache=model_cache, llm=llm))


@pytest.fixture
def settings(tmp_path: Path, model_cache: Path):  # type: ignore[no-untyped-def]
    from app.settings import Settings

    return Settings(
        data_dir=tmp_path / "data",
        model_cache=model_cache,
        llm={"model": "smollm2-135m", "max_tokens": 96, "threads": 2},
        embedding={"device": "cpu"},
    )


@pytest.fixture
def service(settings, embedder, smol) -> Iterator:  # type: ignore[no-untyped-def]
    from app.service import QAService

    svc = QAService(settings, embedder=embedder, generator=smol)
    yield svc
    svc.close()


def _pg_url() -> str | None:
    return os.environ.get("LONGQA_TEST_PG_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The same tests run against SQLite and a real PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'meta.db'}"
        return
    url = _pg_url()
    if not url:
        if os.environ.get("CI"):
            pytest.fail("CI must run the PostgreSQL tests: LONGQA_TEST_PG_URL is not set")
        pytest.skip("no PostgreSQL: set LONGQA_TEST_PG_URL (scripts/postgres.sh does)")
    from sqlalchemy import create_engine, text

    schema = f"t_{os.getpid()}_{abs(hash(request.node.nodeid)) % 10**8}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    engine.dispose()
    sep = "&" if "?" in url else "?"
    yield f"{url}{sep}options=-csearch_path%3D{schema}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    engine.dispose()
