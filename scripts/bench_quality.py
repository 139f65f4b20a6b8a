"""The corpus a real model gives: kept share, attempts, tokens, audit, diversity, fluency, levers.

Every arm is a real `corpusforge build` on SmolLM2-135M-Instruct (the registry's real model),
same seed, same plans, at most 3 attempts, dedup off (so duplicates are counted, not retried).
Main arms (--n plans each): the default recipe steered, the same unsteered (--no-steer all),
the flat recipe steered. Ablation arms (--ablation-n plans each): the default recipe with every
lever on, each lever off in turn, the prompts of head 04cebf9 (the baseline), and nothing at all.
Kept stories are audited by scripts/audit.py (rules written apart from corpusforge.checks) and
scored for fluency by a second real model that wrote none of them (Gemma 3 270M, a base model):
the median perplexity of the first --ppl-n kept stories of each main arm.

    python scripts/bench_quality.py                        # default 300, others 100, ablation 32 -> bench/quality.json
    python scripts/bench_quality.py --n 48 --ablation-n 0 --out bench/scratch/q.json   # a quick look
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from audit import audit_all  # noqa: E402
from corpusforge.build import build  # noqa: E402
from corpusforge.config import BuildConfig  # noqa: E402
from corpusforge.dedup import DedupIndex  # noqa: E402
from corpusforge.models import pull_model, sha256_file  # noqa: E402
from corpusforge.recipes import builtin_dir  # noqa: E402

SCRATCH = ROOT / "bench" / "scratch" / "quality"
BASELINE_COMMIT = "04cebf9"  # the head the issue measured 0 of 64 on: its prompts are the baseline
DEFAULT = "tinystories-instruct"
FRESH = False  # --fresh: start every arm over
SHARD = 300  # one shard per arm (fixed, so an arm can resume with another --n)


def baseline_recipe() -> Path:
    """The default recipe with head 04cebf9's prompts (no system line, no example turns)."""
    src, dst = builtin_dir() / DEFAULT, SCRATCH / "recipe-04cebf9"
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    for name in ("summary.j2", "key_sentence.j2", "story.j2"):
        old = subprocess.run(["git", "-C", str(ROOT), "show", f"{BASELINE_COMMIT}:templates/{DEFAULT}/{name}"],
                             check=True, capture_output=True, text=True).stdout
        (dst / name).write_text(old, encoding="utf-8")
    toml = (dst / "recipe.toml").read_text(encoding="utf-8")
    toml = re.sub(r"(?m)^(system|examples) = .*\n", "", toml)
    (dst / "recipe.toml").write_text(toml, encoding="utf-8")
    (dst / "examples.toml").unlink()
    return dst


def read_rows(out: Path) -> tuple[list[dict], list[dict]]:
    """(kept rows of train/validation/test, rejected rows), each sorted by id."""
    kept = [r for f in sorted((out / "data").glob("*.parquet")) for r in pq.read_table(f).to_pylist()]
    rejected = [r for f in sorted((out / "rejects").glob("*.parquet")) for r in pq.read_table(f).to_pylist()]
    return sorted(kept, key=lambda r: r["id"]), sorted(rejected, key=lambda r: r["id"])


