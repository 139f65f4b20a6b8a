"""A few kept stories of a build, for a person to read: the end of `build` and `corpusforge show`.

Rows come in id order from the kept splits, so what is shown is never picked by hand: the
lowest ids the build kept.
"""
from __future__ import annotations

from pathlib import Path

from .schema import KEPT_SPLITS

COLUMNS = ("id", "story", "words", "features", "model", "attempt")


def first_kept(out: Path, n: int = 2, splits: tuple[str, ...] = KEPT_SPLITS) -> list[dict]:
    """The n kept rows with the lowest ids, labels as names."""
    from .stats import open_corpus

    rows = [row for _, row in open_corpus(Path(out)).iter_rows(splits, COLUMNS)]
    return sorted(rows, key=lambda r: r["id"])[:n]


def render(rows: list[dict]) -> str:
    """Each story under a one-line header saying how it was asked for."""
    parts = []
    for r in rows:
        w = r["words"] or {}
        asked = ", ".join(str(w.get(k, "")) for k in ("noun", "verb", "adjective")) if isinstance(w, dict) else ", ".join(w)
        features = ", ".join(r["features"] or []) or "no features"
        parts.append(f"--- story {r['id']} ({r['model']}, attempt {r['attempt']}): {asked}; {features}\n{r['story'].strip()}")
    return "\n\n".join(parts)
