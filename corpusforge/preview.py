"""`corpusforge preview`: the plans of the first stories and their rendered stage prompts.

Without a model there is no chat template and no earlier output, so later stages show
placeholders where the model's answers would go.
"""
from __future__ import annotations

from pathlib import Path

from .errors import CorpusforgeError
from .recipes import load_recipe
from .sampler import PlanOptions, plan, template_variables
from .vocab import load_vocab


def render_preview(*, n: int, seed: int, start: int = 0, recipe: str, vocab: Path | None,
                   options: PlanOptions = PlanOptions()) -> str:
    """The plans of stories start..start+n-1 and every stage's prompt, as text."""
    if n < 1:
        raise CorpusforgeError(f"--n must be at least 1 (got {n})", "pass --n 5")
    if seed < 0 or start < 0:  # numpy seed sequences take no negative numbers
        flag, value = ("--seed", seed) if seed < 0 else ("--start", start)
        raise CorpusforgeError(f"{flag} must be 0 or more (got {value})", f"pass {flag} 0")
    v = load_vocab(vocab)
    r = load_recipe(recipe, axis_names=[a.name for a in v.axes])
    options.check(v)
    # Model and split are shown only when asked for: with one model and no held-out splits
    # every plan says model 0, train.
    show_model = len(options.model_weights) > 1
    show_split = bool(options.validation_fraction or options.test_fraction)
    mode = "balanced" if options.balance else "independent draws"
    out = [f"recipe {r.name}: {' -> '.join(s.name for s in r.stages)}   seed {seed}, {mode}"]
    if r.conversation:
        out.append("conversation: each stage is a user turn after the model's earlier answers")
    for i in range(start, start + n):
        p = plan(v, seed, i, options)
        head = f"\n=== story {p.id}: noun={p.noun} verb={p.verb} adjective={p.adjective} features={', '.join(p.features) or 'none'}"
        extra = [f"{name}={label}" for name, label in p.axes]
        extra += [f"model={p.model}"] * show_model + [f"split={p.split}"] * show_split
        out.append(head + ("\n    " + " ".join(extra) if extra else ""))
        earlier: dict[str, str] = {}
        for stage in r.stages:
            variables = {**template_variables(v, p), **earlier}
            out.append(f"--- {stage.name} (max_tokens {stage.max_tokens})\n{stage.render(variables)}")
            earlier[stage.name] = f"<{stage.name} from the model>"
    return "\n".join(out)
