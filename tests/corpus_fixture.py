"""Hand-made build folders for the stats, export and eval-labels tests, written without the builder.

The parquet schema is built here from `datasets` directly (not corpusforge.schema), so these
tests pin the on-disk layout a reader must understand, whatever the writer looks like today.
"""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

FEATURES = ("Dialogue", "BadEnding", "MoralValue", "Twist", "Foreshadowing", "Conflict")
# Two axes with names other than the defaults: readers must find axis columns generically.
AXES = {"opening": ("once", "action", "speech"), "setting": ("forest", "home")}
SPLIT_DIRS = {"train": "data", "validation": "data", "test": "data", "rejects": "rejects"}


def features_of(feature_names=FEATURES, axes=AXES, drop=()):
    """The `datasets.Features` of a row, as the target layout describes it."""
    from datasets import ClassLabel, Features, List, Value

    labels = List(ClassLabel(names=list(feature_names)))
    s, i32, f32 = Value("string"), Value("int32"), Value("float32")
    cols = {
        "id": Value("int64"), "story": s, "summary": s, "key_sentence": s,
        "words": {"noun": s, "verb": s, "adjective": s},
        "features": labels,
        **{name: ClassLabel(names=list(values)) for name, values in axes.items()},
        "has_dialogue": Value("bool"), "once_upon_a_time": Value("bool"),
        "word_count": i32, "sentence_count": i32, "paragraph_count": i32,
        "flesch_reading_ease": f32, "flesch_kincaid_grade": f32, "dale_chall": f32,
        "judged_features": labels, "judge_answers": s, "judge_scores": s, "reject_reason": s,
        "model": s, "model_sha256": s, "recipe": s, "template_sha256": s, "generation": s,
        "corpusforge_version": s, "seed": Value("int64"), "attempt": i32, "prompt_tokens": i32,
        "completion_tokens": i32,
    }
    return Features({k: v for k, v in cols.items() if k not in drop})


def row(id: int, story: str = "", **over) -> dict:
    """A row in journal form (labels as names) with neutral defaults."""
    r = {
        "id": id, "story": story, "summary": f"Summary {id}.", "key_sentence": f"Key {id}.",
        "words": {"noun": "cat", "verb": "sit", "adjective": "big"},
        "features": [], "opening": "once", "setting": "home",
        "has_dialogue": False, "once_upon_a_time": False,
        "word_count": len(story.split()), "sentence_count": 1, "paragraph_count": 1,
        "flesch_reading_ease": 90.0, "flesch_kincaid_grade": 1.0, "dale_chall": 5.0,
        "judged_features": [], "judge_answers": "", "judge_scores": "", "reject_reason": "",
        "model": "m-a", "model_sha256": "0" * 64, "recipe": "tinystories-instruct", "template_sha256": "1" * 64,
        "generation": "{}", "corpusforge_version": "0.1.0", "seed": 0, "attempt": 1,
        "prompt_tokens": 10, "completion_tokens": 20,
    }
    r.update(over)
    return r


