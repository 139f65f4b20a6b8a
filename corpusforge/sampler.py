"""Story plans: which words and features story `index` of a build asks for.

Pure functions of (seed, index), so a plan is the same in any order, batch, resume or machine.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .vocab import Vocab


@dataclass(frozen=True, slots=True)
class StoryPlan:
    """What one story must contain."""

    id: int
    seed: int
    noun: str
    verb: str
    adjective: str
    features: tuple[str, ...]

    def words(self) -> dict[str, str]:
        return {"noun": self.noun, "verb": self.verb, "adjective": self.adjective}


def plan(vocab: Vocab, seed: int, index: int, features_per_story: int | None = None) -> StoryPlan:
    """The plan of story `index`: one noun, verb, adjective and a feature subset."""
    # A generator keyed by (seed, index) rather than one stream advanced in order: that is
    # what makes sample i independent of how many samples came before it.
    rng = np.random.default_rng([seed, index])
    noun = vocab.nouns[rng.integers(len(vocab.nouns))]
    verb = vocab.verbs[rng.integers(len(vocab.verbs))]
    adjective = vocab.adjectives[rng.integers(len(vocab.adjectives))]
    probs = np.array([f.probability for f in vocab.features])
    if features_per_story is None:
        chosen = np.flatnonzero(rng.random(len(probs)) < probs)
    else:
        # Exactly K, weighted by the probabilities so rare features stay rarer; a zero
        # probability still means never.
        weights = probs / probs.sum() if probs.sum() > 0 else None
        chosen = np.sort(rng.choice(len(probs), size=features_per_story, replace=False, p=weights))
    features = tuple(vocab.features[i].label for i in chosen)
    return StoryPlan(index, seed, str(noun), str(verb), str(adjective), features)


def stage_seed(seed: int, index: int, stage: int, attempt: int) -> int:
    """The llama.cpp sampler seed for one stage attempt of one story (uint32)."""
    return int(np.random.SeedSequence([seed, index, stage, attempt]).generate_state(1)[0])
