"""Load and validate the sampling space a corpus is drawn from: word lists, features and axes.
A vocab folder holds nouns.txt, verbs.txt, adjectives.txt, features.toml and (optional) axes.toml
and unfit.txt.
"""
from __future__ import annotations

import hashlib
import json
import keyword
import math
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

# The labels of the shipped features.toml; a vocab folder may define any others.
FEATURE_NAMES: tuple[str, ...] = ("Dialogue", "BadEnding", "MoralValue", "Twist", "Foreshadowing", "Conflict")
LIST_FILES: tuple[str, ...] = ("nouns", "verbs", "adjectives")
FEATURES_FILE = "features.toml"
AXES_FILE = "axes.toml"
UNFIT_FILE = "unfit.txt"
# An axis name becomes a dataset column and a template variable, so it must not shadow either:
# the row's own columns (schema.py), the plan's template variables (sampler.template_variables)
# and the built-in recipes' stage names (summary, key_sentence, story).
RESERVED_NAMES: frozenset[str] = frozenset({
    "noun", "verb", "adjective", "features", "feature_phrases", "axis_phrases", "axis_labels",
    "summary", "key_sentence", "story", "id", "words", "model", "model_sha256", "split", "seed",
    "attempt", "recipe", "judged_features", "judge_answers", "judge_scores", "reject_reason", "has_dialogue",
    "once_upon_a_time", "word_count", "sentence_count", "paragraph_count", "flesch_reading_ease",
    "flesch_kincaid_grade", "dale_chall", "prompt_tokens", "completion_tokens", "generation",
    "corpusforge_version", "template_sha256",
    # The per-shard statistics key labels as kind:value (feature:Twist, pair:A+B): an axis
    # with one of these names would be counted into another kind.
    "feature", "pair",
})
_WORD = re.compile(r"[a-z]+")
_PHRASE = re.compile(r"[a-z]+(?: [a-z]+)*")
_FEATURE_LABEL = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
# Lowercase: axis names are parquet columns and value labels are ClassLabel names, both read in code.
_AXIS_NAME = re.compile(r"[a-z][a-z0-9_]*")
# Jinja's own literals cannot be variable names, and Python keywords break `row.name` style access.
_NOT_NAMES = frozenset({"true", "false", "none"}) | frozenset(keyword.kwlist)
_FEATURE_KEYS = ("label", "phrase", "probability", "judge")
_AXIS_KEYS = ("name", "description", "value")
_VALUE_KEYS = ("label", "phrase", "weight")


@dataclass(frozen=True, slots=True)
class Feature:
    """A yes/no story property put into the prompt with `probability`; `judge`: an LLM verifies it."""

    label: str
    phrase: str
    probability: float
    judge: bool = False


@dataclass(frozen=True, slots=True)
class AxisValue:
    """One value of a categorical axis: its ClassLabel name, prompt sentence and draw weight."""

    label: str
    phrase: str
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class Axis:
    """A categorical choice every story makes exactly once (opening, setting, theme, ...)."""

    name: str
    description: str
    values: tuple[AxisValue, ...]

    def labels(self) -> list[str]:
        return [v.label for v in self.values]


