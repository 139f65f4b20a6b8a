"""Recipes: a folder of Jinja2 templates plus recipe.toml listing the stages of a chain.

A recipe is data. Templates render in a sandbox with StrictUndefined and are checked for
unknown variables when loaded, so a typo fails before any model time is spent.
"""
from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path

import jinja2
from jinja2 import meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .engine.base import SamplingParams
from .engine.steer import SteerConfig
from .errors import RecipeError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PARSERS = ("text", "sentence")
# What every template may use (see sampler.template_variables); each axis of the vocab adds its
# name, and outputs of earlier stages are added by stage name.
PLAN_VARIABLES = frozenset({"noun", "verb", "adjective", "features", "feature_phrases", "axis_phrases", "axis_labels"})


@dataclass(frozen=True, slots=True)
class Stage:
    """One prompt of the chain: its template, output parser and token budget."""

    name: str
    folder: str
    template_file: str
    source: str
    parse: str
    max_tokens: int
    steer: SteerConfig | None = None  # [stages.steer]: per-token steering (engine/steer.py)
    sampling: tuple[tuple[str, object], ...] = ()  # [stages.sampling]: overrides of the build's sampler settings

    def render(self, variables: dict) -> str:
        """The user message for this stage."""
        return _compiled(self.folder, self.template_file, self.source).render(**variables).strip()


@lru_cache(maxsize=64)
def _compiled(folder: str, template_file: str, source: str) -> jinja2.Template:
    # Compiled on first use and cached, so a Recipe stays plain data that pickles (workers, Ray).
    return _environment(Path(folder)).get_template(template_file)


@dataclass(frozen=True, slots=True)
class Recipe:
    name: str
    description: str
    path: Path
    stages: tuple[Stage, ...]
    fingerprint: str  # sha256 of recipe.toml and every template, so edits are noticed on resume
    # True: the stages are turns of one chat (each prompt = the conversation so far + this
    # stage's message); False: each stage is a prompt of its own.
    conversation: bool = False
    system: str = ""  # a system message before every prompt ("" : the model's own default)
    examples: tuple[tuple[str, str], ...] = ()  # (role, content) chat turns before every story

    def stage_index(self, name: str) -> int | None:
        return next((i for i, s in enumerate(self.stages) if s.name == name), None)

    def with_max_tokens(self, max_tokens: dict[str, int]) -> Recipe:
        """The same recipe with some stages' token budgets replaced."""
        stages = tuple(replace(s, max_tokens=max_tokens.get(s.name, s.max_tokens)) for s in self.stages)
        return replace(self, stages=stages)


def builtin_dir() -> Path:
    """The folder holding the recipes shipped with corpusforge."""
    return Path(str(resources.files("corpusforge") / "templates"))


def builtin_names() -> list[str]:
    return sorted(p.name for p in builtin_dir().iterdir() if (p / "recipe.toml").is_file())


def resolve(name_or_path: str) -> Path:
    """A built-in recipe name or a path to a recipe folder."""
    path = Path(name_or_path).expanduser()
    if (path / "recipe.toml").is_file():
        return path
    if "/" not in name_or_path and (builtin_dir() / name_or_path / "recipe.toml").is_file():
        return builtin_dir() / name_or_path
    raise RecipeError(
        f"unknown recipe {name_or_path!r}",
        f"use one of {', '.join(builtin_names())}, or a folder with a recipe.toml",
    )


