"""Build a corpus: validate everything, then plans -> runner -> journal -> sealed shards -> sinks.

Nothing is written until every input has been checked and every model has loaded, so a bad
flag never leaves a half-made or overwritten folder behind. The driver seals each shard a
runner finishes, dedups it against the corpus when shards ran side by side, then hands the
sealed files to the sinks (the card, the Hub upload).
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .card import write_card
from .chain import steering_settings
from .config import BuildConfig, diff, parse_model_spec
from .errors import CorpusforgeError, OutputError, RecipeError
from .models import display_name, require_writer, resolve_model, sha256_file
from .judge import load_judge
from .recipes import load_recipe
from .replace import pending, unfilled
from .runners import Event, ModelRef, Prepared, ShardDone, make_runner
from .sampler import PlanOptions
from .schema import KEPT_SPLITS, RowSchema
from .shards import MANIFEST, Store
from .shardstats import merge
from .vocab import load_vocab


@dataclass(slots=True)
class ModelSummary:
    kept: int = 0
    rejected: int = 0
    reasons: Counter = field(default_factory=Counter)
    attempts: int = 0
    duplicates: int = 0  # attempts refused as duplicates (retried or rejected)


@dataclass(slots=True)
class Summary:
    n: int
    done_before: int = 0  # stories done before this run (kept ones; every plan with --no-replace)
    plans_before: int = 0  # plans finished before this run, kept or rejected
    counts_plans: bool = False  # --no-replace: --n counts plans, not kept stories
    kept: int = 0
    rejected: int = 0
    generated_tokens: int = 0
    prompt_tokens_evaluated: int = 0
    prompt_tokens_reused: int = 0
    judge_tokens: int = 0
    seconds: float = 0.0
    reasons: Counter = field(default_factory=Counter)
    retried: Counter = field(default_factory=Counter)  # reason codes of attempts that were retried
    # Generated tokens that end in no kept story, by reason: a retried attempt's failed stage
    # (and its judge questions), and everything a rejected story generated.
    wasted: Counter = field(default_factory=Counter)
    models: dict[str, ModelSummary] = field(default_factory=dict)
    moved_duplicates: int = 0  # kept stories the driver sent to rejects (cross-shard duplicates)
    frequencies: dict = field(default_factory=dict)  # planned vs kept, from the sealed shards
    push: object = None  # the Hub sink's report, when --push-to was given
    interrupted: bool = False
    unfilled: int = 0  # slots left without a kept story after MAX_GENERATIONS plans each

    def add(self, e: Event, model_name: str, seconds: float) -> None:
        m = self.models.setdefault(model_name, ModelSummary())
        if e.reason is None:
            self.kept += 1
            m.kept += 1
        else:
            self.rejected += 1
            code = e.reason.split(":")[0]
            self.reasons[code] += 1
            m.rejected += 1
            m.reasons[code] += 1
        m.attempts += 1 + len(e.failed)
        self.retried.update(e.failed)
        for code, tokens in zip(e.failed, e.failed_tokens):
            self.wasted[code] += tokens
        if e.reason is not None:  # a rejected story wasted everything else it generated too
            self.wasted[e.reason.split(":")[0]] += e.completion_tokens - sum(e.failed_tokens)
        m.duplicates += e.failed.count("duplicate") + (e.reason or "").startswith("duplicate")
        self.generated_tokens += e.completion_tokens
        self.prompt_tokens_evaluated += e.prompt_tokens - e.prompt_tokens_reused
        self.prompt_tokens_reused += e.prompt_tokens_reused
        self.judge_tokens += e.judge_tokens
        self.seconds = seconds

    @property
    def done(self) -> int:
        """Stories done, as --n counts them: kept ones (every plan with --no-replace)."""
        return self.done_before + self.kept + (self.rejected if self.counts_plans else 0)

    @property
    def plans(self) -> int:
        """Plans finished so far, this run and before, kept or rejected."""
        return self.plans_before + self.kept + self.rejected

    def over_budget(self, factor: float) -> bool:
        """True once the build needs more than `factor` plans per kept story (after a first
        sample, so a slow start is not mistaken for a hopeless build), or has spent factor * n."""
        kept = self.done_before + self.kept
        return self.plans > factor * self.n or (self.plans >= BUDGET_SAMPLE and kept * factor < self.plans)

    @property
    def stories_per_minute(self) -> float:
        return 60 * (self.kept + self.rejected) / self.seconds if self.seconds else 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.generated_tokens / self.seconds if self.seconds else 0.0

    @property
    def judge_share(self) -> float:
        """Judge tokens (prompt evaluated + generated) as a share of all the build's tokens."""
        return judge_share(self.judge_tokens, self.prompt_tokens_evaluated, self.generated_tokens)

    def moved_to_rejects(self, n: int) -> None:
        """n stories counted as kept when written, moved to rejects at seal (cross-shard duplicates)."""
        self.moved_duplicates += n
        self.kept -= n
        self.rejected += n
        self.reasons["duplicate"] += n