def write_corpus(out: Path, splits: dict[str, list[dict]], n: int | None = None, feature_names=FEATURES,
                 axes=AXES, drop=(), journal_lines: int = 0, manifest: bool = True) -> Path:
    """Write a build folder: one shard per split, the manifest, optionally an unfinished journal."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    feats = features_of(feature_names, axes, drop)
    for split, rows in splits.items():
        if not rows:
            continue
        encoded = []
        for r in rows:
            e = dict(r)
            for col in ("features", "judged_features"):
                e[col] = [feature_names.index(x) for x in r.get(col, [])]
            for name, values in axes.items():
                e[name] = values.index(r[name])
            encoded.append({k: v for k, v in e.items() if k in feats})
        folder = out / SPLIT_DIRS[split]
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(encoded, schema=feats.arrow_schema), folder / f"{split}-00000-of-00001.parquet")
    if manifest:
        total = sum(len(rows) for rows in splits.values())
        (out / "corpusforge.json").write_text(json.dumps({"n": total if n is None else n, "fingerprint": {"seed": 0}}))
    if journal_lines:
        j = out / ".corpusforge" / "journal"
        j.mkdir(parents=True, exist_ok=True)
        (j / "shard-00000.jsonl").write_text("".join(json.dumps({"id": 100 + i, "split": "train"}) + "\n" for i in range(journal_lines)))
    return out


# ----- the hand-made corpus: every expected number in test_stats.py is derived from these rows ----

A = "Once upon a time, a cat sat on a mat."  # 10 tokens, 8 distinct
# 30 tokens, all distinct, none shared with A or E; D is C with the last word changed.
C = ("Tim the little dog ran fast down to his big green park. Where he found an old red ball "
     "under one tall tree near blue water, and then they played.")
D = C.replace("played.", "sang.")
E = "\"Come here, Sam,\" said Mom."  # 5 tokens

J = json.dumps


def hand_rows() -> dict[str, list[dict]]:
    """5 kept stories (2 models) and 3 rejects; the comments in test_stats.py derive every figure."""
    return {
        "train": [
            row(0, A, model="m-a", features=["Dialogue", "Twist"], opening="once", setting="forest",
                words={"noun": "cat", "verb": "sit", "adjective": "big"}, word_count=10,
                once_upon_a_time=True, flesch_reading_ease=100.0,
                judge_answers=J({"BadEnding": "no", "Twist": "yes"}), judged_features=["Twist"]),
            row(1, A, model="m-a", features=["Twist"], opening="once", setting="home",
                words={"noun": "cat", "verb": "sit", "adjective": "big"}, word_count=10,
                once_upon_a_time=True, flesch_reading_ease=100.0,
                judge_answers=J({"BadEnding": "no", "Twist": "no"})),
            row(2, C, model="m-b", features=["BadEnding", "Conflict"], opening="action", setting="forest",
                words={"noun": "dog", "verb": "run", "adjective": "red"}, word_count=30, sentence_count=2,
                flesch_reading_ease=80.0,
                judge_answers=J({"BadEnding": "yes", "Twist": "no"}), judged_features=["BadEnding"]),
        ],
        "validation": [
            row(3, D, model="m-b", features=[], opening="action", setting="forest",
                words={"noun": "dog", "verb": "run", "adjective": "red"}, word_count=30, sentence_count=2,
                flesch_reading_ease=80.0),
        ],
        "test": [
            row(4, E, model="m-a", features=["Dialogue", "BadEnding"], opening="speech", setting="home",
                words={"noun": "cat", "verb": "run", "adjective": "big"}, word_count=5,
                has_dialogue=True, flesch_reading_ease=90.0,
                judge_answers=J({"BadEnding": "no", "Twist": "no"})),
        ],
        "rejects": [
            row(5, A, model="m-a", features=["Dialogue"], reject_reason="duplicate:0", opening="once",
                words={"noun": "ball", "verb": "jump", "adjective": "big"}),
            row(6, "", model="m-b", features=["Conflict"], reject_reason="words: missing noun 'ball'", opening="action",
                words={"noun": "ball", "verb": "sit", "adjective": "shiny"}),
            row(7, "Bad day.", model="m-b", features=["BadEnding"], reject_reason="judge:BadEnding", opening="speech",
                words={"noun": "dog", "verb": "run", "adjective": "red"},
                judge_answers=J({"BadEnding": "no", "Twist": "yes"}), judged_features=["Twist"]),
        ],
    }


def write_hand_corpus(out: Path, **kw) -> Path:
    return write_corpus(out, hand_rows(), **kw)


def write_hand_vocab(folder: Path) -> Path:
    """A vocab folder with 4 nouns, 3 verbs, 2 adjectives (features/axes files copied from the default)."""
    from corpusforge.vocab import default_vocab_dir

    shutil.copytree(default_vocab_dir(), folder)
    (folder / "nouns.txt").write_text("cat\ndog\nball\ntree\n")
    (folder / "verbs.txt").write_text("run\nsit\njump\n")
    (folder / "adjectives.txt").write_text("big\nred\n")
    return folder


# ----- a synthetic corpus with one learnable and one shuffled label (eval-labels) -------------

NAMES = ("Tim", "Sue", "Ben", "Mia", "Max", "Zoe", "Sam", "Ann")
NOUNS = ("ball", "kite", "boat", "cake", "dog", "hat", "drum", "box", "tree", "car")
VERBS = ("find", "share", "fix", "paint", "carry", "throw")
ADJS = ("red", "small", "shiny", "soft", "tall", "funny")
MIDDLES = ("{n} went to the park with a {a} {o}.", "{n} wanted to {v} the {a} {o}.",
           "One day {n} saw a {a} {o} near the house.", "{n} and a friend played with the {o}.",
           "The {o} was {a} and {n} liked it a lot.")
# The learnable label: BadEnding stories end with a sad sentence, the others with a happy one.
SAD = ("{n} cried because the {o} was broken forever.", "The {o} was lost and {n} felt sad and alone.",
       "In the end the {o} was gone and everyone was unhappy.", "{n} was sad, sorry and upset all night.")
HAPPY = ("{n} smiled and hugged the {o}.", "Everyone laughed and had a happy day with the {o}.",
         "{n} was glad and proud of the {o}.", "They cheered and played until the sun went down.")


def synthetic_rows(n: int, seed: int) -> list[dict]:
    """n short stories; BadEnding follows the ending's words, Twist is a fair coin (unlearnable)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        name, noun, verb, adj = rng.choice(NAMES), rng.choice(NOUNS), rng.choice(VERBS), rng.choice(ADJS)
        bad = rng.random() < 0.5
        fill = {"n": name, "o": noun, "v": verb, "a": adj}
        middle = " ".join(t.format(**fill) for t in rng.sample(MIDDLES, 3))
        story = f"{middle} {rng.choice(SAD if bad else HAPPY).format(**fill)}"
        features = (["BadEnding"] if bad else []) + (["Twist"] if rng.random() < 0.5 else [])
        rows.append(row(i, story, features=features, words={"noun": noun, "verb": verb, "adjective": adj},
                        summary=f"{name} and the {noun}.", key_sentence=middle.split(".")[0] + "."))
    return rows


def write_synthetic_corpus(out: Path, n: int = 400, seed: int = 0, validation: bool = True) -> Path:
    """Train (and 25% validation) of `synthetic_rows`; without validation everything is train."""
    rows = synthetic_rows(n, seed)
    cut = n * 3 // 4 if validation else n
    return write_corpus(out, {"train": rows[:cut], "validation": rows[cut:]})
