"""Labelled story sets (corpusforge/gold.py): the shipped gold set, the format's checks, and
`eval-labels --test-on` scoring a corpus's classifiers on stories written apart from it.

No model is involved: the gold set is hand-written text and the corpus is the seeded synthetic
fixture (tests/corpus_fixture.py), whose BadEnding stories end on a sad sentence.
"""
from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from corpus_fixture import synthetic_rows, write_synthetic_corpus

from corpusforge import card, checks
from corpusforge.errors import CorpusforgeError
from corpusforge.gold import load_labelled

GOLD = Path(__file__).resolve().parents[1] / "eval" / "gold"
FEATURES = ("Dialogue", "BadEnding", "MoralValue", "Twist", "Foreshadowing", "Conflict")


def test_the_shipped_gold_set_is_a_balanced_design_split_once_by_id():
    gold = load_labelled(GOLD)
    assert gold.labels == FEATURES and len(gold.rows) >= 120
    for part in ("dev", "test"):
        rows = gold.part(part)
        for f in FEATURES:
            pos = sum(gold.has(r, f) for r in rows)
            assert pos >= 20 and len(rows) - pos >= 20, (part, f, pos)
    # Independent features: every pair of features is a 2x2 table with all four cells filled equally.
    for a in FEATURES:
        for b in FEATURES:
            if a < b:
                cells = Counter((gold.has(r, a), gold.has(r, b)) for r in gold.rows)
                assert len(set(cells.values())) == 1 and len(cells) == 4, (a, b, cells)
    assert {r["split"] for r in gold.rows if r["id"] < 64} == {"dev"}
    assert {r["split"] for r in gold.rows if r["id"] >= 64} == {"test"}


def test_every_gold_row_holds_what_a_rule_can_check():
    gold = load_labelled(GOLD)
    for r in gold.rows:
        w = r["words"]
        assert all(checks.mentions(w[pos], pos, r["story"]) for pos in ("noun", "verb", "adjective")), r["id"]
        assert checks.has_dialogue(r["story"]) == bool(gold.has(r, "Dialogue")), r["id"]
        assert {"opening", "setting", "theme"} <= set(r)


@pytest.mark.parametrize("line, message", [
    ("not json", "not JSON"),
    ('["a list"]', "not a JSON object"),
    ('{"id": 1, "features": []}', "no story text"),
    ('{"id": 1, "story": "A cat.", "features": "Twist"}', "features must be a list"),
    ('{"id": 1, "story": "A cat.", "features": [], "split": "train"}', "split 'train' is unknown"),
])
def test_a_bad_row_is_refused_with_its_file_and_line(tmp_path, line, message):
    f = tmp_path / "set.jsonl"
    f.write_text('{"id": 0, "story": "A dog ran.", "features": ["Twist"]}\n' + line + "\n")
    with pytest.raises(CorpusforgeError) as e:
        load_labelled(f)
    assert f"{f}:2: {message}" in str(e.value)


def test_a_repeated_id_a_missing_file_and_an_unlisted_feature_are_refused(tmp_path):
    f = tmp_path / "set.jsonl"
    f.write_text('{"id": 0, "story": "A.", "features": []}\n{"id": 0, "story": "B.", "features": []}\n')
    with pytest.raises(CorpusforgeError, match="id 0 is used twice"):
        load_labelled(f)
    with pytest.raises(CorpusforgeError, match="is not a labelled story set"):
        load_labelled(tmp_path / "nowhere")
    d = tmp_path / "set"
    d.mkdir()
    (d / "gold.jsonl").write_text('{"story": "A.", "features": ["Sparkle"]}\n')
    (d / "labels.json").write_text(json.dumps({"features": ["Twist"]}))
    with pytest.raises(CorpusforgeError, match="features Sparkle are not in labels.json"):
        load_labelled(d)


def test_a_set_without_splits_is_all_test_and_labels_come_from_the_rows(tmp_path):
    f = tmp_path / "set.jsonl"
    f.write_text('{"story": "A.", "features": ["Twist"]}\n{"story": "B.", "features": []}\n')
    s = load_labelled(f)
    assert s.labels == ("Twist",) and len(s.part("test")) == 2 and s.part("dev") == []


def test_eval_labels_test_on_trains_on_the_corpus_and_scores_the_sets_test_part(tmp_path):
    pytest.importorskip("sklearn")
    from corpusforge.evallabels import evaluate_labels

    corpus = write_synthetic_corpus(tmp_path / "b", n=400, seed=0)
    # A labelled set written apart from the corpus: new seed, so new stories; only the test rows count.
    held = synthetic_rows(120, seed=99)
    f = tmp_path / "apart.jsonl"
    with f.open("w") as out:
        for i, r in enumerate(held):
            out.write(json.dumps({"id": i, "split": "dev" if i < 20 else "test", "story": r["story"],
                                  "features": r["features"]}) + "\n")
    r = evaluate_labels(corpus, test_on=f)
    assert r["scheme"].startswith(f"the test part of {f} (100 stories")
    bad = r["labels"]["BadEnding"]
    assert bad["train"] == 400 and bad["eval"] == 100  # train + validation of the corpus; the set's test part
    assert bad["eval_positive"] == sum("BadEnding" in x["features"] for x in held[20:])
    assert bad["f1"] > 0.9 and bad["f1"] > bad["majority"]["f1"] + 0.3  # learnable, scored apart
    proc = subprocess.run([sys.executable, "-m", "corpusforge", "eval-labels", str(corpus), "--test-on", str(f),
                           "--json", str(tmp_path / "e.json")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "e.json").read_text())["test_on"] == str(f)
    bad_set = subprocess.run([sys.executable, "-m", "corpusforge", "eval-labels", str(corpus), "--test-on",
                              str(tmp_path / "missing.jsonl")], capture_output=True, text=True, timeout=300)
    assert bad_set.returncode == 1 and "is not a labelled story set" in bad_set.stderr


