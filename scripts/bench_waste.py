"""Where a real build's tokens go: one `corpusforge build` on SmolLM2-135M (bench_kept's engine
arm: default recipe, 128 plans, seed 0, --parallel 32, at most 3 attempts) with every failed
attempt and every engine step recorded.

- per (stage, reason): failed attempts and the tokens they generated; for "words" failures,
  how many had a summary that lacked the missing word too (what "rewind" and the summary's
  word bias act on);
- the kept stories' length (median and mean words);
- per engine step: wall, decode time, generated and prompt tokens, busy sequences; summed as
  generation-only steps against steps that also evaluate prompt tokens, and the run's tail
  (steps with fewer than half the sequences busy).

The counts are deterministic for the seed; the times are this machine's at this hour.

    python scripts/bench_waste.py                          # -> bench/waste.json
    python scripts/bench_waste.py --n 8 --out /tmp/w.json  # a quick look
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import bench_kept  # noqa: E402
from bench_kept import plan_args  # noqa: E402
from bench import machine  # noqa: E402
from bench_quality import read_rows  # noqa: E402
from corpusforge import checks  # noqa: E402
from corpusforge.chain import Chain  # noqa: E402
from corpusforge.engine.llamacpp import LlamaEngine  # noqa: E402
from corpusforge.models import pull_model, sha256_file  # noqa: E402


def recorded_build(model: str, n: int, seed: int, threads: int, parallel: int) -> tuple[dict, list, list]:
    """bench_kept.run_engine with Chain._retry_or_reject and LlamaEngine.step wrapped to record."""
    fails, steps = [], []
    retry, step = Chain._retry_or_reject, LlamaEngine.step

    def spy_retry(self, story, reason, fatal=False):
        words = ((story.plan.noun, "noun"), (story.plan.verb, "verb"), (story.plan.adjective, "adjective"))
        summary = story.outputs.get("summary", "")
        missing = [w for w, pos in words if not checks.mentions(w, pos, story.outputs.get(self.recipe.stages[-1].name, ""))]
        fails.append({"id": story.plan.id, "stage": self.recipe.stages[story.stage].name, "attempt": story.attempt,
                      "reason": reason.split(":")[0], "tokens": story.completion_tokens - story.tokens_at_try,
                      "summary_lacks_missing": any(not checks.mentions(w, pos, summary) for w, pos in words if w in missing)})
        return retry(self, story, reason, fatal)

    def spy_step(self):
        t0, p = time.perf_counter(), dict(self.profile)
        out = step(self)
        steps.append((time.perf_counter() - t0, self.profile["decode_s"] - p["decode_s"], self.profile["gen_tokens"] - p["gen_tokens"],
                      self.profile["prompt_tokens"] - p["prompt_tokens"], sum(1 for s in self.slots if s.request is not None)))
        return out

    Chain._retry_or_reject, LlamaEngine.step = spy_retry, spy_step
    try:
        arm = bench_kept.run_engine(model, n, seed, threads, parallel)
    finally:
        Chain._retry_or_reject, LlamaEngine.step = retry, step
    return arm, fails, steps


def step_figures(steps: list, parallel: int) -> dict:
    def total(rows):
        return {"steps": len(rows), "wall_s": round(sum(r[0] for r in rows), 1), "decode_s": round(sum(r[1] for r in rows), 1),
                "generated_tokens": sum(r[2] for r in rows), "prompt_tokens": sum(r[3] for r in rows)}
    full = [r for r in steps if r[4] >= parallel - 2]
    return {
        "all": total(steps),
        "generation_only": total([r for r in steps if r[3] == 0]),
        "with_prompt_tokens": total([r for r in steps if r[3] > 0]),
        "tail_under_half_busy": total([r for r in steps if r[4] < parallel / 2]),
        "full_generation_only_decode_s_per_step": round(statistics.mean(r[1] for r in full if r[3] == 0), 3) if full else None,
        "full_with_prompt_decode_s_per_step": round(statistics.mean(r[1] for r in full if r[3] > 0), 3)
        if any(r[3] > 0 for r in full) else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    plan_args(ap)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "waste.json")
    args = ap.parse_args()
    model = pull_model(bench_kept.MODEL)
    arm, fails, steps = recorded_build(str(model), args.n, args.seed, args.threads, args.parallel)
    data, _ = read_rows(bench_kept.KEPT / "engine")
    words = [r["word_count"] for r in data]
    by = Counter((f["stage"], f["reason"]) for f in fails)
    tokens = Counter()
    for f in fails:
        tokens[(f["stage"], f["reason"])] += f["tokens"]
    word_fails = [f for f in fails if f["reason"] == "words"]
    arm.pop("kept_rows")
    res = {
        "machine": machine(), "model": bench_kept.MODEL, "model_sha256": sha256_file(model), "plans": args.n, "seed": args.seed,
        "build": arm,
        "wasted_share": round(sum(arm["wasted_tokens"].values()) / arm["generated_tokens"], 3) if arm["generated_tokens"] else None,
        "failed_attempts": [{"stage": s, "reason": r, "attempts": k, "tokens": tokens[(s, r)]} for (s, r), k in by.most_common()],
        "words_failures_whose_summary_lacks_the_word": f"{sum(f['summary_lacks_missing'] for f in word_fails)} of {len(word_fails)}",
        "kept_story_words": {"median": statistics.median(words), "mean": round(statistics.mean(words), 1)} if words else None,
        "engine_steps": step_figures(steps, args.parallel),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps({k: res[k] for k in ("wasted_share", "failed_attempts", "words_failures_whose_summary_lacks_the_word",
                                          "kept_story_words")}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
