"""Progress on the terminal with rich: kept/target, rejects, in flight, rates, ETA.

Counts come from the journal (a story is done once written), so the bar never reaches the
end while a story is still being generated, and the final line says what really happened.
"""
from __future__ import annotations

import time

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
        reasons = ", ".join(f"{k} {v}" for k, v in summary.reasons.most_common()) or "none"
        self.console.print(
            f"done: {summary.done:,} of {summary.n:,} stories ({summary.kept:,} kept, {summary.rejected:,} rejected: {reasons}) "
            f"in {summary.seconds:.0f}s, {summary.stories_per_minute:.1f} stories/min, {summary.tokens_per_second:.0f} generated tok/s, "
            f"prompt tokens evaluated {summary.prompt_tokens_evaluated:,} / reused {summary.prompt_tokens_reused:,}"
        )