def judge_share(judge: int, prompt_evaluated: int, generated: int) -> float:
    total = prompt_evaluated + generated
    return judge / total if total else 0.0


class Interrupted(CorpusforgeError):
    """Ctrl-C: the journal is flushed and the build can be resumed."""


class BudgetSpent(CorpusforgeError):
    """Too many plans per kept story (--max-plans-factor): the build stops, resumable."""


# Plans finished before the budget's rate test applies: on 100 plans a build keeping 1 in 2
# is told from one keeping 1 in 4 (the default budget) with room to spare.
BUDGET_SAMPLE = 100


def model_ref(spec: str | None, weight: float = 1.0) -> ModelRef:
    """Resolve a model spec (path, catalog name, hf://; None = the catalog default) to a local file with its sha256."""
    if spec is None:
        from .catalog import default_model

        spec = default_model().name
    require_writer(spec)  # before any download: a reader model only scores text
    path = resolve_model(spec)
    return ModelRef(spec, display_name(spec, path), path, sha256_file(path), weight)


def prepare(config: BuildConfig) -> Prepared:
    """Check every input and the output folder; raise CorpusforgeError on the first problem."""
    config.validate()
    vocab = load_vocab(config.vocab)
    recipe = load_recipe(config.recipe, axis_names=tuple(a.name for a in vocab.axes))
    names = [s.name for s in recipe.stages]
    unknown = sorted(set(config.max_tokens) - set(names))
    if unknown:
        raise RecipeError(f"--max-tokens names unknown stage {', '.join(unknown)}", f"recipe {recipe.name} has {', '.join(names)}")
    max_tokens = {s.name: config.max_tokens.get(s.name, s.max_tokens) for s in recipe.stages}
    specs = [parse_model_spec(s) for s in config.model] or [(None, 1.0)]
    models = tuple(model_ref(spec, weight) for spec, weight in specs)
    if len({m.sha256 for m in models}) < len(models):
        raise CorpusforgeError("the same model file is given twice to --model", "give each model once, with a weight: --model A.gguf:2")
    options = PlanOptions(config.features_per_story, config.balance, tuple(m.weight for m in models),
                          config.validation_fraction, config.test_fraction, config.split_key)
    options.check(vocab)
    judge = load_judge(recipe, vocab.features, config.judge_policy) if config.judging else None
    judge_model = model_ref(config.judge_model) if config.judge_model else None
    # Per judging model: the judge as the gold set measured it (questions and thresholds), once.
    calibrated = {m.sha256: judge.calibrated(m.sha256, ask_all=config.judge_all)
                  for m in ([judge_model] if judge_model else models)} if judge else {}
    schema = RowSchema.from_vocab(vocab)
    fingerprint = config.fingerprint(
        vocab_sha=vocab.fingerprint(),
        recipe_name=recipe.name,
        recipe_sha=recipe.fingerprint,
        models=[{"name": m.name, "sha256": m.sha256, "weight": m.weight} for m in models],
        max_tokens=max_tokens,
        steering=steering_settings(recipe, config.steer_off),
        judge=None if judge is None else {
            "policy": judge.policy, "templates_sha256": judge.fingerprint, "features": list(judge.labels),
            # Per judging model: the labels it is asked (not those the gold set measured as noise
            # for it, unless --judge-all) and those whose verdict is the score against a threshold.
            "asked": {sha: list(j.labels) for sha, j in calibrated.items()},
            "verdict_thresholds": {sha: dict(j.thresholds) for sha, j in calibrated.items()},
            "model": None if judge_model is None else {"name": judge_model.name, "sha256": judge_model.sha256}},
    )
    manifest = {
        "corpusforge_version": __version__,
        "n": config.n,
        "fingerprint": fingerprint,
        "stages": names,
        "schema": schema.to_dict(),
        "vocab_counts": vocab.counts(),
        "vocab_source": vocab.source,
        "recipe_path": str(recipe.path),
    }
    check_output(Path(config.out), manifest, config.overwrite)
    return Prepared(config, vocab, recipe, schema, models, options, max_tokens, manifest, judge, judge_model)


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


