"""Models by name: the catalog (models.toml), `corpusforge models`, and resolve/pull.

Resolving runs huggingface_hub's real download code offline: HF_HUB_OFFLINE=1 and HF_HUB_CACHE
pointing at a cache entry laid out as huggingface_hub lays it out. Both are read when
huggingface_hub is imported, so those tests run in a subprocess.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from corpusforge.catalog import catalog_path, default_model, display_name, find, load_catalog
from corpusforge.cli import app
from corpusforge.errors import ModelError
from corpusforge.hub import pull_model, resolve_model

COMMIT = "4f1b6c2d8e9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c"  # a commit hash, as refs/main holds one


def params(m) -> float:
    """'135M' -> 0.135, '1.7B' -> 1.7 (billions)."""
    num, unit = float(m.params[:-1]), m.params[-1]
    return num / 1000 if unit == "M" else num


def test_catalog_has_one_default_three_sizes_two_families_and_open_licenses():
    catalog = load_catalog()
    assert [m.name for m in catalog if m.default] == ["smollm2-360m"] == [default_model(catalog).name]
    sizes = [params(m) for m in catalog]
    assert any(0.1 <= p <= 0.2 for p in sizes)  # ~135M
    assert any(0.3 <= p <= 0.6 for p in sizes)  # ~360M-0.5B
    assert any(1.0 <= p <= 1.8 for p in sizes)  # ~1-1.7B
    families = {m.repo.split("/")[1].split("-")[0] for m in catalog}
    assert {"SmolLM2", "Qwen2.5"} <= families
    for m in catalog:
        assert m.license == "apache-2.0"
        assert m.file.endswith(f"-{m.quant}.gguf") and m.spec == f"hf://{m.repo}/{m.file}"


def test_find_is_case_insensitive_and_returns_none_for_unknown_names():
    assert find("SmolLM2-135M").repo == "bartowski/SmolLM2-135M-Instruct-GGUF"
    assert find("no-such-model") is None


GOOD = catalog_path().read_text()


@pytest.mark.parametrize("edit, needle", [
    (lambda s: s.replace("size_mb = 105", 'size_mb = "105 MB"'), "size_mb must be a whole number"),
    (lambda s: s.replace('quant = "Q4_K_M"\nsize_mb = 105', 'quant = "Q4_K_X"\nsize_mb = 105'), "quant 'Q4_K_X'"),
    (lambda s: s.replace('file = "SmolLM2-135M-Instruct-Q4_K_M.gguf"', 'file = "SmolLM2-135M-Instruct-Q8_0.gguf"'), "the quant named in the file name"),
    (lambda s: s.replace('license = "apache-2.0"', 'license = "llama3.2"', 1), "license 'llama3.2'"),
    (lambda s: s.replace('repo = "bartowski/SmolLM2-135M-Instruct-GGUF"', 'repo = "SmolLM2-135M-Instruct-GGUF"'), "repo"),
    (lambda s: s.replace('size_mb = 105', 'size_mb = 105\nsizee = 1'), "unknown field sizee"),
    (lambda s: s.replace('params = "135M"\n', ''), "missing field 'params'"),
    (lambda s: s.replace('name = "qwen2.5-0.5b"', 'name = "smollm2-135m"'), "appears more than once"),
    (lambda s: s.replace('why = "Fastest here', 'default = true\nwhy = "Fastest here'), "exactly one model must have default = true"),
    (lambda s: s.replace('params = "135M"', 'params = "135 million"'), "params '135 million'"),
])
def test_a_catalog_entry_with_a_bad_field_fails_loading(tmp_path, edit, needle):
    bad = edit(GOOD)
    assert bad != GOOD
    path = tmp_path / "models.toml"
    path.write_text(bad)
    with pytest.raises(ModelError) as e:
        load_catalog(path)
    assert needle in e.value.message and str(path) in e.value.hint


def test_models_command_prints_the_catalog_as_a_table():
    result = CliRunner().invoke(app, ["models"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    for m in load_catalog():
        line = next(line for line in result.output.splitlines() if m.name in line)
        for cell in (m.params, m.quant, m.license):
            assert cell in line
        assert m.spec in result.output  # where the file comes from
    assert "smollm2-360m *" in result.output and "1.06 GB" in result.output and "105 MB" in result.output


def test_one_model_keeps_one_name_however_it_is_written(tmp_path):
    # Pure: the name rows and the manifest record; a resume must not be refused for the spelling.
    m = find("smollm2-360m")
    cached = tmp_path / m.file
    assert display_name("SmolLM2-360M", cached) == "smollm2-360m"
    assert display_name(m.spec, cached) == "smollm2-360m"
    assert display_name("hf://someone/other-GGUF/model-Q4_K_M.gguf", tmp_path / "model-Q4_K_M.gguf") == "model-Q4_K_M.gguf"
    assert display_name(str(tmp_path / "m.gguf"), tmp_path / "m.gguf") == "m.gguf"


def test_resolve_keeps_the_gguf_magic_check_and_refuses_unknown_names(tmp_path):
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
    assert "smollm2-360m" in e.value.hint


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
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    return env | {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "home"), "HF_HUB_CACHE": str(tmp_path / "cache")}


def test_default_name_and_hf_address_resolve_from_the_cache_offline(tmp_path):
    """Real huggingface_hub hf_hub_download, offline, against a real cache layout."""
    m = default_model()
    snapshot = cache_entry(tmp_path / "cache", m.repo, m.file, b"GGUF" + b"\1" * 64)
    code = (
        "import json\nfrom corpusforge.hub import resolve_model\nfrom corpusforge.errors import CorpusforgeError\n"
        f"paths = [str(resolve_model(s)) for s in (None, {m.name!r}, {m.name.upper()!r}, {m.spec!r})]\n"
        "try:\n    resolve_model('qwen2.5-0.5b')\nexcept CorpusforgeError as e:\n    paths.append(str(e))\n"
        "print(json.dumps(paths))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=offline_env(tmp_path), timeout=120)
    assert proc.returncode == 0, proc.stderr
    *paths, missing = json.loads(proc.stdout)
    assert paths == [str(snapshot)] * 4
    assert "not in the Hugging Face cache" in missing and "tiny-model" in missing and "--model" in missing


def test_models_pull_prints_the_cached_path_and_offline_misses_are_one_line(tmp_path):
    """Real huggingface_hub through the CLI, offline, against a real cache layout."""
    m = find("smollm2-135m")
    snapshot = cache_entry(tmp_path / "cache", m.repo, m.file, b"GGUF" + b"\2" * 64)
    env = offline_env(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "corpusforge", "models", "pull", m.name], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(snapshot)
    proc = subprocess.run([sys.executable, "-m", "corpusforge", "models", "pull", "qwen2.5-1.5b"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    err = proc.stderr.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1, err
    assert re.search(r"cannot download qwen2\.5-1\.5b .*not in the Hugging Face cache", err)
    assert "corpusforge tiny-model m.gguf" in err and "--model /path/to/model.gguf" in err
