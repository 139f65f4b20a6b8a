"""Replacement plans: `--n N` is N kept stories, so a rejected plan is replaced by a new one.

A build has N slots, one per requested story. Slot s is first planned as id s; when that story
is rejected (or moved to rejects as a duplicate at seal), the slot gets a new plan with id
s + STRIDE, then s + 2 * STRIDE, and so on. A replacement keeps its slot's labels (features,
axis values, model) and takes fresh words and a fresh seed from its own id, so:

- kept label frequencies follow the balance bounds of the N slots, not the reject rates;
- every id, rejected or kept, is in exactly one split (a rejected id stays in rejects);
- which ids exist is a pure function of (seed, slot, which of its plans were rejected), so
  resume, `--workers` and Ray ask for the same replacements;
- a slot stays in its shard (ids s + k * STRIDE all belong to slot s's shard), so shards stay
  independent and their names never change.

Fresh words: plan(seed, id) for a replacement id draws from the same per-seed word
permutations as the first plans, at epochs far beyond them, so replacements use every word about
equally among themselves. A word that fails more often is replaced more often: among kept rows
such a word is under-represented by its own reject rate (the first plans' words are exactly
balanced, the replacements' words are not chosen to make up for it).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace as _with

from .sampler import StoryPlan, split_of

STRIDE = 1_000_000_000  # ids of one slot: slot, slot + STRIDE, ...; --n must stay below it
MAX_GENERATIONS = 50  # plans per slot at most: an impossible slot ends short instead of looping


def slot_of(story_id: int) -> int:
    return story_id % STRIDE


def generation_of(story_id: int) -> int:
    return story_id // STRIDE


def next_id(story_id: int) -> int | None:
    """The id that replaces a rejected `story_id`, or None once its slot has had MAX_GENERATIONS plans."""
    g = generation_of(story_id) + 1
    return story_id + STRIDE if g < MAX_GENERATIONS else None


def replacement_plan(first: StoryPlan, fresh: StoryPlan, validation_fraction: float, test_fraction: float,
                     split_key: str) -> StoryPlan:
    """A replacement: the slot's labels (`first`, the slot's first plan) with the words, seed and
    id of `fresh` (plan(seed, replacement id)); the split follows the new words (or id), so a
    word triple still lands in one split only."""
    out = _with(fresh, features=first.features, axes=first.axes, model=first.model)
    if validation_fraction or test_fraction:
        out = _with(out, split=split_of(out, validation_fraction, test_fraction, split_key))
    return out


def latest(done: dict[int, str]) -> dict[int, tuple[int, str]]:
    """{slot: (its highest id so far, that id's split)} of a shard's finished ids."""
    out: dict[int, tuple[int, str]] = {}
    for i, split in done.items():
        s = slot_of(i)
        if s not in out or i > out[s][0]:
            out[s] = (i, split)
    return out


def pending(slots: Iterable[int], done: dict[int, str], replace: bool = True) -> list[int]:
    """The ids still to write for these slots: the first plan of a slot with no row; with
    `replace`, the next plan of a slot whose latest plan was rejected (until MAX_GENERATIONS)."""
    last = latest(done)
    out = []
    for s in slots:
        if s not in last:
            out.append(s)
        elif replace and last[s][1] == "rejects" and (nxt := next_id(last[s][0])) is not None:
            out.append(nxt)
    return out


def unfilled(slots: Iterable[int], done: dict[int, str]) -> list[int]:
    """Slots whose latest plan was rejected and that may not be replaced again."""
    last = latest(done)
    return [s for s in slots if s in last and last[s][1] == "rejects" and next_id(last[s][0]) is None]


__all__ = ["MAX_GENERATIONS", "STRIDE", "generation_of", "latest", "next_id", "pending", "replacement_plan",
           "slot_of", "unfilled"]
