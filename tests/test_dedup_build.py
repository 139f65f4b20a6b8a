"""Dedup during a real build, on every runner: no exact or near-duplicate pair survives.

Real llama.cpp on the tiny model. Random weights never repeat a story by chance, so the test
plants duplicates the honest way: a recipe whose prompt has no plan variable, sampled greedily,
makes the model write the same story for every plan. The fake-engine tests in
test_chain_logic.py cover planted near-duplicates and retries in detail.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from corpusforge.dedup import DedupIndex

CONSTANT_RECIPE = """
name = "constant"
description = "one prompt for every story: greedy decoding writes the same story each time"
[[stages]]
name = "story"
template = "story.j2"
parse = "text"
max_tokens = 40
"""


@pytest.fixture
def constant_recipe(tmp_path) -> Path:
    r = tmp_path / "constant"
    r.mkdir()
    (r / "recipe.toml").write_text(CONSTANT_RECIPE)
    (r / "story.j2").write_text("Write a short story for a small child.\n")
    return r


def build(model, out, recipe, *extra):
    cmd = [sys.executable, "-m", "corpusforge", "build", "--n", "16", "--model", str(model), "--out", str(out),
           "--recipe", str(recipe), "--shard-size", "4", "--parallel", "4", "--threads", "2", "--temperature", "0",
           "--max-attempts", "2", "--quiet", "--min-words", "1", "--skip-check", "words", "--skip-check", "key_sentence",
           "--skip-check", "dialogue", "--skip-check", "truncated", "--validation-fraction", "0", "--test-fraction", "0",
           *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def rows(out: Path, sub: str) -> list[dict]:
    return [r for p in sorted((out / sub).glob("*.parquet")) for r in pq.read_table(p, columns=["id", "story", "reject_reason"]).to_pylist()]


def assert_no_duplicate_pair(kept: list[dict]) -> None:
    index = DedupIndex()
    for r in sorted(kept, key=lambda r: r["id"]):
        assert index.check_and_add(r["id"], r["story"]) is None, f"story {r['id']} duplicates a kept story"


@pytest.mark.parametrize("runner", [[], ["--workers", "2", "--threads", "1"]], ids=["local", "workers2"])
def test_planted_duplicates_never_survive_whatever_the_runner(tiny_model, constant_recipe, tmp_path, runner):
    out = tmp_path / "corpus"
    build(tiny_model, out, constant_recipe, *runner)
    kept, rejects = rows(out, "data"), rows(out, "rejects")
    assert sorted(r["id"] for r in kept + rejects) == list(range(16))
    assert_no_duplicate_pair(kept)
    dups = [r for r in rejects if r["reject_reason"].startswith("duplicate:")]
    assert len(dups) >= 8, "greedy decoding of one prompt repeats itself: most stories are duplicates"
    kept_ids = {r["id"] for r in kept}
    assert all(int(r["reject_reason"].split(":")[1]) in kept_ids for r in dups), "each names a kept story"


def test_dedup_index_is_rebuilt_from_finished_shards_on_resume(tiny_model, constant_recipe, tmp_path):
    # A first build of 8 stories, then --n 16: the second run must see the first run's stories.
    out = tmp_path / "grow"
    subprocess.run([sys.executable, "-m", "corpusforge", "build", "--n", "8", "--model", str(tiny_model), "--out", str(out),
                    "--recipe", str(constant_recipe), "--shard-size", "4", "--parallel", "4", "--threads", "2",
                    "--temperature", "0", "--max-attempts", "2", "--quiet", "--min-words", "1", "--skip-check", "words",
                    "--skip-check", "key_sentence", "--skip-check", "dialogue", "--skip-check", "truncated",
                    "--validation-fraction", "0", "--test-fraction", "0"], check=True, timeout=900)
    first_kept = {r["id"] for r in rows(out, "data")}
    build(tiny_model, out, constant_recipe)
    kept = rows(out, "data")
    assert {r["id"] for r in kept if r["id"] < 8} == first_kept
    assert_no_duplicate_pair(kept)
