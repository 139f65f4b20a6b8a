"""BuildConfig: every setting of a build, validated in one place.

`fingerprint()` is the part that decides what the rows contain; the manifest pins it so a
resume with different settings is refused instead of mixing two corpora in one folder.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .engine.base import SamplingParams
from .errors import CorpusforgeError

DEFAULT_PARALLEL = 32  # bench sweeps on 2 cores: 32 and 64 tie within noise (see README); 32 needs half the KV memory


@dataclass(slots=True)
class BuildConfig:
    n: int
    model: str
    out: Path
    seed: int = 0
    recipe: str = "tinystories-instruct"
    vocab: Path | None = None
    features_per_story: int | None = None
    max_attempts: int = 3
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
    safe_cpu: bool = False
    overwrite: bool = False
    workers: int = 1
    ray: bool = False
    ray_address: str | None = None

    def validate(self) -> BuildConfig:
        """Raise a CorpusforgeError naming the flag for the first bad value."""
        from .checks import CHECKS

        def need(ok: bool, flag: str, rule: str) -> None:
            if not ok:
                raise CorpusforgeError(f"{flag} {rule}", f"pass a valid {flag}")

        need(self.n >= 1, "--n", f"must be at least 1 (got {self.n})")
        need(self.seed >= 0, "--seed", "must be 0 or more")
        need(self.shard_size >= 1, "--shard-size", "must be at least 1")
        need(self.max_attempts >= 1, "--max-attempts", "must be at least 1")
        need(self.parallel >= 1, "--parallel", "must be at least 1")
        need(self.workers >= 1, "--workers", "must be at least 1")
        need(self.n_ctx is None or self.n_ctx >= 64, "--n-ctx", "must be at least 64")
        need(self.n_threads is None or self.n_threads >= 1, "--threads", "must be at least 1")
        need(self.n_batch >= 8, "--n-batch", "must be at least 8")
        need(self.features_per_story is None or 0 <= self.features_per_story <= 6, "--features-per-story", "must be 0 to 6")
        need(0 <= self.min_words <= self.max_words, "--min-words/--max-words", "need 0 <= min <= max")
        s = self.sampling
        need(s.temperature >= 0, "--temperature", "must be 0 or more")
        need(0 < s.top_p <= 1, "--top-p", "must be in (0, 1]")
        need(0 <= s.min_p <= 1, "--min-p", "must be in [0, 1]")
        need(s.top_k >= 0, "--top-k", "must be 0 or more")
        need(s.repeat_penalty > 0, "--repeat-penalty", "must be above 0")
        unknown = sorted(set(self.skip_checks) - set(CHECKS))
        need(not unknown, "--skip-check", f"got unknown {', '.join(unknown)}; valid: {', '.join(CHECKS)}")
        for stage, tokens in self.max_tokens.items():
            need(tokens >= 1, "--max-tokens", f"for {stage} must be at least 1")
        return self

    def threads_per_worker(self) -> int:
        return self.n_threads or max(1, (os.cpu_count() or 1) // self.workers)

    def fingerprint(self, *, vocab_sha: str, recipe_name: str, recipe_sha: str, model_sha: str, model_name: str, max_tokens: dict) -> dict:
        """What a resume must agree on. Speed settings (parallel, threads, workers) are left out."""
        return {
            "seed": self.seed,
            "shard_size": self.shard_size,
            "features_per_story": self.features_per_story,
            "max_attempts": self.max_attempts,
            "vocab_sha256": vocab_sha,
            "recipe": recipe_name,
            "recipe_sha256": recipe_sha,
            "model": model_name,
            "model_sha256": model_sha,
            "sampling": asdict(self.sampling),
            "max_tokens": dict(max_tokens),
            "checks": {"min_words": self.min_words, "max_words": self.max_words, "skip": sorted(self.skip_checks)},
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
