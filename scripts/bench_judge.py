"""The judge measured on the gold set (eval/gold): can SmolLM2-135M-Instruct tell which stories have a feature?

For every judged feature and every gold story, the recipe's own judge question is put to the
model and the logits of its first answer token are read (no sampling, so the figures are
exact). Three verifiers per feature, all scored on the gold set's test part only:

- grammar:   what the build's judge answers under its yes/no grammar, greedily: "yes" when the
             logit of "yes" beats that of "no" (lowercase, as the grammar allows);
- margin:    log P(yes or Yes) - log P(no or No), with the threshold that maximises F1 on the
             dev part, applied unchanged to the test part;
- two-shot:  the same margin and dev threshold, with one positive and one negative dev story
             (each with its answer) as earlier turns of the conversation;
- shipped:   for a feature with worked examples in the recipe's judge/shots.toml (written for
             the recipe, not gold stories): the prompt the build really uses, grammar and margin.

The build's verdict for a feature (`judged_features`) is the margin against the dev threshold
where that beat always-yes on the dev part by VERDICT_GAIN in F1, else the grammar answer;
`--package` records which, with its test figures, in corpusforge/judge_gold.json.

Baselines beside them: always "yes" (F1 at the test share) and the rule check for Dialogue
(quoted speech, corpusforge.checks). F1 gets a 95% bootstrap interval (2,000 resamples of the
test stories, seed 0).

    python scripts/bench_judge.py            # -> bench/judge.json, and a table
    python scripts/bench_judge.py --only MoralValue --package   # re-measure one feature, merge
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from corpusforge import checks  # noqa: E402
from corpusforge.chain import _common_text as common_text  # noqa: E402  (the build's judge prefix, the same way)
from corpusforge.gold import load_labelled  # noqa: E402
from corpusforge.judge import load_judge  # noqa: E402
from corpusforge.models import resolve_model, sha256_file  # noqa: E402
from corpusforge.recipes import load_recipe  # noqa: E402
from corpusforge.vocab import load_vocab  # noqa: E402


def prf(y: np.ndarray, pred: np.ndarray) -> dict:
    tp, fp, fn = int((y & pred).sum()), int((~y & pred).sum()), int((y & ~pred).sum())
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0,
            "accuracy": float((y == pred).mean())}


def f1_interval(y: np.ndarray, pred: np.ndarray, rounds: int = 2000, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y), size=(rounds, len(y)))
    f1s = [prf(y[i], pred[i])["f1"] for i in idx]
    return [float(np.percentile(f1s, 2.5)), float(np.percentile(f1s, 97.5))]


def best_threshold(y: np.ndarray, score: np.ndarray) -> float:
    """The threshold on `score` that maximises F1 on (y, score): midpoints between sorted scores."""
    s = np.sort(np.unique(score))
    cuts = np.concatenate([[s[0] - 1], (s[:-1] + s[1:]) / 2, [s[-1] + 1]])
    return float(max(cuts, key=lambda t: (prf(y, score > t)["f1"], -abs(t))))


# The dev-part F1 the score must add over always-yes before it replaces the written answer:
# smaller gains (Twist +0.007, Foreshadowing +0.04 two-shot) are within one or two stories of 64.
VERDICT_GAIN = 0.05


def scored(y: np.ndarray, pred: np.ndarray, **extra) -> dict:
    return {**prf(y, pred), "f1_95": f1_interval(y, pred), **extra}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gold", type=Path, default=ROOT / "eval" / "gold")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "judge.json")
    ap.add_argument("--only", nargs="+", metavar="FEATURE",
                    help="measure only these features and merge them into --out (the others stay as measured)")
    ap.add_argument("--package", action="store_true",
                    help="also write corpusforge/judge_gold.json: the figures the dataset card quotes for this judge model")
    args = ap.parse_args()

    from corpusforge.engine.llamacpp import LlamaEngine

    gold = load_labelled(args.gold)
    vocab = load_vocab()
    recipe = load_recipe("tinystories-instruct", axis_names=tuple(a.name for a in vocab.axes))
    judge = load_judge(recipe, vocab.features)
    path = resolve_model(args.model)
    dev, test = gold.part("dev"), gold.part("test")
    t0 = time.monotonic()
    with LlamaEngine(path, parallel=1, n_threads=args.threads, prefix_slots=1) as eng:
        eng.start(2048)
        ids = {w: eng.tokenize(w, add_special=False)[0] for w in ("yes", "Yes", "no", "No")}

        def answer_logits(label: str, rows: list[dict], shots: list[tuple[dict, str]] | None) -> np.ndarray:
            def prompt(story: str) -> str:
                if shots is None:  # the shipped prompt, worked examples and all
                    return eng.format_prompt(judge.conversation(label, story))
                msgs = []
                for ex, said in shots:
                    msgs += [{"role": "user", "content": judge.message(label, ex["story"])},
                             {"role": "assistant", "content": said}]
                return eng.format_prompt(msgs + [{"role": "user", "content": judge.message(label, story)}])

            # The text every question of this label shares (chat header, the shots, the question's
            # opening) is evaluated once and its KV copied, as the build's judge does.
            prefix = common_text(prompt("One day a cat sat."), prompt("Zoe ran home fast."))
            out = []
            for r in rows:
                row = eng.prompt_logits(prompt(r["story"]), prefix=prefix)
                out.append([row[ids[w]] for w in ("yes", "Yes", "no", "No")])
            return np.array(out, dtype=np.float64)

        previous = json.loads(args.out.read_text()) if args.only and args.out.is_file() else {}
        results: dict = dict(previous.get("features", {}))
        shipped = dict(judge.shots)
        for label in judge.labels:
            if args.only and label not in args.only:
                continue
            y_dev = np.array([gold.has(r, label) for r in dev], dtype=bool)
            y_test = np.array([gold.has(r, label) for r in test], dtype=bool)
            pos = next(r for r in dev if gold.has(r, label))
            neg = next(r for r in dev if not gold.has(r, label))
            # With --only, variants already in --out are kept (their prompts do not depend on
            # shots.toml and the figures are exact), so re-measuring new examples costs one variant.
            entry = {**results.get(label, {}), "test": len(test), "test_positive": int(y_test.sum()), "dev": len(dev),
                     "dev_positive": int(y_dev.sum()), "always_yes": scored(y_test, np.ones_like(y_test)),
                     "always_yes_dev_f1": prf(y_dev, np.ones_like(y_dev))["f1"]}
            entry.pop("shipped", None)
            variants = [("zero_shot", []), ("two_shot", [(pos, "yes"), (neg, "no")])] + ([("shipped", None)] if label in shipped else [])
            for name, shots in variants:
                if name in entry:
                    continue
                dev_l = answer_logits(label, dev, shots)
                test_l = answer_logits(label, test, shots)
                margin = lambda a: np.logaddexp(a[:, 0], a[:, 1]) - np.logaddexp(a[:, 2], a[:, 3])  # noqa: E731
                t = best_threshold(y_dev, margin(dev_l))
                entry[name] = {
                    "grammar": scored(y_test, test_l[:, 0] > test_l[:, 2], says_yes=float((test_l[:, 0] > test_l[:, 2]).mean()),
                                      dev_f1=prf(y_dev, dev_l[:, 0] > dev_l[:, 2])["f1"]),
                    "margin": scored(y_test, margin(test_l) > t, threshold=t,
                                     dev_f1=prf(y_dev, margin(dev_l) > t)["f1"]),
                }
                print(f"{label:>14} {name:>9}: grammar F1 {entry[name]['grammar']['f1']:.2f} "
                      f"(says yes {entry[name]['grammar']['says_yes']:.0%}), margin F1 {entry[name]['margin']['f1']:.2f} "
                      f"[{entry[name]['margin']['f1_95'][0]:.2f}, {entry[name]['margin']['f1_95'][1]:.2f}], "
                      f"always-yes F1 {entry['always_yes']['f1']:.2f}", flush=True)
            results[label] = entry
    y = np.array([gold.has(r, "Dialogue") for r in test], dtype=bool)
    rule = np.array([bool(checks.has_dialogue(r["story"])) for r in test], dtype=bool)
    out = {
        "gold": str(args.gold.relative_to(ROOT)) if args.gold.is_relative_to(ROOT) else str(args.gold),
        "gold_rows": len(gold.rows), "dev": len(dev), "test": len(test),
        "model": args.model, "model_sha256": sha256_file(path), "judge_templates_sha256": judge.fingerprint,
        "prompt_sha256": {label: judge.prompt_sha256(label) for label in judge.labels},
        "features": results,
        "dialogue_rule": {**scored(y, rule), "always_yes": scored(y, np.ones_like(y))},
        "macro_f1_test": {
            variant: {kind: float(np.mean([results[f][variant][kind]["f1"] for f in results])) for kind in ("grammar", "margin")}
            for variant in ("zero_shot", "two_shot")},
        "seconds": round(time.monotonic() - t0, 1) + (previous.get("seconds", 0) if args.only else 0),
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads},
    }
    args.out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    if args.package:
        package(out)
    print(f"Dialogue rule: F1 {out['dialogue_rule']['f1']:.2f}; macro F1 {out['macro_f1_test']}; wrote {args.out}")


def verdict_entry(e: dict, prompt_sha256: str) -> dict:
    """What the build does with one feature under its shipped prompt, and how that scores on test:
    the written answer (`judge_answers`), the score, and the verdict (`judged_features`)."""
    v = e.get("shipped") or e["zero_shot"]
    p = e["dev_positive"] / e["dev"]
    use_score = v["margin"]["dev_f1"] >= e.get("always_yes_dev_f1", 2 * p / (1 + p)) + VERDICT_GAIN
    verdict = v["margin"] if use_score else v["grammar"]
    return {"precision": v["grammar"]["precision"], "recall": v["grammar"]["recall"], "f1": v["grammar"]["f1"],
            "always_yes_f1": e["always_yes"]["f1"], "test": e["test"],
            "score_threshold": v["margin"]["threshold"], "score_f1": v["margin"]["f1"],
            "verdict_threshold": v["margin"]["threshold"] if use_score else None,
            "verdict": {k: verdict[k] for k in ("precision", "recall", "f1", "f1_95")},
            "prompt_sha256": prompt_sha256, "source": "bench/judge.json"}


def package(out: dict) -> None:
    """The card's and the build's figures, by judge model: see verdict_entry."""
    path = ROOT / "corpusforge" / "judge_gold.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[out["model_sha256"]] = {label: verdict_entry(e, out["prompt_sha256"][label]) for label, e in out["features"].items()}
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
