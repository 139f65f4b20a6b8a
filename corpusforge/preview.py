"""`corpusforge preview`: the plans of the first stories and their rendered stage prompts.

Without a model there is no chat template and no earlier output, so later stages show
placeholders where the model's answers would go.
"""
from __future__ import annotations

from pathlib import Path

from .recipes import load_recipe
from .sampler import plan
from .vocab import load_vocab


def render_preview(*, n: int, seed: int, start: int = 0, recipe: str, vocab: Path | None, features_per_story: int | None) -> str:
    v = load_vocab(vocab)
    r = load_recipe(recipe)
    phrases = {f.label: f.phrase for f in v.features}
    out = [f"recipe {r.name}: {' -> '.join(s.name for s in r.stages)}   seed {seed}"]
    if r.conversation:
        out.append("conversation: each stage is a user turn after the model's earlier answers")
    for i in range(start, start + n):
        p = plan(v, seed, i, features_per_story)
        out.append(f"\n=== story {p.id}: noun={p.noun} verb={p.verb} adjective={p.adjective} features={', '.join(p.features) or 'none'}")
        earlier: dict[str, str] = {}
        for stage in r.stages:
            variables = {**p.words(), "features": list(p.features), "feature_phrases": [phrases[f] for f in p.features], **earlier}
            out.append(f"--- {stage.name} (max_tokens {stage.max_tokens})\n{stage.render(variables)}")
            earlier[stage.name] = f"<{stage.name} from the model>"
    return "\n".join(out)