def write_manifest(out: Path, manifest: dict) -> None:
    path = out / MANIFEST
    tmp = out / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def build(config: BuildConfig, reporter=None, *, hub_client=None, hub_options: dict | None = None) -> Summary:
    """Run (or resume) a build to completion; `reporter` gets progress events.

    `hub_client` replaces the HfApi seam of `--push-to` and `hub_options` the upload pacing
    (tests: the Hub cannot be reached here)."""
    p = prepare(config)
    runner = make_runner(p)  # loads models before anything is written, so load errors write nothing
    try:
        sinks = make_sinks(p, hub_client, hub_options)
        return run(p, runner, reporter, sinks)
    finally:
        runner.close()


def make_sinks(p: Prepared, hub_client=None, hub_options: dict | None = None) -> list:
    """Work on each sealed shard beyond the card: today the Hub upload of --push-to."""
    c = p.config
    if not c.push_to:
        return []
    from .hub import HubSink

    sink = HubSink(Path(c.out), c.push_to, private=c.private, client=hub_client, manifest=p.manifest,
                   **(hub_options or {}))
    sink.start()  # token, offline, repo layout: refused before anything is written
    return [sink]


# How long the end of a build waits for the sinks' last work (the Hub upload): a Hub that hangs
# must not hold a finished build for ever; what is unsent is reported, and a rerun or
# `corpusforge push` sends it. (`push` itself waits as long as the upload takes.)
SINK_FINISH_TIMEOUT = 3600.0


class CardSink:
    """Refreshes README.md from the merged shard statistics (small files, never the parquet)."""

    def __init__(self, store: Store, manifest: dict):
        self.store, self.manifest = store, manifest
        self.merged = merge(store.all_stats())

    def refresh(self, shard_stats: dict | None = None, **extra) -> None:
        if shard_stats is not None:
            self.merged = merge(self.store.all_stats())
        write_card(self.store.out, self.manifest, stats=self.merged, **extra)


