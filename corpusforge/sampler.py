"""Story plans: which words, features, axis values, model and split story `index` of a build asks for.

Pure functions of (seed, index), so a plan is the same in any order, batch, resume or machine.
"""
from __future__ import annotations

import bisect
import hashlib
import math
import threading
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .errors import CorpusforgeError
from .vocab import Vocab

SPLIT_KEYS = ("words", "id")
# Seed-sequence salts: each balanced stream gets its own generator, never (seed, index)'s.
_SALT_NOUN, _SALT_VERB, _SALT_ADJECTIVE, _SALT_SHIFT = 0x6E6F756E, 0x76657262, 0x61646A, 0x6C6473
_ONE = 1 << 64
_MASK53, _TWO53 = (1 << 53) - 1, float(1 << 53)


@dataclass(frozen=True, slots=True)
class PlanOptions:
    """How plans are drawn; validated against a vocab by `check`."""

    features_per_story: int | None = None
    balance: bool = True
    model_weights: tuple[float, ...] = (1.0,)  # one per --model; StoryPlan.model indexes it
    validation_fraction: float = 0.0
    test_fraction: float = 0.0
    split_key: str = "words"  # "words": the noun|verb|adjective triple; "id": the story index

    def check(self, vocab: Vocab) -> PlanOptions:
        """Raise a CorpusforgeError naming the flag of the first bad option; return self."""
        def need(ok: bool, flag: str, rule: str, hint: str) -> None:
            if not ok:
                raise CorpusforgeError(f"{flag} {rule}", hint)

        v, t = self.validation_fraction, self.test_fraction
        need(_finite(v) and v >= 0, "--validation-fraction", f"must be 0 or more (got {v})", "e.g. --validation-fraction 0.05")
        need(_finite(t) and t >= 0, "--test-fraction", f"must be 0 or more (got {t})", "e.g. --test-fraction 0.05")
        need(v + t < 1, "--validation-fraction + --test-fraction", f"must be below 1 (got {v + t:g})",
             "lower them so some stories stay in train")
        k, possible = self.features_per_story, sum(f.probability > 0 for f in vocab.features)
        need(k is None or (isinstance(k, int) and not isinstance(k, bool) and 0 <= k <= possible), "--features-per-story",
             f"must be 0 to {possible} (got {k}): {possible} features have a probability above 0",
             f"pass a value from 0 to {possible}, or raise probabilities in features.toml")
        w = self.model_weights
        need(len(w) >= 1 and all(_finite(x) and x > 0 for x in w), "--model weight",
             f"must be a number above 0 for every model (got {', '.join(map(str, w)) or 'none'})",
             "give each --model a positive weight, e.g. 1")
        need(self.split_key in SPLIT_KEYS, "--split-key", f"{self.split_key!r} is unknown",
             f"use one of {', '.join(SPLIT_KEYS)}")
        nf, na = len(vocab.features), len(vocab.axes)
        need(not self.balance or nf + na + 2 <= MAX_DIMENSIONS, "--balance",
             f"cannot balance {nf} features and {na} axes (at most {MAX_DIMENSIONS - 2} together)",
             "drop some features or axes from the vocab folder, or pass --no-balance")
        return self


@dataclass(frozen=True, slots=True)
class StoryPlan:
    """What one story must contain, which model writes it and where it goes if kept."""

    id: int
    seed: int
    noun: str
    verb: str
    adjective: str
    features: tuple[str, ...]
    axes: tuple[tuple[str, str], ...] = ()  # (axis name, value label), axes.toml order
    model: int = 0
    split: str = "train"  # train | validation | test

    def words(self) -> dict[str, str]:
        return {"noun": self.noun, "verb": self.verb, "adjective": self.adjective}

    def axis_labels(self) -> dict[str, str]:
        return dict(self.axes)


