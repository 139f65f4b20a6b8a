"""The dataset card: README.md with the YAML `configs`/`dataset_info` header and build facts.

The YAML is what `datasets` reads (it wins over parquet metadata), so it always lists only
splits that have files, and the features come from the same schema the shards were written
with. Counts come from the per-shard statistics written at seal, so a refresh is cheap.
"""
from __future__ import annotations

import os
from pathlib import Path

import yaml

from .schema import KEPT_SPLITS, SPLIT_DIRS, RowSchema
from .shardstats import frequencies


def _splits_on_disk(out: Path) -> list[str]:
    return [s for s in SPLIT_DIRS if any((Path(out) / SPLIT_DIRS[s]).glob(f"{s}-*.parquet"))]


def render(out: Path, manifest: dict, stats: dict, *, statistics: str = "", partial: tuple[int, int] | None = None) -> str:
    """The README.md text for the corpus in `out`, from merged shard statistics."""
    schema = RowSchema.from_dict(manifest["schema"])
    splits = _splits_on_disk(out)
    kept = sum(stats["splits"].get(s, 0) for s in KEPT_SPLITS)
    header = {
        "language": ["en"],
        "license": "other",
        "task_categories": ["text-generation", "text-classification"],
        "tags": ["synthetic", "tinystories", "corpusforge"],
        "size_categories": [_size_category(kept)],
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": s, "path": f"{SPLIT_DIRS[s]}/{s}-*.parquet"} for s in splits],
            }
        ],
        # Split sizes are also what makes `datasets` see a changed folder: with a `configs`
        # header its cache key ignores the files themselves, so a resumed or rebuilt corpus
        # would otherwise load stale rows from the cache of any earlier folder of this name.
        "dataset_info": {
            "features": schema.features()._to_yaml_list(),
            "splits": [{"name": s, "num_bytes": stats["bytes"].get(s, 0), "num_examples": stats["splits"].get(s, 0)} for s in splits],
            "download_size": stats["files_bytes"],
            "dataset_size": sum(stats["bytes"].get(s, 0) for s in splits),
        },
    }
    fp = manifest.get("fingerprint", {})
    plan = fp.get("plan", {})
    models = fp.get("models", [])
    checks = fp.get("checks", {})
    lines = [
        "---",
        yaml.safe_dump(header, sort_keys=False).strip(),
        "---",
        "",
        f"# {Path(out).resolve().name}",
        "",
        "TinyStories-style synthetic stories built with [corpusforge](https://pypi.org/project/corpusforge/).",
        "",
    ]
    if partial is not None:
        done, n = partial
        lines += [f"> **Partial build**: {done:,} of {n:,} planned stories are done ({done / n:.1%}). "
                  "The build is still running or was stopped; later uploads will complete it.", ""]
    lines += [
        "## How it was built",
        "",
        f"- Recipe `{fp.get('recipe')}` (template sha256 `{str(fp.get('recipe_sha256'))[:12]}`): "
        + " -> ".join(manifest.get("stages", [])),
        "- Models on llama.cpp, CPU: " + ", ".join(f"`{m['name']}` (sha256 `{m['sha256'][:12]}`, weight {m['weight']:g})" for m in models),
        f"- Sampling: {fp.get('sampling')}; max tokens per stage: {fp.get('max_tokens')}",
        f"- Seed {fp.get('seed')}; " + (f"{manifest.get('n'):,} stories asked for and kept: a rejected plan is replaced by a "
                                          "new plan with the same labels (features, axis values, model) and fresh words"
                                          if fp.get("replace") else f"{manifest.get('n'):,} planned stories")
        + f"; up to {fp.get('max_attempts')} attempts each",
        f"- Each story asks for one noun, verb and adjective from a {manifest.get('vocab_counts')} vocabulary, "
        f"a subset of the features {', '.join(schema.feature_names)}"
        + (f", and one value of each axis: {', '.join(schema.axis_names)}" if schema.axes else "")
        + (" (balanced plans: quotas per feature, axis value and word)." if plan.get("balance") else "."),
        f"- Splits by a hash of the `{plan.get('split_key', 'words')}` of each story, so no group crosses splits: "
        f"validation {plan.get('validation_fraction', 0):g}, test {plan.get('test_fraction', 0):g}, the rest train.",
        f"- Checks: words present (lemma-aware), key sentence present, dialogue when asked, length "
        f"{checks.get('min_words')}-{checks.get('max_words')} words, not cut off"
        + (f"; skipped: {', '.join(checks['skip'])}" if checks.get("skip") else "")
        + (f"; no exact or near duplicate (MinHash Jaccard >= {fp['dedup']['threshold']}) across the whole corpus" if fp.get("dedup") else "")
        + (f"; LLM judge ({fp['judge']['policy']}) on {', '.join(fp['judge']['features'])}" if fp.get("judge") else "")
        + ".",
        "- Stories that failed every attempt are in the `rejects` split with `reject_reason`; nothing is dropped.",
        "",
        "## Contents",
        "",
        "| split | rows |",
        "|---|---|",
        *[f"| {s} | {stats['splits'].get(s, 0):,} |" for s in SPLIT_DIRS],
        "",
    ]
    if len(stats.get("models", {})) > 1 or models:
        lines += ["| model | kept | rejected | duplicates rejected |", "|---|---|---|---|"]
        lines += [f"| {name} | {m['kept']:,} | {m['rejected']:,} | {m['duplicates']:,} |" for name, m in sorted(stats["models"].items())]
        lines.append("")
    for kind, title in (("feature", "Features"), *((a, f"Axis `{a}`") for a in schema.axis_names)):
        rows = frequencies(stats, kind)
        if rows:
            lines += [f"{title}, planned (all rows) vs kept:", "", "| label | planned | kept |", "|---|---|---|"]
            lines += [f"| {label} | {p:.1%} | {k:.1%} |" for label, p, k in rows]
            lines.append("")
    lines += label_provenance(schema.feature_names, fp)
    measured = stats.get("measured", {})
    if kept:
        lines += [
            f"Measured on kept stories: {measured.get('has_dialogue', 0) / kept:.1%} have quoted speech, "
            f"{measured.get('once_upon_a_time', 0) / kept:.1%} open with \"Once upon a time\", "
            f"{measured.get('word_count', 0) / kept:.0f} words on average.",
            "",
        ]
    if stats["reasons"]:
        lines += ["Reject reasons:", "", "| reason | stories |", "|---|---|"]
        lines += [f"| {r} | {c:,} |" for r, c in stats["reasons"].most_common()]
        lines.append("")
    if statistics:
        lines += [statistics.strip(), ""]
    lines += [
        "Every row records how it was made: `model`, `model_sha256`, `recipe`, `template_sha256`, `seed`, `attempt`,",
        "and the sampling settings in `generation`.",
        "",
    ]
    return "\n".join(lines)


