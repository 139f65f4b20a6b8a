"""`corpusforge export`: one split of a build as TinyStories-Instruct text, plain stories, or JSONL,
streamed shard by shard; and `parse_instruct`, which reads the Instruct text back.

Instruct records follow the TinyStories-Instruct files: `Features:`, `Words:` (verb, noun,
adjective, the order of the paper's `quit, oak, gloomy` and of TinyStories' own `words` lists),
`Summary:`, `Random sentence:`, then `Story:` and the story on the following lines.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

from .errors import CorpusforgeError
from .stats import SPLITS, open_corpus

FORMATS = ("instruct", "text", "jsonl")
EOT = "<|endoftext|>"
WORD_ORDER = ("verb", "noun", "adjective")


def _one_line(text: str) -> str:
    # A header field is one line in this format; the model's line breaks become spaces.
    return " ".join((text or "").split())


def instruct_record(row: dict) -> str:
    """One row as a TinyStories-Instruct record (without the separator). Empty fields are left out,
    as TinyStories-Instruct leaves out the lines a record has no value for."""
    lines = []
    if row.get("features"):
        lines.append("Features: " + ", ".join(row["features"]))
    words = row.get("words") or {}
    if any(words.get(k) for k in WORD_ORDER):
        lines.append("Words: " + ", ".join(words.get(k) or "" for k in WORD_ORDER))
    if _one_line(row.get("summary")):
        lines.append("Summary: " + _one_line(row["summary"]))
    if _one_line(row.get("key_sentence")):
        lines.append("Random sentence: " + _one_line(row["key_sentence"]))
    lines.append("Story:")
    # A separator inside a story would split the record in two for every reader of the file.
    lines.append((row.get("story") or "").replace(EOT, "").strip())
    return "\n".join(lines)


_FIELD = re.compile(r"^(Features|Words|Summary|Random sentence|Story):[ \t]?(.*)$")


def parse_instruct(text: str) -> list[dict]:
    """Records of TinyStories-Instruct text -> dicts with features, words {verb, noun, adjective},
    summary, key_sentence and story (a field a record lacks is empty)."""
    records = []
    for chunk in text.split(EOT):
        if not chunk.strip():
            continue
        rec = {"features": [], "words": {}, "summary": "", "key_sentence": "", "story": ""}
        lines = chunk.strip("\n").split("\n")
        for i, line in enumerate(lines):
            m = _FIELD.match(line)
            if not m:
                raise ValueError(f"record {len(records)}: line {line!r} is not a field (expected Features:, Words:, "
                                 "Summary:, Random sentence: or Story:)")
            key, value = m.groups()
            if key == "Story":
                # The story runs to the end of the record: the rest of this line, then every later line.
                rec["story"] = "\n".join([value.strip()] + lines[i + 1:] if value.strip() else lines[i + 1:]).strip()
                break
            if key == "Features":
                rec["features"] = [f.strip() for f in value.split(",") if f.strip()]
            elif key == "Words":
                rec["words"] = dict(zip(WORD_ORDER, (w.strip() for w in value.split(","))))
            elif key == "Summary":
                rec["summary"] = value.strip()
            else:
                rec["key_sentence"] = value.strip()
        records.append(rec)
    return records


def iter_export(out, fmt: str, split: str = "train", warn: Callable[[str], None] | None = None) -> Iterator[str]:
    """The export as text chunks, one per row, in shard order (memory: one batch of rows).
    `warn` receives one line when the build is unfinished (the export then has what is sealed)."""
    corpus = open_corpus(out)
    if fmt not in FORMATS:
        raise CorpusforgeError(f"unknown format {fmt!r}", f"use one of: {', '.join(FORMATS)}")
    if split not in SPLITS:
        raise CorpusforgeError(f"unknown split {split!r}", f"use one of: {', '.join(SPLITS)}")
    if not corpus.files[split]:
        have = [s for s in SPLITS if corpus.files[s]]
        raise CorpusforgeError(f"{out} has no {split} split",
                               f"pass --split {have[0]}" if have else "the build has no finished shards yet")
    if corpus.partial and warn:
        warn(corpus.partial)
    if fmt == "jsonl":
        import pyarrow.parquet as pq

        columns = pq.read_schema(corpus.files[split][0]).names
    else:
        columns = ["story"] if fmt == "text" else ["features", "words", "summary", "key_sentence", "story"]
    for _, row in corpus.iter_rows([split], columns):
        if fmt == "text":
            yield (row["story"] or "").replace(EOT, "").strip() + "\n" + EOT + "\n"
        elif fmt == "instruct":
            yield instruct_record(row) + "\n" + EOT + "\n"
        else:
            yield json.dumps(row, ensure_ascii=False) + "\n"


def export(out, fmt: str, dest: TextIO, split: str = "train", warn: Callable[[str], None] | None = None) -> int:
    """Write the export to an open text stream; returns the number of rows written."""
    n = 0
    for chunk in iter_export(out, fmt, split, warn):
        dest.write(chunk)
        n += 1
    return n


def export_file(out, fmt: str, path: Path, split: str = "train", warn: Callable[[str], None] | None = None) -> int:
    """export() into a file: written to a temp file and renamed, so `path` is never half an export."""
    path = Path(path)
    if not path.parent.is_dir():
        raise CorpusforgeError(f"folder {path.parent} does not exist", f"create it or pass another --out than {path}")
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            n = export(out, fmt, f, split, warn)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return n

