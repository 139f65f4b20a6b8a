"""`--n` counts kept stories: a rejected plan is replaced by a new plan with its slot's labels.

The pure functions of corpusforge/replace.py are tested directly. The builds here use the fake
engine (tests/fake_engine.py, swapped in for llama.cpp where ShardWork opens its engines): they
need stories that are rejected or kept by construction, for chosen plans only -- the random
tiny model cannot be told which plans to fail. The tiny model is used where the outcome is
certain whatever it writes (a story of 40 tokens can never have 500 words) and a real process
must run: the CLI's budget refusal. Across real `--workers` processes the fake engine is put
in every process by a sitecustomize.py the test writes (spawned workers import nothing of the
test process), so rejects stay chosen by construction there too.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from corpusforge import build as build_mod
from corpusforge.build import BudgetSpent, BuildConfig, Interrupted, build, prepare, run
from corpusforge.replace import MAX_GENERATIONS, STRIDE, next_id, pending, slot_of, unfilled
from corpusforge.runners import base as runners_base
from corpusforge.runners.base import ShardWork
from fake_engine import FakeEngine
from test_chain_logic import story_text

from lenient import lenient_args


# --- pure functions ---------------------------------------------------------------------------

def test_a_slot_is_planned_first_then_replaced_after_each_reject_until_the_cap():
    assert pending(range(3), {}) == [0, 1, 2]
    done = {0: "train", 1: "rejects", 2: "rejects", 2 + STRIDE: "validation"}
    assert pending(range(3), done) == [1 + STRIDE]  # slot 2's replacement was kept
    assert pending(range(3), done, replace=False) == []  # --no-replace: a first plan each, no more
    last = 1 + (MAX_GENERATIONS - 1) * STRIDE
    assert next_id(last) is None and next_id(last - STRIDE) == last
    assert pending([1], {last: "rejects"}) == [] and unfilled([1], {last: "rejects"}) == [1]
    assert slot_of(7 + 3 * STRIDE) == 7


# --- builds on the fake engine ------------------------------------------------------------------

def fails(plan_) -> bool:
    """The plans these builds reject: a noun starting a-f (about a quarter of the nouns)."""
    return plan_.noun[0] in "abcdef"


def answer_with(story):
    def answer(req):
        s = req.tag
        if s.stage == 0:
            return "A short summary."
        if s.stage == 1:
            return f"Tom saw the sun {s.plan.id}."
        return story(s.plan)
    return answer


def normal_story(p):
    """story_text with the noun left out (the words check rejects it) when fails(p)."""
    text = story_text(p)
    return text.replace(p.noun, "thing") if fails(p) else text


def install_fake_engine() -> None:
    """open_engine gives the fake engine with normal_story: called by the sitecustomize.py of
    test_two_worker_processes_..., in the build's driver and in each spawned worker."""
    runners_base.open_engine = lambda p, model, threads=None: FakeEngine(answer_with(normal_story), parallel=4)


@pytest.fixture
def fake_engines(monkeypatch):
    """ShardWork opens a FakeEngine answering with `state["story"]` instead of loading llama.cpp."""
    state = {"story": normal_story}
    monkeypatch.setattr(runners_base, "open_engine",
                        lambda p, model, threads=None: FakeEngine(answer_with(lambda pl: state["story"](pl)), parallel=4))
    return state


def config(tmp_path: Path, tiny_model: Path, name: str = "out", **kw) -> BuildConfig:
    # The model file is only hashed (the fake engine never loads it).
    base = dict(n=40, model=(str(tiny_model),), out=tmp_path / name, seed=5, shard_size=16, parallel=4,
                max_attempts=2, dedup=False, validation_fraction=0.1, test_fraction=0.1)
    return BuildConfig(**{**base, **kw})


def rows(out: Path) -> list[dict]:
    got = []
    for path in sorted(out.glob("*/*.parquet")):
        got += pq.read_table(path).to_pylist()
    return sorted(got, key=lambda r: r["id"])


