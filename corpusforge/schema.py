"""The row schema shared by the train and rejects splits, as `datasets.Features`.

One schema for both splits keeps them in one config, so `load_dataset(OUT)` returns both;
a rejected row has its `reject_reason` set and is otherwise the same record.
"""
from __future__ import annotations

import json

from .vocab import FEATURE_NAMES

SPLITS = ("train", "rejects")
SPLIT_DIRS = {"train": "data", "rejects": "rejects"}


def features():
    """The `datasets.Features` of every row (imported lazily: datasets is slow to import)."""
    from datasets import ClassLabel, Features, List, Value

    return Features(
        {
            "id": Value("int64"),
            "story": Value("string"),
            "summary": Value("string"),
            "key_sentence": Value("string"),
            "words": {"noun": Value("string"), "verb": Value("string"), "adjective": Value("string")},
            "features": List(ClassLabel(names=list(FEATURE_NAMES))),
            "has_dialogue": Value("bool"),
            "once_upon_a_time": Value("bool"),
            "word_count": Value("int32"),
            "sentence_count": Value("int32"),
            "paragraph_count": Value("int32"),
            "flesch_reading_ease": Value("float32"),
            "reject_reason": Value("string"),
            "model": Value("string"),
            "model_sha256": Value("string"),
            "recipe": Value("string"),
            "template_sha256": Value("string"),
            "seed": Value("int64"),
            "attempt": Value("int32"),
            "prompt_tokens": Value("int32"),
            "completion_tokens": Value("int32"),
            "generation": Value("string"),
            "corpusforge_version": Value("string"),
        }
    )


def encode_features(labels: list[str] | tuple[str, ...]) -> list[int]:
    """Label names to ClassLabel ids; raises on an unknown name instead of writing a string."""
    return [FEATURE_NAMES.index(label) for label in labels]


def arrow_table(rows: list[dict]):
    """Rows (features as names) to an arrow table carrying the `huggingface` schema metadata."""
    import pyarrow as pa

    feats = features()
    encoded = [{**r, "features": encode_features(r["features"])} for r in rows]
    return pa.Table.from_pylist(encoded, schema=feats.arrow_schema)


def generation_json(params: dict) -> str:
    return json.dumps(params, sort_keys=True, separators=(",", ":"))