def run(p: Prepared, runner, reporter=None, sinks: list | None = None) -> Summary:
    """Open the output, hand the unfinished shards to the runner, account for every story."""
    c, sinks = p.config, sinks or []
    out = Path(c.out)
    out.mkdir(parents=True, exist_ok=True)
    store = Store(out, c.n, c.shard_size, p.schema)
    summary = None
    try:
        if c.overwrite:
            store.wipe()
        tokens_before = _manifest_tokens(out)
        write_manifest(out, {**p.manifest, "tokens": tokens_before})
        done = store.recover()
        card = CardSink(store, p.manifest)
        card.refresh()
        kept_before = sum(split in KEPT_SPLITS for split in done.values())
        summary = Summary(n=c.n, done_before=kept_before if c.replace else len(done), plans_before=len(done),
                          counts_plans=not c.replace)
        # Shards that ran side by side in other processes never saw each other's stories:
        # the driver dedups each one against everything sealed before it, at seal.
        cross = _CrossShardDedup(store, c) if runner.concurrent and c.dedup else None
        if reporter:
            reporter.start(summary)
        t0 = time.monotonic()
        over = False
        ctrl_c = _CtrlC()
        try:
            # A pass runs every shard with work left. A story the driver moves to rejects at
            # seal (a cross-shard duplicate) reopens its shard for a replacement: the next pass.
            progressed = True
            while progressed and not over and (shards := _shards_to_run(store, c.replace)):
                items, progressed = runner.run(shards), False
                try:
                    for item in items:
                        ctrl_c.check()
                        progressed = True  # a pass that yields nothing would only repeat itself
                        if isinstance(item, ShardDone):
                            moved = cross.check(item.shard) if cross else {}
                            summary.moved_to_rejects(len(moved))
                            # Every move so far, not only this shard's: a worker may have named a story
                            # of its own earlier shard that the driver moved at that shard's seal.
                            files = store.seal(item.shard, cross.moved if cross else moved)
                            card.refresh(shard_stats=True)
                            for sink in sinks:
                                sink.on_seal(files)
                            continue
                        summary.add(item, p.models[item.model].name, time.monotonic() - t0)
                        if reporter:
                            reporter.update(summary, runner.in_flight())
                        if c.replace and summary.over_budget(c.max_plans_factor):
                            over = True
                            break
                finally:
                    getattr(items, "close", lambda: None)()  # stops workers of a pass cut short
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            ctrl_c.restore()
        summary.seconds = time.monotonic() - t0
        # Every run adds its tokens to the manifest (and so to stats.json): the judge's share of
        # a build is its share over all the runs that made it.
        write_manifest(out, {**p.manifest, "tokens": add_tokens(tokens_before, summary)})
        if summary.interrupted:
            raise Interrupted(f"stopped: {summary.done:,} of {c.n:,} stories done and saved", "run the same command again to resume")
        if over:
            if reporter:
                reporter.finish(summary)
            raise BudgetSpent(budget_report(summary, c.max_plans_factor),
                              f"see why with `corpusforge show {out} --split rejects`, fix the cause or raise "
                              "--max-plans-factor, then run the same command again to resume")
        summary.unfilled = sum(len(unfilled(store.shard_ids(s), store.shard_done(s))) for s in range(store.num_shards)) \
            if c.replace else 0
        summary.frequencies = _frequencies(card.merged)
        problem = _final_card(out, card)
        if reporter:
            reporter.finish(summary)
            if problem:
                reporter.note(problem)
        return summary
    finally:
        # Whatever ended the run, the sinks send what they can (the card, stats and plots
        # included) and say what is still unsent; a rerun resumes the rest.
        for sink in sinks:
            report = sink.finish(timeout=SINK_FINISH_TIMEOUT)
            if summary is not None:
                summary.push = report
            if reporter and report is not None:
                reporter.note(str(report))
        store.close()


class _CtrlC:
    """Ctrl-C as a flag as well as a KeyboardInterrupt. A SIGINT that lands while llama.cpp is
    calling back into Python (its log callback) raises there, and ctypes swallows it ("Exception
    ignored on calling ctypes callback"): the build ran on to the end once in CI. The flag is
    checked after every story, so such a Ctrl-C still stops the build."""

    def __init__(self):
        self.pressed = False
        self._old = None
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame):
        self.pressed = True
        raise KeyboardInterrupt

    def check(self) -> None:
        if self.pressed:
            raise KeyboardInterrupt

    def restore(self) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None


TOKEN_KEYS = ("generated", "prompt_evaluated", "prompt_reused", "judge")


def _manifest_tokens(out: Path) -> dict:
    try:
        old = json.loads((out / MANIFEST).read_text()).get("tokens") or {}
    except (OSError, ValueError):
        old = {}
    return {k: int(old.get(k, 0)) for k in TOKEN_KEYS}


