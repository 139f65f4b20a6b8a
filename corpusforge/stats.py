"""`corpusforge stats`: one streaming pass over a build's parquet shards into counters, then
stats.json and rich tables. Also the shard reader that `export` and `eval-labels` share.

Memory holds counters, not rows: the dedup index (about 1 KB per kept story), the distinct
n-grams as packed 64-bit integers, and tallies whose size is bounded by the vocabulary.
"""
from __future__ import annotations

import json
import math
import os
import re
import statistics
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from .errors import CorpusforgeError

# The layout a build writes (same names as shards.py/schema.py; not imported from there so
# reading a folder never pulls in the writer side).
MANIFEST = "corpusforge.json"
JOURNAL_DIR = Path(".corpusforge") / "journal"
SPLIT_DIRS = {"train": "data", "validation": "data", "test": "data", "rejects": "rejects"}
SPLITS = tuple(SPLIT_DIRS)
KEPT_SPLITS = ("train", "validation", "test")
LENGTHS = {"words": "word_count", "sentences": "sentence_count", "paragraphs": "paragraph_count"}
READABILITY = ("flesch_reading_ease", "flesch_kincaid_grade", "dale_chall")
TOP_OPENERS = 20
HIST_BINS = 20

# The definitions stats.json carries, so a number is never read without knowing what it counts.
DEFINITIONS = {
    "tokens": "word tokens: the story lowercased (curly apostrophes made straight), then every maximal run "
              "of letters and digits, with inner apostrophes kept (don't, tom's); punctuation is dropped",
    "distinct_n": "corpus-level distinct-n over kept stories (train+validation+test): the number of "
                  "different n-grams of word tokens divided by the total number of n-grams; n-grams never "
                  "cross a story boundary",
    "duplicates": "kept stories are added to one DedupIndex (the build's threshold and shingle size, else 0.8 and 5) in the order train, "
                  "validation, test, each by id; a story is an exact (near) duplicate if the index matches it "
                  "exactly (by MinHash Jaccard >= 0.8) to an earlier kept story, of any model; the rate is per "
                  "model over its kept stories. duplicate_rejects counts rows rejected with reason duplicate",
    "openers": "the first three word tokens of a kept story (fewer if the story is shorter), as a share of "
               "kept stories",
    "once_upon_a_time": "kept stories whose first four word tokens are once upon a time",
    "vocab_coverage": "for each vocab list (nouns, verbs, adjectives), how many of its words the `words` column "
                      "requested at least once, and min/median/max requests per word over every word of the "
                      "list (unused words count 0); `requested` is over all planned rows (kept + rejects), "
                      "`kept` over kept rows",
    "child_vocabulary": "share of word tokens of kept stories outside a child vocabulary. A token is inside if, "
                        "after dropping a possessive 's, it is on textstat's Dale-Chall list of familiar words, "
                        "or one of its lemminflect lemmas (getAllLemmas, any part of speech) is on that list (the "
                        "Dale-Chall rules count regular inflections as familiar), or it is a noun, verb or adjective "
                        "of the build's vocab or an inflection of one (lemminflect getAllInflections, its OOV rules "
                        "for words its dictionary lacks), or it is a number (digits only). Names "
                        "(Tim, Sue) count as outside unless they are on a list",
    "label_checks": "2x2 tables of requested (the `features` column) against measured has_dialogue, and "
                    "against the judge's verdict (judged_features) for each feature it asked about (only rows whose "
                    "judge_answers is not empty and asks that feature); agreement = (both + neither) / rows; "
                    "`kept` over kept rows, `all` over kept + rejects",
    "labels": "planned = rows of every split (each planned id is in exactly one), kept = train+validation+test; "
              "shares are over planned and kept rows; kept_rate = kept / planned for that label",
    "cooccurrence": "kept stories requesting both features (diagonal: that feature at all)",
    "lengths": "word_count, sentence_count, paragraph_count columns of kept stories; median and p10/p90 "
               "interpolate linearly; histogram: at most 20 bins of one integer width from the minimum, "
               "bin i counts values in [edge_i, edge_i+1)",
    "readability": "mean and median of the textstat columns over kept stories (missing or NaN values skipped)",
}


