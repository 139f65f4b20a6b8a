"""The dataset card: README.md with the YAML `configs`/`dataset_info` header and build facts.

The YAML is what `datasets` reads (it wins over parquet metadata), so it always lists only
splits that have files, and the features come from the same schema the shards were written with.
"""
from __future__ import annotations

import collections
import os
from pathlib import Path

import yaml

from .schema import SPLIT_DIRS, features
from .vocab import FEATURE_NAMES


def corpus_stats(out: Path) -> dict:
    """Counts over the finished shards: rows per split, labels, measured labels, reject reasons."""
    import pyarrow.parquet as pq

    stats = {"splits": {}, "bytes": {}, "files_bytes": 0, "labels": collections.Counter(),
             "reasons": collections.Counter(), "measured": {}}
    words = dialogue = once = 0
    for split, folder in SPLIT_DIRS.items():
        n = nbytes = 0
        for path in sorted((Path(out) / folder).glob(f"{split}-*.parquet")):
            meta = pq.ParquetFile(path).metadata
            nbytes += sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
            stats["files_bytes"] += path.stat().st_size
            t = pq.read_table(path, columns=["features", "has_dialogue", "once_upon_a_time", "word_count", "reject_reason"])
            n += t.num_rows
            if split == "train":
                for ids in t.column("features").to_pylist():
                    stats["labels"].update(FEATURE_NAMES[i] for i in ids)
                dialogue += sum(t.column("has_dialogue").to_pylist())
                once += sum(t.column("once_upon_a_time").to_pylist())
                words += sum(t.column("word_count").to_pylist())
            else:
                stats["reasons"].update(r.split(":")[0] for r in t.column("reject_reason").to_pylist())
        stats["splits"][split] = n
        stats["bytes"][split] = nbytes
    kept = stats["splits"].get("train", 0)
    if kept:
        stats["measured"] = {
            "has_dialogue": dialogue / kept,
            "once_upon_a_time": once / kept,
            "mean_words": words / kept,
        }
    return stats


def render(out: Path, manifest: dict) -> str:
    """The README.md text for the corpus in `out`."""
    stats = corpus_stats(out)
    splits = [s for s in SPLIT_DIRS if any((Path(out) / SPLIT_DIRS[s]).glob(f"{s}-*.parquet"))]
    header = {
        "language": ["en"],
        "task_categories": ["text-generation"],
        "tags": ["synthetic", "tinystories", "corpusforge"],
        "size_categories": [_size_category(stats["splits"].get("train", 0))],
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
            "features": features()._to_yaml_list(),
            "splits": [{"name": s, "num_bytes": stats["bytes"][s], "num_examples": stats["splits"][s]} for s in splits],
            "download_size": stats["files_bytes"],
            "dataset_size": sum(stats["bytes"][s] for s in splits),
        },
    }
    fp = manifest.get("fingerprint", {})
    lines = [
        "---",
        yaml.safe_dump(header, sort_keys=False).strip(),
        "---",
        "",
        f"# {Path(out).resolve().name}",
        "",
        "TinyStories-style synthetic stories built with [corpusforge](https://pypi.org/project/corpusforge/).",
        "",
        "## How it was built",
        "",
        f"- Recipe `{fp.get('recipe')}` (template sha256 `{str(fp.get('recipe_sha256'))[:12]}`): "
        + " -> ".join(manifest.get("stages", [])),
        f"- Model `{fp.get('model')}` (sha256 `{str(fp.get('model_sha256'))[:12]}`) on llama.cpp, CPU",
        f"- Sampling: {fp.get('sampling')}; max tokens per stage: {fp.get('max_tokens')}",
        f"- Seed {fp.get('seed')}; {manifest.get('n')} planned stories; up to {fp.get('max_attempts')} attempts each",
        f"- Each story asks for one noun, verb and adjective from a {manifest.get('vocab_counts')} vocabulary "
        "and a random subset of the features Dialogue, BadEnding, MoralValue, Twist, Foreshadowing, Conflict.",
        f"- Checks: words present (lemma-aware), key sentence present, dialogue when asked, length "
        f"{fp.get('checks', {}).get('min_words')}-{fp.get('checks', {}).get('max_words')} words, not cut off"
        + (f"; skipped: {', '.join(fp['checks']['skip'])}" if fp.get("checks", {}).get("skip") else ""),
        "- Stories that failed every attempt are in the `rejects` split with `reject_reason`; nothing is dropped.",
        "",
        "## Contents",
        "",
        "| split | rows |",
        "|---|---|",
        *[f"| {s} | {stats['splits'].get(s, 0)} |" for s in SPLIT_DIRS],
        "",
        "Requested features in `train`:",
        "",
        "| label | stories |",
        "|---|---|",
        *[f"| {name} | {stats['labels'].get(name, 0)} |" for name in FEATURE_NAMES],
        "",
    ]
    if stats["measured"]:
        m = stats["measured"]
        lines += [
            f"Measured on `train`: {m['has_dialogue']:.1%} have quoted speech, "
            f"{m['once_upon_a_time']:.1%} open with \"Once upon a time\", {m['mean_words']:.0f} words on average.",
            "",
        ]
    if stats["reasons"]:
        lines += ["Reject reasons:", "", "| reason | stories |", "|---|---|"]
        lines += [f"| {r} | {c} |" for r, c in stats["reasons"].most_common()]
        lines.append("")
    lines += [
        "Every row records how it was made: `model`, `model_sha256`, `recipe`, `template_sha256`, `seed`, `attempt`,",
        "and the sampling settings in `generation`.",
        "",
    ]
    return "\n".join(lines)


def write_card(out: Path, manifest: dict) -> Path:
    path = Path(out) / "README.md"
    tmp = path.with_name(".README.md.tmp")
    tmp.write_text(render(out, manifest), encoding="utf-8")
    os.replace(tmp, path)
    return path


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M"
