"""The row schema of every split, as `datasets.Features`, built from the build's sampling space.

Feature labels and categorical axes come from the vocab folder, so the ClassLabel names are
whatever features.toml and axes.toml say. One schema for all splits keeps them in one config,
so `load_dataset(OUT)` returns train, validation, test and rejects together.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

SPLITS = ("train", "validation", "test", "rejects")
KEPT_SPLITS = ("train", "validation", "test")
SPLIT_DIRS = {"train": "data", "validation": "data", "test": "data", "rejects": "rejects"}
# Label-list columns: names in the journal, ClassLabel ids in parquet.
LABEL_LISTS = ("features", "judged_features")


@dataclass(frozen=True, slots=True)
class RowSchema:
    """The feature names and axes (name, value labels) a build's rows carry."""

    feature_names: tuple[str, ...]
    axes: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @classmethod
    def from_vocab(cls, vocab) -> RowSchema:
        return cls(tuple(vocab.feature_names), tuple((a.name, tuple(a.labels())) for a in vocab.axes))

    @property
    def axis_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.axes)

    def features(self):
        """The `datasets.Features` of every row (imported lazily: datasets is slow to import)."""
        from datasets import ClassLabel, Features, List, Value

        labels = List(ClassLabel(names=list(self.feature_names)))
        string, i32, f32 = Value("string"), Value("int32"), Value("float32")
        return Features(
            {
                "id": Value("int64"),
                "story": string,
                "summary": string,
                "key_sentence": string,
                "words": {"noun": string, "verb": string, "adjective": string},
                "features": labels,
                **{name: ClassLabel(names=list(values)) for name, values in self.axes},
                "has_dialogue": Value("bool"),
                "once_upon_a_time": Value("bool"),
                "word_count": i32,
                "sentence_count": i32,
                "paragraph_count": i32,
                "flesch_reading_ease": f32,
                "flesch_kincaid_grade": f32,
                "dale_chall": f32,
                "judged_features": labels,
                "judge_answers": string,  # JSON {feature: "yes"|"no"} of every question asked; "" without a judge
                # JSON {feature: log P(yes) - log P(no) at the first answer token}; "" without a judge
                "judge_scores": string,
                "reject_reason": string,
                "model": string,
                "model_sha256": string,
                "recipe": string,
                "template_sha256": string,
                "seed": Value("int64"),
                "attempt": i32,
                "prompt_tokens": i32,
                "completion_tokens": i32,
                "generation": string,
                "corpusforge_version": string,
            }
        )

    def encode(self, row: dict) -> dict:
        """A journal row (labels as names) in parquet form (ClassLabel ids).

        Unknown names raise instead of being written as strings: `Features.encode_example`
        would leave an unknown first label as a string and pyarrow would fail later."""
        out = dict(row)
        for col in LABEL_LISTS:
            out[col] = [self.feature_names.index(label) for label in row.get(col, [])]
        for name, values in self.axes:
            out[name] = values.index(row[name])
        return out

    def decode(self, row: dict) -> dict:
        """A parquet row back in journal form (labels as names)."""
        out = dict(row)
        for col in LABEL_LISTS:
            out[col] = [self.feature_names[i] for i in row.get(col) or []]
        for name, values in self.axes:
            out[name] = values[row[name]]
        return out

    def arrow_table(self, rows: list[dict]):
        """Rows (labels as names) to an arrow table carrying the `huggingface` schema metadata."""
        import pyarrow as pa

        return pa.Table.from_pylist([self.encode(r) for r in rows], schema=self.features().arrow_schema)

    def to_dict(self) -> dict:
        return {"feature_names": list(self.feature_names), "axes": {n: list(v) for n, v in self.axes}}

    @classmethod
    def from_dict(cls, d: dict) -> RowSchema:
        return cls(tuple(d["feature_names"]), tuple((n, tuple(v)) for n, v in d.get("axes", {}).items()))


def generation_json(params: dict) -> str:
    return json.dumps(params, sort_keys=True, separators=(",", ":"))
