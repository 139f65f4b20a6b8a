"""Build a corpus: validate everything, then plans -> chain -> journal -> shards -> card.

Nothing is written until every input has been checked and the model has loaded, so a bad
flag never leaves a half-made or overwritten folder behind.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .card import write_card
from .chain import Chain, Outcome
from .checks import Limits
from .config import BuildConfig, diff
from .errors import CorpusforgeError, OutputError, RecipeError
from .hub import resolve_model
from .recipes import Recipe, load_recipe
from .sampler import plan
from .schema import generation_json
from .shards import MANIFEST, Store
from .vocab import Vocab, load_vocab


@dataclass(slots=True)
class Prepared:
    """A validated build: inputs loaded, output folder checked, nothing written yet."""

    config: BuildConfig
    vocab: Vocab
    recipe: Recipe
    model_path: Path
    model_sha: str
    max_tokens: dict[str, int]
    manifest: dict


@dataclass(slots=True)
class Summary:
    n: int
    done_before: int = 0
    kept: int = 0
    rejected: int = 0
    generated_tokens: int = 0
    prompt_tokens_evaluated: int = 0
    prompt_tokens_reused: int = 0
    seconds: float = 0.0
    reasons: Counter = field(default_factory=Counter)
    interrupted: bool = False

    def add(self, e: Event, seconds: float) -> None:
        if e.reason is None:
            self.kept += 1
        else:
            self.rejected += 1
            self.reasons[e.reason.split(":")[0]] += 1
        self.generated_tokens += e.completion_tokens
        self.prompt_tokens_evaluated += e.prompt_tokens - e.prompt_tokens_reused
        self.prompt_tokens_reused += e.prompt_tokens_reused
        self.seconds = seconds

    @property
    def done(self) -> int:
        return self.done_before + self.kept + self.rejected

    @property
    def stories_per_minute(self) -> float:
        return 60 * (self.kept + self.rejected) / self.seconds if self.seconds else 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.generated_tokens / self.seconds if self.seconds else 0.0


class Interrupted(CorpusforgeError):
    """Ctrl-C: the journal is flushed and the build can be resumed."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def prepare(config: BuildConfig) -> Prepared:
    """Check every input and the output folder; raise CorpusforgeError on the first problem."""
    config.validate()
    vocab = load_vocab(config.vocab)
    recipe = load_recipe(config.recipe)
    names = [s.name for s in recipe.stages]
    unknown = sorted(set(config.max_tokens) - set(names))
    if unknown:
        raise RecipeError(f"--max-tokens names unknown stage {', '.join(unknown)}", f"recipe {recipe.name} has {', '.join(names)}")
    max_tokens = {s.name: config.max_tokens.get(s.name, s.max_tokens) for s in recipe.stages}
    if config.features_per_story is not None:
        possible = sum(f.probability > 0 for f in vocab.features)
        if config.features_per_story > possible:
            raise CorpusforgeError(
                f"--features-per-story {config.features_per_story} but only {possible} features have a probability above 0",
                "lower it or edit features.toml",
            )
    model_path = resolve_model(config.model)
    model_sha = sha256_file(model_path)
    fingerprint = config.fingerprint(
        vocab_sha=vocab.fingerprint(),
        recipe_name=recipe.name,
        recipe_sha=recipe.fingerprint,
        model_sha=model_sha,
        model_name=model_path.name,
        max_tokens=max_tokens,
    )
    manifest = {
        "corpusforge_version": __version__,
        "n": config.n,
        "fingerprint": fingerprint,
        "stages": names,
        "vocab_counts": vocab.counts(),
        "vocab_source": vocab.source,
        "recipe_path": str(recipe.path),
    }
    check_output(Path(config.out), manifest, config.overwrite)
    return Prepared(config, vocab, recipe, model_path, model_sha, max_tokens, manifest)


