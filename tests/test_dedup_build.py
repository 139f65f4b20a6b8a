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
from lenient import skip_args

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
           "--max-attempts", "2", "--quiet", *skip_args(), "--validation-fraction", "0", "--test-fraction", "0",
           # One constant prompt, greedy: a replacement would repeat the same duplicate, so --n
           # counts plans here and the duplicates stay in rejects.
           "--no-replace", *extra]
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
                    "--temperature", "0", "--max-attempts", "2", "--quiet", *skip_args(),
                    "--validation-fraction", "0", "--test-fraction", "0", "--no-replace"], check=True, timeout=900)
    first_kept = {r["id"] for r in rows(out, "data")}
    assert first_kept, "no check judges the text: the first story is kept"
    build(tiny_model, out, constant_recipe)
    kept = rows(out, "data")
    assert {r["id"] for r in kept if r["id"] < 8} == first_kept
    assert_no_duplicate_pair(kept)


class ScriptedWorkers:
    """A concurrent runner without a model: replays what two workers journalled, in a set order."""

    concurrent = True

    def __init__(self, p, script):
        self.p, self.script = p, script

    def run(self, shards):
        from corpusforge.chain import Outcome
        from corpusforge.checks import measure
        from corpusforge.runners.base import Event, ShardDone, make_row
        from corpusforge.shards import Store

        c = self.p.config
        store = Store(Path(c.out), c.n, c.shard_size, self.p.schema, lock=False)
        for shard, rows in self.script:
            for i, story, reason in rows:
                plan = self.p.plan(i)
                o = Outcome(plan, {"story": story}, 1, reason, measure(story))
                store.append(make_row(self.p, o), plan.split if reason is None else "rejects")
                yield Event(i, 0, reason, 0, 0, 0)
            store.close_journal(shard)
            yield ShardDone(shard)
        store.close()

    def in_flight(self) -> int:
        return 0

    def close(self) -> None:
        pass


def test_a_duplicate_of_a_story_the_driver_moved_names_the_kept_original(tiny_model, tmp_path):
    """Worker A keeps story 0 in shard 0 while worker B keeps the same text as story 2 in shard 1,
    sealed first; at shard 0's seal the driver moves 0 to rejects. A's own index still holds 0,
    so in its next shard it rejects story 4 as duplicate:0. The sealed row must name 2."""
    from corpusforge.build import prepare, run
    from corpusforge.config import BuildConfig

    same = "Tom and his dog ran to the big park to play with a red ball all day long."
    other = {i: f"Story {i}: " + " ".join(f"w{i}x{k}" for k in range(12)) + "." for i in range(6)}
    script = [(1, [(2, same, None), (3, other[3], None)]),  # worker B
              (0, [(0, same, None), (1, other[1], None)]),  # worker A, beside B
              (2, [(4, same, "duplicate:0"), (5, other[5], None)])]  # worker A again, its index holds 0
    # --no-replace: the script is a fixed replay of what the workers wrote, with no replacements.
    p = prepare(BuildConfig(n=6, model=str(tiny_model), out=tmp_path / "corpus", shard_size=2,
                            validation_fraction=0, test_fraction=0, replace=False))
    summary = run(p, ScriptedWorkers(p, script))
    assert summary.moved_duplicates == 1
    kept, rejects = rows(tmp_path / "corpus", "data"), rows(tmp_path / "corpus", "rejects")
    assert sorted(r["id"] for r in kept) == [1, 2, 3, 5]
    assert {r["id"]: r["reject_reason"] for r in rejects} == {0: "duplicate:2", 4: "duplicate:2"}
