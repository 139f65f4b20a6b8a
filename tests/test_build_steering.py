"""How a story was steered is recorded and pinned: per row, in the manifest, and on resume.

Real llama.cpp on the random-weight tiny model (mechanics only: what it writes is gibberish, so
every check that reads the text is skipped and nothing here depends on the text), real parquet.
"""
from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from corpusforge.build import build
from corpusforge.config import BuildConfig
from corpusforge.errors import CorpusforgeError

# Random text fails every check that reads it; only the mechanics are under test here.
TEXT_CHECKS = ("words", "key_sentence", "dialogue", "truncated", "length", "task_talk", "loop", "unfinished", "unfit")


def config(model, out, **changes) -> BuildConfig:
    base = dict(n=6, model=(str(model),), out=out, seed=5, parallel=4, n_threads=2, shard_size=6,
                skip_checks=TEXT_CHECKS, max_attempts=1, max_tokens={"summary": 24, "key_sentence": 16, "story": 48},
                dedup=False, replace=False)  # --n counts plans: random text is rejected at random
    return BuildConfig(**{**base, **changes})


def rows(out):
    return sorted((r for f in sorted(out.glob("*/*.parquet")) for r in pq.read_table(f).to_pylist()), key=lambda r: r["id"])


@pytest.fixture(scope="module")
def steered(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("steered") / "c"
    build(config(tiny_model, out))
    return out


def test_every_row_records_the_steering_in_force_and_what_it_did(steered):
    manifest = json.loads((steered / "corpusforge.json").read_text())
    pinned = manifest["fingerprint"]["steering"]
    assert set(pinned["stages"]) == {"summary", "key_sentence", "story"} and pinned["off"] == []
    assert pinned["stages"]["story"]["steer"]["key_sentence"] is True
    assert pinned["stages"]["story"]["sampling"] == {"dry_multiplier": 0.8}
    got = rows(steered)
    assert len(got) == 6
    for r in got:
        g = json.loads(r["generation"])
        assert g["steering"] == pinned
        assert isinstance(g["retried"], list) and isinstance(g["forced_tokens"], int) and g["forced_tokens"] >= 0


def test_the_same_seed_gives_the_same_steered_rows(steered, tiny_model, tmp_path):
    again = tmp_path / "again"
    build(config(tiny_model, again))
    strip = lambda r: {k: v for k, v in r.items() if k not in ("generation",)}  # noqa: E731
    assert [strip(r) for r in rows(again)] == [strip(r) for r in rows(steered)]


def test_levers_switched_off_are_recorded_and_change_the_rows_record(tiny_model, tmp_path):
    out = tmp_path / "off"
    build(config(tiny_model, out, steer_off=("words", "dry")))
    pinned = json.loads((out / "corpusforge.json").read_text())["fingerprint"]["steering"]
    assert pinned["off"] == ["dry", "words"]
    assert pinned["stages"]["story"]["steer"]["words"] is False and "sampling" not in pinned["stages"]["story"]


def test_a_resume_with_other_steering_is_refused_and_names_what_differs(steered, tiny_model):
    with pytest.raises(CorpusforgeError) as info:
        build(config(tiny_model, steered, n=8, steer_off=("cut",)))
    assert "steering" in str(info.value.message) + str(info.value.hint)


def test_an_unknown_lever_is_refused_in_one_line(tiny_model, tmp_path):
    with pytest.raises(CorpusforgeError) as info:
        build(config(tiny_model, tmp_path / "bad", steer_off=("wrods",)))
    assert "--no-steer" in info.value.message and "wrods" in info.value.message
    assert not (tmp_path / "bad").exists()
