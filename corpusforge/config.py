"""BuildConfig: every setting of a build, validated in one place.

`fingerprint()` is the part that decides what the rows contain; the manifest pins it so a
resume with different settings is refused instead of mixing two corpora in one folder.
"""
from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .dedup import DEFAULT_SHINGLE, DEFAULT_THRESHOLD
from .engine.base import SamplingParams
from .errors import CorpusforgeError
from .replace import STRIDE

DEFAULT_PARALLEL = 32  # bench sweeps on 2 cores: 32 and 64 tie within noise (see README); 32 needs half the KV memory


_WEIGHTED = re.compile(r"^(?P<spec>.+):(?P<weight>[0-9]*\.?[0-9]+)$")


def parse_model_spec(text: str) -> tuple[str, float]:
    """`B.gguf:2` -> ("B.gguf", 2.0); `hf://o/r/f.gguf` -> (itself, 1.0). Weights are relative."""
    m = _WEIGHTED.match(text)
    if m and not m["spec"].endswith(":/"):
        weight = float(m["weight"])
        if weight <= 0:
            raise CorpusforgeError(f"--model {text}: the weight must be above 0", "write PATH:2 or drop the weight")
        return m["spec"], weight
    return text, 1.0


@dataclass(slots=True)
class BuildConfig:
    n: int
    model: tuple[str, ...] | str  # PATH, catalog NAME or hf://owner/repo/file.gguf, each with an optional :WEIGHT; () = the catalog default
    out: Path
    seed: int = 0
    recipe: str = "tinystories-instruct"
    vocab: Path | None = None
    features_per_story: int | None = None
    max_attempts: int = 3
    new_summary_after: int = 0  # --new-summary-after: last-stage failures before a story starts over
    shard_size: int = 1000
    parallel: int = DEFAULT_PARALLEL
    n_ctx: int | None = None  # per sequence; None sizes it from the recipe
    n_threads: int | None = None
    n_batch: int = 512
    sampling: SamplingParams = field(default_factory=SamplingParams)
    max_tokens: dict[str, int] = field(default_factory=dict)  # per-stage overrides
    min_words: int = 40
    max_words: int = 600
    skip_checks: tuple[str, ...] = ()
    steer_off: tuple[str, ...] = ()  # --no-steer: steering levers switched off (chain.STEER_LEVERS, or "all")
    safe_cpu: bool = False
    overwrite: bool = False
    workers: int = 1
    ray: bool = False
    ray_address: str | None = None
    # Diversity, balance and splits (issue 8); defaults serve a user who never reads the docs.
    balance: bool = True
    validation_fraction: float = 0.02
    test_fraction: float = 0.02
    split_key: str = "words"
    dedup: bool = True
    dedup_threshold: float = DEFAULT_THRESHOLD
    shingle_size: int = DEFAULT_SHINGLE
    judge: bool = False
    judge_model: str | None = None
    judge_policy: str = "record"
    # Ask every judged feature, also those the gold set measured as noise for the judge model.
    judge_all: bool = False
    # --n counts kept stories: a rejected plan is replaced (corpusforge/replace.py). False
    # (--no-replace) is the old meaning: --n plans, however many are kept.
    replace: bool = True
    # The budget: stop when the build would need more than this many plans per kept story.
    max_plans_factor: float = 4.0
    push_to: str | None = None
    private: bool = False

    def __post_init__(self):
        if isinstance(self.model, str):
            self.model = (self.model,)
        self.model = tuple(self.model)

    def validate(self) -> BuildConfig:
        """Raise a CorpusforgeError naming the flag for the first bad value."""
        from .checks import CHECKS

        def need(ok: bool, flag: str, rule: str) -> None:
            if not ok:
                raise CorpusforgeError(f"{flag} {rule}", f"pass a valid {flag}")

        need(self.n >= 1, "--n", f"must be at least 1 (got {self.n})")
        need(self.n < STRIDE, "--n", f"must be below {STRIDE:,} (ids past it name replacement plans)")
        need(self.max_plans_factor >= 1, "--max-plans-factor", f"must be 1 or more (got {self.max_plans_factor:g})")
        need(self.seed >= 0, "--seed", "must be 0 or more")
        need(self.shard_size >= 1, "--shard-size", "must be at least 1")
        need(self.max_attempts >= 1, "--max-attempts", "must be at least 1")
        need(self.new_summary_after >= 0, "--new-summary-after", f"must be 0 (never) or more (got {self.new_summary_after})")
        need(self.parallel >= 1, "--parallel", "must be at least 1")
        need(self.workers >= 1, "--workers", "must be at least 1")
        need(self.n_ctx is None or self.n_ctx >= 64, "--n-ctx", "must be at least 64")
        need(self.n_threads is None or self.n_threads >= 1, "--threads", "must be at least 1")
        need(self.n_batch >= 8, "--n-batch", "must be at least 8")
        # Every generating sequence puts one token in each decode: more than n_batch of them
        # overflowed llama.cpp's batch and aborted the process natively.
        if self.parallel > self.n_batch:
            raise CorpusforgeError(f"--parallel {self.parallel} is more than --n-batch {self.n_batch}",
                                   f"raise --n-batch to at least {self.parallel} or lower --parallel")
        need(self.features_per_story is None or self.features_per_story >= 0, "--features-per-story", "must be 0 or more")
        need(0 <= self.validation_fraction < 1, "--validation-fraction", "must be in [0, 1)")
        need(0 <= self.test_fraction < 1, "--test-fraction", "must be in [0, 1)")
        need(self.validation_fraction + self.test_fraction < 1, "--validation-fraction/--test-fraction", "must add up to less than 1")
        need(self.split_key in ("words", "id"), "--split-key", "must be words or id")
        need(0 < self.dedup_threshold <= 1, "--dedup-threshold", "must be in (0, 1]")
        need(self.shingle_size >= 1, "--shingle-size", "must be at least 1")
        need(self.judge_policy in ("record", "reject"), "--judge-policy", "must be record or reject")
        need(not (self.judge_policy == "reject" and not self.judging), "--judge-policy reject", "needs --judge or --judge-model")
        need(not (self.judge_all and not self.judging), "--judge-all", "needs --judge or --judge-model")
        if self.push_to is not None and not re.fullmatch(r"[\w.-]+/[\w.-]+", self.push_to):
            raise CorpusforgeError(f"--push-to {self.push_to!r} is not a repo id", "write it as owner/name")
        for spec in self.model:
            parse_model_spec(spec)
        need(0 <= self.min_words <= self.max_words, "--min-words/--max-words", "need 0 <= min <= max")
        for flag, rule in self.sampling.problems():
            need(False, flag, rule)
        from .chain import STEER_LEVERS

        bad = sorted(set(self.steer_off) - set(STEER_LEVERS) - {"all"})
        need(not bad, "--no-steer", f"got unknown {', '.join(bad)}; valid: {', '.join(STEER_LEVERS)}, all")
        unknown = sorted(set(self.skip_checks) - set(CHECKS))
        need(not unknown, "--skip-check", f"got unknown {', '.join(unknown)}; valid: {', '.join(CHECKS)}")
        for stage, tokens in self.max_tokens.items():
            need(tokens >= 1, "--max-tokens", f"for {stage} must be at least 1")
        return self

    @property
    def judging(self) -> bool:
        return self.judge or self.judge_model is not None

    def threads_per_worker(self) -> int:
        return self.n_threads or max(1, (os.cpu_count() or 1) // self.workers)

    def fingerprint(self, *, vocab_sha: str, recipe_name: str, recipe_sha: str, models: list[dict], max_tokens: dict,
                    judge: dict | None, steering: dict | None = None) -> dict:
        """What a resume must agree on.

        --parallel is pinned: it decides which stories share a batch, and batched float math
        can flip a near-tie in sampling. Threads and workers are left out: the rows of
        `--workers 2` (one thread each) equal those of one worker with two (tested)."""
        return {
            "seed": self.seed,
            "shard_size": self.shard_size,
            "features_per_story": self.features_per_story,
            "max_attempts": self.max_attempts,
            "vocab_sha256": vocab_sha,
            "recipe": recipe_name,
            "recipe_sha256": recipe_sha,
            "models": models,
            "sampling": asdict(self.sampling),
            "max_tokens": dict(max_tokens),
            "parallel": self.parallel,
            "replace": self.replace,
            "plan": {"balance": self.balance, "validation_fraction": self.validation_fraction,
                     "test_fraction": self.test_fraction, "split_key": self.split_key},
            "dedup": {"threshold": self.dedup_threshold, "shingle": self.shingle_size} if self.dedup else None,
            "judge": judge,
            "checks": {"min_words": self.min_words, "max_words": self.max_words, "skip": sorted(self.skip_checks)},
            "steering": steering,
            # Only when set, so builds from before the option still resume.
            **({"new_summary_after": self.new_summary_after} if self.new_summary_after else {}),
        }

    def with_(self, **changes) -> BuildConfig:
        return replace(self, **changes)


def diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Human-readable differences between two fingerprints, e.g. `seed: 1 -> 2`."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += diff(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a} -> {b}")
    return out