@dataclass(frozen=True, slots=True)
class Vocab:
    nouns: tuple[str, ...]
    verbs: tuple[str, ...]
    adjectives: tuple[str, ...]
    features: tuple[Feature, ...]
    axes: tuple[Axis, ...]
    source: str
    unfit_words: tuple[str, ...] = ()  # words and phrases the `unfit` check rejects (unfit.txt)

    @property
    def feature_names(self) -> list[str]:
        """The feature labels in file order (the order of the ClassLabel names)."""
        return [f.label for f in self.features]

    def fingerprint(self) -> str:
        """Return the sha256 hex of everything that decides plans and prompts, independent of where it lives."""
        # File order is kept, not sorted: the sampler picks words, features and axis values by
        # index, so reordering changes the corpus. An axis description is left out: it reaches
        # neither plans nor prompts, so rewording it must not block a resume.
        content = {
            "nouns": self.nouns,
            "verbs": self.verbs,
            "adjectives": self.adjectives,
            "features": [[f.label, f.phrase, f.probability, f.judge] for f in self.features],
            "axes": [[a.name, [[v.label, v.phrase, v.weight] for v in a.values]] for a in self.axes],
            # Sorted: the unfit check matches any entry, so only the set decides which stories are kept.
            "unfit": sorted(self.unfit_words),
        }
        blob = json.dumps(content, ensure_ascii=True, separators=(",", ":"), sort_keys=True)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def counts(self) -> dict[str, int]:
        """Return how many entries each part of the vocab holds."""
        return {"nouns": len(self.nouns), "verbs": len(self.verbs),
                "adjectives": len(self.adjectives), "features": len(self.features),
                "axes": len(self.axes), "axis_values": sum(len(a.values) for a in self.axes)}


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
    axes_file = folder / AXES_FILE
    # No axes.toml means no axes: a folder from before axes existed still loads unchanged.
    axes = _read_axes(axes_file) if axes_file.exists() else ()
    # No unfit.txt falls back to the shipped list, not to no check: a folder copied before the
    # list existed, or written by hand, should not start keeping stories with knives and blood.
    # An unfit.txt of only comments is how a folder turns the check off.
    unfit_file = folder / UNFIT_FILE
    if not unfit_file.exists():
        unfit_file = default_vocab_dir() / UNFIT_FILE
    unfit = _read_phrases(unfit_file) if unfit_file.exists() else ()
    for name in LIST_FILES:
        # A story must use its sampled word, so a listed word would reject every story drawing it.
        if clash := next(iter(sorted(set(unfit) & set(lists[name]))), None):
            raise VocabError(f"{unfit_file}: {clash!r} is also in {name}.txt, so every story asked to use it would be rejected",
                             f"delete {clash!r} from {name}.txt, or from a copy of {UNFIT_FILE} in the vocab folder")
    return Vocab(**lists, features=_read_features(folder / FEATURES_FILE), axes=axes,
                 source=os.path.abspath(folder), unfit_words=unfit)


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
    words = _read_lines(file, "word list", _WORD, phrases=False)
    if not words:
        raise VocabError(f"{file}: word list is empty (only comments or blank lines)",
                         "add at least one word, one per line")
    return words


def _read_phrases(file: pathlib.Path) -> tuple[str, ...]:
    """Parse unfit.txt: one lowercase word or phrase per line, `#` comments; may be empty."""
    return _read_lines(file, "unfit word list", _PHRASE, phrases=True)


def _read_lines(file: pathlib.Path, what: str, pattern: re.Pattern, phrases: bool) -> tuple[str, ...]:
    """One entry per line in file order, each matching `pattern`; a bad or repeated one is a
    VocabError naming file:line and the fix."""
    first_seen: dict[str, int] = {}
    for lineno, raw in enumerate(_read_text(file, what).splitlines(), start=1):
        entry = " ".join(raw.split("#", 1)[0].split()) if phrases else raw.split("#", 1)[0].strip()
        if not entry:
            continue
        where = f"{file}:{lineno}"
        if not phrases and len(entry.split()) > 1:
            raise VocabError(f"{where}: {entry!r} has more than one word",
                             "put one word per line (no spaces)")
        if not pattern.fullmatch(entry):
            if pattern.fullmatch(entry.lower()):
                raise VocabError(f"{where}: {entry!r} has uppercase letters", f"use lowercase: {entry.lower()!r}")
            if phrases:
                raise VocabError(f"{where}: {entry!r} is not a word or phrase",
                                 "use only the letters a-z, with spaces between the words of a phrase")
            raise VocabError(f"{where}: {entry!r} is not a word",
                             "use only the letters a-z (no digits, hyphens, apostrophes or accents)")
        if entry in first_seen:
            kind = "entry" if phrases else "word"
            raise VocabError(f"{where}: duplicate {kind} {entry!r} (first on line {first_seen[entry]})",
                             f"delete line {lineno} or line {first_seen[entry]}")
        first_seen[entry] = lineno
    return tuple(first_seen)


# --- TOML files ---------------------------------------------------------------------------
# tomllib keeps no positions, so each table is mapped back to its `[[...]]` header line by
# counting headers; a key's line is the first `key =` inside the table's span.

