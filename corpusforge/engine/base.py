"""The batch-shaped engine interface: requests in, results out.

Callers (the chain, the benchmark) depend only on these records and the `Engine` protocol,
not on how an engine batches; tests drive the chain with a fake engine through the same protocol.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """llama.cpp sampler settings; applied in the order top_k, penalties, top_p, min_p, temp."""

    temperature: float = 0.8
    top_p: float = 0.95
    min_p: float = 0.05
    top_k: int = 40  # llama.cpp's default; 0 turns it off (slow on big vocabularies)
    repeat_penalty: float = 1.1
    repeat_last_n: int = 64
    # llama.cpp's DRY sampler (repeated sequences are penalised more the longer they run);
    # 0 turns it off. base and allowed_length are llama.cpp's defaults.
    dry_multiplier: float = 0.0
    dry_base: float = 1.75
    dry_allowed_length: int = 2
    dry_last_n: int = 512  # tokens looked back over (llama.cpp reads -1 as 0: off)
    ignore_eos: bool = False  # benchmarks only: every request runs to max_tokens

    def to_dict(self) -> dict:
        return asdict(self)

    def problems(self) -> list[tuple[str, str]]:
        """(flag, rule) for every setting llama.cpp would misread: a NaN or negative value is
        silently odd there. One list for the config check and the engine's own."""
        rules = [
            (self.temperature >= 0, "--temperature", "must be 0 or more"),
            (0 < self.top_p <= 1, "--top-p", "must be in (0, 1]"),
            (0 <= self.min_p <= 1, "--min-p", "must be in [0, 1]"),
            (self.top_k >= 0, "--top-k", "must be 0 or more"),
            (self.repeat_penalty > 0, "--repeat-penalty", "must be above 0"),
            (self.repeat_last_n >= 0, "repeat_last_n", "must be 0 or more"),
            (self.dry_multiplier >= 0, "--dry-multiplier", "must be 0 or more"),
            (self.dry_base >= 1, "dry_base", "must be 1 or more"),
            (self.dry_allowed_length >= 0, "dry_allowed_length", "must be 0 or more"),
            (self.dry_last_n >= 1, "dry_last_n", "must be 1 or more"),
        ]
        return [(flag, rule) for ok, flag, rule in rules if not ok]


@dataclass(slots=True)
class Request:
    """One generation: a formatted prompt, its budget and its sampler seed."""

    prompt: str
    max_tokens: int
    seed: int
    prefix: str = ""  # leading text many requests share; its KV is computed once and copied
    sampling: SamplingParams | None = None  # None: the engine's default
    priority: tuple = ()  # lower starts first
    tag: object = None  # the caller's handle, returned untouched
    keep_logits: bool = False  # return the logits each token was sampled from (for checks)
    # A conversation key: the engine keeps this request's KV (prompt + answer) after it
    # finishes, and a later request with the same session evaluates only what its prompt
    # adds to what is kept (a retry rolls back to where the prompts diverge).
    session: object = None
    # A GBNF grammar (root rule `root`) the answer must match, e.g. the judge's yes/no.
    grammar: str | None = None
    # Per-token steering toward what the answer must hold (engine/steer.py); None: plain sampling.
    steer: object = None


@dataclass(slots=True)
class Result:
    request: Request
    text: str
    completion_tokens: int
    prompt_tokens: int
    truncated: bool  # stopped by max_tokens or the context, not by an end-of-generation token
    error: str | None = None
    prompt_tokens_reused: int = 0
    tokens: list[int] = field(default_factory=list)  # prompt + generated token ids
    logits: object = None  # numpy array [n_generated, n_vocab] when keep_logits was set
    cut: str | None = None  # the steering ended this attempt early: the reason ("loop: ...")
    forced_tokens: int = 0  # of completion_tokens, the ones steering inserted (the key sentence)


@dataclass(slots=True)
class EngineStats:
    prompt_tokens_evaluated: int = 0
    prompt_tokens_reused: int = 0  # all prompt tokens not evaluated: shared prefixes + sessions
    prefix_tokens_reused: int = 0  # of those, copied from a shared prefix
    generated_tokens: int = 0
    prefix_evaluations: int = 0
    requests_started: int = 0
    requests_finished: int = 0
    decode_calls: int = 0
    decode_seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@runtime_checkable
class Engine(Protocol):
    """What the chain needs of an engine: queue requests, step, collect results.

    `LlamaEngine` is the real one; tests use a fake that answers from a function, so the
    chain's retries, dedup and judge logic can be tested in milliseconds.
    """

    parallel: int
    stats: EngineStats

    def format_prompt(self, messages: str | list[dict]) -> str: ...

    def submit(self, request: Request) -> None: ...

    def step(self) -> list[Result]: ...

    def busy(self) -> bool: ...

    def in_flight(self) -> int: ...

    def release(self, session: object) -> None: ...

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]: ...

    def close(self) -> None: ...
