"""The judge: one yes/no question per semantic feature about a finished story.

The questions are templates in the recipe's `judge/` folder (a layout `judge.j2` plus one
question per feature, `default.j2` for features without their own, and `shots.toml`: worked
examples shown before a feature's question), and the answer is held to yes/no by a llama.cpp
grammar, so it parses even from a random-weight model.

The verdict is the answer, unless the gold set measured something better for this judge model
and exactly this prompt: then it is the yes-no score against the threshold chosen on the gold
set's dev part (`corpusforge/judge_gold.json`, written by scripts/bench_judge.py --package).
"""
from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import jinja2

from .card import gold_figures
from .errors import RecipeError
from .recipes import Recipe, _environment

GRAMMAR = 'root ::= "yes" | "no"'
POLICIES = ("record", "reject")
# "yes"/"no" is one or two tokens in every vocabulary we measured; 4 leaves room for the end token.
MAX_TOKENS = 4
ANSWERS = ("yes", "no")


@dataclass(frozen=True, slots=True)
class Judge:
    """What to ask: the features marked `judge = true`, the templates, and the policy."""

    folder: str
    features: tuple[tuple[str, str], ...]  # (label, phrase) of every judged feature
    policy: str = "record"
    fingerprint: str = ""
    # (label, ((story, answer), ...)): the worked examples asked before that label's question
    shots: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()
    # (label, threshold): labels whose verdict is judge score > threshold (see calibrated)
    thresholds: tuple[tuple[str, float], ...] = ()

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(label for label, _ in self.features)

    @property
    def prefix_count(self) -> int:
        """Shared prefixes the judge's questions use: one, plus one per label with examples."""
        return 1 + len(self.shots)

    def message(self, label: str, story: str) -> str:
        """The user message asking whether `story` has feature `label`."""
        phrase = dict(self.features)[label]
        name = f"{label}.j2" if (Path(self.folder) / f"{label}.j2").is_file() else "default.j2"
        question = _template(self.folder, name).render(feature=label, phrase=phrase).strip()
        return _template(self.folder, "judge.j2").render(story=story, question=question, feature=label).strip()

    def conversation(self, label: str, story: str) -> list[dict]:
        """The chat the judge model reads: each worked example as an earlier turn, then the question."""
        turns = []
        for shot, answer in dict(self.shots).get(label, ()):
            turns += [{"role": "user", "content": self.message(label, shot)}, {"role": "assistant", "content": answer}]
        return turns + [{"role": "user", "content": self.message(label, story)}]

    def prompt_sha256(self, label: str) -> str:
        """A digest of exactly what the judge is shown for `label` (story left as a marker): a
        threshold measured on the gold set holds only for the prompt it was measured with."""
        return hashlib.sha256(json.dumps(self.conversation(label, "\0story\0")).encode()).hexdigest()

    def verdict(self, label: str, answer: str, score: float | None) -> str:
        """yes/no for `label`: the score against its measured threshold if it has one, else the answer."""
        threshold = dict(self.thresholds).get(label)
        if threshold is None or score is None:
            return answer
        return "yes" if score > threshold else "no"

    def calibrated(self, model_sha256: str | None, gold: Path | None = None, ask_all: bool = False) -> Judge:
        """This judge as the gold set measured it for `model_sha256` and these exact prompts.

        A label gets a threshold only where bench_judge found the score beat always-yes on the
        dev part; any other model, or an edited template, keeps the written answer as the
        verdict. A label whose verdict did not beat always-yes on the test part is not asked
        (unless `ask_all`): its answer is noise, and its question costs a re-read of the story
        (measured on SmolLM2-135M, 24 stories: 168 s without the judge, 242 s asking all five
        features, 188 s asking MoralValue only, the one that beats always-yes)."""
        figures = gold_figures(model_sha256, gold)
        measured = {label: g for label in self.labels
                    if (g := figures.get(label)) and g.get("prompt_sha256") == self.prompt_sha256(label)}
        thresholds = tuple((label, float(g["verdict_threshold"])) for label, g in measured.items()
                           if g.get("verdict_threshold") is not None)
        noise = () if ask_all else tuple(label for label, g in measured.items() if _noise(g))
        return replace(self, thresholds=thresholds, features=tuple(f for f in self.features if f[0] not in noise))

    def asking(self, labels) -> Judge:
        """This judge asking only `labels` (the ones a build's manifest pinned for its model)."""
        return replace(self, features=tuple(f for f in self.features if f[0] in set(labels)))

    def contradiction(self, requested: tuple[str, ...], verdicts: dict[str, str]) -> str | None:
        """Under policy reject: the first requested feature the judge says the story lacks."""
        if self.policy != "reject":
            return None
        missing = [f for f in requested if verdicts.get(f) == "no"]
        return f"judge:{missing[0]}" if missing else None


def _noise(g: dict) -> bool:
    """The gold set's verdict (thresholded score, else the answer) did not beat always-yes."""
    v = g.get("verdict") or g
    return "f1" in v and "always_yes_f1" in g and v["f1"] <= g["always_yes_f1"]


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
    shots = load_shots(folder, {label for label, _ in judged})
    # Questions with worked examples last: the others share one prefix, so each continues the
    # story already in the judge's KV (its own question only), while a question behind examples
    # must read the story again; asked in between, it would make the next question read it too.
    with_shots = {label for label, _ in shots}
    judged = tuple(sorted(judged, key=lambda f: f[0] in with_shots))
    digest = hashlib.sha256()
    env = _environment(folder)
    for label, _ in judged:
        if not (folder / f"{label}.j2").is_file() and not (folder / "default.j2").is_file():
            raise RecipeError(f"{folder}: no {label}.j2 and no default.j2", f"add judge/{label}.j2 with the question")
    for path in sorted([*folder.glob("*.j2"), *folder.glob("shots.toml")]):
        source = path.read_text(encoding="utf-8")
        digest.update(path.name.encode() + b"\0" + source.encode())
        try:
            env.parse(source)
        except jinja2.TemplateSyntaxError as e:
            raise RecipeError(f"{path}:{e.lineno}: {e.message}", "fix the template syntax") from None
    return Judge(str(folder), judged, policy, digest.hexdigest(), shots)


def load_shots(folder: Path, labels: set[str]) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    """judge/shots.toml: `[[Label]]` tables of `story` and `answer` (yes/no); errors name the fix."""
    path = folder / "shots.toml"
    if not path.is_file():
        return ()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(f"{path}: {e}", "fix the TOML syntax") from None
    out = []
    for label, examples in data.items():
        if label not in labels:
            raise RecipeError(f"{path}: [[{label}]] is not a judged feature", f"use one of {', '.join(sorted(labels))}")
        if not isinstance(examples, list) or not all(isinstance(e, dict) for e in examples):
            raise RecipeError(f"{path}: {label} must be [[{label}]] tables", f'write [[{label}]] then story = "..." and answer = "yes"')
        pairs = []
        for i, e in enumerate(examples, 1):
            story, answer = e.get("story"), e.get("answer")
            if not isinstance(story, str) or not story.strip() or answer not in ANSWERS:
                raise RecipeError(f"{path}: example {i} of {label} needs a story and answer yes or no",
                                  f'write story = "..." and answer = "yes" (or "no") in each [[{label}]]')
            pairs.append((story.strip(), answer))
        out.append((label, tuple(pairs)))
    return tuple(out)
