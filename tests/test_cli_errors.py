"""Bad input: one red line naming the fix, a non-zero exit, no traceback, nothing written."""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from corpusforge.vocab import default_vocab_dir


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "corpusforge", *args], capture_output=True, text=True, timeout=300)


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert "Traceback" not in err and "Traceback" not in proc.stdout
    assert err.startswith("error:") and len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


@pytest.fixture
def empty_nouns_vocab(tmp_path) -> Path:
    v = tmp_path / "vocab"
    shutil.copytree(default_vocab_dir(), v)
    (v / "nouns.txt").write_text("# nothing here\n")
    return v


@pytest.fixture
def not_gguf(tmp_path) -> Path:
    p = tmp_path / "model.gguf"
    p.write_text("this is not a model\n")
    return p


CASES = {
    "n_zero": (lambda m, t: ["--n", "0", "--model", m], ["--n", "at least 1"]),
    "n_negative": (lambda m, t: ["--n", "-3", "--model", m], ["--n"]),
    "missing_model": (lambda m, t: ["--n", "5", "--model", str(t / "nope.gguf")], ["nope.gguf", "neither a file nor a catalog name", "tiny-model"]),
    "missing_vocab_dir": (lambda m, t: ["--n", "5", "--model", m, "--vocab", str(t / "no-vocab")], ["no-vocab"]),
    "unknown_recipe": (lambda m, t: ["--n", "5", "--model", m, "--recipe", "tinystories-bogus"], ["unknown recipe", "tinystories-instruct"]),
    "unknown_skip_check": (lambda m, t: ["--n", "5", "--model", m, "--skip-check", "spelling"], ["--skip-check", "spelling"]),
    "unknown_stage_budget": (lambda m, t: ["--n", "5", "--model", m, "--max-tokens", "ending=40"], ["ending"]),
    "zero_model_weight": (lambda m, t: ["--n", "5", "--model", m + ":0"], ["--model", "weight"]),
    "same_model_twice": (lambda m, t: ["--n", "5", "--model", m, "--model", m + ":2"], ["same model"]),
    "validation_fraction_above_1": (lambda m, t: ["--n", "5", "--model", m, "--validation-fraction", "1.5"], ["--validation-fraction"]),
    "fractions_add_to_1": (lambda m, t: ["--n", "5", "--model", m, "--validation-fraction", "0.6", "--test-fraction", "0.5"],
                           ["less than 1"]),
    "dedup_threshold_zero": (lambda m, t: ["--n", "5", "--model", m, "--dedup-threshold", "0"], ["--dedup-threshold"]),
    "dedup_threshold_above_1": (lambda m, t: ["--n", "5", "--model", m, "--dedup-threshold", "1.2"], ["--dedup-threshold"]),
    "shingle_size_zero": (lambda m, t: ["--n", "5", "--model", m, "--shingle-size", "0"], ["--shingle-size"]),
    "parallel_above_n_batch": (lambda m, t: ["--n", "5", "--model", m, "--parallel", "64", "--n-batch", "32"],
                               ["--parallel 64", "--n-batch"]),
    "too_many_features_per_story": (lambda m, t: ["--n", "5", "--model", m, "--features-per-story", "7"], ["--features-per-story"]),
    "judge_policy_without_judge": (lambda m, t: ["--n", "5", "--model", m, "--judge-policy", "reject"], ["--judge"]),
    "judge_all_without_judge": (lambda m, t: ["--n", "5", "--model", m, "--judge-all"], ["--judge-all", "--judge"]),
    "new_summary_after_negative": (lambda m, t: ["--n", "5", "--model", m, "--new-summary-after", "-1"], ["--new-summary-after", "0 (never)"]),
    "push_to_not_a_repo_id": (lambda m, t: ["--n", "5", "--model", m, "--push-to", "no-slash"], ["--push-to", "owner/name"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_build_input_is_one_line_error_and_writes_nothing(case, tiny_model, tmp_path):
    make_args, needles = CASES[case]
    out = tmp_path / "out"
    proc = run("build", *make_args(str(tiny_model), tmp_path), "--out", str(out), "--quiet")
    assert_one_line_error(proc, *needles)
    assert not out.exists()


USAGE_CASES = {
    "split_key_not_a_choice": (["--split-key", "triple"], ["--split-key", "triple"]),
    "judge_policy_not_a_choice": (["--judge", "--judge-policy", "maybe"], ["--judge-policy", "maybe"]),
    "n_not_a_number": (["--n", "many"], ["--n", "integer"]),
    "test_fraction_not_a_number": (["--test-fraction", "half"], ["--test-fraction"]),
    "max_tokens_without_a_number": (["--max-tokens", "story"], ["--max-tokens", "STAGE=N"]),
    "unknown_option": (["--temprature", "0.7"], ["--temprature"]),
}


@pytest.mark.parametrize("case", sorted(USAGE_CASES))
def test_a_flag_typer_cannot_parse_is_one_line_error_too(case, tiny_model, tmp_path):
    # Typer's own usage screen is a multi-line box; main() turns it into the same one line.
    args, needles = USAGE_CASES[case]
    out = tmp_path / "out"
    base = ["--n", "5"] if "--n" not in args else []
    proc = run("build", *base, "--model", str(tiny_model), *args, "--out", str(out), "--quiet")
    assert proc.returncode == 2
    assert_one_line_error(proc, *needles, "--help")
    assert not out.exists()


def test_not_a_gguf_file_is_refused(not_gguf, tmp_path):
    proc = run("build", "--n", "5", "--model", str(not_gguf), "--out", str(tmp_path / "out"))
    assert_one_line_error(proc, "not a GGUF file")
    assert not (tmp_path / "out").exists()


def test_empty_vocab_file_is_refused_with_its_name(empty_nouns_vocab, tiny_model, tmp_path):
    proc = run("build", "--n", "5", "--model", str(tiny_model), "--vocab", str(empty_nouns_vocab), "--out", str(tmp_path / "out"))
    assert_one_line_error(proc, "nouns.txt")
    assert not (tmp_path / "out").exists()


def test_output_folder_with_a_different_build_is_refused_and_left_untouched(tiny_model, tmp_path):
    out = tmp_path / "corpus"
    base = ["build", "--n", "4", "--model", str(tiny_model), "--out", str(out), "--parallel", "2", "--threads", "2",
            "--max-attempts", "1", "--max-tokens", "story=40", "--no-replace", "--quiet"]
    assert run(*base).returncode == 0
    before = snapshot(out)
    proc = run(*base[:-1], "--seed", "9", "--temperature", "0.5", "--quiet")
    assert_one_line_error(proc, "different build", "seed: 0 -> 9", "temperature: 0.8 -> 0.5", "--overwrite")
    assert snapshot(out) == before


def test_output_folder_with_foreign_files_is_refused(tiny_model, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    proc = run("build", "--n", "3", "--model", str(tiny_model), "--out", str(out))
    assert_one_line_error(proc, "not empty")
    assert snapshot(out) == {"notes.txt": hashlib.sha256(b"keep me").hexdigest()}


def test_bad_axes_file_is_refused_with_file_and_line(tiny_model, tmp_path):
    v = tmp_path / "vocab"
    shutil.copytree(default_vocab_dir(), v)
    (v / "axes.toml").write_text('[[axis]]\nname = "weather"\ndescription = "x"\n[[axis.value]]\nlabel = "sunny"\nphrase = "Sun."\nweight = -1\n')
    proc = run("build", "--n", "5", "--model", str(tiny_model), "--vocab", str(v), "--out", str(tmp_path / "out"))
    assert_one_line_error(proc, "axes.toml:")
    assert not (tmp_path / "out").exists()


def test_judge_with_a_recipe_without_judge_templates_names_the_fix(tiny_model, tmp_path):
    from corpusforge.recipes import builtin_dir

    recipe = tmp_path / "recipe"
    shutil.copytree(builtin_dir() / "tinystories-instruct", recipe)
    shutil.rmtree(recipe / "judge")
    proc = run("build", "--n", "5", "--model", str(tiny_model), "--recipe", str(recipe), "--judge", "--out", str(tmp_path / "out"))
    assert_one_line_error(proc, "judge/judge.j2", "copy the judge/ folder")
    assert not (tmp_path / "out").exists()


def test_preview_with_bad_n_is_one_line_error():
    assert_one_line_error(run("preview", "--n", "0"), "--n")


def test_hf_model_offline_says_how_to_pass_a_local_file(tmp_path, monkeypatch):
    import os

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    proc = subprocess.run(
        [sys.executable, "-m", "corpusforge", "build", "--n", "2", "--model", "hf://someone/some-repo/model.gguf", "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert_one_line_error(proc, "hf://someone/some-repo/model.gguf", "--model /path/to/", "tiny-model")
    assert not (tmp_path / "o").exists()


def test_ray_flag_without_ray_installed_says_how_to_install(tiny_model, tmp_path):
    # Shadow the installed ray with a package whose import fails, as on a machine without it.
    shadow = tmp_path / "shadow" / "ray"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    import os

    env = {**os.environ, "PYTHONPATH": str(shadow.parent)}
    proc = subprocess.run([sys.executable, "-m", "corpusforge", "build", "--n", "2", "--model", str(tiny_model),
                           "--out", str(tmp_path / "o"), "--ray"], capture_output=True, text=True, timeout=300, env=env)
    assert_one_line_error(proc, "--ray needs the ray package", "pip install 'corpusforge[ray]'")
    assert not (tmp_path / "o").exists()
