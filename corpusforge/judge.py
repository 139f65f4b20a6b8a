"""The judge: one yes/no question per semantic feature about a finished story.

The questions are templates in the recipe's `judge/` folder (a layout `judge.j2` plus one
question per feature, `default.j2` for features without their own), and the answer is held
to yes/no by a llama.cpp grammar, so it parses even from a random-weight model.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import jinja2

from .errors import RecipeError
from .recipes import Recipe, _environment

GRAMMAR = 'root ::= "yes" | "no"'
POLICIES = ("record", "reject")
# "yes"/"no" is one or two tokens in every vocabulary we measured; 4 leaves room for the end token.
MAX_TOKENS = 4


@dataclass(frozen=True, slots=True)
class Judge:
    """What to ask: the features marked `judge = true`, the templates, and the policy."""

    folder: str
    features: tuple[tuple[str, str], ...]  # (label, phrase) of every judged feature
    policy: str = "record"
    fingerprint: str = ""

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(label for label, _ in self.features)

    def message(self, label: str, story: str) -> str:
        """The user message asking whether `story` has feature `label`."""
        phrase = dict(self.features)[label]
        name = f"{label}.j2" if (Path(self.folder) / f"{label}.j2").is_file() else "default.j2"
        question = _template(self.folder, name).render(feature=label, phrase=phrase).strip()
        return _template(self.folder, "judge.j2").render(story=story, question=question, feature=label).strip()

    def contradiction(self, requested: tuple[str, ...], verdicts: dict[str, str]) -> str | None:
        """Under policy reject: the first requested feature the judge says the story lacks."""
        if self.policy != "reject":
            return None
        missing = [f for f in requested if verdicts.get(f) == "no"]
        return f"judge:{missing[0]}" if missing else None


@lru_cache(maxsize=64)
def _template(folder: str, name: str) -> jinja2.Template:
    # Compiled once per process; the Judge itself stays plain data that pickles (workers, Ray).
    return _environment(Path(folder)).get_template(name)


def load_judge(recipe: Recipe, features, policy: str = "record") -> Judge:
    """The judge of a recipe for these vocab features; errors name the missing template."""
    if policy not in POLICIES:
        raise RecipeError(f"--judge-policy {policy!r} is unknown", f"use one of {', '.join(POLICIES)}")
    folder = Path(recipe.path) / "judge"
    if not (folder / "judge.j2").is_file():
        raise RecipeError(f"recipe {recipe.name} has no judge/judge.j2",
                          "copy the judge/ folder of templates/tinystories-instruct into your recipe")
    judged = tuple((f.label, f.phrase) for f in features if f.judge)
    if not judged:
        raise RecipeError("--judge was given but no feature in features.toml has judge = true",
                          "mark the features to verify with judge = true")
    digest = hashlib.sha256()
    env = _environment(folder)
    for label, _ in judged:
        if not (folder / f"{label}.j2").is_file() and not (folder / "default.j2").is_file():
            raise RecipeError(f"{folder}: no {label}.j2 and no default.j2", f"add judge/{label}.j2 with the question")
    for path in sorted(folder.glob("*.j2")):
        source = path.read_text(encoding="utf-8")
        digest.update(path.name.encode() + b"\0" + source.encode())
        try:
            env.parse(source)
        except jinja2.TemplateSyntaxError as e:
            raise RecipeError(f"{path}:{e.lineno}: {e.message}", "fix the template syntax") from None
    return Judge(str(folder), judged, policy, digest.hexdigest())