def test_n_counts_kept_stories_and_each_reject_is_replaced_with_its_slots_labels(tmp_path, tiny_model, fake_engines):
    cfg = config(tmp_path, tiny_model)
    summary = build(cfg)
    p = prepare(cfg)  # the same settings: reads the finished build's plans back
    got = rows(cfg.out)
    kept = [r for r in got if not r["reject_reason"]]
    rejected = [r for r in got if r["reject_reason"]]
    assert len(kept) == 40 and summary.done == 40
    assert rejected, "a quarter of the nouns fail: some first plans are rejected"
    assert sorted(slot_of(r["id"]) for r in kept) == list(range(40))  # one kept story per slot
    assert len({r["id"] for r in got}) == len(got)  # every id in exactly one split
    for r in got:
        first, this = p.plan(slot_of(r["id"])), p.plan(r["id"])
        assert this.features == first.features and this.axes == first.axes  # the slot's labels
        assert p.schema.decode(r)["features"] == list(first.features)
        assert r["words"] == this.words()  # a replacement's own fresh words
    for r in rejected:
        assert r["id"] + STRIDE in {x["id"] for x in got}, "every reject has a replacement"
        assert "words" in r["reject_reason"]
    # The kept labels are the slots' labels, so they follow the balance bounds of the 40 first plans.
    planned = Counter(f for s in range(40) for f in p.plan(s).features)
    assert Counter(f for r in kept for f in p.schema.decode(r)["features"]) == planned


def test_the_same_seed_and_config_give_the_same_replacements(tmp_path, tiny_model, fake_engines):
    a, b = config(tmp_path, tiny_model, "a"), config(tmp_path, tiny_model, "b")
    build(a)
    build(b)
    key = lambda r: (r["id"], json.dumps(r["words"], sort_keys=True), r["story"], r["reject_reason"])  # noqa: E731
    assert [key(r) for r in rows(a.out)] == [key(r) for r in rows(b.out)]


def test_a_build_resumed_mid_replacement_ends_with_the_rows_of_one_uninterrupted_run(tmp_path, tiny_model, fake_engines):
    whole = config(tmp_path, tiny_model, "whole")
    build(whole)

    class StopAfter:
        """A reporter that presses Ctrl-C once the first replacement is written."""

        def start(self, summary): pass
        def finish(self, summary): pass
        def note(self, text): pass

        def update(self, summary, in_flight=0):
            if summary.rejected >= 2:
                raise KeyboardInterrupt

    cut = config(tmp_path, tiny_model, "cut")
    with pytest.raises(Interrupted):
        build(cut, StopAfter())
    partial = rows(cut.out) + [json.loads(line) for f in (cut.out / ".corpusforge" / "journal").glob("*.jsonl")
                               for line in f.read_text().splitlines()]
    assert 0 < len([r for r in partial if not r["reject_reason"]]) < 40
    summary = build(cut)
    assert summary.done == 40
    assert [(r["id"], r["story"], r["reject_reason"]) for r in rows(cut.out)] == \
        [(r["id"], r["story"], r["reject_reason"]) for r in rows(whole.out)]


def test_no_replace_keeps_the_old_meaning_n_plans(tmp_path, tiny_model, fake_engines):
    cfg = config(tmp_path, tiny_model, replace=False)
    summary = build(cfg)
    got = rows(cfg.out)
    assert [r["id"] for r in got] == list(range(40))
    assert 0 < sum(bool(r["reject_reason"]) for r in got) < 40
    assert summary.done == 40 and summary.kept < 40


def test_a_hopeless_build_stops_at_its_budget_and_keeps_what_it_wrote(tmp_path, tiny_model, fake_engines):
    fake_engines["story"] = lambda p: story_text(p).replace(p.noun, "thing")  # every story fails
    cfg = config(tmp_path, tiny_model, n=20, max_plans_factor=2)
    with pytest.raises(BudgetSpent) as e:
        build(cfg)
    msg = str(e.value)
    assert msg.startswith("stopped: 0 of 20 stories kept from 41 plans (0%), fewer than 1 in 2 (--max-plans-factor 2)")
    assert "rejects: words 41" in msg and "--max-plans-factor" in e.value.hint
    journals = list((cfg.out / ".corpusforge" / "journal").glob("*.jsonl"))
    written = len(rows(cfg.out)) + sum(len(f.read_text().splitlines()) for f in journals)
    assert written == 41  # every finished plan is on disk; a rerun resumes from them