class _Toml:
    """A parsed TOML file plus what is needed to point errors at lines."""

    def __init__(self, file: pathlib.Path, what: str):
        self.file = file
        text = _read_text(file, what)
        try:
            self.data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            found = re.search(r"at line (\d+)", str(exc))
            raise VocabError(f"{file}:{found.group(1) if found else 1}: not valid TOML: {exc}",
                             "fix the TOML syntax at the line shown") from None
        self.lines = text.splitlines()

    def headers(self, pattern: str, start: int = 1, end: int | None = None) -> list[int]:
        """Line numbers of `[[pattern]]` headers in [start, end)."""
        rx = re.compile(rf"\s*\[\[\s*{pattern}\s*\]\]")
        end = len(self.lines) + 1 if end is None else end
        return [n for n in range(start, end) if rx.match(self.lines[n - 1])]

    def spans(self, headers: list[int], count: int, end: int, fallback: int) -> list[tuple[int, int]]:
        """One (first, past-last) line span per table; every table points at `fallback` if the headers do not line up."""
        if len(headers) != count:  # inline-table syntax: no headers to point at
            return [(fallback, fallback)] * count
        return list(zip(headers, headers[1:] + [end]))

    def line(self, span: tuple[int, int], key: str) -> int:
        """The line of `key = ...` inside `span`, else the span's first line (the table header)."""
        start, end = span
        for lineno in range(start, end):
            if re.match(rf"\s*{re.escape(key)}\s*=", self.lines[lineno - 1]):
                return lineno
        return start

    def top_line(self, key: str) -> int:
        """The line where top-level `key` appears, as `key = ...`, `[key]` or `[[key]]`; else 1."""
        rx = re.compile(rf"\s*(\[\[?\s*{re.escape(key)}\s*[\].]|{re.escape(key)}\s*=)")
        return next((n for n, line in enumerate(self.lines, start=1) if rx.match(line)), 1)

    def error(self, lineno: int, what: str, hint: str) -> VocabError:
        return VocabError(f"{self.file}:{lineno}: {what}", hint)

    def check_keys(self, table: dict, allowed: tuple[str, ...], span: tuple[int, int], what: str) -> None:
        """Refuse keys the loader does not read: a typo such as `weigth` would silently mean the default."""
        for key in table:
            if key not in allowed:
                raise self.error(self.line(span, key), f"unknown key {key!r} in {what}",
                                 f"use only {', '.join(allowed)} (check the spelling)")


