"""Errors a user can fix. The CLI prints `message` and `hint` on one line and exits 1.

Anything that is not a CorpusforgeError is a bug in corpusforge and keeps its traceback.
"""
from __future__ import annotations


class CorpusforgeError(Exception):
    """A user-fixable problem: what went wrong, and the fix."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class VocabError(CorpusforgeError):
    """A vocab file or the features table is missing or malformed."""


class RecipeError(CorpusforgeError):
    """A recipe folder, template or stage setting is wrong."""


class ModelError(CorpusforgeError):
    """The model path, file or llama.cpp build cannot be used."""


class OutputError(CorpusforgeError):
    """The output folder holds something we must not touch."""
