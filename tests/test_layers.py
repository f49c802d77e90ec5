"""The import direction between layers: gpu <- pipeline <- indexes <- app <- {eval, streamlit_app}."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["gpu", "pipeline", "indexes", "app", "eval"]
ALLOWED = {
    "gpu": {"gpu"},
    "pipeline": {"pipeline", "gpu"},
    "indexes": {"indexes", "pipeline", "gpu"},
    "app": {"app", "indexes", "pipeline", "gpu"},
    "eval": {"eval", "app", "indexes", "pipeline", "gpu"},
    "streamlit_app": {"app", "eval"},
}
PROJECT = set(LAYERS) | {"streamlit_app"}


def project_imports(source: str) -> set[str]:
    """Top-level project packages imported anywhere in the source (also inside functions)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {n.split(".")[0] for n in names if n.split(".")[0] in PROJECT}
    return found


def violations() -> list[str]:
    bad = []
    files = [(layer, f) for layer in LAYERS for f in (ROOT / layer).rglob("*.py")]
    files.append(("streamlit_app", ROOT / "streamlit_app.py"))
    for layer, f in files:
        if not f.exists():
            continue
        for imported in project_imports(f.read_text()) - ALLOWED[layer]:
            bad.append(f"{f.relative_to(ROOT)} ({layer}) imports {imported}")
    return bad


def test_layers_import_only_downwards() -> None:
    assert violations() == []


def test_every_layer_exists_and_is_checked() -> None:
    for layer in LAYERS:
        assert (ROOT / layer / "__init__.py").is_file(), layer
        assert list((ROOT / layer).rglob("*.py"))
    assert (ROOT / "streamlit_app.py").is_file()


def test_checker_catches_upward_imports() -> None:
    src = "import os\nfrom app.settings import Settings\ndef f():\n    import indexes.vector\n"
    assert project_imports(src) == {"app", "indexes"}
    assert project_imports(src) - ALLOWED["pipeline"] == {"app", "indexes"}
    assert project_imports("from . import x\nimport numpy") == set()