class MissingExtra(CorpusforgeError):
    """An optional dependency (matplotlib, scikit-learn) is not installed."""


def require(module: str, extra: str, what: str):
    """Import an optional module or raise the one-line error naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        package = {"sklearn": "scikit-learn"}.get(module, module)
        raise MissingExtra(f"{what} needs {package}", f"pip install 'corpusforge[{extra}]'") from None


# ----- reading a build ----------------------------------------------------------------------

@dataclass(slots=True)
class Corpus:
    """A build folder as a reader sees it: its shard files per split, label names, manifest."""

    out: Path
    manifest: dict
    files: dict[str, list[Path]]
    rows: dict[str, int]
    feature_names: list[str]
    axes: dict[str, list[str]]
    journal_rows: int = 0
    _decoders: dict = field(default_factory=dict)

    @property
    def planned(self) -> int | None:
        n = self.manifest.get("n")
        return n if isinstance(n, int) else None

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    @property
    def partial(self) -> str | None:
        """Why the build looks unfinished, or None."""
        if self.journal_rows or (self.planned is not None and self.total_rows < self.planned):
            what = f"{self.total_rows:,} of {self.planned:,}" if self.planned is not None else f"{self.total_rows:,}"
            more = f"; {self.journal_rows:,} more in an unfinished journal" if self.journal_rows else ""
            return f"partial build: {what} planned stories are in finished shards{more}; figures cover the finished shards only"
        return None

    def iter_rows(self, splits: Iterable[str], columns: Iterable[str], batch_size: int = 2048) -> Iterator[tuple[str, dict]]:
        """(split, row) for every row of the splits, reading only `columns`; labels come back as
        names and a column a shard lacks comes back as None."""
        import pyarrow.parquet as pq

        columns = list(columns)
        for split in splits:
            for path in self.files.get(split, []):
                pf = pq.ParquetFile(path)
                schema = pf.schema_arrow
                decode = self._decoder(schema)
                have = [c for c in columns if c in schema.names]
                for batch in pf.iter_batches(batch_size=batch_size, columns=have):
                    for r in batch.to_pylist():
                        yield split, decode({c: r.get(c) for c in columns})

    def _decoder(self, schema):
        key = (schema.metadata or {}).get(b"huggingface", b"")
        if key not in self._decoders:
            lists, axes = _label_columns(schema)
            if not lists and "features" in schema.names:
                lists = {"features": self.feature_names, "judged_features": self.feature_names}

            def decode(r: dict, lists=lists, axes=axes) -> dict:
                for col, names in lists.items():
                    if r.get(col) is not None:
                        r[col] = [names[i] for i in r[col]]
                for col, names in axes.items():
                    if r.get(col) is not None:
                        r[col] = names[r[col]]
                return r

            self._decoders[key] = decode
        return self._decoders[key]


def _label_columns(schema) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """ClassLabel names from the `huggingface` schema metadata: ({list column: names}, {axis: names}).
    An axis is any ClassLabel column that is not inside a list."""
    if not (schema.metadata or {}).get(b"huggingface"):
        return {}, {}
    from datasets import ClassLabel, Features

    lists, axes = {}, {}
    for name, feat in Features.from_arrow_schema(schema).items():
        if isinstance(feat, ClassLabel):
            axes[name] = list(feat.names)
        elif isinstance(getattr(feat, "feature", None), ClassLabel):
            lists[name] = list(feat.feature.names)
    return lists, axes


def open_corpus(out: Path) -> Corpus:
    """The shard files of a build folder, or a CorpusforgeError if it is not one."""
    import pyarrow.parquet as pq

    out = Path(out)
    if not out.is_dir():
        raise CorpusforgeError(f"{out} is not a folder", "pass the --out folder of a corpusforge build")
    files = {s: sorted((out / d).glob(f"{s}-*.parquet")) for s, d in SPLIT_DIRS.items()}
    manifest_path = out / MANIFEST
    if not manifest_path.is_file() and not any(files.values()):
        raise CorpusforgeError(f"{out} is not a corpusforge build (no {MANIFEST}, no data/*.parquet)",
                               "pass the --out folder of a corpusforge build")
    manifest = {}
    if manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise CorpusforgeError(f"{manifest_path} is not valid JSON ({e})", "restore it or re-run the build") from None
    rows, feature_names, axes = {}, [], {}
    for split, paths in files.items():
        rows[split] = 0
        for path in paths:
            try:
                pf = pq.ParquetFile(path)
            except Exception as e:  # a torn file is a user-visible state, not a bug here
                raise CorpusforgeError(f"{path} is not a readable parquet file ({e})",
                                       "re-run the build command to repair the folder") from None
            rows[split] += pf.metadata.num_rows
            lists, file_axes = _label_columns(pf.schema_arrow)
            for name in lists.get("features", []):
                if name not in feature_names:
                    feature_names.append(name)
            for axis, names in file_axes.items():
                known = axes.setdefault(axis, [])
                known += [v for v in names if v not in known]
    if not feature_names:
        from .vocab import FEATURE_NAMES

        feature_names = list(FEATURE_NAMES)
    journal_rows = 0
    for j in sorted((out / JOURNAL_DIR).glob("*.jsonl")):
        journal_rows += j.read_bytes().count(b"\n")
    return Corpus(out, manifest, files, rows, feature_names, axes, journal_rows)


# ----- text helpers -------------------------------------------------------------------------

_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def tokens(text: str) -> list[str]:
    """Word tokens as DEFINITIONS['tokens'] says."""
    return _TOKEN.findall(text.lower().replace("’", "'").replace("‘", "'"))


def _quantile(counts: Counter, q: float) -> float | None:
    """The q-quantile of a multiset given as {value: count}, interpolating like numpy's default."""
    n = sum(counts.values())
    if not n:
        return None
    pos = (n - 1) * q
    lo_i, hi_i = math.floor(pos), math.ceil(pos)
    lo = hi = None
    seen = 0
    for value in sorted(counts):
        seen += counts[value]
        if lo is None and seen > lo_i:
            lo = value
        if seen > hi_i:
            hi = value
            break
    return lo + (hi - lo) * (pos - lo_i)


