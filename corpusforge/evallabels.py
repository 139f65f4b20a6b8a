"""`corpusforge eval-labels`: are the feature labels learnable from the story text?

One TF-IDF + logistic-regression classifier per feature, trained on train and scored on
validation (or a seeded hold-out by word triple when the build has no validation split), with
the majority-class and chance baselines beside each. scikit-learn is the optional `[eval]` extra.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .errors import CorpusforgeError
from .stats import open_corpus, require

HOLDOUT = 0.2  # share of word triples held out when there is no validation split
MIN_ROWS = 10


def triple_holdout(words: dict, seed: int, frac: float = HOLDOUT) -> bool:
    """True if this row's (verb, noun, adjective) goes to the hold-out: a hash of seed and triple,
    so every story with the same triple lands on the same side and no triple crosses."""
    key = "\0".join([str(seed), *(str((words or {}).get(k, "")) for k in ("verb", "noun", "adjective"))])
    h = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")
    return h / 2**64 < frac


def _prf(y_true: list[int], y_pred: list[int]) -> dict:
    tp = sum(1 for t, p in zip(y_true, y_pred) if t and p)
    fp = sum(1 for t, p in zip(y_true, y_pred) if not t and p)
    fn = sum(1 for t, p in zip(y_true, y_pred) if t and not p)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    accuracy = sum(1 for t, p in zip(y_true, y_pred) if t == p) / len(y_true)
    return {"precision": precision, "recall": recall, "f1": f1, "accuracy": accuracy}


def evaluate_labels(out: Path, seed: int = 0, test_on: Path | None = None) -> dict:
    """Per-feature precision/recall/F1 with baselines, as a JSON-ready dict: on the corpus's
    validation split, or with `test_on`, on the test part of a labelled set written apart from
    the corpus (eval/gold), training on all of train and validation."""
    require("sklearn", "eval", "eval-labels")
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    corpus = open_corpus(out)
    # TF-IDF needs every training text at once; stories are short, so this is text-sized memory.
    train, valid = [], []
    for split, r in corpus.iter_rows(("train", "validation"), ("story", "features", "words")):
        train.append(r) if split == "train" or test_on is not None else valid.append(r)
    names = list(corpus.feature_names)
    if test_on is not None:
        from .gold import load_labelled

        gold = load_labelled(test_on)
        valid = gold.part("test")
        names = [f for f in names if f in gold.labels]
        if not names:
            raise CorpusforgeError(f"{gold.path} labels none of the corpus's features ({', '.join(corpus.feature_names)})",
                                   "test on a set labelled for the same features")
        scheme = f"the test part of {gold.path} ({len(valid)} stories written apart from the corpus)"
    elif valid:
        scheme = "validation split"
    else:
        scheme = f"hold-out of {HOLDOUT:.0%} of word triples (seed {seed}), no validation split"
        rows, train, valid = train, [], []
        for r in rows:
            (valid if triple_holdout(r["words"], seed) else train).append(r)
    if len(train) < MIN_ROWS or not valid:
        raise CorpusforgeError(f"{out} has {len(train)} training and {len(valid)} evaluation stories, too few to train on",
                               f"build at least {MIN_ROWS * 2} kept stories")
    vec = TfidfVectorizer(lowercase=True, ngram_range=(1, 2), sublinear_tf=True, min_df=2 if len(train) >= 100 else 1)
    x_train = vec.fit_transform([r["story"] or "" for r in train])
    x_valid = vec.transform([r["story"] or "" for r in valid])
    labels = {}
    for name in names:
        y_train = [int(name in (r["features"] or [])) for r in train]
        y_valid = [int(name in (r["features"] or [])) for r in valid]
        pos_train, pos_valid = sum(y_train), sum(y_valid)
        entry = {"train": len(train), "train_positive": pos_train, "eval": len(valid), "eval_positive": pos_valid}
        if pos_train in (0, len(train)):
            labels[name] = {**entry, "skipped": "only one class in train"}
            continue
        # Balanced weights: a rare label (BadEnding at 25%) would otherwise be learned as "never".
        clf = LogisticRegression(max_iter=2000, class_weight="balanced", random_state=seed)
        clf.fit(x_train, y_train)
        pred = [int(p) for p in clf.predict(x_valid)]
        majority = int(pos_train * 2 > len(train))
        p_train, p_valid = pos_train / len(train), pos_valid / len(valid)
        labels[name] = {
            **entry,
            **_prf(y_valid, pred),
            "majority": {"predicts": majority, **_prf(y_valid, [majority] * len(valid))},
            # Guessing "yes" at the train rate, independent of the text: precision p_valid, recall p_train.
            "chance_f1": 2 * p_train * p_valid / (p_train + p_valid) if p_train + p_valid else 0.0,
        }
    return {"out": str(Path(out)), "partial": corpus.partial, "scheme": scheme, "seed": seed,
            "test_on": None if test_on is None else str(test_on),
            "model": "TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True) + LogisticRegression(class_weight='balanced')",
            "labels": labels}


def write_json(result: dict, path: Path) -> Path:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def render_table(result: dict):
    """A rich Table: precision, recall, F1 per label beside the majority-class and chance baselines."""
    from rich.table import Table

    t = Table(title=f"Label classifiers (TF-IDF + logistic regression), scored on {result['scheme']}")
    t.add_column("label", no_wrap=True)
    for col in ("eval (pos)", "P", "R", "F1", "F1 majority", "F1 chance", "acc", "acc majority"):
        t.add_column(col, justify="right")
    skipped = []
    for name, r in result["labels"].items():
        if "skipped" in r:
            skipped.append(name)
            continue
        t.add_row(name, f"{r['eval']:,} ({r['eval_positive']:,})", f"{r['precision']:.2f}", f"{r['recall']:.2f}",
                  f"{r['f1']:.2f}", f"{r['majority']['f1']:.2f}", f"{r['chance_f1']:.2f}", f"{r['accuracy']:.2f}",
                  f"{r['majority']['accuracy']:.2f}")
    if skipped:
        t.caption = f"not trained (only one class in train): {', '.join(skipped)}"
    return t
