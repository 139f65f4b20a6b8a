"""The shard work every runner shares, and the Runner protocol.

`ShardWork` is one process's share of a build: an engine per model, a chain per engine, the
dedup index, and `run_shard`. The local, process and Ray runners import only this module.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from .. import __version__, checks
from ..chain import Chain, Feed, Outcome
from ..config import BuildConfig
from ..judge import MAX_TOKENS, Judge
from ..recipes import Recipe
from ..replace import STRIDE, next_id, pending, replacement_plan, slot_of
from ..sampler import PlanOptions, StoryPlan, plan
from ..schema import RowSchema, generation_json
from ..shards import Store
from ..vocab import Vocab


@dataclass(frozen=True, slots=True)
class ModelRef:
    """One model of a build: how the user named it, the local file, its sha256, its weight."""

    spec: str
    name: str
    path: Path
    sha256: str
    weight: float = 1.0


@dataclass(slots=True)
class Prepared:
    """A validated build: inputs loaded, output folder checked, nothing written yet."""

    config: BuildConfig
    vocab: Vocab
    recipe: Recipe
    schema: RowSchema
    models: tuple[ModelRef, ...]
    options: PlanOptions
    max_tokens: dict[str, int]
    manifest: dict
    judge: Judge | None = None
    judge_model: ModelRef | None = None  # None: each story's own model judges it

    def plan(self, index: int) -> StoryPlan:
        """Story `index`'s plan; a replacement id (past STRIDE) keeps its slot's labels."""
        fresh = plan(self.vocab, self.config.seed, index, self.options)
        if index < STRIDE:
            return fresh
        o = self.options
        return replacement_plan(plan(self.vocab, self.config.seed, slot_of(index), o), fresh,
                                o.validation_fraction, o.test_fraction, o.split_key)

    def judge_for(self, model_sha256: str | None) -> Judge:
        """The judge as this model applies it: the questions and verdict thresholds the manifest
        pinned for it (a model the manifest does not name is asked every judged feature)."""
        fp = self.manifest["fingerprint"]["judge"]
        pinned = (fp.get("verdict_thresholds") or {}).get(model_sha256 or "", {})
        judge = replace(self.judge, thresholds=tuple(pinned.items()))
        asked = (fp.get("asked") or {}).get(model_sha256 or "")
        return judge if asked is None else judge.asking(asked)


@dataclass(slots=True)
class Event:
    """One finished story as a runner reports it (small and picklable, for workers and Ray)."""

    id: int
    model: int
    reason: str | None
    prompt_tokens: int
    prompt_tokens_reused: int
    completion_tokens: int
    judge_tokens: int = 0  # judge prompt tokens evaluated + judge tokens generated
    failed: tuple[str, ...] = ()  # reason codes of retried attempts
    failed_tokens: tuple[int, ...] = ()  # tokens each retried attempt generated in the stage that failed


@dataclass(slots=True)
class ShardDone:
    """Every story of a shard is journalled and its journal closed: the driver seals it."""

    shard: int


class Runner(Protocol):
    # True when shards run at the same time in other processes: a story there cannot see the
    # stories of a shard running beside it, so the driver dedups across shards at seal.
    concurrent: bool

    def run(self, shards: list[int]) -> Iterator[Event | ShardDone]: ...

    def in_flight(self) -> int: ...

    def close(self) -> None: ...


def make_row(p: Prepared, o: Outcome) -> dict:
    """The row of a finished story (kept or rejected), labels as names."""
    plan_, m = o.plan, o.measured
    model = p.models[plan_.model]
    return {
        "id": plan_.id,
        "story": o.outputs.get(p.recipe.stages[-1].name, ""),
        "summary": o.outputs.get("summary", ""),
        "key_sentence": o.outputs.get("key_sentence", ""),
        "words": plan_.words(),
        "features": list(plan_.features),
        **plan_.axis_labels(),
        "has_dialogue": bool(m["has_dialogue"]),
        "once_upon_a_time": bool(m["once_upon_a_time"]),
        "word_count": int(m["word_count"]),
        "sentence_count": int(m["sentence_count"]),
        "paragraph_count": int(m["paragraph_count"]),
        "flesch_reading_ease": float(m["flesch_reading_ease"]),
        "flesch_kincaid_grade": float(m["flesch_kincaid_grade"]),
        "dale_chall": float(m["dale_chall"]),
        "judged_features": o.judged_features(),
        "judge_answers": o.judge_answers(),
        "judge_scores": o.judge_scores(),
        "reject_reason": o.reason or "",
        "model": model.name,
        "model_sha256": model.sha256,
        "recipe": p.recipe.name,
        "template_sha256": p.recipe.fingerprint,
        "seed": plan_.seed,
        "attempt": o.attempt,
        "prompt_tokens": o.prompt_tokens,
        "completion_tokens": o.completion_tokens,
        # How this row was made: the settings in force, and what steering did to this story
        # (the reasons of the attempts it retried, tokens it inserted into the kept one).
        "generation": generation_json({**p.config.sampling.to_dict(), "max_tokens": p.max_tokens,
                                       "steering": p.manifest["fingerprint"]["steering"],
                                       "retried": list(o.failed), "forced_tokens": o.forced_tokens}),
        "corpusforge_version": __version__,
    }


def open_engine(p: Prepared, model: ModelRef, threads: int | None = None):
    """Load one model and size its context for this recipe (and the judge, if it judges here)."""
    from ..engine.llamacpp import LlamaEngine

    c = p.config
    judges_here = p.judge is not None and (p.judge_model is None or p.judge_model == model)
    generates = model in p.models
    engine = LlamaEngine(
        model.path,
        parallel=c.parallel,
        n_threads=threads or c.threads_per_worker(),
        n_batch=c.n_batch,
        sampling=c.sampling,
        prefix_slots=(len(p.recipe.stages) if generates else 0) + (p.judge.prefix_count if judges_here else 0),
        safe_cpu=c.safe_cpu,
    )
    try:
        engine.start(c.n_ctx or context_needed(engine, p, generates=generates, judges=judges_here))
    except BaseException:
        engine.close()
        raise
    return engine


def context_needed(engine, p: Prepared, *, generates: bool = True, judges: bool = False) -> int:
    """Tokens one sequence needs: the longest stage (or judge) prompt at full length plus its output."""
    chain = make_chain(engine, p, judge_engine=engine if judges else None, dedup=None)
    longest = {k: max(getattr(p.vocab, k + "s"), key=len) for k in ("noun", "verb", "adjective")}
    axes = tuple((a.name, max(a.values, key=lambda v: len(v.phrase)).label) for a in p.vocab.axes)
    probe = StoryPlan(0, 0, longest["noun"], longest["verb"], longest["adjective"], tuple(p.vocab.feature_names), axes)
    need = 0
    for i, stage in enumerate(p.recipe.stages if generates else ()):
        # An earlier output can be as long as its budget; " word" is one token in most vocabs.
        earlier = {s.name: " word" * p.max_tokens[s.name] for s in p.recipe.stages[:i]}
        need = max(need, len(engine.tokenize(chain.prompt(probe, i, earlier))) + p.max_tokens[stage.name] + 8)
    if judges:
        story = " word" * p.max_tokens[p.recipe.stages[-1].name]
        for label in p.judge.labels:
            need = max(need, len(engine.tokenize(chain._judge_prompt(label, story))) + MAX_TOKENS + 8)
    return -(-need // 256) * 256  # llama.cpp pads the total to 256; keep it divisible per sequence


def make_chain(engine, p: Prepared, *, judge_engine=None, dedup=None, judge_sha256: str | None = None) -> Chain:
    """The chain of one engine; its judge verdicts use the gold-set thresholds of `judge_sha256`."""
    c = p.config
    check_list = checks.text_checks(checks.Limits(c.min_words, c.max_words), c.skip_checks, p.vocab.unfit_words)
    if dedup is not None:
        check_list.append(checks.duplicate_check(dedup))
    return Chain(
        engine,
        p.recipe.with_max_tokens(p.max_tokens),
        p.vocab,
        max_attempts=c.max_attempts,
        check_list=check_list,
        judge=p.judge_for(judge_sha256) if judge_engine is not None else None,
        judge_engine=judge_engine,
        steer_off=c.steer_off,
        new_summary_after=c.new_summary_after,
    )


class DedupState:
    """A process's dedup index and which sealed shards it holds, so each shard start adds
    only what was sealed since (a full re-read at every shard would grow with the square)."""

    def __init__(self, config):
        from ..dedup import DedupIndex

        self.index = DedupIndex(threshold=config.dedup_threshold, shingle=config.shingle_size)
        self.indexed: set[int] = set()

    def sync(self, store: Store, current: int) -> None:
        """Add every sealed shard not yet indexed, and the current shard's journalled stories."""
        items = []
        for shard in range(store.num_shards):
            if shard in self.indexed or shard == current or store.journal_path(shard).exists():
                continue
            if store.sealed_files(shard):
                items += [(r["id"], r["story"]) for _, r in store.kept_rows(shard, ("id", "story"))]
                self.indexed.add(shard)
        # The current shard's own kept stories: a resumed journal, or parquet when --n grew.
        items += [(r["id"], r["story"]) for _, r in store.kept_rows(current, ("id", "story"))]
        self.index.add_many(items)


