"""A corpus-wide duplicate index: exact copies by a normalised-text hash, near copies by
datasketch MinHash LSH over word shingles. The build checks every accepted story; stats counts.
"""
from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

import numpy as np

from .errors import CorpusforgeError

# A flagged story costs a whole regeneration, so the default flags only plain copies. On the
# hand-written ~125-word stories of tests/test_dedup.py (5-word shingles): two words changed
# scores a true Jaccard of 0.85 (caught), three 0.80 (on the line), a loose retelling with seven
# edits 0.48, unrelated stories at most 0.03. Over 100 random substitutions: 1 word 0.92, 2 0.86,
# 3 0.79, 5 0.68. Longer stories tolerate proportionally more changed words.
DEFAULT_THRESHOLD = 0.8
# Small models reuse stock phrases ("once upon a time there was a little girl named", "from
# that day on"): a different plot told in story 1's stock phrases scores 0.16 against it with
# 3-word shingles, 0.07 with 5 (0.25 with 2). 5 keeps that floor low even at a lowered
# threshold; the price is that one changed word breaks 5 shingles, not 3, so at 0.8 a
# 125-word story tolerates ~2 changed words where 3-word shingles tolerate ~4.
DEFAULT_SHINGLE = 5
# Standard error of the estimated Jaccard ~sqrt(J(1-J)/128): 0.035 at 0.8. The signature is
# 512 bytes a story (uint32).
DEFAULT_NUM_PERM = 128
# datasketch's own default seed, pinned: workers, a resume and stats must all draw the same
# permutations, or a signature made in one process means nothing in another.
_SEED = 1
# The LSH only proposes candidates and each is verified on its estimated Jaccard, so a pair
# the LSH misses is a missed duplicate while a spare candidate costs one 128-value compare.
# datasketch's own band choice proposes a pair exactly at 0.8 only 40% of the time.
_RECALL_AT_THRESHOLD = 0.95

_APOSTROPHES = re.compile(r"['’‘`]")
_PUNCT = re.compile(r"[^\w\s]|_")


def normalise(text: str) -> str:
    """Lowercase, apostrophes dropped, other punctuation as spaces, whitespace collapsed."""
    # The rule of checks.contains_sentence: "don't" == "don’t" == "dont", "ice-cream" == "ice cream".
    text = _APOSTROPHES.sub("", text.lower())
    return " ".join(_PUNCT.sub(" ", text).split())


def _shingles(words: list[str], k: int) -> set[str]:
    if len(words) <= k:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i:i + k]) for i in range(len(words) - k + 1)}


def shingles(text: str, k: int) -> set[str]:
    """Word k-grams of the normalised text; a text shorter than k words is one shingle."""
    return _shingles(normalise(text).split(), k)


def _digest(normalised: str) -> int:
    # 64 bits: a chance collision among a million stories has odds of ~3e-8.
    return int.from_bytes(hashlib.blake2b(normalised.encode(), digest_size=8).digest(), "little")


def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band): the fewest bands that still propose a pair at the threshold."""
    for rows in range(num_perm // 2, 0, -1):
        bands = num_perm // rows
        if 1 - (1 - threshold ** rows) ** bands >= _RECALL_AT_THRESHOLD:
            return bands, rows
    return num_perm, 1


@cache
def _buckets():
    """An LSH band table for datasketch's MinHashLSH that holds a lone key bare, not in a set."""
    from datasketch.storage import UnorderedStorage

    class Buckets(UnorderedStorage):
        # datasketch's dict storage gives every bucket a set (216 bytes even for one key), and
        # almost every bucket holds one story: with 18 bands its tables took 5.8 kB a story
        # (10,000 stories, tracemalloc), these 1.35 kB.
        def __init__(self):
            self._dict: dict = {}

        def keys(self):
            return self._dict.keys()

        def get(self, key):
            found = self._dict.get(key, ())
            return found if type(found) in (list, tuple) else (found,)

        def insert(self, key, *vals, **kwargs):
            for val in vals:
                found = self._dict.setdefault(key, val)
                if type(found) is list:
                    found.append(val)
                elif found != val:
                    self._dict[key] = [found, val]

        def remove(self, *keys, **kwargs):
            for key in keys:
                del self._dict[key]

        def remove_val(self, key, val, **kwargs):
            rest = [v for v in self.get(key) if v != val]
            self._dict[key] = rest[0] if len(rest) == 1 else rest

        def size(self):
            return len(self._dict)

        def itemcounts(self, **kwargs):
            return {k: len(self.get(k)) for k in self._dict}

        def has_key(self, key):
            return key in self._dict

    return Buckets


