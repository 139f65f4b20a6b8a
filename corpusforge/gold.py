"""Labelled story sets (the gold set in eval/gold, or any set in its format), read and checked.

A set is a JSON Lines file, or a folder holding `gold.jsonl`. One object per line:

    {"id": 7, "split": "test", "story": "...", "features": ["Dialogue", "Twist"],
     "opening": "sound", "setting": "park", "theme": "kindness", "words": {...}}

`features` lists every feature the story has; a feature of the set's `labels` that a row does not
list is one it lacks. `split` is "dev" (tune prompts and thresholds on it) or "test" (scores
only); without a split field every row is a test row. The set's labels are `labels` from a
`labels.json` beside the file when there is one ({"features": [...]}), else every feature any row
lists. Other keys (axes, words) are kept as they are.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import CorpusforgeError

SPLITS = ("dev", "test")


@dataclass(frozen=True, slots=True)
class LabelledSet:
    path: Path
    labels: tuple[str, ...]  # the features every row is labelled for
    rows: tuple[dict, ...]

    def part(self, split: str) -> list[dict]:
        """The rows of one part ("dev" or "test"); a set without splits is all test."""
        return [r for r in self.rows if r.get("split", "test") == split]

    def has(self, row: dict, label: str) -> int:
        return int(label in row["features"])


def load_labelled(path: Path) -> LabelledSet:
    """Read and check a labelled set; errors name the file, the line and the fix."""
    path = Path(path)
    file = path / "gold.jsonl" if path.is_dir() else path
    if not file.is_file():
        raise CorpusforgeError(f"{path} is not a labelled story set (no {file.name})",
                               "pass a .jsonl file or a folder with gold.jsonl, e.g. eval/gold")
    rows, seen = [], set()
    for n, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{file}:{n}"
        try:
            row = json.loads(line)
        except ValueError as e:
            raise CorpusforgeError(f"{where}: not JSON ({e.msg})", "write one JSON object per line") from None
        if not isinstance(row, dict):
            raise CorpusforgeError(f"{where}: not a JSON object", "write one JSON object per line")
        if not isinstance(row.get("story"), str) or not row["story"].strip():
            raise CorpusforgeError(f"{where}: no story text", 'give each row a non-empty "story"')
        feats = row.get("features")
        if not isinstance(feats, list) or not all(isinstance(f, str) for f in feats):
            raise CorpusforgeError(f"{where}: features must be a list of feature names", 'e.g. "features": ["Dialogue"]')
        if row.get("split", "test") not in SPLITS:
            raise CorpusforgeError(f"{where}: split {row['split']!r} is unknown", f"use one of {', '.join(SPLITS)}")
        key = row.get("id", n)
        if key in seen:
            raise CorpusforgeError(f"{where}: id {key!r} is used twice", "give each row its own id")
        seen.add(key)
        rows.append(row)
    if not rows:
        raise CorpusforgeError(f"{file} has no rows", "add labelled stories, one JSON object per line")
    labels_file = file.parent / "labels.json"
    if labels_file.is_file():
        labels = tuple(json.loads(labels_file.read_text(encoding="utf-8"))["features"])
    else:
        labels = tuple(dict.fromkeys(f for r in rows for f in r["features"]))
    unknown = sorted({f for r in rows for f in r["features"]} - set(labels))
    if unknown:
        raise CorpusforgeError(f"{file}: features {', '.join(unknown)} are not in {labels_file.name}",
                               f"add them to {labels_file} or fix the rows")
    return LabelledSet(file, labels, tuple(rows))


__all__ = ["SPLITS", "LabelledSet", "load_labelled"]