class ShardWork:
    """One process's engines (one per model), chains and dedup index; runs whole shards."""

    def __init__(self, p: Prepared, threads: int | None = None):
        self.p = p
        c = p.config
        self.dedup = DedupState(c) if c.dedup else None
        self.engines = []
        try:
            for model in p.models:
                self.engines.append(open_engine(p, model, threads))
            self.judge_engine = None
            if p.judge_model is not None:
                self.judge_engine = open_engine(p, p.judge_model, threads)
                self.engines.append(self.judge_engine)
        except BaseException:
            self.close()
            raise
        index = self.dedup.index if self.dedup else None
        self.chains = [
            make_chain(engine, p, judge_engine=(self.judge_engine or engine) if p.judge else None, dedup=index,
                       judge_sha256=(p.judge_model or model).sha256)
            for model, engine in zip(p.models, self.engines)
        ]
        self.store = Store(Path(c.out), c.n, c.shard_size, p.schema, lock=False)

    def run_shard(self, shard: int) -> Iterator[Event | ShardDone]:
        """Generate a shard's missing ids and journal each; yields Events, then ShardDone.

        A shard always starts on idle engines and runs its models one after another, so which
        stories share a batch depends only on the shard: one worker, many workers or Ray give
        the same rows (dedup aside: a duplicate of a shard running beside it is caught by the
        driver instead). Done ids are read from the shard's own files, so a retried shard
        (a worker died) redoes only what is missing."""
        store = self.store
        done = store.shard_done(shard)
        if self.dedup is not None:
            self.dedup.sync(store, shard)
        replace = self.p.config.replace
        plans = [self.p.plan(i) for i in pending(store.shard_ids(shard), done, replace)]
        for m, chain in enumerate(self.chains):
            # A rejected story's replacement joins the same run at once, so freed sequences
            # are filled while the rest of the shard is still being written.
            feed = Feed(pl for pl in plans if pl.model == m)
            for o in chain.run(feed):
                split = o.plan.split if o.reason is None else "rejects"
                store.append(make_row(self.p, o), split)
                if o.reason is not None and replace and (nxt := next_id(o.plan.id)) is not None:
                    feed.add(self.p.plan(nxt))
                yield Event(o.plan.id, m, o.reason, o.prompt_tokens, o.prompt_tokens_reused, o.completion_tokens,
                            o.judge_prompt_tokens + o.judge_completion_tokens, o.failed, o.failed_tokens)
        store.close_journal(shard)
        if self.dedup is not None:
            self.dedup.indexed.add(shard)
        yield ShardDone(shard)

    def in_flight(self) -> int:
        return sum(e.in_flight() for e in self.engines)

    def close(self) -> None:
        store = getattr(self, "store", None)
        if store is not None:
            store.close()
        for engine in self.engines:
            engine.close()
        self.engines = []