def add_tokens(before: dict, summary: Summary) -> dict:
    """Token totals so far; `judge_share` is judge tokens (prompt evaluated + generated) over all
    tokens evaluated or generated, as the end-of-build line prints it."""
    now = {"generated": summary.generated_tokens, "prompt_evaluated": summary.prompt_tokens_evaluated,
           "prompt_reused": summary.prompt_tokens_reused, "judge": summary.judge_tokens}
    out = {k: before.get(k, 0) + now[k] for k in TOKEN_KEYS}
    return {**out, "judge_share": judge_share(out["judge"], out["prompt_evaluated"], out["generated"])}


def _shards_to_run(store: Store, replace: bool) -> list[int]:
    """Shards with ids still to write (a first plan, or a rejected plan's replacement) or an
    open journal (stories written but not yet sealed)."""
    return [s for s in range(store.num_shards)
            if store.journal_path(s).exists() or pending(store.shard_ids(s), store.shard_done(s), replace)]


def budget_report(summary: Summary, factor: float) -> str:
    """The one line a build stopped by its budget ends with: what was kept, why the rest failed."""
    kept = summary.done_before + summary.kept
    reasons = ", ".join(f"{k} {v:,}" for k, v in summary.reasons.most_common(4)) or "none this run"
    return (f"stopped: {kept:,} of {summary.n:,} stories kept from {summary.plans:,} plans "
            f"({kept / max(1, summary.plans):.0%}), fewer than 1 in {factor:g} (--max-plans-factor {factor:g}); "
            f"rejects: {reasons}")


def _final_card(out: Path, card: CardSink) -> str | None:
    """The card with the full statistics section (`corpusforge stats`), once, at the end.

    The corpus is complete by now: a statistics problem must not fail the build, so it comes
    back as a note for the user (the card is then written without the section)."""
    from .plots import card_section, write_plots
    from .stats import compute_stats, write_stats

    section, problem = "", None
    try:
        stats = compute_stats(out)
        write_stats(out, stats)
        try:
            plots = write_plots(out, stats)
        except CorpusforgeError as e:  # matplotlib is an optional extra: the card goes without plots
            plots, problem = [], f"card without plots: {e}"
        section = card_section(stats, plots)
    except Exception as e:  # noqa: BLE001 - reported, and `corpusforge stats OUT` can retry it
        problem = f"statistics not written ({type(e).__name__}: {e}); run `corpusforge stats {out}`"
    card.refresh(statistics=section)
    return problem


def _frequencies(merged: dict) -> dict:
    from .shardstats import frequencies

    kinds = sorted({k.split(":", 1)[0] for k in merged["planned"]} - {"pair"})
    return {kind: frequencies(merged, kind) for kind in kinds}


class _CrossShardDedup:
    """The driver's dedup index over every sealed shard (used with concurrent runners)."""

    def __init__(self, store: Store, config):
        from .dedup import DedupIndex

        self.store = store
        self.index = DedupIndex(threshold=config.dedup_threshold, shingle=config.shingle_size)
        # id -> "duplicate:<kept id>" of every duplicate in rejects (moved here, or sealed before a
        # resume): a reject that names one of them is pointed at the kept story at seal.
        self.moved: dict[int, str] = {}
        items = []
        for shard in range(store.num_shards):
            if store.sealed_files(shard) and not store.journal_path(shard).exists():
                items += [(r["id"], r["story"]) for _, r in store.kept_rows(shard, ("id", "story"))]
                self.moved.update(store.duplicate_rejects(shard))
        self.index.add_many(items)

    def check(self, shard: int) -> dict[int, str]:
        """{id: "duplicate:<earlier id>"} for the shard's kept stories that repeat the corpus."""
        moved = {}
        rows = sorted((r for _, r in self.store.kept_rows(shard, ("id", "story"))), key=lambda r: r["id"])
        for r in rows:
            match = self.index.check_and_add(r["id"], r["story"])
            if match is not None:
                moved[r["id"]] = f"duplicate:{match.other}"
        self.moved.update(moved)
        return moved


__all__ = ["KEPT_SPLITS", "BudgetSpent", "BuildConfig", "Interrupted", "Summary", "build", "prepare", "run"]