def _summary(counts: Counter) -> dict:
    n = sum(counts.values())
    if not n:
        return {"n": 0}
    return {"n": n, "min": min(counts), "max": max(counts), "mean": sum(v * c for v, c in counts.items()) / n,
            "median": _quantile(counts, 0.5), "p10": _quantile(counts, 0.1), "p90": _quantile(counts, 0.9)}


def _histogram(counts: Counter, bins: int = HIST_BINS) -> dict:
    """Equal integer-width bins [edge_i, edge_i+1) from min, covering max (at most `bins` of them)."""
    if not counts:
        return {"edges": [], "counts": []}
    lo, hi = min(counts), max(counts)
    width = max(1, math.ceil((hi - lo + 1) / bins))
    k = max(1, math.ceil((hi - lo + 1) / width))
    hist = [0] * k
    for v, c in counts.items():
        hist[min(k - 1, (v - lo) // width)] += c
    return {"edges": [lo + i * width for i in range(k + 1)], "counts": hist}


class _Distinct:
    """Exact corpus-level distinct-1/2/3: words get ids in order of first sight, bigrams and
    trigrams are packed into one uint64 (21 bits per id) and kept as sorted unique arrays."""

    BITS = 21
    FLUSH = 1 << 21

    def __init__(self):
        import numpy as np

        self.np = np
        self.ids: dict[str, int] = {}
        self.total = [0, 0, 0]
        self.unique = [np.empty(0, np.uint64), np.empty(0, np.uint64)]
        self.pending: list[list] = [[], []]
        self.pending_size = 0
        self.exact = True

    def add(self, toks: list[str]) -> None:
        np = self.np
        if not toks:
            return
        ids = np.fromiter((self.ids.setdefault(t, len(self.ids) + 1) for t in toks), dtype=np.uint64, count=len(toks))
        if len(self.ids) >= 1 << self.BITS:
            self.exact = False  # more word types than 21 bits hold: packed keys may collide
        b = np.uint64(self.BITS)
        self.total[0] += len(ids)
        for n, grams in ((2, (ids[:-1] << b) | ids[1:]), (3, (ids[:-2] << (b + b)) | (ids[1:-1] << b) | ids[2:])):
            if len(grams):
                self.total[n - 1] += len(grams)
                self.pending[n - 2].append(grams)
                self.pending_size += len(grams)
        if self.pending_size > self.FLUSH:
            self._flush()

    def _flush(self) -> None:
        np = self.np
        for i in (0, 1):
            if self.pending[i]:
                self.unique[i] = np.unique(np.concatenate([self.unique[i], *self.pending[i]]))
                self.pending[i] = []
        self.pending_size = 0

    def result(self) -> dict:
        self._flush()
        unique = [len(self.ids), len(self.unique[0]), len(self.unique[1])]
        out = {f"distinct_{n}": (unique[n - 1] / self.total[n - 1] if self.total[n - 1] else None) for n in (1, 2, 3)}
        return {**out, "unique": unique, "total": list(self.total), "exact": self.exact}


class _ChildVocab:
    """Decides DEFINITIONS['child_vocabulary'] per word type, cached (types are few)."""

    def __init__(self, vocab: dict[str, tuple[str, ...]]):
        from lemminflect import getAllInflections, getAllInflectionsOOV, getAllLemmas

        self.lemmas = getAllLemmas
        ref = resources.files("textstat").joinpath("resources/en/easy_words.txt")
        self.dale_chall = {w.strip().lower() for w in ref.read_text(encoding="utf-8").splitlines() if w.strip()}
        # Every form of every vocab word, from the word's side: a rare vocab word (a lemma
        # lemminflect's dictionary lacks) still gets its regular forms through the OOV rules.
        self.vocab_forms: set[str] = set()
        for upos, words in (("NOUN", vocab["nouns"]), ("VERB", vocab["verbs"]), ("ADJ", vocab["adjectives"])):
            for w in words:
                forms = getAllInflections(w, upos) or getAllInflectionsOOV(w, upos)
                self.vocab_forms.add(w)
                self.vocab_forms.update(f for fs in forms.values() for f in fs)
        self.cache: dict[str, bool] = {}
        self.tokens = self.outside = 0
        self.outside_words: Counter = Counter()

    def inside(self, tok: str) -> bool:
        hit = self.cache.get(tok)
        if hit is None:
            word = tok[:-2] if tok.endswith("'s") else tok
            hit = self.cache[tok] = (
                word.isdigit() or word in self.dale_chall or word in self.vocab_forms
                or any(lemma in self.dale_chall for forms in self.lemmas(word).values() for lemma in forms))
        return hit

    def add(self, toks: list[str]) -> None:
        for t in toks:
            self.tokens += 1
            if not self.inside(t):
                self.outside += 1
                self.outside_words[t] += 1

    def result(self) -> dict:
        return {"tokens": self.tokens, "outside": self.outside,
                "outside_share": self.outside / self.tokens if self.tokens else None,
                "top_outside": [[w, c] for w, c in _ranked(self.outside_words)[:20]]}


def _ranked(counter: Counter) -> list[tuple]:
    """Most common first, ties alphabetical (Counter.most_common breaks ties by insertion order)."""
    return sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))


