"""Load and validate the word lists and the story-feature table a corpus is sampled from.
A vocab folder holds nouns.txt, verbs.txt, adjectives.txt and features.toml.
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
import sys
from dataclasses import dataclass
from importlib import resources

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from corpusforge.errors import VocabError

FEATURE_NAMES: tuple[str, ...] = ("Dialogue", "BadEnding", "MoralValue", "Twist", "Foreshadowing", "Conflict")
LIST_FILES: tuple[str, ...] = ("nouns", "verbs", "adjectives")
FEATURES_FILE = "features.toml"
_WORD = re.compile(r"[a-z]+")


@dataclass(frozen=True, slots=True)
class Feature:
    label: str
    phrase: str
    probability: float


@dataclass(frozen=True, slots=True)
class Vocab:
    nouns: tuple[str, ...]
    verbs: tuple[str, ...]
    adjectives: tuple[str, ...]
    features: tuple[Feature, ...]
    source: str

    def fingerprint(self) -> str:
        """Return the sha256 hex of the words and features, independent of where they live."""
        # File order is kept, not sorted: the sampler picks words by index, so reordering changes the corpus.
        content = {
            "nouns": self.nouns,
            "verbs": self.verbs,
            "adjectives": self.adjectives,
            "features": [[f.label, f.phrase, f.probability] for f in self.features],
        }
        blob = json.dumps(content, ensure_ascii=True, separators=(",", ":"), sort_keys=True)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def counts(self) -> dict[str, int]:
        """Return how many entries each part of the vocab holds."""
        return {"nouns": len(self.nouns), "verbs": len(self.verbs),
                "adjectives": len(self.adjectives), "features": len(self.features)}


def default_vocab_dir() -> pathlib.Path:
    """Return the vocab folder shipped inside the corpusforge package."""
    return pathlib.Path(str(resources.files("corpusforge") / "vocab"))


def load_vocab(path: str | os.PathLike | None = None) -> Vocab:
    """Load and validate the vocab folder at `path` (the packaged default when None)."""
    folder = default_vocab_dir() if path is None else pathlib.Path(path)
    if not folder.is_dir():
        raise VocabError(f"vocab folder {folder} does not exist or is not a folder",
                         f"pass a folder holding {', '.join(n + '.txt' for n in LIST_FILES)} and {FEATURES_FILE}")
    lists = {name: _read_words(folder / f"{name}.txt") for name in LIST_FILES}
    return Vocab(**lists, features=_read_features(folder / FEATURES_FILE), source=os.path.abspath(folder))


def _read_text(file: pathlib.Path, what: str) -> str:
    """Return a file's text, or raise a VocabError saying it is missing or unreadable."""
    if not file.is_file():
        raise VocabError(f"{file}: {what} file is missing", f"create {file.name} in the vocab folder")
    try:
        return file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise VocabError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})",
                         "save the file as UTF-8") from None


def _read_words(file: pathlib.Path) -> tuple[str, ...]:
    """Parse one word list: one lowercase word per line, `#` comments and blank lines ignored."""
    first_seen: dict[str, int] = {}
    for lineno, raw in enumerate(_read_text(file, "word list").splitlines(), start=1):
        word = raw.split("#", 1)[0].strip()
        if not word:
            continue
        where = f"{file}:{lineno}"
        if len(word.split()) > 1:
            raise VocabError(f"{where}: {word!r} has more than one word",
                             "put one word per line (no spaces)")
        if not _WORD.fullmatch(word):
            if _WORD.fullmatch(word.lower()):
                raise VocabError(f"{where}: {word!r} has uppercase letters", f"use lowercase: {word.lower()!r}")
            raise VocabError(f"{where}: {word!r} is not a word",
                             "use only the letters a-z (no digits, hyphens, apostrophes or accents)")
        if word in first_seen:
            raise VocabError(f"{where}: duplicate word {word!r} (first on line {first_seen[word]})",
                             f"delete line {lineno} or line {first_seen[word]}")
        first_seen[word] = lineno
    if not first_seen:
        raise VocabError(f"{file}: word list is empty (only comments or blank lines)",
                         "add at least one word, one per line")
    return tuple(first_seen)


def _read_features(file: pathlib.Path) -> tuple[Feature, ...]:
    """Parse features.toml into one Feature per label, in FEATURE_NAMES order."""
    text = _read_text(file, "features")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise VocabError(f"{file}: not valid TOML: {exc}", "fix the TOML syntax at the line shown") from None
    tables = data.get("feature")
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise VocabError(f"{file}:1: no [[feature]] tables",
                         "add one [[feature]] table per label, with label, phrase and probability")
    lines = text.splitlines()
    # tomllib keeps no positions, so map the i-th table back to the i-th `[[feature]]` header for messages.
    starts = [i for i, line in enumerate(lines, start=1) if re.match(r"\s*\[\[\s*feature\s*\]\]", line)]
    spans = list(zip(starts, starts[1:] + [len(lines) + 1]))
    if len(spans) != len(tables):  # inline-table syntax: no headers to point at
        spans = [(1, 1)] * len(tables)
    found: dict[str, tuple[Feature, int]] = {}
    for table, span in zip(tables, spans):
        label, label_line = table.get("label"), _line(lines, span, "label")
        at = f"{file}:{label_line}"
        if label not in FEATURE_NAMES:
            what = "missing label" if label is None else f"unknown label {label!r}"
            raise VocabError(f"{at}: {what}", f"use one of: {', '.join(FEATURE_NAMES)}")
        if label in found:
            raise VocabError(f"{at}: duplicate label {label!r} (first at line {found[label][1]})",
                             "keep one [[feature]] table per label")
        phrase, at = table.get("phrase"), f"{file}:{_line(lines, span, 'phrase')}"
        if not isinstance(phrase, str) or not phrase.strip():
            raise VocabError(f"{at}: feature {label!r} has no phrase",
                             'add phrase = "..." with the instruction for the prompt')
        prob, at = table.get("probability"), f"{file}:{_line(lines, span, 'probability')}"
        # bool is an int in Python, but `probability = true` is a typo, not 1.0.
        if isinstance(prob, bool) or not isinstance(prob, (int, float)) or not 0.0 <= prob <= 1.0:
            raise VocabError(f"{at}: feature {label!r} probability {prob!r} is not a number in [0, 1]",
                             "set probability to a number between 0 and 1, e.g. 0.25")
        found[label] = (Feature(label, phrase.strip(), float(prob)), label_line)
    missing = [name for name in FEATURE_NAMES if name not in found]
    if missing:
        raise VocabError(f"{file}: missing feature label(s) {', '.join(missing)}",
                         "add a [[feature]] table for each of: " + ", ".join(FEATURE_NAMES))
    return tuple(found[name][0] for name in FEATURE_NAMES)


def _line(lines: list[str], span: tuple[int, int], key: str) -> int:
    """Return the line number of `key = ...` inside a table's line span, else of the table's header."""
    start, end = span
    for lineno in range(start, end):
        if re.match(rf"\s*{key}\s*=", lines[lineno - 1]):
            return lineno
    return start
