"""End to end through the CLI on the real tiny model: shards, labels, splits, ids, reproducibility.

Real llama.cpp on the random-weight tiny model, real parquet, real `datasets.load_dataset`."""
from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from datasets import ClassLabel, List, load_dataset

from corpusforge.checks import CHECKS
from corpusforge.vocab import default_vocab_dir, load_vocab
from lenient import lenient_args

FEATURE_NAMES = tuple(load_vocab().feature_names)

N = 24
# The random-weight model writes gibberish, so the checks would reject stories depending on
# what it draws on this CPU; switching off all that judges the text keeps every story, so
# rows reach `train` (and the schema is exercised there) on any machine.
LENIENT = lenient_args()


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "corpusforge", *args], capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def build_args(model: Path, out: Path, *extra: str) -> list[str]:
    return ["build", "--n", str(N), "--model", str(model), "--out", str(out), "--seed", "3", "--shard-size", "10",
            "--parallel", "4", "--threads", "2", "--max-tokens", "story=120", "--quiet", *LENIENT, *extra]


@pytest.fixture(scope="module")
def built(tiny_model, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("build") / "corpus"
    cli(*build_args(tiny_model, out))
    return out


def all_ids(out: Path) -> list[int]:
    ds = load_dataset(str(out))
    return sorted(i for split in ds.values() for i in split["id"])


def test_every_planned_id_appears_exactly_once_across_all_splits(built):
    assert all_ids(built) == list(range(N))


def test_load_dataset_restores_features_as_classlabel_names(built):
    ds = load_dataset(str(built))
    feat = ds["train"].features["features"]
    assert isinstance(feat, List) and isinstance(feat.feature, ClassLabel)
    assert feat.feature.names == list(FEATURE_NAMES)
    assert ds["train"].num_rows > 0, "the lenient build keeps some rows"
    row = ds["train"][0]
    assert set(row["words"]) == {"noun", "verb", "adjective"}
    assert all(0 <= i < len(FEATURE_NAMES) for i in row["features"])


def test_shards_are_named_like_push_to_hub_and_leave_no_temp_files(built):
    names = sorted(p.name for p in (built / "data").iterdir()) + sorted(p.name for p in (built / "rejects").iterdir())
    assert names and all(re.fullmatch(r"(train|validation|test|rejects)-0000[012]-of-00003\.parquet", n) for n in names), names
    assert not list(built.rglob("*.tmp"))
    assert not list((built / ".corpusforge" / "journal").glob("*.jsonl")), "sealed shards drop their journals"


def test_rows_record_model_seed_recipe_and_generation_params(built, tiny_model):
    sha = hashlib.sha256(tiny_model.read_bytes()).hexdigest()
    ds = load_dataset(str(built))
    for split in ds:
        for row in ds[split]:
            assert row["model_sha256"] == sha and row["model"] == tiny_model.name
            assert row["seed"] == 3 and row["recipe"] == "tinystories-instruct" and len(row["template_sha256"]) == 64
            assert json.loads(row["generation"])["max_tokens"]["story"] == 120
            assert row["attempt"] >= 1
    for row in ds.get("rejects", []):
        assert row["reject_reason"]


def test_card_yaml_lists_splits_and_label_counts(built):
    text = (built / "README.md").read_text()
    header = text.split("---")[1]
    assert "data/train-*.parquet" in header and "class_label" in header
    manifest = json.loads((built / "corpusforge.json").read_text())
    assert manifest["n"] == N and manifest["fingerprint"]["seed"] == 3
    ds = load_dataset(str(built))
    kept = [r for split in ("train", "validation", "test") if split in ds for r in ds[split]["features"]]
    share = sum(FEATURE_NAMES.index("Dialogue") in r for r in kept) / len(kept)
    assert f"| Dialogue | " in text and f"| {share:.1%} |" in text


def test_card_validates_as_a_hub_dataset_card(built):
    # DatasetCard parses the YAML into DatasetCardData (the Hub's own model of it); its online
    # `validate()` posts to the Hub, which cannot be reached here.
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(built / "README.md")
    assert card.data.configs[0]["data_files"][0]["split"] == "train"
    assert card.data.to_dict()["dataset_info"]["features"]


def test_a_finished_build_card_embeds_the_statistics_section_and_its_plots(built):
    # Written once at the end of the build from `corpusforge stats` (real matplotlib: the test extra).
    text = (built / "README.md").read_text()
    assert "## Statistics" in text
    linked = set(re.findall(r"\((plots/[\w-]+\.png)\)", text))
    assert linked and all((built / p).is_file() for p in linked)
    assert json.loads((built / "stats.json").read_text())["splits"]


def test_a_partial_card_says_how_far_the_build_got_and_still_parses(built, tmp_path):
    # The real card renderer (push --partial uses it), read back by huggingface_hub's DatasetCard.
    from huggingface_hub import DatasetCard

    from corpusforge.card import write_card

    out = tmp_path / "partial"
    shutil.copytree(built, out)
    manifest = json.loads((out / "corpusforge.json").read_text())
    write_card(out, manifest, partial=(3, 10))
    text = (out / "README.md").read_text()
    assert "**Partial build**: 3 of 10 planned stories are done (30.0%)" in text
    card = DatasetCard.load(out / "README.md")
    assert [f["split"] for f in card.data.configs[0]["data_files"]][0] == "train"


def test_same_seed_and_settings_give_identical_rows(built, tiny_model, tmp_path):
    again = tmp_path / "again"
    cli(*build_args(tiny_model, again))
    paths = sorted(p.relative_to(built) for sub in ("data", "rejects") for p in (built / sub).glob("*.parquet"))
    assert paths == sorted(p.relative_to(again) for sub in ("data", "rejects") for p in (again / sub).glob("*.parquet"))
    for path in paths:
        assert pq.read_table(built / path).equals(pq.read_table(again / path)), path


def test_a_strict_build_sends_gibberish_to_rejects_with_reasons(tiny_model, tmp_path):
    # Every check is on. Which one fails first depends on the text the CPU draws, but none can
    # pass: 60 story tokens (plus an inserted key sentence of at most 48) never make 200 words.
    # --no-replace: --n counts plans, so the six rejects end the build (test_replace.py has the
    # budget refusal a hopeless build gets by default).
    out = tmp_path / "strict"
    cli("build", "--n", "6", "--model", str(tiny_model), "--out", str(out), "--parallel", "3", "--threads", "2",
        "--max-attempts", "1", "--max-tokens", "story=60", "--min-words", "200", "--quiet", "--no-replace")
    ds = load_dataset(str(out))
    assert set(ds) == {"rejects"} and sorted(ds["rejects"]["id"]) == list(range(6))
    assert all(r.split(":")[0] in {*CHECKS, "duplicate"} for r in ds["rejects"]["reject_reason"])


def test_preview_prints_prompts_without_a_model():
    proc = cli("preview", "--n", "2", "--seed", "5")
    from corpusforge.sampler import plan
    from corpusforge.vocab import load_vocab

    p = plan(load_vocab(), 5, 1)
    assert f'the noun "{p.noun}"' in proc.stdout and "--- story" in proc.stdout


CUSTOM_FEATURES = """
[[feature]]
label = "Rhyme"
phrase = "the story has a rhyme"
probability = 0.5

[[feature]]
label = "Animal"
phrase = "an animal is the hero"
probability = 0.4
judge = true
"""
CUSTOM_AXES = """
[[axis]]
name = "weather"
description = "the weather in the story"
[[axis.value]]
label = "sunny"
phrase = "The sun is shining."
[[axis.value]]
label = "rainy"
phrase = "It is raining."
weight = 2
"""


def test_a_user_feature_set_and_a_new_axis_reach_the_parquet_as_classlabel_columns(tiny_model, tmp_path):
    vocab = tmp_path / "vocab"
    vocab.mkdir()
    for name in ("nouns", "verbs", "adjectives"):
        (vocab / f"{name}.txt").write_text((Path(load_vocab().source) / f"{name}.txt").read_text())
    (vocab / "features.toml").write_text(CUSTOM_FEATURES)
    (vocab / "axes.toml").write_text(CUSTOM_AXES)
    out = tmp_path / "custom"
    cli("build", "--n", "8", "--model", str(tiny_model), "--out", str(out), "--vocab", str(vocab), "--parallel", "4",
        "--threads", "2", "--max-tokens", "story=60", "--quiet", *LENIENT)
    ds = load_dataset(str(out))
    split = next(iter(ds.values()))
    assert split.features["features"].feature.names == ["Rhyme", "Animal"]
    assert isinstance(split.features["weather"], ClassLabel) and split.features["weather"].names == ["sunny", "rainy"]
    assert "opening" not in split.features  # the default axes are not there: the vocab folder decides
    rows = [r for s in ds.values() for r in s]
    assert {split.features["weather"].int2str(r["weather"]) for r in rows} <= {"sunny", "rainy"}
    text = (out / "README.md").read_text()
    assert "Axis `weather`" in text and "| rainy |" in text


def test_no_word_triple_crosses_splits(tiny_model, tmp_path):
    # 3 nouns x 2 verbs x 2 adjectives = 12 triples for 40 stories: every triple comes back
    # several times, so a split drawn per story (not per triple) would put one on both sides.
    vocab = tmp_path / "vocab"
    shutil.copytree(default_vocab_dir(), vocab)
    (vocab / "nouns.txt").write_text("cat\ndog\nball\n")
    (vocab / "verbs.txt").write_text("run\njump\n")
    (vocab / "adjectives.txt").write_text("happy\nbig\n")
    out = tmp_path / "splits"
    cli("build", "--n", "40", "--model", str(tiny_model), "--out", str(out), "--parallel", "8", "--threads", "2",
        "--vocab", str(vocab), "--max-tokens", "story=40", "--validation-fraction", "0.3", "--test-fraction", "0.3",
        "--max-attempts", "1", "--quiet", *LENIENT)
    ds = load_dataset(str(out))
    assert {"train", "validation", "test"} <= set(ds) <= {"train", "validation", "test", "rejects"}, set(ds)
    every = [(w["noun"], w["verb"], w["adjective"]) for s in ("train", "validation", "test") for w in ds[s]["words"]]
    assert len(set(every)) < len(every)  # triples do repeat: the test could catch a leak
    triples = {s: {(w["noun"], w["verb"], w["adjective"]) for w in ds[s]["words"]} for s in ("train", "validation", "test")}
    assert not triples["train"] & triples["validation"] and not triples["train"] & triples["test"]
    assert not triples["validation"] & triples["test"]
    header = (out / "README.md").read_text().split("---")[1]
    assert "data/validation-*.parquet" in header and "data/test-*.parquet" in header


def test_the_judge_always_parses_on_the_random_weight_model_and_reaches_the_parquet(tiny_model, tmp_path):
    """Real llama.cpp: the GBNF grammar holds random weights to yes/no, batched with the stories."""
    out = tmp_path / "judged"
    proc = cli("build", "--n", "8", "--model", str(tiny_model), "--out", str(out), "--parallel", "4", "--threads", "2",
               "--max-tokens", "story=60", "--judge", *LENIENT)
    ds = load_dataset(str(out))
    kept = [r for s in ("train", "validation", "test") if s in ds for r in ds[s]]
    assert kept, "the lenient build keeps stories to judge"
    judged = [f.label for f in load_vocab().features if f.judge]
    names = ds[next(iter(ds))].features["judged_features"].feature.names
    # No gold-set figures for the tiny model: every judged feature is asked, MoralValue (worked
    # examples in its prefix) last; the manifest pins the questions per judging model.
    asked = json.loads((out / "corpusforge.json").read_text())["fingerprint"]["judge"]["asked"]
    assert asked == {hashlib.sha256(tiny_model.read_bytes()).hexdigest(): [*(f for f in judged if f != "MoralValue"), "MoralValue"]}
    judged = next(iter(asked.values()))
    for r in kept:
        answers = json.loads(r["judge_answers"])
        assert list(answers) == judged and set(answers.values()) <= {"yes", "no"}
        assert sorted(names[i] for i in r["judged_features"]) == sorted(k for k, v in answers.items() if v == "yes")
        # A score per question from the real logits: a finite yes-minus-no log-odds.
        scores = json.loads(r["judge_scores"])
        assert list(scores) == judged and all(isinstance(v, float) and math.isfinite(v) for v in scores.values())
    # The judge's share is stored, not only printed: in the manifest and in stats.json.
    tokens = json.loads((out / "corpusforge.json").read_text())["tokens"]
    assert tokens["judge"] > 0 and 0 < tokens["judge_share"] < 1
    assert json.loads((out / "stats.json").read_text())["tokens"] == tokens
    # The judge's cost is reported; the console wraps the summary at 80 columns wherever the
    # numbers put the line ends, so whitespace is collapsed first.
    assert re.search(r"judge \d+\.\d% of tokens", " ".join(proc.stderr.split()))


def test_a_separate_judge_model_judges_and_is_pinned_in_the_manifest(tiny_model, second_model, tmp_path):
    """Real llama.cpp: stories from one tiny model, verdicts from another (its own engine)."""
    out = tmp_path / "judge-model"
    cli("build", "--n", "6", "--model", str(tiny_model), "--judge-model", str(second_model), "--judge-policy", "reject",
        "--out", str(out), "--parallel", "3", "--threads", "2", "--max-tokens", "story=50", "--quiet", *LENIENT,
        "--no-replace")  # the random judge says "no" at random: ids 0-5 are the plans, kept or not
    judge = json.loads((out / "corpusforge.json").read_text())["fingerprint"]["judge"]
    assert judge["model"]["sha256"] == hashlib.sha256(second_model.read_bytes()).hexdigest()
    assert judge["policy"] == "reject"
    ds = load_dataset(str(out))
    rows = [r for s in ds.values() for r in s]
    assert sorted(r["id"] for r in rows) == list(range(6))
    names = ds[next(iter(ds))].features["features"].feature.names
    for r in rows:
        if r["reject_reason"].startswith("judge:"):  # rejected: the judge said "no" to a requested feature
            feature = r["reject_reason"].split(":")[1]
            assert names.index(feature) in r["features"] and json.loads(r["judge_answers"])[feature] == "no"
        elif not r["reject_reason"]:  # kept under reject: every requested judged feature got "yes"
            answers = json.loads(r["judge_answers"])
            assert all(answers[names[i]] == "yes" for i in r["features"] if names[i] in answers)
