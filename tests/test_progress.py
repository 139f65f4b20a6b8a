"""The end-of-build summary: per-model outcomes and duplicate rates, planned vs kept frequencies.

Hand-made events and merged shard statistics (no engine): the accounting above the runners is
pure, and these are the figures a user reads at the end of a long build.
"""
from __future__ import annotations

from rich.console import Console

from corpusforge.build import Summary, _frequencies
from corpusforge.progress import final_line, summary_tables
from corpusforge.runners import Event


def rendered(summary: Summary) -> str:
    console = Console(record=True, width=200)
    for table in summary_tables(summary):
        console.print(table)
    return console.export_text()


def row(text: str, first_cell: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.strip().strip("│┃ ").startswith(first_cell))
    return [cell.strip() for cell in line.strip().strip("│┃").split("│")]


def test_outcomes_reasons_and_duplicate_rates_are_split_per_model():
    s = Summary(n=5)
    # a.gguf: 1 kept at once, 1 kept after a duplicate retry, 1 rejected as a duplicate after 2 attempts.
    s.add(Event(0, 0, None, 100, 60, 50), "a.gguf", 1.0)
    s.add(Event(1, 0, None, 100, 60, 50, failed=("duplicate",)), "a.gguf", 2.0)
    s.add(Event(2, 0, "duplicate:0", 100, 60, 50, failed=("duplicate",)), "a.gguf", 3.0)
    # b.gguf: 1 rejected for length, 1 kept after a length retry; no duplicates.
    s.add(Event(3, 1, "length: 2 words", 100, 60, 50, failed=("length",)), "b.gguf", 4.0)
    s.add(Event(4, 1, None, 100, 60, 50, judge_tokens=30, failed=("length",)), "b.gguf", 5.0)
    assert (s.kept, s.rejected, s.done, s.plans) == (3, 2, 3, 5)  # --n counts kept stories; plans are all five
    assert dict(s.reasons) == {"duplicate": 1, "length": 1}
    a, b = s.models["a.gguf"], s.models["b.gguf"]
    assert (a.kept, a.rejected, a.attempts, a.duplicates) == (2, 1, 5, 3)  # 3 of 5 attempts were duplicates
    assert (b.kept, b.rejected, b.attempts, b.duplicates) == (1, 1, 4, 0)
    text = rendered(s)
    assert row(text, "a.gguf") == ["a.gguf", "2", "1", "duplicate 1", "60.0%"]
    assert row(text, "b.gguf") == ["b.gguf", "1", "1", "length 1", "0.0%"]
    # Tokens: 5 x (100 - 60) evaluated + 5 x 50 generated = 450; the judge's 30 are 6.7% of them.
    assert s.prompt_tokens_evaluated == 200 and s.generated_tokens == 250
    assert "judge 6.7% of tokens" in final_line(s)


def test_planned_vs_kept_shows_how_rejects_skew_the_kept_labels():
    # 10 rows planned: Dialogue on 5; of the 4 kept rows only 1 has Dialogue (rejects took the rest).
    merged = {
        "splits": {"train": 3, "validation": 1, "test": 0, "rejects": 6},
        "planned": {"feature:Dialogue": 5, "feature:Twist": 2, "model:a.gguf": 10, "opening:sound": 4, "opening:question": 6},
        "kept": {"feature:Dialogue": 1, "feature:Twist": 2, "model:a.gguf": 4, "opening:sound": 0, "opening:question": 4},
    }
    s = Summary(n=10, frequencies=_frequencies(merged))
    assert s.frequencies["feature"] == [("Dialogue", 0.5, 0.25), ("Twist", 0.2, 0.5)]
    text = rendered(s)
    assert row(text, "feature:Dialogue") == ["feature:Dialogue", "50.0%", "25.0%", "-25.0 pt"]
    assert row(text, "feature:Twist") == ["feature:Twist", "20.0%", "50.0%", "+30.0 pt"]
    # An axis shows its widest gap: sound planned 40%, kept 0% (question: 60% -> 100%, same size; first wins).
    assert "opening (2 values), widest gap" in text
