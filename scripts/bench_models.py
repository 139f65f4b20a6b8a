"""Two models in one build vs two one-model builds: stories/hour, alternating rounds, one run.

Each round runs (a) model A alone on N stories, (b) model B alone on N stories, (c) one build of
2N stories with `--model A --model B` (weights 1:1, so each model writes N), in an order that
alternates between rounds. Writes bench/models.json with every round, medians and spread.

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


def run(models: list[Path], n: int, threads: int, tag: str) -> float:
    """Wall seconds of one build, models loaded included."""
    out = SCRATCH / tag
    shutil.rmtree(out, ignore_errors=True)
    config = BuildConfig(n=n, model=tuple(str(m) for m in models), out=out, n_threads=threads, shard_size=n, **LENIENT)
    t0 = time.monotonic()
    build(config)
    return time.monotonic() - t0


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
        order = ["separate", "together"] if r % 2 == 0 else ["together", "separate"]
        row = {"order": order}
        for what in order:
            if what == "separate":
                row["separate_seconds"] = run([a], args.n, args.threads, "a") + run([b], args.n, args.threads, "b")
            else:
                row["together_seconds"] = run([a, b], 2 * args.n, args.threads, "ab")
        row["separate_stories_per_hour"] = 3600 * 2 * args.n / row["separate_seconds"]
        row["together_stories_per_hour"] = 3600 * 2 * args.n / row["together_seconds"]
        row["ratio"] = row["together_stories_per_hour"] / row["separate_stories_per_hour"]
        rounds.append(row)
        print(json.dumps(row), flush=True)
    med = {k: statistics.median(r[k] for r in rounds) for k in ("separate_stories_per_hour", "together_stories_per_hour", "ratio")}
    result = {
        "stories_per_model": args.n, "shape": args.shape, "threads": args.threads, "rounds": rounds,
        "median": med,
        "spread": {k: [min(r[k] for r in rounds), max(r[k] for r in rounds)] for k in med},
        "machine": f"{platform.processor() or platform.machine()}, {platform.system()} {platform.release()}",
    }
    (ROOT / "bench").mkdir(exist_ok=True)
    (ROOT / "bench" / "models.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["median"]))


if __name__ == "__main__":
    main()