def distinct(stories: list[str], n: int) -> float:
    grams = [tuple(ws[i:i + n]) for s in stories for ws in [re.findall(r"[a-z']+", s.lower())] for i in range(len(ws) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def duplicate_rates(stories: list[str]) -> tuple[float, float]:
    """(exact, near) duplicates among kept stories, as a share: each story against those before it."""
    index, exact, near = DedupIndex(), 0, 0
    for i, s in enumerate(stories):
        m = index.check_and_add(i, s)
        exact += m is not None and m.kind == "exact"
        near += m is not None and m.kind == "near"
    n = max(1, len(stories))
    return exact / n, near / n


def triple(words) -> list[str]:
    """The row's words as [noun, verb, adjective] (parquet gives the struct as a dict)."""
    return [words["noun"], words["verb"], words["adjective"]] if isinstance(words, dict) else list(words)


def arm_dir(label: str) -> str:
    return "ablation-" + re.sub(r"\W+", "-", label)


def chain_tokens(engine, row: dict) -> int:
    """Tokens of a kept story's own chain outputs (summary, key sentence, story) in the writer's vocab."""
    return sum(len(engine.tokenize(row[k], add_special=False)) for k in ("summary", "key_sentence", "story") if row.get(k))


def measure(out: Path, n: int, tokenizer, seconds: float | None, max_id: int | None = None) -> dict:
    """Every figure of one arm from its rows (kept and rejected); `max_id`: only plans below it."""
    kept, rejected = read_rows(out)
    if max_id is not None:
        kept, rejected = [r for r in kept if r["id"] < max_id], [r for r in rejected if r["id"] < max_id]
    retried = Counter(code for r in kept + rejected for code in json.loads(r["generation"]).get("retried", []))
    stories = [r["story"] for r in kept]
    attempts = sum(r["attempt"] for r in kept + rejected)
    generated = sum(r["completion_tokens"] for r in kept + rejected)
    own = [chain_tokens(tokenizer, r) for r in kept]
    exact, near = duplicate_rates(stories)
    audit = audit_all([{"story": r["story"], "words": triple(r["words"])} for r in kept]) if kept else {}
    return {
        "plans": n,
        "kept": len(kept),
        "kept_share": len(kept) / n,
        "kept_share_first_attempt": sum(r["attempt"] == 1 for r in kept) / n,
        "attempts_per_kept": attempts / len(kept) if kept else None,
        "generated_tokens_per_kept": generated / len(kept) if kept else None,
        "kept_chain_tokens": statistics.mean(own) if own else None,
        "generated_over_kept_chain": (generated / len(kept)) / statistics.mean(own) if own else None,
        "reject_reasons": dict(Counter(r["reject_reason"].split(":")[0] for r in rejected).most_common()),
        "retry_reasons": dict(retried.most_common()),
        "once_upon_a_time_share": sum("once upon a time" in s.lower() for s in stories) / len(stories) if stories else None,
        "distinct_1": distinct(stories, 1), "distinct_2": distinct(stories, 2), "distinct_3": distinct(stories, 3),
        "exact_duplicate_rate": exact, "near_duplicate_rate": near,
        "mean_words": statistics.mean(r["word_count"] for r in kept) if kept else None,
        "audit": audit,
        "seconds": round(seconds, 1) if seconds else None,
        "kept_per_hour": 3600 * len(kept) / seconds if seconds else None,
        "first_kept": [{"id": r["id"], "words": triple(r["words"]), "features": list(r["features"]), "story": r["story"]} for r in kept[:3]],
    }


def run_arm(name: str, model: Path, n: int, seed: int, threads: int, recipe: str, steer_off: tuple[str, ...], tokenizer) -> dict:
    out = SCRATCH / name
    if FRESH:
        shutil.rmtree(out, ignore_errors=True)
    # Otherwise an interrupted arm resumes where it stopped (the build refuses other settings).
    config = BuildConfig(n=n, model=(str(model),), out=out, seed=seed, recipe=recipe, n_threads=threads,
                         steer_off=steer_off, dedup=False, max_attempts=3, shard_size=SHARD,
                         replace=False)  # --n counts plans here: the keep rate is what is measured
    t0 = time.monotonic()
    summary = build(config)
    result = measure(out, n, tokenizer, summary.seconds)
    result.update(recipe=Path(recipe).name, steer_off=list(steer_off), wall_seconds=round(time.monotonic() - t0, 1))
    a = result["audit"]
    print(f"{name:>24}: kept {result['kept']}/{n} ({result['kept_share']:.0%}, first {result['kept_share_first_attempt']:.0%}), "
          f"attempts/kept {result['attempts_per_kept'] or 0:.2f}, gen tok/kept {result['generated_tokens_per_kept'] or 0:.0f} "
          f"vs own {result['kept_chain_tokens'] or 0:.0f}, audit {a.get('all', 0):.0%}, rejects {result['reject_reasons']}", flush=True)
    return result


def perplexities(reader: Path, stories: list[str], threads: int) -> list[float]:
    """Per-story perplexity under the reader model (teacher-forced, the story alone after BOS)."""
    from corpusforge.engine.llamacpp import LlamaEngine

    with LlamaEngine(reader, parallel=1, n_threads=threads, prefix_slots=0) as eng:
        eng.start(1024)
        out = []
        for s in stories:
            toks = eng.tokenize(s)[:1000]
            logits = eng.sequence_logits(toks)[:-1].astype(np.float64)
            logz = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
            nll = logz - logits[np.arange(len(toks) - 1), toks[1:]]
            out.append(float(math.exp(nll.mean())))
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300, help="plans per main arm")
    ap.add_argument("--ablation-n", type=int, default=32, help="plans per ablation arm (0: none)")
    ap.add_argument("--ppl-n", type=int, default=150, help="kept stories per main arm scored for perplexity")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--arms", default="instruct:300,instruct_unsteered:100,flat:100",
                    help="main arms to run, NAME:N (N plans; without :N, --n)")
    ap.add_argument("--ablation", default="", help="comma-separated ablation rows to run (default: all)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "quality.json")
    ap.add_argument("--merge", type=Path, nargs="+", help="merge these results files into --out and stop")
    ap.add_argument("--report", action="store_true", help="print the README tables of --out and stop")
    ap.add_argument("--fresh", action="store_true", help="start every arm over instead of resuming it")
    args = ap.parse_args()
    global FRESH
    FRESH = args.fresh
    if args.merge:
        return merge(args.merge, args.out)
    if args.report:
        return print(report(args.out))

    from corpusforge.engine.llamacpp import LlamaEngine

    writer, reader = pull_model("smollm2-135m"), pull_model("gemma3-270m")
    tokenizer = LlamaEngine(writer, parallel=1, prefix_slots=0)  # only its tokenizer is used
    main_arms = {
        "instruct": (DEFAULT, ()),
        "instruct_unsteered": (DEFAULT, ("all",)),
        "flat": ("tinystories-flat", ()),
        "flat_unsteered": ("tinystories-flat", ("all",)),
    }
    results: dict = {"arms": {}, "ablation": {}}
    for spec in filter(None, args.arms.split(",")):
        name, _, n = spec.partition(":")
        recipe, off = main_arms[name]
        results["arms"][name] = run_arm(name, writer, int(n or args.n), args.seed, args.threads, recipe, off, tokenizer)
    for name in results["arms"]:
        kept, _ = read_rows(SCRATCH / name)
        ppl = perplexities(reader, [r["story"] for r in kept[: args.ppl_n]], args.threads) if kept else []
        results["arms"][name]["perplexity_kept_median"] = statistics.median(ppl) if ppl else None
        results["arms"][name]["perplexity_kept_iqr"] = (list(np.percentile(ppl, [25, 75])) if ppl else None)
        results["arms"][name]["perplexity_n"] = len(ppl)
        print(f"{name:>24}: reader perplexity median {results['arms'][name]['perplexity_kept_median']}", flush=True)
    if args.ablation_n:
        base = str(baseline_recipe())
        # Each lever off in turn, against every lever on. "all levers" is a run of its own too:
        # the same plans as the main arm's first ones, but batched with fewer stories.
        levers = {"all levers": (DEFAULT, ()),
                  "no word bias": (DEFAULT, ("words",)), "no end push": (DEFAULT, ("end",)),
                  "no key-sentence insertion": (DEFAULT, ("key_sentence",)), "no early cut": (DEFAULT, ("cut",)),
                  "no DRY": (DEFAULT, ("dry",)), "head 04cebf9 prompts, levers on": (base, ()),
                  "nothing (head 04cebf9)": (base, ("all",))}
        wanted = args.ablation.split(",") if args.ablation else list(levers)
        for label, (recipe, off) in ((k, v) for k, v in levers.items() if k in wanted):
            r = run_arm(arm_dir(label), writer, args.ablation_n, args.seed, args.threads, recipe, off, tokenizer)
            results["ablation"][label] = ablation_row(r)
    results.update({
        "model": "smollm2-135m", "model_sha256": sha256_file(writer), "reader": "gemma3-270m", "reader_sha256": sha256_file(reader),
        "ablation_n": args.ablation_n, "seed": args.seed, "threads": args.threads, "max_attempts": 3,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": __import__("os").cpu_count()},
    })
    write(results, args.out)


ABLATION_KEYS = ("kept_share", "kept_share_first_attempt", "attempts_per_kept", "generated_tokens_per_kept",
                 "kept_chain_tokens", "reject_reasons", "retry_reasons", "once_upon_a_time_share", "mean_words",
                 "audit", "recipe", "steer_off")


def ablation_row(r: dict) -> dict:
    row = {k: r.get(k) for k in ABLATION_KEYS}
    row["audit_all"] = r["audit"].get("all") if r.get("audit") else None
    return row


def write(results: dict, out: Path) -> None:
    """The issue's keys from the arms (default recipe steered, unsteered beside it), then the file."""
    head = results["arms"].get("instruct", {})
    n_ab = results.get("ablation_n")
    if head and n_ab and "all levers" not in results["ablation"] and (SCRATCH / "instruct" / "data").is_dir():
        # Every lever on: the default arm's own first plans (same plans and seeds as every
        # ablation row; that arm batched them with more stories around them).
        from corpusforge.engine.llamacpp import LlamaEngine

        tok = LlamaEngine(pull_model("smollm2-135m"), parallel=1, prefix_slots=0)
        row = measure(SCRATCH / "instruct", n_ab, tok, None, max_id=n_ab)
        row.update(recipe=DEFAULT, steer_off=[], source=f"the instruct arm's plans 0-{n_ab - 1}")
        results["ablation"] = {"all levers": {**ablation_row(row), "source": row["source"]}, **results["ablation"]}
    unsteered = results["arms"].get("instruct_unsteered", {})
    results.update({
        "arms_n": {k: v["plans"] for k, v in results["arms"].items()},
        # The keys, for the default recipe steered (unsteered beside it where asked).
        **{k: head.get(k) for k in ("kept_share", "kept_share_first_attempt", "attempts_per_kept",
                                     "generated_tokens_per_kept", "kept_chain_tokens", "once_upon_a_time_share",
                                     "exact_duplicate_rate", "near_duplicate_rate")},
        "audit_all": head.get("audit", {}).get("all") if head.get("audit") else None,
        "perplexity_kept_median": {"steered": head.get("perplexity_kept_median"),
                                   "unsteered": unsteered.get("perplexity_kept_median")},
        "perplexity_written_median": {"steered": head.get("perplexity_written_median"),
                                      "unsteered": unsteered.get("perplexity_written_median")},
    })
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out}")