def plan(vocab: Vocab, seed: int, index: int, options: PlanOptions = PlanOptions()) -> StoryPlan:
    """The plan of story `index`: words, features, one value per axis, model index and split."""
    space = _space(vocab, seed, options)
    if options.balance:
        noun = vocab.nouns[_permutation(seed, _SALT_NOUN, index // len(vocab.nouns), len(vocab.nouns))[index % len(vocab.nouns)]]
        verb = vocab.verbs[_permutation(seed, _SALT_VERB, index // len(vocab.verbs), len(vocab.verbs))[index % len(vocab.verbs)]]
        adjective = vocab.adjectives[_permutation(seed, _SALT_ADJECTIVE, index // len(vocab.adjectives),
                                                  len(vocab.adjectives))[index % len(vocab.adjectives)]]
        u = space.points(index)
        if options.features_per_story is None:
            chosen = [j for j, p in enumerate(space.probabilities) if u[j] < p]
        else:
            chosen = space.systematic(u[space.pps_dim])
        picks = [_inverse_cdf(cdf, u[dim]) for cdf, dim in zip(space.axis_cdfs, space.axis_dims)]
        model = _inverse_cdf(space.model_cdf, u[space.model_dim])
    else:
        # A generator keyed by (seed, index) rather than one stream advanced in order: that is
        # what makes sample i independent of how many samples came before it. The draw order
        # (words, features, axes, model) keeps plans from before axes existed unchanged.
        rng = np.random.default_rng([seed, index])
        noun = vocab.nouns[rng.integers(len(vocab.nouns))]
        verb = vocab.verbs[rng.integers(len(vocab.verbs))]
        adjective = vocab.adjectives[rng.integers(len(vocab.adjectives))]
        probs = np.array([f.probability for f in vocab.features])
        if options.features_per_story is None:
            chosen = np.flatnonzero(rng.random(len(probs)) < probs)
        else:
            # Exactly K, weighted by the probabilities so rare features stay rarer; a zero
            # probability still means never.
            weights = probs / probs.sum() if probs.sum() > 0 else None
            chosen = np.sort(rng.choice(len(probs), size=options.features_per_story, replace=False, p=weights))
        # One uniform per axis plus one for the model, after the old draws; inverse CDF, not
        # rng.choice(p=...), which made iid planning about twice as slow (measured).
        u = rng.random(len(vocab.axes) + 1)
        picks = [_inverse_cdf(cdf, x) for cdf, x in zip(space.axis_cdfs, u)]
        model = _inverse_cdf(space.model_cdf, u[-1])
    features = tuple(vocab.features[j].label for j in chosen)
    axes = tuple((a.name, a.values[k].label) for a, k in zip(vocab.axes, picks))
    words = (str(noun), str(verb), str(adjective))
    split = "train"
    if options.validation_fraction or options.test_fraction:
        key = "|".join(words) if options.split_key == "words" else str(index)
        split = split_of(key, options.validation_fraction, options.test_fraction)
    return StoryPlan(index, seed, *words, features, axes, model, split)


def split_key_of(plan_: StoryPlan, split_key: str = "words") -> str:
    """The group key a plan's split is hashed from: `noun|verb|adjective`, or the story id."""
    return f"{plan_.noun}|{plan_.verb}|{plan_.adjective}" if split_key == "words" else str(plan_.id)


def split_of(key: StoryPlan | str, validation_fraction: float = 0.0, test_fraction: float = 0.0,
             split_key: str = "words") -> str:
    """train, validation or test for a group key (or a plan's key): a hash, the same in every build."""
    if isinstance(key, StoryPlan):
        key = split_key_of(key, split_key)
    # Not seeded by the build seed, so one word triple lands in one split in every build and a
    # test story's words never train another build's model. blake2b, not hash(): Python's str
    # hash changes per process. Test takes the bottom of [0, 1) and validation the top, so
    # raising one fraction moves stories out of train only, never between test and validation.
    h = int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8, person=b"cf-split").digest(), "big") / _ONE
    if h < test_fraction:
        return "test"
    if h >= 1.0 - validation_fraction:
        return "validation"
    return "train"


def template_variables(vocab: Vocab, plan_: StoryPlan) -> dict:
    """What a template sees of a plan: words, features, axis phrases and labels, each axis by name."""
    feature_phrases, axis_phrases = _phrases(vocab)
    chosen = [axis_phrases[name][label] for name, label in plan_.axes]
    return {
        **plan_.words(),
        "features": list(plan_.features),
        "feature_phrases": [feature_phrases[f] for f in plan_.features],
        "axis_phrases": chosen,
        "axis_labels": plan_.axis_labels(),
        **{name: phrase for (name, _), phrase in zip(plan_.axes, chosen)},
    }


def stage_seed(seed: int, index: int, stage: int, attempt: int) -> int:
    """The llama.cpp sampler seed for one stage attempt of one story (uint32)."""
    return int(np.random.SeedSequence([seed, index, stage, attempt]).generate_state(1)[0])


# --- balanced planning ------------------------------------------------------------------------
# Words: one seeded permutation of each list per pass ("epoch"), so after n stories every word
# has been used floor(n / len) or ceil(n / len) times. Features, axis values and the model:
# one dimension each of a Sobol' sequence (Joe-Kuo direction numbers), point = story index,
# with a random digital shift per seed. Any prefix 0..n-1 then hits every interval [0, p) in
# close to n * p points and every box [0, p) x [0, q) of two dimensions in close to n * p * q,
# so feature, value and pair frequencies are near exact at any n, with no state or batch.
# Measured over every prefix n = 1,000..10,000, 10 seeds, probabilities 0.05-0.7: features
# within 0.31 points; pairs within 0.58 (6 features), 0.91 (12), 1.44 (20-30), 2.3 (40).
# The issue's first suggestion, Roberts' R_d additive recurrence, failed the pair bound in the
# 11 dimensions the shipped vocab needs (4.6 points): its alphas near 1 are slow rotations, so
# its one- and two-dimensional projections are poor at n ~ 1,000. Sobol's first dimensions are
# chosen for good two-dimensional projections, so the features take the first dimensions.
# The price of a deterministic sequence: labels follow a pattern along the ids (with p = 0.5,
# every other id), harmless to a corpus that is shuffled for training.

MAX_DIMENSIONS = 64  # the Joe-Kuo table below; features + axes + 2 must fit


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@lru_cache(maxsize=64)
def _permutation(seed: int, salt: int, epoch: int, size: int) -> tuple[int, ...]:
    # Cached: consecutive stories share an epoch, and a permutation of 800 costs ~10 µs.
    # A tuple of ints: a numpy scalar index per word is several times slower than a tuple's.
    return tuple(np.random.default_rng([seed, salt, epoch]).permutation(size).tolist())


@lru_cache(maxsize=4)
def _packed_directions(d: int) -> tuple[int, ...]:
    """Per index bit k: the k-th direction number of dimensions 0..d-1, packed 64 bits each."""
    # Packed into one Python int per bit, a point is one XOR per set bit of the index, and the
    # arithmetic is exact integers: no float drift at index 1e9, the same on every platform.
    columns = [_directions(*row) for row in _JOE_KUO_ROWS[:d]]
    return tuple(sum(col[k] << (64 * j) for j, col in enumerate(columns)) for k in range(64))


def _directions(poly: int, *m: int) -> list[int]:
    """The 64 direction numbers (64-bit) of one Sobol' dimension from its polynomial and initial m."""
    s = poly.bit_length() - 1
    if s == 0:  # dimension 0: the van der Corput sequence
        return [1 << (63 - k) for k in range(64)]
    ms = list(m)
    for k in range(s, 64):  # Bratley & Fox recurrence
        new = ms[k - s] ^ (ms[k - s] << s)
        for i in range(1, s):
            if (poly >> (s - i)) & 1:
                new ^= ms[k - i] << i
        ms.append(new)
    return [ms[k] << (63 - k) for k in range(64)]


class _Space:
    """Per (vocab, seed, options): the sampling tables and low-discrepancy dimensions, built once."""

    def __init__(self, vocab: Vocab, seed: int, options: PlanOptions):
        options.check(vocab)
        nf, na = len(vocab.features), len(vocab.axes)
        d = nf + na + 2
        self.probabilities = [f.probability for f in vocab.features]
        self.axis_cdfs = [np.cumsum([v.weight for v in a.values]).tolist() for a in vocab.axes]
        self.axis_cdfs = [[c / cdf[-1] for c in cdf] for cdf in self.axis_cdfs]
        model_cdf = np.cumsum(options.model_weights).tolist()
        self.model_cdf = [c / model_cdf[-1] for c in model_cdf]
        # Fixed layout: features first (the best pairs), then one dimension for exactly-K
        # features, one per axis, one for the model. Choosing K or adding a --model leaves the
        # other choices as they were; the shift of dimension j does not depend on d either.
        self.pps_dim = nf
        self.axis_dims = list(range(nf + 1, nf + 1 + na))
        self.model_dim = nf + 1 + na
        self.d = d
        self.directions = _packed_directions(d)
        shifts = np.random.default_rng([seed, _SALT_SHIFT]).integers(0, _ONE, size=MAX_DIMENSIONS, dtype=np.uint64)
        self.shift = sum(int(s) << (64 * j) for j, s in enumerate(shifts[:d]))  # a digital shift: XOR
        self.k = options.features_per_story or 0
        inclusion = _inclusion(self.probabilities, self.k)
        # Only features that can be chosen get a stretch; a zero-probability feature never does.
        self.positive = [j for j, pi in enumerate(inclusion) if pi > 0]
        self.edges = np.cumsum([inclusion[j] for j in self.positive]).tolist()

    def points(self, index: int) -> list[float]:
        """The shifted Sobol' point of story `index`: one float in [0, 1) per dimension."""
        x, k, rest = self.shift, 0, index
        while rest:
            if rest & 1:
                x ^= self.directions[k]
            rest >>= 1
            k += 1
        # The top 53 bits: a float in [0, 1) that never rounds up to 1.0.
        return [((x >> (64 * j + 11)) & _MASK53) / _TWO53 for j in range(self.d)]

    def systematic(self, u: float) -> list[int]:
        """Exactly K features: those whose stretch of [0, K) holds one of u, u+1, ..., u+K-1."""
        # Systematic PPS sampling: the inclusion probabilities laid end to end sum to K and
        # each is at most 1, so each stretch holds at most one of the K points. Each feature's
        # frequency is its inclusion probability; pairs are NOT p_i * p_j (features side by
        # side on the line come together more often than apart ones), so the pair bound holds
        # only without K.
        chosen, pos, last = [], 0, len(self.edges) - 1
        for i in range(self.k):
            point = u + i
            while pos < last and self.edges[pos] <= point:
                pos += 1
            chosen.append(self.positive[pos])
            # The next point is 1 further on and a stretch is at most 1 long, so it lies in a
            # later stretch; stepping here keeps float rounding at an edge from picking twice.
            pos += 1
        return chosen


def _inclusion(probabilities: list[float], k: int) -> list[float]:
    """Per-feature inclusion probabilities K * p / sum(p), capped at 1 with the excess shared out."""
    pi = [0.0] * len(probabilities)
    free = [j for j, p in enumerate(probabilities) if p > 0]
    left = k
    while free and left > 0:
        total = sum(probabilities[j] for j in free)
        capped = [j for j in free if left * probabilities[j] / total >= 1]
        if not capped:
            for j in free:
                pi[j] = left * probabilities[j] / total
            break
        for j in capped:
            pi[j] = 1.0
        free = [j for j in free if j not in capped]
        left -= len(capped)
    return pi


def _inverse_cdf(cdf: list[float], u: float) -> int:
    """The first bucket whose cumulative weight exceeds u (the last if rounding leaves u above all)."""
    return min(bisect.bisect_right(cdf, u), len(cdf) - 1)


_SPACES: dict[tuple, tuple[Vocab, _Space]] = {}
_SPACES_LOCK = threading.Lock()


def _space(vocab: Vocab, seed: int, options: PlanOptions) -> _Space:
    # Keyed by id(vocab) because hashing a Vocab hashes its ~1,600 words on every call; the entry
    # keeps the vocab alive, so the id cannot be reused by another object while cached.
    key = (id(vocab), seed, options)
    hit = _SPACES.get(key)
    if hit is not None and hit[0] is vocab:
        return hit[1]
    space = _Space(vocab, seed, options)
    with _SPACES_LOCK:  # a runner may plan from several threads
        if len(_SPACES) >= 32:
            _SPACES.pop(next(iter(_SPACES)))
        _SPACES[key] = (vocab, space)
    return space


def _phrases(vocab: Vocab) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """Feature label -> phrase, and axis name -> value label -> phrase."""
    return ({f.label: f.phrase for f in vocab.features},
            {a.name: {v.label: v.phrase for v in a.values} for a in vocab.axes})


# Joe & Kuo (2008), new-joe-kuo-6.21201, dimensions 1-64 (the numbers scipy.stats.qmc.Sobol
# ships; scipy is not a dependency, so the 64 rows live here): primitive polynomial as bits
# ("1": dimension 1, van der Corput) and initial direction numbers m_1..m_s, one row per `;`.
_JOE_KUO = (
    "1;3 1;7 1 3;11 1 3 1;13 1 1 1;19 1 1 3 3;25 1 3 5 13;37 1 1 5 5 17;41 1 1 5 5 5;"
    "47 1 1 7 11 19;55 1 1 5 1 1;59 1 1 1 3 11;61 1 3 5 5 31;67 1 3 3 9 7 49;91 1 1 1 15 21 21;"
    "97 1 3 1 13 27 49;103 1 1 1 15 7 5;109 1 3 1 15 13 25;115 1 1 5 5 19 61;"
    "131 1 3 7 11 23 15 103;137 1 3 7 13 13 15 69;143 1 1 3 13 7 35 63;145 1 3 5 9 1 25 53;"
    "157 1 3 1 13 9 35 107;167 1 3 1 5 27 61 31;171 1 1 5 11 19 41 61;185 1 3 5 3 3 13 69;"
    "191 1 1 7 13 1 19 1;193 1 3 7 5 13 19 59;203 1 1 3 9 25 29 41;211 1 3 5 13 23 1 55;"
    "213 1 3 7 3 13 59 17;229 1 3 1 3 5 53 69;239 1 1 5 5 23 33 13;241 1 1 7 7 1 61 123;"
    "247 1 1 7 9 13 61 49;253 1 3 3 5 3 55 33;285 1 3 1 15 31 13 49 245;299 1 3 5 15 31 59 63 97;"
    "301 1 3 1 11 11 11 77 249;333 1 3 1 11 27 43 71 9;351 1 1 7 15 21 11 81 45;"
    "355 1 3 7 3 25 31 65 79;357 1 3 1 1 19 11 3 205;361 1 1 5 9 19 21 29 157;"
    "369 1 3 7 11 1 33 89 185;391 1 3 3 3 15 9 79 71;397 1 3 7 11 15 39 119 27;"
    "425 1 1 3 1 11 31 97 225;451 1 1 1 3 23 43 57 177;463 1 3 7 7 17 17 37 71;"
    "487 1 3 1 5 27 63 123 213;501 1 1 3 5 11 43 53 133;529 1 3 5 5 29 17 47 173 479;"
    "539 1 3 3 11 3 1 109 9 69;545 1 1 1 5 17 39 23 5 343;557 1 3 1 5 25 15 31 103 499;"
    "563 1 1 1 11 11 17 63 105 183;601 1 1 5 11 9 29 97 231 363;607 1 1 5 15 19 45 41 7 383;"
    "617 1 3 7 7 31 19 83 137 221;623 1 1 1 3 23 15 111 223 83;631 1 1 5 13 31 15 55 25 161;"
    "637 1 1 3 13 25 47 39 87 257"
)
_JOE_KUO_ROWS = tuple(tuple(int(x) for x in row.split()) for row in _JOE_KUO.split(";"))