# The judge's figures on the gold set's test part (scripts/bench_judge.py --package writes it),
# by judge model sha256: what the card can say about a judged label.
JUDGE_GOLD = Path(__file__).with_name("judge_gold.json")


def gold_figures(model_sha256: str | None, path: Path | None = None) -> dict:
    """{feature: figures} measured on the gold set for this judge model; {} when none were."""
    import json

    try:
        return json.loads((path or JUDGE_GOLD).read_text(encoding="utf-8")).get(model_sha256 or "", {})
    except (OSError, ValueError):
        return {}


def label_provenance(features: tuple[str, ...] | list[str], fp: dict) -> list[str]:
    """A table: per feature, whether its label is only what was asked, rule-checked or judged,
    with the judge's measured precision and recall on the gold set when it was measured."""
    judge = fp.get("judge") or {}
    judged = set(judge.get("features") or [])
    judge_sha = (judge.get("model") or {}).get("sha256") or next((m["sha256"] for m in fp.get("models", [])), None)
    gold = gold_figures(judge_sha)
    # The thresholds the build really applied (the manifest records them): figures measured for
    # another prompt (an edited template) are quoted, but not as the verdict's.
    applied = (judge.get("verdict_thresholds") or {}).get(judge_sha or "", {})
    asked = set((judge.get("asked") or {}).get(judge_sha or "", judged))  # older manifests: all were asked
    skipped = set((fp.get("checks") or {}).get("skip") or [])
    lines = ["How each feature label was checked (`features` always holds what was asked for):", "",
             "| feature | label is | measured on the gold set (test part) |", "|---|---|---|"]
    for f in features:
        g = gold.get(f)
        figures = (f"the judge's answer (`judge_answers`): precision {g['precision']:.2f}, recall {g['recall']:.2f}, F1 {g['f1']:.2f}; "
                   f"`judge_scores` > {g['score_threshold']:.2f} (threshold from the dev part): F1 {g['score_f1']:.2f}; "
                   f"always yes: F1 {g['always_yes_f1']:.2f}; {g['test']} stories" if g else "not measured")
        v = (g or {}).get("verdict")
        if v and f in applied:
            figures = (f"verdict = `judge_scores` > {applied[f]:.2f}: precision {v['precision']:.2f}, "
                       f"recall {v['recall']:.2f}, F1 {v['f1']:.2f} [95%: {v['f1_95'][0]:.2f}, {v['f1_95'][1]:.2f}]; " + figures)
        if f == "Dialogue" and "dialogue" not in skipped:
            lines.append(f"| {f} | rule-checked: a kept story asked for dialogue has quoted speech | "
                         f"{figures if g else 'a quote-mark rule, exact by construction'} |")
        elif f in judged and f not in asked:
            lines.append(f"| {f} | requested, unverified: not asked, the judge's verdict does not beat always-yes on the gold set "
                         f"(`--judge-all` asks it anyway) | {figures} |")
        elif f in judged:
            policy = "verdict in `judged_features`" if judge.get("policy") == "record" else "stories judged to lack it rejected"
            beats = g and (v if f in applied else g)["f1"] > g["always_yes_f1"]
            lines.append(f"| {f} | judged ({policy}){'' if beats or not g else '; the judge does not beat always-yes: treat as requested, unverified'} | {figures} |")
        else:
            lines.append(f"| {f} | requested, unverified | {figures if g else '-'} |")
    return [*lines, ""]


def write_card(out: Path, manifest: dict, stats: dict | None = None, **kwargs) -> Path:
    """Write README.md atomically; `stats` defaults to the merged statistics of the sealed shards."""
    if stats is None:
        from .shards import Store
        from .shardstats import merge

        schema = RowSchema.from_dict(manifest["schema"])
        stats = merge(Store(Path(out), manifest["n"], manifest["fingerprint"]["shard_size"], schema, lock=False).all_stats())
    path = Path(out) / "README.md"
    tmp = path.with_name(".README.md.tmp")
    tmp.write_text(render(out, manifest, stats, **kwargs), encoding="utf-8")
    os.replace(tmp, path)
    return path


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M"