def test_the_budget_rate_rule_needs_a_first_sample():
    s = build_mod.Summary(n=1000, plans_before=99, done_before=0)
    assert not s.over_budget(4)  # 99 plans: too few to call the build hopeless
    s = build_mod.Summary(n=1000, plans_before=100, done_before=24)
    assert s.over_budget(4)  # 24 kept in 100: fewer than 1 in 4
    s = build_mod.Summary(n=1000, plans_before=100, done_before=25)
    assert not s.over_budget(4)
    assert build_mod.Summary(n=10, plans_before=41, done_before=30).over_budget(4)  # past 4 x n plans


class SideBySide:
    """A concurrent runner in one process: each shard on a ShardWork that never sees the other
    shards' stories (dedup off inside), as --workers and Ray shards run; the driver dedups at seal."""

    concurrent = True

    def __init__(self, p):
        self.work = ShardWork(dataclasses.replace(p, config=p.config.with_(dedup=False)))

    def run(self, shards):
        for shard in shards:
            yield from self.work.run_shard(shard)

    def in_flight(self):
        return 0

    def close(self):
        self.work.close()


def plans_of(i):
    from corpusforge.sampler import plan
    from corpusforge.vocab import load_vocab

    return plan(load_vocab(), 0, i)


def test_a_cross_shard_duplicate_moved_at_seal_is_replaced_in_a_later_pass(tmp_path, tiny_model, fake_engines):
    # Slots 3 and 19 (shards 0 and 1) write the same story: the driver moves 19 to rejects at
    # seal, and slot 19 gets a replacement with its labels.
    same = story_text(dataclasses.replace(plans_of(3), id=3)).split(". ", 1)[1]  # 60 filler words, no loop

    def story(p):
        if p.id in (3, 19):  # with its key sentence, so only the duplicate check can fail it
            return f"Tom saw the sun {p.id}. {same} A {p.adjective} {p.noun}. They {p.verb}."
        return story_text(p)

    fake_engines["story"] = story
    cfg = config(tmp_path, tiny_model, n=32, dedup=True)
    p = prepare(cfg)
    runner = SideBySide(p)
    try:
        summary = run(p, runner)
    finally:
        runner.close()
    got = {r["id"]: r for r in rows(cfg.out)}
    assert got[19]["reject_reason"] == "duplicate:3" and summary.moved_duplicates == 1
    assert not got[19 + STRIDE]["reject_reason"]
    assert p.plan(19 + STRIDE).features == p.plan(19).features
    assert sum(not r["reject_reason"] for r in got.values()) == 32


def test_two_worker_processes_replace_rejects_exactly_as_one_process(tmp_path, tiny_model):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        f"import sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\nimport test_replace\ntest_replace.install_fake_engine()\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}

    def cli(out: Path, *extra: str) -> None:
        args = [sys.executable, "-m", "corpusforge", "build", "--n", "40", "--model", str(tiny_model), "--out", str(out),
                "--seed", "5", "--shard-size", "16", "--parallel", "4", "--max-attempts", "2", "--no-dedup",
                "--validation-fraction", "0.1", "--test-fraction", "0.1", "--threads", "1", "--quiet", *extra]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]

    cli(tmp_path / "one")
    cli(tmp_path / "two", "--workers", "2")
    one, two = rows(tmp_path / "one"), rows(tmp_path / "two")
    assert one == two
    kept = [r for r in two if not r["reject_reason"]]
    assert len(kept) == 40 and any(r["id"] >= STRIDE for r in kept), "rejects were replaced, in the workers"
    assert sorted(slot_of(r["id"]) for r in kept) == list(range(40))


# --- the CLI on the tiny model ----------------------------------------------------------------

def test_the_cli_refuses_a_hopeless_build_in_one_line_and_a_rerun_resumes(tmp_path, tiny_model):
    # 40 story tokens can never make the 500 words --min-words asks for: every plan is rejected
    # by the length check, whatever the tiny model writes.
    out = tmp_path / "hopeless"
    args = [sys.executable, "-m", "corpusforge", "build", "--n", "2", "--model", str(tiny_model), "--out", str(out),
            "--quiet", "--max-attempts", "1", "--max-plans-factor", "1", *lenient_args(),
            "--min-words", "500", "--max-tokens", "story=40"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: stopped: 0 of 2 stories kept from 3 plans"), proc.stderr
    assert "rejects: " in lines[0] and "--max-plans-factor" in lines[0]
    again = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert again.returncode == 1 and "kept from 4 plans" in again.stderr  # resumed: the 3 are kept on disk