def _environment(folder: Path) -> ImmutableSandboxedEnvironment:
    # Sandboxed: recipes are shared files, and a template must not reach Python internals.
    return ImmutableSandboxedEnvironment(
        loader=jinja2.FileSystemLoader(str(folder)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        autoescape=False,
    )


def _table(raw: dict, key: str, record, where: str) -> dict | None:
    """A stage's optional sub-table, its keys and value types checked against `record`'s fields."""
    table = raw.get(key)
    if table is None:
        return None
    defaults = record()
    known = {f: getattr(defaults, f) for f in record.__dataclass_fields__}
    if not isinstance(table, dict):
        raise RecipeError(f"{where}: {key} must be a table", f"write [stages.{key}] with key = value lines")
    for k, v in table.items():
        if k not in known:
            raise RecipeError(f"{where}: unknown {key} setting {k!r}", f"use {', '.join(known)}")
        want = type(known[k])
        # TOML's true is a Python int and its 1 is no bool: booleans only where a bool is wanted;
        # a whole number is fine where a float is.
        ok = isinstance(v, bool) == (want is bool) and isinstance(v, (int, float) if want is float else want)
        if not ok:
            raise RecipeError(f"{where}: {key}.{k} must be {want.__name__}, got {v!r}", f"e.g. {k} = {known[k]!r}".replace("True", "true").replace("False", "false"))
    if record is SamplingParams:
        bad = SamplingParams(**{**known, **table}).problems()
        if bad:
            raise RecipeError(f"{where}: sampling {bad[0][0].lstrip('-')} {bad[0][1]}", "fix the value")
    return {k: float(v) if type(known[k]) is float else v for k, v in table.items()}


def load_recipe(name_or_path: str, axis_names: Iterable[str] = ()) -> Recipe:
    """Load and validate a recipe: stages, parsers, budgets and template variables.

    `axis_names`: the vocab's axes, each a variable holding the chosen value's phrase."""
    folder = resolve(name_or_path)
    toml_path = folder / "recipe.toml"
    try:
        data = tomllib.loads(toml_path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(f"{toml_path}: not valid TOML: {e}", "fix the syntax") from None
    raw_stages = data.get("stages")
    if not isinstance(raw_stages, list) or not raw_stages:
        raise RecipeError(f"{toml_path}: no [[stages]]", "add at least one [[stages]] table")
    conversation = data.get("conversation", False)
    if not isinstance(conversation, bool):
        raise RecipeError(f"{toml_path}: conversation must be true or false", "e.g. conversation = true")
    env = _environment(folder)
    digest = hashlib.sha256(toml_path.read_bytes())
    system = data.get("system", "")
    if not isinstance(system, str):
        raise RecipeError(f"{toml_path}: system must be a string", 'e.g. system = "You write short stories."')
    examples = _examples(folder, data.get("examples"), toml_path, digest)
    stages: list[Stage] = []
    known = set(PLAN_VARIABLES) | set(axis_names)
    for i, raw in enumerate(raw_stages, 1):
        where = f"{toml_path}: stage {i}"
        name, tfile = raw.get("name"), raw.get("template")
        if not isinstance(name, str) or not name.isidentifier():
            raise RecipeError(f"{where}: name {name!r} is not an identifier", "use letters, digits and _")
        if name in known:
            raise RecipeError(f"{where}: name {name!r} is already used (a plan variable, axis or earlier stage)",
                              "give each stage its own name")
        parse = raw.get("parse", "text")
        if parse not in PARSERS:
            raise RecipeError(f"{where}: parse {parse!r} is unknown", f"use one of {', '.join(PARSERS)}")
        max_tokens = raw.get("max_tokens")
        if not isinstance(max_tokens, int) or max_tokens <= 0:
            raise RecipeError(f"{where}: max_tokens must be a positive integer", "e.g. max_tokens = 256")
        tpath = folder / str(tfile)
        if not isinstance(tfile, str) or not tpath.is_file():
            raise RecipeError(f"{where}: template {tfile!r} not found in {folder}", "check the file name")
        source = tpath.read_text(encoding="utf-8")
        digest.update(tfile.encode() + b"\0" + source.encode())
        try:
            unknown = sorted(meta.find_undeclared_variables(env.parse(source)) - known)
        except jinja2.TemplateSyntaxError as e:
            raise RecipeError(f"{tpath}:{e.lineno}: {e.message}", "fix the template syntax") from None
        if unknown:
            raise RecipeError(
                f"{tpath}: unknown variable {', '.join(unknown)}",
                f"templates may use {', '.join(sorted(known))}",
            )
        steer = _table(raw, "steer", SteerConfig, where)
        sampling = _table(raw, "sampling", SamplingParams, where)
        stages.append(Stage(name, str(folder), tfile, source, parse, max_tokens,
                            SteerConfig(**steer) if steer is not None else None, tuple(sorted((sampling or {}).items()))))
        known.add(name)
    return Recipe(
        name=str(data.get("name", folder.name)),
        description=str(data.get("description", "")),
        path=folder,
        stages=tuple(stages),
        fingerprint=digest.hexdigest(),
        conversation=conversation,
        system=system.strip(),
        examples=examples,
    )


def _examples(folder: Path, name, toml_path: Path, digest) -> tuple[tuple[str, str], ...]:
    """The recipe's example turns ([[turn]] role/content in a TOML file), alternating user/assistant."""
    if name is None:
        return ()
    path = folder / str(name)
    if not isinstance(name, str) or not path.is_file():
        raise RecipeError(f"{toml_path}: examples file {name!r} not found in {folder}", "check the file name")
    try:
        turns = tomllib.loads(path.read_text(encoding="utf-8")).get("turn", [])
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(f"{path}: not valid TOML: {e}", "fix the syntax") from None
    digest.update(name.encode() + b"\0" + path.read_bytes())
    out = []
    for i, t in enumerate(turns, 1):
        role, content = (t.get("role"), t.get("content")) if isinstance(t, dict) else (None, None)
        want = "user" if i % 2 else "assistant"
        if role != want or not isinstance(content, str) or not content.strip():
            raise RecipeError(f"{path}: turn {i} must have role = {want!r} and a non-empty content",
                              "write [[turn]] tables alternating user and assistant")
        out.append((role, content.strip()))
    if len(out) % 2:
        raise RecipeError(f"{path}: the last turn must be the assistant's", "add its answer or drop the turn")
    return tuple(out)
