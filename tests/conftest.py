"""Shared fixtures: the tiny random-weight model, made once per test session."""
from __future__ import annotations

import pytest

from corpusforge.engine.tiny import make_tiny_model


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """Path of the test-shape Q4_K_M tiny model (seed 0), made once per session."""
    return make_tiny_model(tmp_path_factory.mktemp("model") / "tiny.gguf")


@pytest.fixture(scope="session")
def second_model(tmp_path_factory):
    """Another test-shape tiny model (weight seed 1): a different file and sha256, for multi-model builds."""
    return make_tiny_model(tmp_path_factory.mktemp("model2") / "tiny-b.gguf", seed=1)
