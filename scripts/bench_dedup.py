"""What dedup adds to a build: time per 1,000 stories checked, and the resume rebuild.

Reads the kept and rejected stories of a finished build (real text of whatever model wrote it),
then, in one process and several rounds, checks them one by one against a growing index exactly
as the chain's final check does (`DedupIndex.check_and_add`), and rebuilds an index from them as a
resume does (`add_many`). Reports the median and the spread. Writes bench/dedup.json.

    corpusforge tiny-model runs/t.gguf && corpusforge build --n 2000 --model runs/t.gguf --out runs/b2000 \
        --skip-check words --skip-check key_sentence
    python scripts/bench_dedup.py runs/b2000
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from corpusforge.dedup import DedupIndex  # noqa: E402
from corpusforge.stats import open_corpus  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="a finished build folder")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "dedup.json")
    args = ap.parse_args()
    corpus = open_corpus(args.out)
    stories = [(r["id"], r["story"]) for _, r in corpus.iter_rows(list(corpus.files), ("id", "story")) if r["story"]]
    words = statistics.mean(len(s.split()) for _, s in stories)
    check, rebuild, found = [], [], 0
    for _ in range(args.rounds):
        index = DedupIndex()
        t0 = time.perf_counter()
        found = sum(index.check_and_add(i, s) is not None for i, s in stories)
        check.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        DedupIndex().add_many(stories)
        rebuild.append(time.perf_counter() - t0)
    per_k = [1000 * t / len(stories) for t in check]
    result = {
        "build": str(args.out),
        "stories": len(stories),
        "mean_words": round(words, 1),
        "duplicates_found": found,
        "check_seconds_per_1000_stories": {"median": round(statistics.median(per_k), 3), "min": round(min(per_k), 3), "max": round(max(per_k), 3)},
        "rebuild_seconds_per_1000_stories": {"median": round(statistics.median(1000 * t / len(stories) for t in rebuild), 3)},
        "rounds": args.rounds,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
