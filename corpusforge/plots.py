"""PNG plots of `corpusforge stats` under OUT/plots/, and the card's "Statistics" section.

Plots are drawn from the stats dict alone (no second pass over the shards), with matplotlib's
Agg backend so they render on a headless machine; matplotlib is the optional `[stats]` extra.
"""
from __future__ import annotations

import os
from pathlib import Path

from .stats import require

PLOTS_DIR = "plots"


def _pyplot():
    mpl = require("matplotlib", "stats", "plotting")
    mpl.use("Agg", force=True)  # headless; also keeps an interactive backend from opening windows
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    os.replace(tmp, path)
    return path


def write_plots(out: Path, stats: dict) -> list[Path]:
    """Write every plot the stats have data for; returns their paths (empty corpora give fewer)."""
    plt = _pyplot()
    folder = Path(out) / PLOTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in (("labels", _labels), ("cooccurrence", _cooccurrence), ("lengths", _lengths),
                       ("openers", _openers), ("duplicates", _duplicates)):
        fig = draw(plt, stats)
        if fig is None:
            continue
        try:
            written.append(_save(fig, folder / f"{name}.png"))
        finally:
            plt.close(fig)
    return written


def _labels(plt, stats):
    """Planned vs kept share per feature and per axis value, one panel per group."""
    groups = [("features", stats["labels"]["features"])] + list(stats["labels"]["axes"].items())
    groups = [(g, rows) for g, rows in groups if rows]
    if not groups or not stats["rows"]:
        return None
    widest = max(len(rows) for _, rows in groups)
    # Axes can have 20+ values (settings, themes): widen the figure rather than overlap labels.
    fig, axs = plt.subplots(len(groups), 1, figsize=(max(8, 0.45 * widest), 2.8 * len(groups)), squeeze=False)
    for ax, (group, rows) in zip(axs[:, 0], groups):
        names = list(rows)
        x = range(len(names))
        planned = [rows[n]["planned_share"] or 0 for n in names]
        kept = [rows[n]["kept_share"] or 0 for n in names]
        ax.bar([i - 0.2 for i in x], planned, width=0.4, label=f"planned ({stats['rows']:,})")
        ax.bar([i + 0.2 for i in x], kept, width=0.4, label=f"kept ({stats['kept']:,})")
        ax.set_xticks(list(x), names, rotation=(40 if len(names) > 8 else 20) if len(names) > 5 else 0,
                      ha="right" if len(names) > 5 else "center", fontsize=8 if len(names) > 12 else 10)
        ax.set_ylabel("share of stories")
        ax.set_title(group)
    axs[0, 0].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside: bars fill every corner
    fig.tight_layout()
    return fig


def _cooccurrence(plt, stats):
    co = stats["cooccurrence"]
    if not stats["kept"] or not co["labels"]:
        return None
    n = len(co["labels"])
    fig, ax = plt.subplots(figsize=(1.2 * n + 2, 1.0 * n + 1.5))
    im = ax.imshow(co["matrix"], cmap="Blues")
    ax.set_xticks(range(n), co["labels"], rotation=35, ha="right")
    ax.set_yticks(range(n), co["labels"])
    top = max(max(r) for r in co["matrix"]) or 1
    for i, row in enumerate(co["matrix"]):
        for j, c in enumerate(row):
            ax.text(j, i, f"{c:,}", ha="center", va="center", fontsize=8, color="white" if c > top / 2 else "black")
    ax.set_title(f"Feature co-occurrence, kept stories ({stats['kept']:,})")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def _lengths(plt, stats):
    lengths = {k: d for k, d in stats["lengths"].items() if d["histogram"]["counts"]}
    if not lengths:
        return None
    fig, axs = plt.subplots(1, len(lengths), figsize=(4 * len(lengths), 3), squeeze=False)
    for ax, (key, d) in zip(axs[0], lengths.items()):
        h = d["histogram"]
        edges, counts = h["edges"], h["counts"]
        ax.bar(edges[:-1], counts, width=edges[1] - edges[0], align="edge", edgecolor="white")
        ax.set_xlabel(key)
        ax.set_ylabel("kept stories")
        s = d["summary"]
        ax.set_title(f"{key}: median {s['median']:g}, mean {s['mean']:.1f}")
    fig.tight_layout()
    return fig


