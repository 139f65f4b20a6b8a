"""The model catalog: instruct GGUFs that suit CPUs, by name (corpusforge/models.toml).

Loading validates every field, so a typo in the catalog fails at once with the entry named,
not later as a download of a file that does not exist.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from .errors import ModelError

CATALOG_FILE = "models.toml"
# Licenses that let the outputs train other models; an entry under any other license is refused
# so that a corpus built with a catalog model can always be published.
OPEN_LICENSES = frozenset({"apache-2.0", "mit"})
_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]*$")
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_QUANT = re.compile(r"^(Q[2-8]_K(_[SML])?|Q[4-8]_[01]|IQ[1-4]_[A-Z]+|F16|BF16|F32)$")
_PARAMS = re.compile(r"^\d+(\.\d+)?[MB]$")
_FIELDS = {"name": str, "repo": str, "file": str, "quant": str, "size_mb": int, "params": str,
           "license": str, "why": str, "default": bool}
_OPTIONAL = {"default"}
_KIND = {str: "a string", int: "a whole number", bool: "true or false"}


@dataclass(frozen=True, slots=True)
class CatalogModel:
    """One catalog entry: where the GGUF lives and what it is."""

    name: str
    repo: str
    file: str
    quant: str
    size_mb: int  # as the repo's Files page shows it (decimal MB)
    params: str
    license: str
    why: str
    default: bool = False

    @property
    def spec(self) -> str:
        """The hf:// address of the file."""
        return f"hf://{self.repo}/{self.file}"


def catalog_path() -> Path:
    return Path(str(resources.files("corpusforge") / CATALOG_FILE))


def load_catalog(path: Path | None = None) -> tuple[CatalogModel, ...]:
    """Every entry of the catalog, validated; a bad field raises ModelError naming entry and field."""
    path = Path(path) if path else catalog_path()
    fix = f"fix {path}"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ModelError(f"cannot read the model catalog {path}: {e}", fix) from None
    entries = data.get("model")
    if not isinstance(entries, list) or not entries:
        raise ModelError(f"{path} lists no [[model]] entries", fix)
    models = [_entry(i, e, fix) for i, e in enumerate(entries, 1)]
    names = [m.name for m in models]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ModelError(f"{path}: model name {', '.join(dupes)} appears more than once", fix)
    defaults = [m.name for m in models if m.default]
    if len(defaults) != 1:
        raise ModelError(f"{path}: exactly one model must have default = true (found {len(defaults)}: {', '.join(defaults) or 'none'})", fix)
    return tuple(models)


def _entry(i: int, raw: object, fix: str) -> CatalogModel:
    where = f"model catalog entry {i}"
    if not isinstance(raw, dict):
        raise ModelError(f"{where} is not a table", fix)
    where = f"model catalog entry {i} ({raw.get('name', '?')})"
    unknown = sorted(set(raw) - set(_FIELDS))
    if unknown:
        raise ModelError(f"{where}: unknown field {', '.join(unknown)}", f"use only {', '.join(_FIELDS)}; {fix}")
    for field, kind in _FIELDS.items():
        if field not in raw:
            if field in _OPTIONAL:
                continue
            raise ModelError(f"{where}: missing field {field!r}", fix)
        value = raw[field]
        # bool is an int in Python; a size of `true` is still a mistake
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ModelError(f"{where}: {field} must be {_KIND[kind]}, got {value!r}", fix)
    checks = (
        ("name", _NAME.match(raw["name"]), "lowercase letters, digits, '.' and '-'"),
        ("repo", _REPO.match(raw["repo"]), "owner/name"),
        ("file", raw["file"].endswith(".gguf") and "/" not in raw["file"], "a .gguf file name"),
        ("quant", _QUANT.match(raw["quant"]), "a llama.cpp type such as Q4_K_M or Q8_0"),
        ("quant", raw["quant"].lower() in raw["file"].lower(), "the quant named in the file name"),
        ("size_mb", raw["size_mb"] > 0, "a positive number of MB"),
        ("params", _PARAMS.match(raw["params"]), "a count such as 135M or 1.7B"),
        ("license", raw["license"] in OPEN_LICENSES, f"one of {', '.join(sorted(OPEN_LICENSES))}"),
        ("why", raw["why"].strip() and "\n" not in raw["why"], "one line"),
    )
    for field, ok, want in checks:
        if not ok:
            raise ModelError(f"{where}: {field} {raw[field]!r} is not {want}", fix)
    return CatalogModel(**raw)


def default_model(catalog: tuple[CatalogModel, ...] | None = None) -> CatalogModel:
    """The entry marked default = true."""
    return next(m for m in (catalog or load_catalog()) if m.default)


def display_name(spec: str, path: Path) -> str:
    """The name rows and the manifest record for a model: the catalog name when the spec is a
    catalog name (any case) or the hf:// address of a catalog file, else the file's name. One
    model keeps one name however it is written, so a resume is never refused for the spelling."""
    from .hub import HF_PREFIX, parse_hf

    catalog = load_catalog()
    if spec.startswith(HF_PREFIX):
        repo, file, _ = parse_hf(spec)
        m = next((m for m in catalog if (m.repo, m.file) == (repo, file)), None)
    else:
        m = find(spec, catalog) if "/" not in spec and not spec.endswith(".gguf") else None
    return m.name if m is not None else path.name


def find(name: str, catalog: tuple[CatalogModel, ...] | None = None) -> CatalogModel | None:
    """The entry called `name` (case-insensitive), or None."""
    name = name.strip().lower()
    return next((m for m in (catalog or load_catalog()) if m.name == name), None)