def _two_by_two(t: Counter) -> dict:
    n = sum(t.values())
    both, req, meas, neither = t[(True, True)], t[(True, False)], t[(False, True)], t[(False, False)]
    return {"n": n, "both": both, "requested_only": req, "measured_only": meas, "neither": neither,
            "agreement": (both + neither) / n if n else None}


def _vocab_for(corpus: Corpus, vocab: Path | None):
    """The vocab to measure coverage against: --vocab, else the build's recorded vocab folder, else the packaged one."""
    from .vocab import load_vocab

    if vocab is not None:
        return load_vocab(vocab)
    source = corpus.manifest.get("vocab_source")
    if source and Path(source).is_dir():
        try:
            return load_vocab(source)
        except CorpusforgeError:
            pass  # the recorded folder changed since the build; fall back to the packaged lists
    return load_vocab()


# ----- the pass -----------------------------------------------------------------------------

_COLUMNS = ("id", "story", "words", "features", "has_dialogue", "judge_answers", "judged_features", "reject_reason", "model",
            *LENGTHS.values(), *READABILITY)


def compute_stats(out: Path, vocab: Path | None = None) -> dict:
    """Every figure of `corpusforge stats` for the build in `out`, as a JSON-ready dict."""
    from .dedup import DEFAULT_SHINGLE, DEFAULT_THRESHOLD, DedupIndex

    corpus = open_corpus(out)
    v = _vocab_for(corpus, vocab)
    lists = {"nouns": v.nouns, "verbs": v.verbs, "adjectives": v.adjectives}
    pos_key = {"nouns": "noun", "verbs": "verb", "adjectives": "adjective"}
    names, axes = corpus.feature_names, corpus.axes

    split_rows: Counter = Counter()
    model_split: Counter = Counter()
    reasons: Counter = Counter()
    model_reasons: Counter = Counter()
    planned_labels: Counter = Counter()
    kept_labels: Counter = Counter()
    planned_axes: Counter = Counter()
    kept_axes: Counter = Counter()
    pairs: Counter = Counter()
    lengths = {k: Counter() for k in LENGTHS}
    readability = {k: Counter() for k in READABILITY}
    requested = {k: Counter() for k in lists}
    requested_kept = {k: Counter() for k in lists}
    off_vocab: Counter = Counter()
    openers: Counter = Counter()
    once = 0
    dialogue = {"kept": Counter(), "all": Counter()}
    judged: dict[str, dict[str, Counter]] = {}
    dup_kind: Counter = Counter()  # (model, kind)
    distinct = _Distinct()
    child = _ChildVocab(lists)
    # The build's own dedup settings, so "duplicate" means here what it meant during the build.
    settings = (corpus.manifest.get("fingerprint") or {}).get("dedup") or {}
    index = DedupIndex(threshold=settings.get("threshold", DEFAULT_THRESHOLD), shingle=settings.get("shingle", DEFAULT_SHINGLE))
    vocab_sets = {k: set(ws) for k, ws in lists.items()}

    columns = [*_COLUMNS, *axes]
    for split, r in corpus.iter_rows(SPLITS, columns):
        kept = split in KEPT_SPLITS
        model = r["model"] or "(unknown)"
        split_rows[split] += 1
        model_split[(model, split)] += 1
        feats = set(r["features"] or [])
        for f in feats:
            planned_labels[f] += 1
        for axis in axes:
            if r[axis] is not None:
                planned_axes[(axis, r[axis])] += 1
        words = r["words"] or {}
        for lst, key in pos_key.items():
            w = words.get(key)
            if w:
                if w in vocab_sets[lst]:
                    requested[lst][w] += 1
                    if kept:
                        requested_kept[lst][w] += 1
                else:
                    off_vocab[(key, w)] += 1
        if r["has_dialogue"] is not None:
            dialogue["all"][("Dialogue" in feats, bool(r["has_dialogue"]))] += 1
        # Asked = a yes/no in judge_answers; the verdict is judged_features (the answer, or the
        # score against the gold set's threshold where one was measured).
        verdicts = set(r["judged_features"] or [])
        for f in _answers(r["judge_answers"]):
            yes = f in verdicts
            scopes = judged.setdefault(f, {"kept": Counter(), "all": Counter()})
            scopes["all"][(f in feats, yes)] += 1
            if kept:
                scopes["kept"][(f in feats, yes)] += 1
        if not kept:
            code = (r["reject_reason"] or "(none)").split(":", 1)[0].strip()
            reasons[code] += 1
            model_reasons[(model, code)] += 1
            continue

        for f in feats:
            kept_labels[f] += 1
        ordered = [f for f in names if f in feats]
        for i, a in enumerate(ordered):
            for b in ordered[i:]:
                pairs[(a, b)] += 1
        for axis in axes:
            if r[axis] is not None:
                kept_axes[(axis, r[axis])] += 1
        for key, col in LENGTHS.items():
            if r[col] is not None:
                lengths[key][int(r[col])] += 1
        for col in READABILITY:
            x = r[col]
            if x is not None and not math.isnan(x):
                readability[col][round(float(x), 2)] += 1
        if r["has_dialogue"] is not None:
            dialogue["kept"][("Dialogue" in feats, bool(r["has_dialogue"]))] += 1
        story = r["story"] or ""
        toks = tokens(story)
        distinct.add(toks)
        child.add(toks)
        if toks:
            openers[" ".join(toks[:3])] += 1
        once += toks[:4] == ["once", "upon", "a", "time"]
        match = index.check_and_add(r["id"], story)
        dup_kind[(model, "kept")] += 1
        if match is not None:
            dup_kind[(model, match.kind)] += 1

    kept_n = sum(split_rows[s] for s in KEPT_SPLITS)
    all_n = split_rows.total()
    models = sorted({m for m, _ in model_split})
    dup_rejects = Counter({m: c for (m, code), c in model_reasons.items() if code == "duplicate"})

    def share(c, n):
        return c / n if n else None

    def label_row(planned: int, kept: int) -> dict:
        return {"planned": planned, "kept": kept, "planned_share": share(planned, all_n),
                "kept_share": share(kept, kept_n), "kept_rate": share(kept, planned)}

    def dup_row(kept: int, exact: int, near: int, rejects: int, rows: int) -> dict:
        return {"kept": kept, "exact": exact, "near": near, "exact_rate": share(exact, kept),
                "near_rate": share(near, kept), "duplicate_rejects": rejects,
                "duplicate_reject_rate": share(rejects, rows)}

    def coverage(counts: dict[str, Counter]) -> dict:
        out = {}
        for lst, ws in lists.items():
            uses = [counts[lst][w] for w in ws]
            used = sum(1 for u in uses if u)
            out[lst] = {"size": len(ws), "used": used, "coverage": share(used, len(ws)),
                        "min": min(uses), "median": statistics.median(uses), "max": max(uses)}
        return out

    def readable(counts: Counter) -> dict:
        s = _summary(counts)
        return {"n": s["n"], "mean": s.get("mean"), "median": s.get("median")}

    return {
        "out": str(Path(out)),
        "planned": corpus.planned,
        "partial": corpus.partial,
        # Token totals over every run of the build (the manifest keeps them): judge share included.
        "tokens": corpus.manifest.get("tokens"),
        "rows": all_n,
        "kept": kept_n,
        "splits": {s: split_rows[s] for s in SPLITS},
        "models": {m: {**{s: model_split[(m, s)] for s in SPLITS},
                       "kept": sum(model_split[(m, s)] for s in KEPT_SPLITS)} for m in models},
        "reject_reasons": dict(_ranked(reasons)),
        "reject_reasons_by_model": {m: {code: c for (mm, code), c in _ranked(model_reasons) if mm == m} for m in models},
        "labels": {
            "features": {f: label_row(planned_labels[f], kept_labels[f]) for f in names},
            "axes": {a: {v: label_row(planned_axes[(a, v)], kept_axes[(a, v)]) for v in values} for a, values in axes.items()},
        },
        "cooccurrence": {"labels": list(names),
                         "matrix": [[pairs[(a, b) if names.index(a) <= names.index(b) else (b, a)] for b in names] for a in names]},
        "lengths": {k: {"summary": _summary(c), "histogram": _histogram(c)} for k, c in lengths.items()},
        "distinct": distinct.result(),
        "duplicates": {
            "overall": dup_row(kept_n, sum(c for (m, k), c in dup_kind.items() if k == "exact"),
                               sum(c for (m, k), c in dup_kind.items() if k == "near"), dup_rejects.total(), all_n),
            "by_model": {m: dup_row(dup_kind[(m, "kept")], dup_kind[(m, "exact")], dup_kind[(m, "near")], dup_rejects[m],
                                    sum(model_split[(m, s)] for s in SPLITS)) for m in models},
        },
        "openers": {"top": [{"opener": o, "count": c, "share": share(c, kept_n)} for o, c in _ranked(openers)[:TOP_OPENERS]],
                    "distinct": len(openers),
                    "once_upon_a_time": {"count": once, "share": share(once, kept_n)}},
        "vocab_coverage": {"vocab": v.source, "requested": coverage(requested), "kept": coverage(requested_kept),
                           "off_vocab_requests": off_vocab.total(),
                           "off_vocab_examples": [f"{pos} {w}" for (pos, w), _ in _ranked(off_vocab)[:10]]},
        "readability": {col: readable(c) for col, c in readability.items()},
        "child_vocabulary": child.result(),
        "label_checks": {
            "dialogue": {scope: _two_by_two(t) for scope, t in dialogue.items()},
            "judge": {f: {scope: _two_by_two(t) for scope, t in judged[f].items()} for f in names if f in judged},
        },
        "definitions": DEFINITIONS,
    }


