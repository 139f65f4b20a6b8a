"""The `corpusforge` command line: parse flags, call the library, print one-line errors.

No logic lives here; every command is a thin call into the package.
"""
from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from .config import DEFAULT_PARALLEL, BuildConfig
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


def fail(err: CorpusforgeError, code: int = 1):
    """Print a user's mistake as one red line (message - fix) and exit non-zero."""
    from rich.console import Console

    text = f"error: {err.message}" + (f" - {err.hint}" if err.hint else "")
    Console(stderr=True, soft_wrap=True).print(text, style="bold red", markup=False, highlight=False)
    raise typer.Exit(code)


def parse_max_tokens(values: list[str]) -> dict[str, int]:
    out = {}
    for v in values:
        stage, _, num = v.partition("=")
        if not stage or not num.isdigit():
            raise typer.BadParameter(f"{v!r}: write STAGE=N, e.g. story=400", param_hint="--max-tokens")
        out[stage] = int(num)
    return out


@app.command()
def build(
    n: Annotated[int, typer.Option("--n", help="Number of stories to plan (kept + rejected).")],
    model: Annotated[str, typer.Option(help="GGUF file, or hf://owner/repo/file.gguf (downloaded to the HF cache).")],
    out: Annotated[Path, typer.Option(help="Output folder: data/, rejects/, README.md, corpusforge.json.")],
    seed: Annotated[int, typer.Option(help="Build seed: same seed + settings = same plans and rows.")] = 0,
    recipe: Annotated[str, typer.Option(help="Built-in recipe name or a recipe folder.")] = "tinystories-instruct",
    vocab: Annotated[Optional[Path], typer.Option(help="Folder with nouns.txt, verbs.txt, adjectives.txt, features.toml.")] = None,
    features_per_story: Annotated[Optional[int], typer.Option(help="Exactly K features per story (default: each by its probability).")] = None,
    max_attempts: Annotated[int, typer.Option(help="Tries per story before it goes to the rejects split.")] = 3,
    shard_size: Annotated[int, typer.Option(help="Rows planned per parquet shard.")] = 1000,
    parallel: Annotated[int, typer.Option(help="Sequences decoded together (continuous batching).")] = DEFAULT_PARALLEL,
    n_ctx: Annotated[Optional[int], typer.Option(help="Context tokens per sequence (default: sized from the recipe).")] = None,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads (default: all cores).")] = None,
    n_batch: Annotated[int, typer.Option(help="Most tokens per llama.cpp decode call.")] = 512,
    temperature: Annotated[float, typer.Option(help="Sampling temperature (0 = greedy).")] = 0.8,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling threshold.")] = 0.95,
    min_p: Annotated[float, typer.Option(help="Min-p sampling threshold.")] = 0.05,
    top_k: Annotated[int, typer.Option(help="Top-k, applied first (0 = off, slower on big vocabularies).")] = 40,
    repeat_penalty: Annotated[float, typer.Option(help="Repetition penalty over the last 64 tokens.")] = 1.1,
    max_tokens: Annotated[list[str], typer.Option(help="Per-stage token budget, STAGE=N (repeatable), e.g. story=400.")] = [],
    min_words: Annotated[int, typer.Option(help="Shortest story kept, in words.")] = 40,
    max_words: Annotated[int, typer.Option(help="Longest story kept, in words.")] = 600,
    skip_check: Annotated[list[str], typer.Option(help="Turn a check off (repeatable): truncated, empty, length, words, key_sentence, dialogue.")] = [],
    safe_cpu: Annotated[bool, typer.Option(help="Avoid llama.cpp's extra CPU kernels (works around the AMX crash at ~half speed).")] = False,
    overwrite: Annotated[bool, typer.Option(help="Delete the build in --out and start over.")] = False,
    workers: Annotated[int, typer.Option(help="Local processes, each with its own model and a share of the threads.")] = 1,
    ray: Annotated[bool, typer.Option("--ray", help="Run shards on Ray actors (pip install 'corpusforge\\[ray]').")] = False,
    ray_address: Annotated[Optional[str], typer.Option(help="Ray cluster address (default: start Ray locally).")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress display.")] = False,
):
    """Generate a corpus: plans -> summary -> key sentence -> story -> checks -> parquet shards."""
    from .build import Interrupted
    from .build import build as run_build
    from .progress import RichReporter

    config = BuildConfig(
        n=n, model=model, out=out, seed=seed, recipe=recipe, vocab=vocab,
        features_per_story=features_per_story, max_attempts=max_attempts, shard_size=shard_size,
        parallel=parallel, n_ctx=n_ctx, n_threads=threads, n_batch=n_batch,
        sampling=SamplingParams(temperature, top_p, min_p, top_k, repeat_penalty),
        max_tokens=parse_max_tokens(max_tokens), min_words=min_words, max_words=max_words,
        skip_checks=tuple(skip_check), safe_cpu=safe_cpu, overwrite=overwrite,
        workers=workers, ray=ray, ray_address=ray_address,
    )
    try:
        run_build(config, None if quiet else RichReporter())
    except Interrupted as e:
        fail(e, 130)
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
):
    """Print the plans and rendered prompts of the first stories. Needs no model."""
    from .preview import render_preview

    try:
        if n < 1:
            raise CorpusforgeError(f"--n must be at least 1 (got {n})", "pass --n 5")
        typer.echo(render_preview(n=n, seed=seed, start=start, recipe=recipe, vocab=vocab, features_per_story=features_per_story))
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
    out: Annotated[Path, typer.Argument(help="A finished build folder.")],
    repo_id: Annotated[str, typer.Argument(help="Dataset repo, owner/name.")],
    private: Annotated[bool, typer.Option(help="Create the repo private.")] = False,
):
    """Upload README.md and the parquet shards to a Hugging Face dataset repo (token: HF_TOKEN or `hf auth login`)."""
    from .hub import push as hub_push

    try:
        typer.echo(f"pushed to {hub_push(out, repo_id, private=private)}")
    except CorpusforgeError as e:
        fail(e)


def main() -> None:
    app(prog_name="corpusforge")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
