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


# -- inside app/: the core never imports the front doors; answering and routing stay apart ----------

FRONT_DOORS = {"ui", "terminal"}  # the Streamlit views and the terminal (CLI, progress, plain text)
APART = {"answering": "routing", "routing": "answering"}


def app_part(module: str) -> str | None:
    """'app.ui.sources' -> 'ui'; 'app.service' -> 'service'; None outside app."""
    parts = module.split(".")
    return parts[1] if parts[0] == "app" and len(parts) > 1 else None


def app_imports(source: str) -> set[str]:
    """The app parts (first name under app/) a source imports, also inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            mods = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            mods = [node.module] + ([f"app.{a.name}" for a in node.names] if node.module == "app" else [])
        else:
            continue
        found |= {p for m in mods if (p := app_part(m))}
    return found


def app_violations() -> list[str]:
    bad = []
    for f in (ROOT / "app").rglob("*.py"):
        rel = f.relative_to(ROOT / "app")
        part = rel.parts[0].removesuffix(".py")
        imported = app_imports(f.read_text()) - {part}
        if part not in FRONT_DOORS:
            bad += [f"app/{rel} (core) imports the front door app.{p}" for p in imported & FRONT_DOORS]
        else:
            bad += [f"app/{rel} imports the other front door app.{p}" for p in imported & FRONT_DOORS]
        if part in APART and APART[part] in imported:
            bad.append(f"app/{rel} ({part}) imports app.{APART[part]}")
        if part == "llm" and imported - {"settings"}:
            bad.append(f"app/{rel} (llm, the bottom of app/) imports {sorted(imported - {'settings'})}")
    return bad


def test_inside_app_the_core_never_imports_the_front_doors() -> None:
    assert app_violations() == []


def test_app_sub_layers_are_folders() -> None:
    for part in [*FRONT_DOORS, *APART, "batch", "llm"]:
        assert (ROOT / "app" / part / "__init__.py").is_file(), part
    assert not list((ROOT / "app").glob("ui_*.py")), "the Streamlit views live in app/ui/"


def test_app_checker_catches_a_core_module_importing_a_front_door() -> None:
    src = "from app.terminal.text import shown_name\ndef f():\n    from app import ui\n"
    assert app_imports(src) == {"terminal", "ui"}
    assert app_imports("from app.routing.router import route") == {"routing"}