def _answers(raw: str | None) -> dict[str, bool]:
    """judge_answers JSON -> {feature: said yes}; empty when no judge ran or the text is not JSON."""
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {f: str(a).strip().lower() == "yes" for f, a in data.items() if str(a).strip().lower() in ("yes", "no")}


def write_stats(out: Path, stats: dict) -> Path:
    """OUT/stats.json (temp file + rename, so a reader never sees half a file)."""
    path = Path(out) / "stats.json"
    tmp = path.with_name(".stats.json.tmp")
    tmp.write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


# ----- terminal tables ------------------------------------------------------------------------

def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _num(x, digits: int = 1) -> str:
    if x is None:
        return "-"
    return f"{x:,}" if isinstance(x, int) else f"{x:,.{digits}f}"


def render_tables(stats: dict) -> list:
    """rich Tables of the figures, in the order the terminal shows them."""
    from rich.table import Table

    tables = []
    models = list(stats["models"])
    t = Table(title=f"Rows ({stats['rows']:,} of {_num(stats['planned'])} planned)")
    t.add_column("split")
    t.add_column("rows", justify="right")
    for m in models:
        t.add_column(m, justify="right")
    for s in SPLITS:
        t.add_row(s, _num(stats["splits"][s]), *[_num(stats["models"][m][s]) for m in models])
    tables.append(t)

    if stats["reject_reasons"]:
        t = Table(title="Reject reasons")
        t.add_column("reason")
        t.add_column("rows", justify="right")
        for m in models:
            t.add_column(m, justify="right")
        for code, c in stats["reject_reasons"].items():
            t.add_row(code, _num(c), *[_num(stats["reject_reasons_by_model"][m].get(code, 0)) for m in models])
        tables.append(t)

    t = Table(title="Labels: planned vs kept")
    for col, just in (("label", "left"), ("planned", "right"), ("share", "right"), ("kept", "right"),
                      ("share ", "right"), ("kept rate", "right")):
        t.add_column(col, justify=just)
    groups = [("feature", stats["labels"]["features"])] + list(stats["labels"]["axes"].items())
    for i, (group, rows) in enumerate(groups):
        for name, r in rows.items():
            label = name if group == "feature" else f"{group}={name}"
            t.add_row(label, _num(r["planned"]), _pct(r["planned_share"]), _num(r["kept"]), _pct(r["kept_share"]),
                      _pct(r["kept_rate"]), end_section=(name == list(rows)[-1] and i < len(groups) - 1))
    tables.append(t)

    co = stats["cooccurrence"]
    t = Table(title="Feature co-occurrence (kept)")
    t.add_column("")
    for name in co["labels"]:
        t.add_column(name[:8], justify="right")
    for name, row in zip(co["labels"], co["matrix"]):
        t.add_row(name, *[_num(c) for c in row])
    tables.append(t)

    t = Table(title="Lengths (kept)")
    for col in ("", "min", "p10", "median", "mean", "p90", "max"):
        t.add_column(col, justify="right" if col else "left")
    for key, d in stats["lengths"].items():
        s = d["summary"]
        t.add_row(key, *[_num(s.get(k)) for k in ("min", "p10", "median", "mean", "p90", "max")])
    tables.append(t)

    d, op = stats["distinct"], stats["openers"]
    cv = stats["child_vocabulary"]
    t = Table(title="Diversity (kept)")
    t.add_column("measure")
    t.add_column("value", justify="right")
    for n in (1, 2, 3):
        t.add_row(f"distinct-{n}", _num(d[f"distinct_{n}"], 3) + f"  ({d['unique'][n - 1]:,} / {d['total'][n - 1]:,})")
    t.add_row("distinct openers", _num(op["distinct"]))
    t.add_row('"once upon a time" openers', _pct(op["once_upon_a_time"]["share"]))
    t.add_row("words outside a child vocabulary", _pct(cv["outside_share"])
              + (f"  (most: {', '.join(w for w, _ in cv['top_outside'][:5])})" if cv["top_outside"] else ""))
    for col, r in stats["readability"].items():
        t.add_row(f"{col} mean / median", f"{_num(r['mean'])} / {_num(r['median'])}")
    tables.append(t)

    t = Table(title=f"Top {len(op['top'])} openers (first 3 words, kept)")
    t.add_column("opener")
    t.add_column("stories", justify="right")
    t.add_column("share", justify="right")
    for o in op["top"]:
        t.add_row(o["opener"], _num(o["count"]), _pct(o["share"]))
    tables.append(t)

    t = Table(title="Duplicates among kept stories, per model")
    for col in ("model", "kept", "exact", "near", "duplicate rejects"):
        t.add_column(col, justify="left" if col == "model" else "right")
    dup = stats["duplicates"]
    last = list(dup["by_model"])[-1:]
    for m, r in [*dup["by_model"].items(), ("all", dup["overall"])]:
        t.add_row(m, _num(r["kept"]), f"{r['exact']:,} ({_pct(r['exact_rate'])})", f"{r['near']:,} ({_pct(r['near_rate'])})",
                  f"{r['duplicate_rejects']:,} ({_pct(r['duplicate_reject_rate'])})", end_section=[m] == last)
    tables.append(t)

    vc = stats["vocab_coverage"]
    t = Table(title=f"Vocab coverage ({vc['vocab']})")
    for col in ("list", "words", "requested", "min / median / max uses", "kept", "min / median / max uses "):
        t.add_column(col, justify="left" if col == "list" else "right")
    for lst, r in vc["requested"].items():
        k = vc["kept"][lst]
        t.add_row(lst, _num(r["size"]), f"{r['used']:,} ({_pct(r['coverage'])})", f"{r['min']} / {_num(r['median'])} / {r['max']}",
                  f"{k['used']:,} ({_pct(k['coverage'])})", f"{k['min']} / {_num(k['median'])} / {k['max']}")
    if vc["off_vocab_requests"]:
        t.caption = f"{vc['off_vocab_requests']:,} requested words are not in this vocab (e.g. {', '.join(vc['off_vocab_examples'][:3])}): pass the build's --vocab"
    tables.append(t)

    lc = stats["label_checks"]
    t = Table(title="Label checks: requested vs found (quoted speech for Dialogue, the judge's yes for the others)")
    t.add_column("label", no_wrap=True)
    for col in ("by", "scope", "rows", "both", "asked only", "found only", "neither", "agree"):
        t.add_column(col, justify="left" if col in ("by", "scope") else "right")
    checks = [("Dialogue", "speech", lc["dialogue"])] + [(f, "judge", s) for f, s in lc["judge"].items()]
    for label, by, scopes in checks:
        for scope, r in scopes.items():
            t.add_row(label, by, scope, _num(r["n"]), _num(r["both"]), _num(r["requested_only"]), _num(r["measured_only"]),
                      _num(r["neither"]), _pct(r["agreement"]), end_section=scope == "all")
    tables.append(t)
    return tables