def _number(value) -> float | None:
    """`value` as a finite float, or None; bool is an int in Python, but `weight = true` is a typo."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _read_features(file: pathlib.Path) -> tuple[Feature, ...]:
    """Parse features.toml into one Feature per [[feature]] table, in file order."""
    toml = _Toml(file, "features")
    for key in toml.data:
        if key != "feature":
            raise toml.error(toml.top_line(key), f"unknown key {key!r}",
                             "the file holds only [[feature]] tables (label, phrase, probability, judge)")
    tables = toml.data.get("feature")
    if not isinstance(tables, list) or not tables or not all(isinstance(t, dict) for t in tables):
        raise toml.error(1, "no [[feature]] tables",
                         "add at least one [[feature]] table with label, phrase and probability")
    spans = toml.spans(toml.headers("feature"), len(tables), len(toml.lines) + 1, 1)
    found: dict[str, int] = {}
    features = []
    for table, span in zip(tables, spans):
        toml.check_keys(table, _FEATURE_KEYS, span, "[[feature]]")
        label, label_line = table.get("label"), toml.line(span, "label")
        if label is None:
            raise toml.error(label_line, "missing label", 'add label = "Name" to the [[feature]] table')
        if not isinstance(label, str) or not _FEATURE_LABEL.fullmatch(label):
            raise toml.error(label_line, f"feature label {label!r} is not a name",
                             "use letters, digits and _, starting with a letter, e.g. BadEnding")
        if label in found:
            raise toml.error(label_line, f"duplicate label {label!r} (first at line {found[label]})",
                             "keep one [[feature]] table per label")
        phrase = table.get("phrase")
        if not isinstance(phrase, str) or not phrase.strip():
            raise toml.error(toml.line(span, "phrase"), f"feature {label!r} has no phrase",
                             'add phrase = "..." with the instruction for the prompt')
        prob = table.get("probability")
        if _number(prob) is None or not 0.0 <= prob <= 1.0:
            raise toml.error(toml.line(span, "probability"),
                             f"feature {label!r} probability {prob!r} is not a number in [0, 1]",
                             "set probability to a number between 0 and 1, e.g. 0.25")
        judge = table.get("judge", False)
        if not isinstance(judge, bool):
            raise toml.error(toml.line(span, "judge"), f"feature {label!r} judge {judge!r} is not true or false",
                             "write judge = true (an LLM judge checks it) or judge = false")
        found[label] = label_line
        features.append(Feature(label, phrase.strip(), float(prob), judge))
    return tuple(features)


def _read_axes(file: pathlib.Path) -> tuple[Axis, ...]:
    """Parse axes.toml: [[axis]] tables (name, description) each with [[axis.value]] tables."""
    toml = _Toml(file, "axes")
    for key in toml.data:
        if key != "axis":
            raise toml.error(toml.top_line(key), f"unknown key {key!r}",
                             "the file holds only [[axis]] tables, each with [[axis.value]] tables")
    tables = toml.data.get("axis", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise toml.error(toml.top_line("axis"), "axis is not a list of [[axis]] tables",
                         'write each axis as an [[axis]] table with name = "..."')
    end = len(toml.lines) + 1
    spans = toml.spans(toml.headers("axis"), len(tables), end, 1)
    names: dict[str, int] = {}
    axes = []
    for table, span in zip(tables, spans):
        value_headers = toml.headers(r"axis\s*\.\s*value", *span)
        own = (span[0], value_headers[0] if value_headers else span[1])  # the axis's keys come before its values
        toml.check_keys(table, _AXIS_KEYS, own, "[[axis]]")
        name, name_line = table.get("name"), toml.line(own, "name")
        if name is None:
            raise toml.error(name_line, "axis has no name", 'add name = "opening" (lowercase) to the [[axis]] table')
        if not isinstance(name, str) or not _AXIS_NAME.fullmatch(name) or name in _NOT_NAMES:
            raise toml.error(name_line, f"axis name {name!r} is not a lowercase identifier",
                             "use a-z, 0-9 and _, starting with a letter, not a keyword, e.g. opening")
        if name in RESERVED_NAMES:
            raise toml.error(name_line, f"axis name {name!r} is reserved (a column or template variable of every story)",
                             f"rename the axis, e.g. {name}_kind")
        if name in names:
            raise toml.error(name_line, f"duplicate axis name {name!r} (first at line {names[name]})",
                             "give each [[axis]] its own name")
        description = table.get("description", "")
        if not isinstance(description, str):
            raise toml.error(toml.line(own, "description"), f"axis {name!r} description is not text",
                             'write description = "..." in quotes')
        values = table.get("value")
        if values is None or values == []:
            raise toml.error(span[0], f"axis {name!r} has no values",
                             "add [[axis.value]] tables under it, each with label and phrase")
        if not isinstance(values, list) or not all(isinstance(v, dict) for v in values):
            raise toml.error(toml.line(own, "value"), f"axis {name!r} value is not a list of tables",
                             "write each value as an [[axis.value]] table with label and phrase")
        names[name] = name_line
        axes.append(Axis(name, description.strip(), _read_values(toml, name, values,
                                                                   toml.spans(value_headers, len(values), span[1], span[0]))))
    return tuple(axes)


def _read_values(toml: _Toml, axis: str, tables: list[dict], spans: list[tuple[int, int]]) -> tuple[AxisValue, ...]:
    """Validate the [[axis.value]] tables of one axis."""
    labels: dict[str, int] = {}
    values = []
    for table, span in zip(tables, spans):
        toml.check_keys(table, _VALUE_KEYS, span, f"a value of axis {axis!r}")
        label, label_line = table.get("label"), toml.line(span, "label")
        if label is None:
            raise toml.error(label_line, f"a value of axis {axis!r} has no label",
                             'add label = "name" (lowercase) to the [[axis.value]] table')
        if not isinstance(label, str) or not _AXIS_NAME.fullmatch(label):
            raise toml.error(label_line, f"axis {axis!r} value label {label!r} is not a lowercase name",
                             "use a-z, 0-9 and _, starting with a letter, e.g. time_of_day")
        if label in labels:
            raise toml.error(label_line, f"duplicate label {label!r} in axis {axis!r} (first at line {labels[label]})",
                             "give each value of an axis its own label")
        phrase = table.get("phrase")
        if not isinstance(phrase, str) or not phrase.strip():
            raise toml.error(toml.line(span, "phrase"), f"axis {axis!r} value {label!r} has no phrase",
                             'add phrase = "..." with the sentence for the prompt')
        weight = table.get("weight", 1.0)
        if _number(weight) is None or weight <= 0:
            raise toml.error(toml.line(span, "weight"), f"axis {axis!r} value {label!r} weight {weight!r} is not a number above 0",
                             "set weight to a positive number (default 1), or delete the value to never draw it")
        labels[label] = label_line
        values.append(AxisValue(label, phrase.strip(), float(weight)))
    return tuple(values)
