"""Two models in one build vs two one-model builds: stories/hour, alternating rounds, one run.

Each round runs (a) model A alone on N stories, then model B alone on N stories, (b) one build of
2N stories with `--model A --model B` (weights 1:1, so each model writes N), (c) the same with
`--workers 2` (the two models side by side on split threads), in an order that reverses every
round. Each arm is timed over the wall (model loading, statistics and card included) and over its
generation phase alone. Writes bench/models.json with every round, medians and spread.

    python scripts/bench_models.py                  # test-shape models, N=200, 3 rounds
    python scripts/bench_models.py --shape smollm2-135m --n 48
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from corpusforge.build import build  # noqa: E402
from corpusforge.config import BuildConfig  # noqa: E402
from corpusforge.engine.tiny import make_tiny_model  # noqa: E402

SCRATCH = ROOT / "bench" / "scratch" / "models"
# Random weights write gibberish: switch off the checks that would reject it all, so both sides
# keep the same work (the checks themselves are not what is measured).
LENIENT = dict(skip_checks=("words", "key_sentence", "dialogue", "truncated"), min_words=1, max_attempts=1)


def run(models: list[Path], n: int, threads: int, tag: str, workers: int = 1) -> tuple[float, float]:
    """(wall seconds of one build with model loading, statistics and card; seconds of its
    generation phase alone, the build's own clock from first to last story)."""
    out = SCRATCH / tag
    shutil.rmtree(out, ignore_errors=True)
    config = BuildConfig(n=n, model=tuple(str(m) for m in models), out=out, n_threads=threads, workers=workers,
                         shard_size=n // max(1, workers), replace=False, **LENIENT)  # n plans: a fixed workload
    t0 = time.monotonic()
    summary = build(config)
    return time.monotonic() - t0, summary.seconds


# How two models can share one machine: two builds one after the other; one build that runs
# each shard's models one after another on all threads (what corpusforge does); and one build
# with two worker processes on one thread each, so the two models' shards run side by side.
ARMS = ("separate", "together", "side_by_side")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="stories per model")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--shape", default="test")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    SCRATCH.mkdir(parents=True, exist_ok=True)
    a = make_tiny_model(SCRATCH / f"a-{args.shape}.gguf", shape=args.shape, seed=0)
    b = make_tiny_model(SCRATCH / f"b-{args.shape}.gguf", shape=args.shape, seed=1)
    rounds = []
    for r in range(args.rounds):
        order = list(ARMS) if r % 2 == 0 else list(ARMS)[::-1]
        row = {"order": order}
        for what in order:
            if what == "separate":
                wa, ga = run([a], args.n, args.threads, "a")
                wb, gb = run([b], args.n, args.threads, "b")
                wall, gen = wa + wb, ga + gb
            elif what == "together":
                wall, gen = run([a, b], 2 * args.n, args.threads, "ab")
            else:
                wall, gen = run([a, b], 2 * args.n, max(1, args.threads // 2), "ab2", workers=2)
            row[f"{what}_stories_per_hour"] = 3600 * 2 * args.n / wall
            row[f"{what}_generation_stories_per_hour"] = 3600 * 2 * args.n / gen
        for what in ARMS[1:]:
            row[f"{what}_ratio"] = row[f"{what}_stories_per_hour"] / row["separate_stories_per_hour"]
            row[f"{what}_generation_ratio"] = row[f"{what}_generation_stories_per_hour"] / row["separate_generation_stories_per_hour"]
        rounds.append(row)
        print(json.dumps(row), flush=True)
    keys = [k for k in rounds[0] if k != "order"]
    med = {k: round(statistics.median(r[k] for r in rounds), 3) for k in keys}
    result = {
        "stories_per_model": args.n, "shape": args.shape, "threads": args.threads, "rounds": rounds,
        "median": med,
        "spread": {k: [round(min(r[k] for r in rounds), 3), round(max(r[k] for r in rounds), 3)] for k in keys},
        "machine": f"{platform.processor() or platform.machine()}, {platform.system()} {platform.release()}",
    }
    (ROOT / "bench").mkdir(exist_ok=True)
    (ROOT / "bench" / "models.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["median"], indent=1))


if __name__ == "__main__":
    main()
