"""The summary stage alone on a real model: how often a summary carries all three words, by
the summary's word bias (`word_bias_max` of its [stages.steer]).

Why it matters: a story whose summary lacks a word mostly lacks it too (in a 128-story
SmolLM2 build nearly every "words" retry had a summary without the missing word), and a story
attempt costs ~275 tokens where a summary costs ~45. The build's own plans, prompts, sampler
and steering (the default recipe), one summary per plan at the build's first-attempt seed;
only the summary stage's `word_bias_max` changes between arms. Also: mean words and tokens per
summary, attempts the steering cut, and a few summaries per arm to read.

    python scripts/bench_summary.py                       # 128 plans, biases 6 9 12 -> bench/summary_words.json
    python scripts/bench_summary.py --n 16 --biases 12 --out /tmp/s.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench import machine  # noqa: E402
from bench_kept import MODEL, config_for, plan_args  # noqa: E402
from corpusforge import checks  # noqa: E402
from corpusforge.build import prepare  # noqa: E402
from corpusforge.engine.base import Request  # noqa: E402
from corpusforge.models import pull_model, sha256_file  # noqa: E402
from corpusforge.runners.base import make_chain, open_engine  # noqa: E402
from corpusforge.sampler import stage_seed  # noqa: E402


class _At:
    """What Chain._steer reads of a story: its plan at the first stage."""

    def __init__(self, plan):
        self.plan, self.stage, self.outputs = plan, 0, {}


def summaries(engine, chain, plans, bias: float) -> list[tuple[object, str, int, str | None]]:
    """(plan, summary, tokens, cut reason) per plan with the summary stage's word_bias_max = bias."""
    stage = chain.recipe.stages[0]
    steer = replace(stage.steer, word_bias_max=bias)
    chain.recipe = replace(chain.recipe, stages=(replace(stage, steer=steer),) + tuple(chain.recipe.stages[1:]))
    try:
        reqs = [Request(prompt=chain.prompt(p, 0, {}), max_tokens=stage.max_tokens, seed=stage_seed(p.seed, p.id, 0, 1),
                        prefix=chain.prefixes[0], sampling=chain.sampling[0], steer=chain._steer(_At(p)), tag=p)
                for p in plans]
        return [(r.request.tag, chain.parse(stage, r.text), r.completion_tokens, r.cut) for r in engine.generate(reqs)]
    finally:
        chain.recipe = replace(chain.recipe, stages=(stage,) + tuple(chain.recipe.stages[1:]))


def figures(rows) -> dict:
    def has_all(p, text):
        return all(checks.mentions(w, pos, text) for w, pos in ((p.noun, "noun"), (p.verb, "verb"), (p.adjective, "adjective")))
    return {
        "plans": len(rows),
        "all_three_words": sum(has_all(p, t) for p, t, _, _ in rows),
        "all_three_words_share": round(sum(has_all(p, t) for p, t, _, _ in rows) / len(rows), 3),
        "mean_words": round(statistics.mean(len(t.split()) for _, t, _, _ in rows), 1),
        "tokens_per_summary": round(statistics.mean(n for _, _, n, _ in rows), 1),
        "cut": sum(bool(c) for _, _, _, c in rows),
        "examples": [f"[{p.noun}, {p.verb}, {p.adjective}] {t}" for p, t, _, _ in rows[:6]],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    plan_args(ap)
    ap.add_argument("--biases", type=float, nargs="+", default=[6.0, 9.0, 12.0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "summary_words.json")
    args = ap.parse_args()
    model = pull_model(MODEL)
    p = prepare(config_for(model, args.n, args.seed, args.threads, args.parallel, ROOT / "bench" / "scratch" / "summary"))
    engine = open_engine(p, p.models[0])
    chain = make_chain(engine, p)
    plans = [p.plan(i) for i in range(args.n)]
    arms = {}
    for bias in args.biases:
        t0 = time.perf_counter()
        arms[str(bias)] = {**figures(summaries(engine, chain, plans, bias)), "seconds": round(time.perf_counter() - t0, 1)}
        a = arms[str(bias)]
        print(f"word_bias_max {bias}: all three words {a['all_three_words']}/{a['plans']}, {a['mean_words']} words, "
              f"{a['tokens_per_summary']} tokens per summary, {a['cut']} cut", flush=True)
    res = {"machine": machine(), "model": MODEL, "model_sha256": sha256_file(model), "seed": args.seed,
           "recipe_default_word_bias_max": chain.recipe.stages[0].steer.word_bias_max, "arms": arms}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