def _openers(plt, stats):
    top = stats["openers"]["top"]
    if not top:
        return None
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(top) + 1.2))
    ax.barh([o["opener"] for o in reversed(top)], [o["share"] for o in reversed(top)])
    ax.set_xlabel("share of kept stories")
    once = stats["openers"]["once_upon_a_time"]["share"]
    ax.set_title(f"Most common openers (first 3 words); \"once upon a time\": {once:.1%}")
    fig.tight_layout()
    return fig


def _duplicates(plt, stats):
    by_model = stats["duplicates"]["by_model"]
    if not by_model or not stats["rows"]:
        return None
    models = list(by_model)
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(models) + 2), 3.2))
    series = (("exact", "exact_rate"), ("near", "near_rate"), ("duplicate rejects", "duplicate_reject_rate"))
    w = 0.8 / len(series)
    for k, (label, key) in enumerate(series):
        ax.bar([i + (k - 1) * w for i in range(len(models))], [by_model[m][key] or 0 for m in models], width=w, label=label)
    ax.set_xticks(range(len(models)), models, rotation=15 if len(models) > 3 else 0)
    ax.set_ylabel("share")
    ax.set_title("Duplicates per model (exact/near: of kept; rejects: of all rows)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def card_section(stats: dict, plots: list[Path]) -> str:
    """A markdown "## Statistics" section for the dataset card; plots are linked as plots/<name>.png."""
    def pct(x):
        return "-" if x is None else f"{x:.1%}"

    d, op, dup = stats["distinct"], stats["openers"], stats["duplicates"]["overall"]
    words = stats["lengths"]["words"]["summary"]
    cv = stats["child_vocabulary"]
    lines = ["## Statistics", ""]
    if stats.get("partial"):
        lines += [f"_{stats['partial']}._", ""]
    lines += [
        f"Computed by `corpusforge stats` over {stats['kept']:,} kept stories ({stats['rows']:,} rows with rejects); "
        "every figure and its definition is in `stats.json`.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| distinct-1 / 2 / 3 (unique / total n-grams of lowercased word tokens) | "
        + " / ".join("-" if d[f"distinct_{n}"] is None else f"{d[f'distinct_{n}']:.3f}" for n in (1, 2, 3)) + " |",
        f"| exact / near duplicates among kept stories | {pct(dup['exact_rate'])} / {pct(dup['near_rate'])} |",
        f"| rejected as duplicates | {dup['duplicate_rejects']:,} |",
        f"| stories opening \"once upon a time\" | {pct(op['once_upon_a_time']['share'])} |",
        f"| distinct openers (first 3 words) | {op['distinct']:,} |",
    ]
    if op["top"]:
        lines.append(f"| most common opener | \"{op['top'][0]['opener']}\" ({pct(op['top'][0]['share'])}) |")
    if words.get("n"):
        lines.append(f"| words per story: median (p10-p90) | {words['median']:g} ({words['p10']:g}-{words['p90']:g}) |")
    lines.append(f"| word tokens outside a child vocabulary (Dale-Chall list + build vocab) | {pct(cv['outside_share'])} |")
    for col, r in stats["readability"].items():
        if r["n"]:
            lines.append(f"| {col}, mean | {r['mean']:.1f} |")
    dia = stats["label_checks"]["dialogue"].get("kept", {})
    if dia.get("n"):
        lines.append(f"| Dialogue requested vs quoted speech found, agreement | {pct(dia['agreement'])} |")
    for f, scopes in stats["label_checks"]["judge"].items():
        if scopes.get("kept", {}).get("n"):
            lines.append(f"| {f} requested vs judge, agreement | {pct(scopes['kept']['agreement'])} |")
    lines.append("")
    titles = {"labels": "Labels, planned vs kept", "cooccurrence": "Feature co-occurrence", "lengths": "Lengths",
              "openers": "Openers", "duplicates": "Duplicates per model"}
    for p in plots:
        p = Path(p)
        lines += [f"![{titles.get(p.stem, p.stem)}]({PLOTS_DIR}/{p.name})", ""]
    return "\n".join(lines)