def check_output(out: Path, manifest: dict, overwrite: bool) -> None:
    """Refuse an output folder that holds something else, or a build with other settings."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file", "pass a folder path")
    if not out.exists() or not any(out.iterdir()):
        return
    path = out / MANIFEST
    if not path.is_file():
        raise OutputError(f"--out {out} is not empty and holds no corpusforge build", "choose a new or empty folder")
    if overwrite:
        return
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise OutputError(f"{path} is unreadable ({e})", "pass --overwrite to start over") from None
    changes = diff(old.get("fingerprint", {}), manifest["fingerprint"])
    if changes:
        raise OutputError(
            f"--out {out} holds a different build: {'; '.join(changes)}",
            "rerun with the same settings to resume, --overwrite to start over, or use another --out",
        )
    if manifest["n"] < old.get("n", 0):
        raise OutputError(f"--n {manifest['n']} is less than the {old['n']} this build was started with", "--n can only grow")


def make_row(p: Prepared, o: Outcome) -> dict:
    """The parquet row of a finished story (train or reject)."""
    plan_, m = o.plan, o.measured
    return {
        "id": plan_.id,
        "story": o.outputs.get(p.recipe.stages[-1].name, ""),
        "summary": o.outputs.get("summary", ""),
        "key_sentence": o.outputs.get("key_sentence", ""),
        "words": plan_.words(),
        "features": list(plan_.features),
        "has_dialogue": bool(m["has_dialogue"]),
        "once_upon_a_time": bool(m["once_upon_a_time"]),
        "word_count": int(m["word_count"]),
        "sentence_count": int(m["sentence_count"]),
        "paragraph_count": int(m["paragraph_count"]),
        "flesch_reading_ease": float(m["flesch_reading_ease"]),
        "reject_reason": o.reason or "",
        "model": p.model_path.name,
        "model_sha256": p.model_sha,
        "recipe": p.recipe.name,
        "template_sha256": p.recipe.fingerprint,
        "seed": plan_.seed,
        "attempt": o.attempt,
        "prompt_tokens": o.prompt_tokens,
        "completion_tokens": o.completion_tokens,
        "generation": generation_json({**p.config.sampling.to_dict(), "max_tokens": p.max_tokens}),
        "corpusforge_version": __version__,
    }


def open_engine(p: Prepared, threads: int | None = None):
    """Load the model and size the context for this recipe."""
    from .engine.llamacpp import LlamaEngine

    c = p.config
    engine = LlamaEngine(
        p.model_path,
        parallel=c.parallel,
        n_threads=threads or c.threads_per_worker(),
        n_batch=c.n_batch,
        sampling=c.sampling,
        prefix_slots=len(p.recipe.stages),
        safe_cpu=c.safe_cpu,
    )
    try:
        engine.start(c.n_ctx or context_needed(engine, p))
    except BaseException:
        engine.close()
        raise
    return engine


def context_needed(engine, p: Prepared) -> int:
    """Tokens one sequence needs: the longest stage prompt at full length plus its output."""
    chain = make_chain(engine, p)
    longest = {k: max(getattr(p.vocab, k + "s"), key=len) for k in ("noun", "verb", "adjective")}
    from .sampler import StoryPlan

    probe = StoryPlan(0, 0, longest["noun"], longest["verb"], longest["adjective"], tuple(f.label for f in p.vocab.features))
    need = 0
    for i, stage in enumerate(p.recipe.stages):
        # An earlier output can be as long as its budget; " word" is one token in most vocabs.
        earlier = {s.name: " word" * p.max_tokens[s.name] for s in p.recipe.stages[:i]}
        need = max(need, len(engine.tokenize(chain.prompt(probe, i, earlier))) + p.max_tokens[stage.name] + 8)
    return -(-need // 256) * 256  # llama.cpp pads the total to 256; keep it divisible per sequence


def make_chain(engine, p: Prepared) -> Chain:
    c = p.config
    return Chain(
        engine,
        p.recipe.with_max_tokens(p.max_tokens),
        p.vocab,
        max_attempts=c.max_attempts,
        limits=Limits(c.min_words, c.max_words),
        skip_checks=c.skip_checks,
    )


def write_manifest(out: Path, manifest: dict) -> None:
    path = out / MANIFEST
    tmp = out / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def build(config: BuildConfig, reporter=None) -> Summary:
    """Run (or resume) a build to completion; `reporter` gets progress events."""
    p = prepare(config)
    runner = make_runner(p)  # loads models before anything is written, so load errors write nothing
    try:
        return run(p, runner, reporter)
    finally:
        runner.close()


def make_runner(p: Prepared):
    """The local, multi-process or Ray runner this config asks for."""
    c = p.config
    if c.ray:
        from .distributed import RayRunner

        return RayRunner(p)
    if c.workers > 1:
        from .workers import ProcessRunner

        return ProcessRunner(p)
    return LocalRunner(p)


@dataclass(slots=True)
class Event:
    """One finished story as a runner reports it (small and picklable, for workers and Ray)."""

    id: int
    reason: str | None
    prompt_tokens: int
    prompt_tokens_reused: int
    completion_tokens: int


@dataclass(slots=True)
class Sealed:
    """A shard was compacted to parquet."""

    shard: int


def run(p: Prepared, runner, reporter=None) -> Summary:
    """Open the output, hand the unfinished shards to the runner, account for every story."""
    c = p.config
    out = Path(c.out)
    out.mkdir(parents=True, exist_ok=True)
    store = Store(out, c.n, c.shard_size)
    try:
        if c.overwrite:
            store.wipe()
        write_manifest(out, p.manifest)
        done = store.recover()
        write_card(out, p.manifest)
        summary = Summary(n=c.n, done_before=len(done))
        per_shard = Counter(store.shard_of(i) for i in done)
        shards = [s for s in range(store.num_shards)
                  if per_shard[s] < len(store.shard_ids(s)) or store.journal_path(s).exists()]
        if reporter:
            reporter.start(summary)
        t0 = time.monotonic()
        try:
            for item in runner.run(shards):
                if isinstance(item, Sealed):
                    write_card(out, p.manifest)
                    continue
                summary.add(item, time.monotonic() - t0)
                if reporter:
                    reporter.update(summary, runner.in_flight())
        except KeyboardInterrupt:
            summary.interrupted = True
        summary.seconds = time.monotonic() - t0
        if summary.interrupted:
            raise Interrupted(f"stopped: {summary.done:,} of {c.n:,} stories done and saved", "run the same command again to resume")
        write_card(out, p.manifest)
        if reporter:
            reporter.finish(summary)
        return summary
    finally:
        store.close()


def run_shard(p: Prepared, chain: Chain, store: Store, shard: int):
    """Finish one shard: generate its missing ids, journal each, seal it; yields Events, then Sealed.

    A shard always starts on an idle engine, so which stories share a batch depends only on
    the shard itself: one worker, many workers or Ray give the same rows. Its done ids are
    read from its own files, so a retried shard (a worker died) redoes only what is missing.
    """
    done = store.shard_done(shard)
    c = p.config
    missing = (i for i in store.shard_ids(shard) if i not in done)
    for o in chain.run(plan(p.vocab, c.seed, i, c.features_per_story) for i in missing):
        store.append(make_row(p, o), "train" if o.reason is None else "rejects")
        yield Event(o.plan.id, o.reason, o.prompt_tokens, o.prompt_tokens_reused, o.completion_tokens)
    store.seal(shard)
    yield Sealed(shard)


class LocalRunner:
    """Shards one after another on one engine in this process."""

    def __init__(self, p: Prepared):
        self.p = p
        self.engine = open_engine(p)
        self.chain = make_chain(self.engine, p)

    def run(self, shards: list[int]):
        c = self.p.config
        store = Store(Path(c.out), c.n, c.shard_size, lock=False)
        try:
            for shard in shards:
                yield from run_shard(self.p, self.chain, store, shard)
        finally:
            store.close()

    def in_flight(self) -> int:
        return self.engine.in_flight()

    def close(self) -> None:
        self.engine.close()
