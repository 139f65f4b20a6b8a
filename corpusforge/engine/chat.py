"""Render a GGUF model's own chat template (Jinja2, from its metadata) around a conversation.

llama.cpp's C helper only knows a fixed list of templates; HF chat templates are Jinja2, so
we render them the way transformers does, in a sandbox since they come inside model files.
"""
from __future__ import annotations

from functools import lru_cache

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment


def _raise(message: str):
    raise jinja2.TemplateError(message)


@lru_cache(maxsize=8)
def _compile(source: str) -> jinja2.Template:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise
    return env.from_string(source)


def render_chat(template: str, messages: list[dict], bos_token: str = "", eos_token: str = "") -> str:
    """The prompt text for a conversation ([{"role", "content"}, ...]), ending where the assistant starts."""
    return _compile(template).render(
        messages=messages,
        add_generation_prompt=True,
        bos_token=bos_token,
        eos_token=eos_token,
    )
