"""Progress on the terminal with rich: kept/target, rejects, in flight, rates, ETA.

Counts come from the journal (a story is done once written), so the bar never reaches the
end while a story is still being generated, and the final line says what really happened.
"""
from __future__ import annotations

import time

from .replace import MAX_GENERATIONS

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class RichReporter:
    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.progress: Progress | None = None
        self._last = 0.0

    def start(self, summary) -> None:
        if summary.done_before:
            self.console.print(f"resuming: {summary.done_before:,} of {summary.n:,} stories done")
        self.progress = Progress(
            TextColumn("[bold]stories"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("kept {task.fields[kept]:,} · rejected {task.fields[rejected]:,} · in flight {task.fields[flight]}"),
            TextColumn("· {task.fields[spm]:.1f}/min · {task.fields[tps]:.0f} tok/s"),
            TimeRemainingColumn(),
            console=self.console,
            refresh_per_second=2,
            speed_estimate_period=120,  # ETA from the recent rate, not the whole run
        )
        self.progress.start()
        self.task = self.progress.add_task("build", total=summary.n, completed=summary.done_before,
                                           kept=0, rejected=0, flight=0, spm=0.0, tps=0.0)

    def update(self, summary, in_flight: int = 0) -> None:
        now = time.monotonic()
        if now - self._last < 0.25 and summary.done < summary.n:
            return
        self._last = now
        self.progress.update(self.task, completed=summary.done, kept=summary.kept, rejected=summary.rejected,
                             flight=in_flight, spm=summary.stories_per_minute, tps=summary.tokens_per_second)

    def finish(self, summary) -> None:
        self._last = 0.0
        self.update(summary, 0)
        self.progress.stop()
        self.console.print(final_line(summary))
        for table in summary_tables(summary):
            self.console.print(table)

    def note(self, text: str) -> None:
        """A line after the build (e.g. what the Hub upload sent and what it could not)."""
        if self.progress is not None:
            self.progress.stop()
        self.console.print(text, markup=False, highlight=False)


def final_line(summary) -> str:
    reasons = ", ".join(f"{k} {v}" for k, v in summary.reasons.most_common()) or "none"
    counted = "planned" if getattr(summary, "counts_plans", True) else "kept"
    line = (
        f"done: {summary.done:,} of {summary.n:,} stories {counted} (this run {summary.kept:,} kept, "
        f"{summary.rejected:,} rejected: {reasons}) "
        f"in {summary.seconds:.0f}s, {summary.stories_per_minute:.1f} stories/min, {summary.tokens_per_second:.0f} generated tok/s, "
        f"prompt tokens evaluated {summary.prompt_tokens_evaluated:,} / reused {summary.prompt_tokens_reused:,}"
    )
    if summary.judge_tokens:
        line += f", judge {summary.judge_share:.1%} of tokens"
    if getattr(summary, "unfilled", 0):
        line += f", {summary.unfilled:,} stories never kept in {MAX_GENERATIONS} plans each"
    if summary.moved_duplicates:
        line += f", {summary.moved_duplicates:,} cross-shard duplicates moved to rejects"
    return line


def summary_tables(summary) -> list:
    """Per-model outcomes, and planned vs kept label frequencies (rejects can skew what is kept)."""
    from rich.table import Table

    tables = []
    if summary.models:
        t = Table(title="per model (this run)")
        for col in ("model", "kept", "rejected", "reasons", "duplicate rate"):
            t.add_column(col)
        for name, m in sorted(summary.models.items()):
            reasons = ", ".join(f"{k} {v}" for k, v in m.reasons.most_common()) or "-"
            rate = f"{m.duplicates / m.attempts:.1%}" if m.attempts else "-"
            t.add_row(name, f"{m.kept:,}", f"{m.rejected:,}", reasons, rate)
        tables.append(t)
    if summary.frequencies:
        # Features and models in full; an axis has many values, so its widest gap stands for it
        # (every value is in the card and in `corpusforge stats`).
        t = Table(title="planned (all rows) vs kept, whole corpus")
        for col in ("label", "planned", "kept", "kept - planned"):
            t.add_column(col)
        for kind, rows in summary.frequencies.items():
            if kind in ("feature", "model"):
                for label, planned, kept in rows:
                    t.add_row(f"{kind}:{label}", f"{planned:.1%}", f"{kept:.1%}", f"{(kept - planned) * 100:+.1f} pt")
            elif rows:
                label, planned, kept = max(rows, key=lambda r: abs(r[2] - r[1]))
                t.add_row(f"{kind} ({len(rows)} values), widest gap: {label}", f"{planned:.1%}", f"{kept:.1%}",
                          f"{(kept - planned) * 100:+.1f} pt")
        tables.append(t)
    return tables
