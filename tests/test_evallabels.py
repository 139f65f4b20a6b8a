"""`corpusforge eval-labels`: a learnable label scores high, a shuffled one scores at chance.

The tests read a synthetic fixture corpus (tests/corpus_fixture.py, seeded): BadEnding stories
end with a sad sentence and the others with a happy one, so the label is learnable from the text;
Twist is a fair coin drawn independently of the text, so no classifier can beat chance on it.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from corpus_fixture import write_synthetic_corpus

from corpusforge.errors import CorpusforgeError

pytest.importorskip("sklearn")

from corpusforge.evallabels import evaluate_labels, triple_holdout  # noqa: E402


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "corpusforge", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """400 seeded synthetic stories: 300 train, 100 validation."""
    return write_synthetic_corpus(tmp_path_factory.mktemp("syn") / "b", n=400, seed=0)


def test_learnable_label_scores_high_and_shuffled_label_scores_near_chance(synthetic):
    r = evaluate_labels(synthetic)
    assert r["scheme"] == "validation split"
    bad, twist = r["labels"]["BadEnding"], r["labels"]["Twist"]
    assert bad["eval"] == 100 and bad["train"] == 300
    assert bad["f1"] > 0.9 and bad["accuracy"] > 0.9
    assert bad["f1"] > bad["chance_f1"] + 0.3 and bad["f1"] > bad["majority"]["f1"] + 0.3
    # A coin-flip label: F1 within 0.15 of what guessing at its rate gets, accuracy near 50%.
    assert abs(twist["f1"] - twist["chance_f1"]) < 0.15
    assert 0.35 < twist["accuracy"] < 0.65
    # Labels no story carries cannot be trained on and say so.
    assert r["labels"]["MoralValue"]["skipped"] == "only one class in train"


def test_without_validation_split_no_word_triple_crosses_the_holdout(tmp_path):
    # The same synthetic generator with every row in train: the hold-out is made by word triple.
    from corpus_fixture import synthetic_rows

    out = write_synthetic_corpus(tmp_path / "b", n=400, seed=0, validation=False)
    r = evaluate_labels(out, seed=7)
    assert r["scheme"].startswith("hold-out of 20% of word triples (seed 7)")
    rows = synthetic_rows(400, 0)
    sides: dict[tuple, set] = {}
    for x in rows:
        w = x["words"]
        sides.setdefault((w["verb"], w["noun"], w["adjective"]), set()).add(triple_holdout(w, 7))
    assert all(len(s) == 1 for s in sides.values())  # every triple lands on one side
    held = sum(triple_holdout(x["words"], 7) for x in rows)
    assert r["labels"]["BadEnding"]["eval"] == held and 0.1 * 400 < held < 0.3 * 400
    assert r["labels"]["BadEnding"]["f1"] > 0.9
    # Another seed moves the hold-out.
    assert [triple_holdout(x["words"], 8) for x in rows] != [triple_holdout(x["words"], 7) for x in rows]


def test_missing_scikit_learn_is_one_line_error_naming_the_extra(synthetic, monkeypatch):
    # sys.modules[name] = None makes `import sklearn` raise ImportError, as if not installed.
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(CorpusforgeError) as err:
        evaluate_labels(synthetic)
    assert err.value.message == "eval-labels needs scikit-learn" and err.value.hint == "pip install 'corpusforge[eval]'"


def test_eval_labels_cli_prints_table_and_writes_json(synthetic, tmp_path):
    dest = tmp_path / "eval.json"
    proc = run("eval-labels", str(synthetic), "--json", str(dest))
    assert proc.returncode == 0, proc.stderr
    assert "BadEnding" in proc.stdout and "F1" in proc.stdout
    assert json.loads(dest.read_text())["labels"]["BadEnding"]["f1"] > 0.9