@dataclass(slots=True, frozen=True)
class Match:
    """An earlier story that a text duplicates."""
    kind: str  # "exact" or "near"
    other: int  # id of the earlier story
    similarity: float  # 1.0 for exact; estimated Jaccard for near


@dataclass(slots=True)
class _Prepared:
    digest: int
    sketch: object | None  # datasketch MinHash; None: no words, so only an exact match counts


class DedupIndex:
    """Stories seen so far, asked for exact and near duplicates. Not thread-safe."""

    # Measured (`python tests/test_dedup.py`; ~200-word synthetic stories, CPU time on this
    # 2-core machine, wall time 2-3x that while other jobs ran): check_and_add 0.26 ms a story
    # into an empty index, 0.25 ms into 10,000 and 0.36 ms into 100,000 (about half normalising
    # and shingling, half MinHash); add_many 2.5 s for 10,000 and 26 s for 100,000. Memory
    # 2.2-2.6 kB a story (RSS grew 262 MB for 100,000): 1.35 kB band tables, 0.5 kB signature,
    # the rest dicts. Pickled 0.53 kB a story; unpickling re-bands at 0.33 s per 10,000.

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, shingle: int = DEFAULT_SHINGLE,
                 num_perm: int = DEFAULT_NUM_PERM):
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
            raise CorpusforgeError(f"dedup threshold must be above 0 and at most 1, got {threshold!r}",
                                   "pass --dedup-threshold 0.8 (the estimated Jaccard similarity)")
        if isinstance(shingle, bool) or not isinstance(shingle, int) or shingle < 1:
            raise CorpusforgeError(f"shingle size must be a whole number of words >= 1, got {shingle!r}",
                                   "pass --shingle-size 5")
        if num_perm < 2:
            raise ValueError(f"num_perm must be >= 2, got {num_perm}")
        # datasketch imports scipy (0.6-0.9 s here): paid only by builds and stats that dedup.
        from datasketch import MinHash, MinHashLSH

        self.threshold, self.shingle, self.num_perm = float(threshold), shingle, num_perm
        # Copies of one blank MinHash share its permutations; MinHash(seed=...) redraws them.
        self._blank = MinHash(num_perm=num_perm, seed=_SEED)
        # Band keys become CRC-32 ints: smaller than the bytes, the same in every process
        # (hash() is salted per process), and a chance collision only adds a candidate to verify.
        self._lsh = MinHashLSH(num_perm=num_perm, params=lsh_bands(self.threshold, num_perm),
                               hashfunc=zlib.crc32)
        self._lsh.hashtables = [_buckets()() for _ in range(self._lsh.b)]
        self._first: dict[int, int] = {}  # normalised-text digest -> lowest id
        self._others: dict[int, list[int]] = {}  # further ids of that text (add() does not check)
        self._rows: dict[int, int] = {}  # id -> row of _sigs, or -1 for a text with no words
        self._sigs = np.empty((0, num_perm), dtype=np.uint32)
        self._n_sigs = 0
        # The build's check calls find(), then add() on the same text once the story is kept:
        # remembering the last text's sketch cuts that pair from 0.46 to 0.26 ms of CPU.
        self._last: tuple[str, _Prepared] | None = None

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, story_id: object) -> bool:
        return story_id in self._rows

    def __getstate__(self) -> dict:
        # The band tables are rebuilt from the signatures: a local class cannot be pickled,
        # and re-banding takes 0.33 s of CPU per 10,000 signatures.
        state = {k: getattr(self, k) for k in ("threshold", "shingle", "num_perm", "_first",
                                                 "_others", "_rows", "_n_sigs")}
        return {**state, "_sigs": self._sigs[:self._n_sigs]}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["threshold"], state["shingle"], state["num_perm"])
        for key in ("_first", "_others", "_rows", "_n_sigs", "_sigs"):
            setattr(self, key, state[key])
        for story_id, row in self._rows.items():
            if row >= 0:
                self._lsh.insert(story_id, self._as_minhash(self._sigs[row]), check_duplication=False)

    def _prepare(self, text: str) -> _Prepared:
        if self._last is not None and self._last[0] == text:
            return self._last[1]
        norm = normalise(text)
        shingle_set = _shingles(norm.split(), self.shingle)
        sketch = None
        if shingle_set:
            sketch = self._blank.copy()
            sketch.update_batch([s.encode() for s in shingle_set])
        self._last = (text, _Prepared(_digest(norm), sketch))
        return self._last[1]

    def _as_minhash(self, signature: np.ndarray):
        # MinHashLSH reads only the hash values (and, since datasketch 2, the scheme).
        m = self._blank.copy()
        m.hashvalues = signature.astype(m.hashvalues.dtype)
        return m

    def _find(self, p: _Prepared, exclude: int | None) -> Match | None:
        if p.digest in self._first:
            ids = [self._first[p.digest], *self._others.get(p.digest, ())]
            if ids := [i for i in ids if i != exclude]:
                return Match("exact", min(ids), 1.0)
        if p.sketch is None or not self._n_sigs:
            return None
        candidates = [k for k in self._lsh.query(p.sketch) if k != exclude]
        if not candidates:
            return None
        rows = [self._rows[k] for k in candidates]
        similar = (self._sigs[rows] == p.sketch.hashvalues).mean(axis=1).tolist()
        hits = [(k, s) for k, s in zip(candidates, similar) if s >= self.threshold]
        return Match("near", *min(hits)) if hits else None

    def _store(self, story_id: int, p: _Prepared) -> None:
        """Record the story's text hash and signature, and band the signature into the LSH."""
        first = self._first.setdefault(p.digest, story_id)
        if first != story_id:
            self._others.setdefault(p.digest, []).append(max(first, story_id))
            self._first[p.digest] = min(first, story_id)
        if p.sketch is None:
            self._rows[story_id] = -1
            return
        if self._n_sigs == len(self._sigs):
            grown = np.empty((max(256, len(self._sigs) * 3 // 2), self.num_perm), dtype=np.uint32)
            grown[:self._n_sigs] = self._sigs[:self._n_sigs]
            self._sigs = grown
        # datasketch 2 keeps 32-bit values in uint32, older versions in uint64: store both as uint32.
        self._sigs[self._n_sigs] = p.sketch.hashvalues
        self._rows[story_id] = self._n_sigs
        self._n_sigs += 1
        self._lsh.insert(story_id, p.sketch, check_duplication=False)

    def find(self, text: str, *, exclude: int | None = None) -> Match | None:
        """The earlier story text duplicates (exact before near; lowest id wins), or None."""
        return self._find(self._prepare(text), exclude)

    def add(self, story_id: int, text: str) -> None:
        """Index a story; adding an id already indexed does nothing."""
        if story_id not in self._rows:
            self._store(story_id, self._prepare(text))

    def check_and_add(self, story_id: int, text: str) -> Match | None:
        """find() (ignoring story_id itself), and index the story only when it duplicates nothing."""
        p = self._prepare(text)
        match = self._find(p, story_id)
        if match is None and story_id not in self._rows:
            self._store(story_id, p)
        return match

    def add_many(self, items: Iterable[tuple[int, str]]) -> None:
        """add() for many stories (a resume rebuilding from finished shards)."""
        # A plain loop: MinHash.bulk is copy() + update_batch per text, as add() does, and
        # measured no faster (5,000 sketches: bulk 0.81-0.95 s CPU, the loop 0.70-0.75 s; a new
        # MinHash per text 1.3-1.7 s, since it redraws the permutations).
        for story_id, text in items:
            self.add(story_id, text)