def pct(x) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def num(x, fmt="{:.2f}") -> str:
    return "-" if x is None else fmt.format(x)


def report(path: Path) -> str:
    """The README's tables from a results file (markdown)."""
    r = json.loads(path.read_text(encoding="utf-8"))
    lines = ["| arm | plans | kept | kept 1st attempt | attempts/kept | generated tok/kept | own chain tok | audit: all rules | once upon a time | distinct-1/2/3 | exact / near dup | reader perplexity, kept / all written (median) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, a in r["arms"].items():
        lines.append(f"| {name} | {a['plans']} | {pct(a['kept_share'])} | {pct(a['kept_share_first_attempt'])} | {num(a['attempts_per_kept'])} | "
                     f"{num(a['generated_tokens_per_kept'], '{:.0f}')} | {num(a['kept_chain_tokens'], '{:.0f}')} | {pct((a.get('audit') or {}).get('all'))} | "
                     f"{pct(a['once_upon_a_time_share'])} | {a['distinct_1']:.2f} / {a['distinct_2']:.2f} / {a['distinct_3']:.2f} | "
                     f"{pct(a['exact_duplicate_rate'])} / {pct(a['near_duplicate_rate'])} | {num(a.get('perplexity_kept_median'), '{:.1f}')} / {num(a.get('perplexity_written_median'), '{:.1f}')} |")
    lines += ["", f"Ablation ({r.get('ablation_n')} plans each, same seed and plans):", "",
              "| levers | kept | kept 1st attempt | attempts/kept | generated tok/kept | audit: all rules | reject reasons |", "|---|---|---|---|---|---|---|"]
    for label, a in r["ablation"].items():
        reasons = ", ".join(f"{k} {v}" for k, v in (a.get("reject_reasons") or {}).items()) or "-"
        lines.append(f"| {label} | {pct(a['kept_share'])} | {pct(a['kept_share_first_attempt'])} | {num(a['attempts_per_kept'])} | "
                     f"{num(a['generated_tokens_per_kept'], '{:.0f}')} | {pct(a.get('audit_all'))} | {reasons} |")
    audit = (r["arms"].get("instruct", {}).get("audit") or {}).get("pass_share", {})
    if audit:
        lines += ["", "Audit of the default arm's kept stories, per rule: " + ", ".join(f"{k} {pct(v)}" for k, v in audit.items())]
    return "\n".join(lines)


def merge(files: list[Path], out: Path) -> None:
    """One results file from runs of disjoint arms (e.g. two one-thread processes side by side)."""
    merged: dict = {"arms": {}, "ablation": {}}
    for f in files:
        part = json.loads(f.read_text(encoding="utf-8"))
        merged["arms"].update(part.pop("arms"))
        merged["ablation"].update(part.pop("ablation"))
        merged["ablation_n"] = max(merged.get("ablation_n", 0), part.pop("ablation_n", 0))
        merged.update({k: v for k, v in part.items() if k in ("model", "model_sha256", "reader", "reader_sha256", "seed", "threads", "max_attempts", "machine")})
    merged["merged_from"] = [str(f.relative_to(ROOT)) if f.is_relative_to(ROOT) else str(f) for f in files]
    # Every figure again from the rows on disk with this script's measure() (an arm that was
    # resumed, or measured by an older run of the script, counts the same way as the rest).
    from corpusforge.engine.llamacpp import LlamaEngine

    tok = LlamaEngine(pull_model("smollm2-135m"), parallel=1, prefix_slots=0)
    for name, arm in merged["arms"].items():
        keep = {k: arm[k] for k in arm if k.startswith("perplexity") or k in ("recipe", "steer_off", "wall_seconds")}
        plans = arm["plans"]
        arm.clear()
        arm.update(measure(SCRATCH / name, plans, tok, None), **keep)
    for label in list(merged["ablation"]):
        old = merged["ablation"][label]
        row = measure(SCRATCH / arm_dir(label), merged["ablation_n"], tok, None)
        merged["ablation"][label] = {**ablation_row({**row, "recipe": old.get("recipe"), "steer_off": old.get("steer_off")})}
    add_written_perplexity(merged)
    write(merged, out)


def add_written_perplexity(results: dict, n: int = 100, threads: int = 2) -> None:
    """Beside each main arm's kept-story perplexity, the perplexity of every story it wrote (its
    final attempts, kept or not): an arm that keeps nothing (unsteered) still gets a fluency figure."""
    reader = pull_model("gemma3-270m")
    for name, arm in results["arms"].items():
        kept, rejected = read_rows(SCRATCH / name)
        stories = [r["story"] for r in sorted(kept + rejected, key=lambda r: r["id"]) if len(r["story"].split()) >= 20][:n]
        ppl = perplexities(reader, stories, threads) if stories else []
        arm["perplexity_written_median"] = statistics.median(ppl) if ppl else None
        arm["perplexity_written_n"] = len(ppl)
        print(f"{name:>24}: reader perplexity of every written story, median {arm['perplexity_written_median']}", flush=True)


if __name__ == "__main__":
    main()