def test_the_card_says_per_feature_how_its_label_was_checked(tmp_path, monkeypatch):
    from corpusforge import card

    sha = "a" * 64
    figures = {"precision": 0.6, "recall": 0.9, "f1": 0.72, "always_yes_f1": 0.67, "test": 64,
               "score_threshold": -0.5, "score_f1": 0.75}
    (tmp_path / "judge_gold.json").write_text(json.dumps({sha: {"Twist": figures, "BadEnding": {**figures, "f1": 0.5}}}))
    monkeypatch.setattr(card, "JUDGE_GOLD", tmp_path / "judge_gold.json")
    fp = {"models": [{"sha256": sha}], "judge": {"policy": "record", "features": ["BadEnding", "Twist"], "model": None},
          "checks": {"skip": []}}
    table = "\n".join(card.label_provenance(["Dialogue", "BadEnding", "Twist", "MoralValue"], fp))
    assert "| Dialogue | rule-checked" in table
    assert "| Twist | judged (verdict in `judged_features`) | the judge's answer (`judge_answers`): precision 0.60, recall 0.90, F1 0.72" in table
    assert "| BadEnding | judged (verdict in `judged_features`); the judge does not beat always-yes: treat as requested, unverified" in table
    assert "| MoralValue | requested, unverified | -" in table
    # A feature whose verdict is the score against a dev threshold: the card quotes the verdict.
    scored_gold = {sha: {"Twist": {**figures, "f1": 0.5, "verdict_threshold": -1.15,
                                   "verdict": {"precision": 0.67, "recall": 0.97, "f1": 0.79, "f1_95": [0.68, 0.88]}}}}
    (tmp_path / "judge_gold.json").write_text(json.dumps(scored_gold))
    applied = {**fp, "judge": {**fp["judge"], "verdict_thresholds": {sha: {"Twist": -1.15}}}}
    row = "\n".join(card.label_provenance(["Twist"], applied))
    assert ("| Twist | judged (verdict in `judged_features`) | verdict = `judge_scores` > -1.15: precision 0.67, "
            "recall 0.97, F1 0.79 [95%: 0.68, 0.88]; the judge's answer") in row and "unverified" not in row
    # The same figures when the build did not apply the threshold (an edited prompt): not the verdict's.
    unapplied = "\n".join(card.label_provenance(["Twist"], fp))
    assert "verdict =" not in unapplied and "unverified" in unapplied
    (tmp_path / "judge_gold.json").write_text(json.dumps({sha: {"Twist": figures, "BadEnding": {**figures, "f1": 0.5}}}))
    # A judged feature the build did not ask (noise for this model on the gold set).
    not_asked = {**fp, "judge": {**fp["judge"], "asked": {sha: ["Twist"]}}}
    assert "| BadEnding | requested, unverified: not asked" in "\n".join(card.label_provenance(["BadEnding"], not_asked))
    # Another judge model: its figures were never measured.
    other = {**fp, "models": [{"sha256": "b" * 64}]}
    assert "| Twist | judged (verdict in `judged_features`) | not measured |" in "\n".join(card.label_provenance(["Twist"], other))


def test_the_packaged_judge_thresholds_hold_for_the_shipped_judge_prompts():
    # No model: the default catalog model's sha256 keys the packaged figures, and a threshold is
    # used only while the shipped prompt digest matches the one it was measured with. Editing
    # judge/*.j2 or shots.toml without re-running scripts/bench_judge.py --package fails here.
    from corpusforge.catalog import find
    from corpusforge.judge import load_judge
    from corpusforge.recipes import load_recipe
    from corpusforge.vocab import load_vocab

    vocab = load_vocab()
    recipe = load_recipe("tinystories-instruct", axis_names=tuple(a.name for a in vocab.axes))
    judge = load_judge(recipe, vocab.features)
    figures = json.loads(card.JUDGE_GOLD.read_text())[find("smollm2-135m").sha256]
    wanted = {f for f, g in figures.items() if g.get("verdict_threshold") is not None}
    assert wanted == {"MoralValue"}  # what bench/judge.json measured: the one feature above always-yes
    assert dict(judge.calibrated(find("smollm2-135m").sha256).thresholds) == {f: figures[f]["verdict_threshold"] for f in wanted}
    # The other four did not beat always-yes on the test part: a build does not ask them.
    assert judge.calibrated(find("smollm2-135m").sha256).labels == ("MoralValue",)
    assert set(judge.calibrated(find("smollm2-135m").sha256, ask_all=True).labels) == set(figures)
