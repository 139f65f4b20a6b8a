"""Statistics of one sealed shard, and their merge: what the card and the build summary show.

Computed once when a shard is sealed (its rows are in memory then) and saved beside the
journal, so a refresh after every seal costs one small file per shard, not a parquet re-read.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from .schema import KEPT_SPLITS



def _code(reason: str) -> str:
    return reason.split(":")[0]


def shard_stats(rows_by_split: dict[str, list[dict]], paths: dict[str, Path], axis_names: tuple[str, ...] = ()) -> dict:
    """Counts over one shard's rows (labels as names): planned = every row, kept = train/validation/test."""
    import pyarrow.parquet as pq

    s: dict = {"splits": {}, "bytes": {}, "files_bytes": 0, "planned": {}, "kept": {}, "reasons": Counter(),
               "models": {}, "measured": Counter()}
    planned, kept = Counter(), Counter()
    for split, rows in rows_by_split.items():
        s["splits"][split] = len(rows)
        path = paths[split]
        if rows and path.exists():
            meta = pq.ParquetFile(path).metadata
            s["bytes"][split] = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
            s["files_bytes"] += path.stat().st_size
        for r in rows:
            is_kept = split in KEPT_SPLITS
            m = s["models"].setdefault(r.get("model", ""), {"kept": 0, "rejected": 0, "reasons": Counter(), "duplicates": 0})
            labels = [f"feature:{f}" for f in r.get("features", [])]
            labels += [f"{a}:{r[a]}" for a in axis_names]
            labels.append(f"model:{r.get('model', '')}")
            planned.update(labels)
            if is_kept:
                kept.update(labels)
                m["kept"] += 1
                s["measured"].update({"has_dialogue": int(bool(r.get("has_dialogue"))),
                                      "once_upon_a_time": int(bool(r.get("once_upon_a_time"))),
                                      "word_count": int(r.get("word_count", 0))})
                feats = sorted(r.get("features", []))
                kept.update(f"pair:{a}+{b}" for i, a in enumerate(feats) for b in feats[i + 1:])
            else:
                code = _code(r.get("reject_reason", ""))
                m["rejected"] += 1
                m["reasons"][code] += 1
                s["reasons"][code] += 1
                m["duplicates"] += code == "duplicate"
    s["planned"], s["kept"] = dict(planned), dict(kept)
    return s


def merge(stats: list[dict]) -> dict:
    """Sum shard statistics (counters add, nested per-model counts add)."""
    out: dict = {"splits": Counter(), "bytes": Counter(), "files_bytes": 0, "planned": Counter(), "kept": Counter(),
                 "reasons": Counter(), "models": {}, "measured": Counter()}
    for s in stats:
        for key in ("splits", "bytes", "planned", "kept", "reasons", "measured"):
            out[key].update(s.get(key, {}))
        out["files_bytes"] += s.get("files_bytes", 0)
        for name, m in s.get("models", {}).items():
            t = out["models"].setdefault(name, {"kept": 0, "rejected": 0, "reasons": Counter(), "duplicates": 0})
            t["kept"] += m["kept"]
            t["rejected"] += m["rejected"]
            t["duplicates"] += m["duplicates"]
            t["reasons"].update(m["reasons"])
    return out


def frequencies(merged: dict, prefix: str) -> list[tuple[str, float, float]]:
    """(label, planned share of all rows, kept share of kept rows) for labels `prefix:*`."""
    n_planned = sum(merged["splits"].values())
    n_kept = sum(merged["splits"].get(s, 0) for s in KEPT_SPLITS)
    names = sorted({k for k in merged["planned"] if k.startswith(prefix + ":")})
    return [(k.split(":", 1)[1], merged["planned"][k] / n_planned if n_planned else 0.0,
             merged["kept"].get(k, 0) / n_kept if n_kept else 0.0) for k in names]
