"""Steering inside the real engine (llama.cpp), on the real SmolLM2-135M-Instruct.

These use the real model because the levers act on what a model writes (sentences, paragraph
breaks, the words): the random-weight model writes no sentences to end or break. Nothing here
asserts on how good the text is (that is scripts/bench_quality.py); only on what the mechanism
guarantees whatever the model writes: the same tokens per seed, the forced sentence present,
the cut reason returned, the library DRY sampler accepted.
"""
from __future__ import annotations

import pytest

from corpusforge.checks import contains_sentence
from corpusforge.engine.base import Request, SamplingParams
from corpusforge.engine.llamacpp import LlamaEngine
from corpusforge.engine.steer import Steer, SteerConfig

WORDS = (("lamp", "noun"), ("hop", "verb"), ("yellow", "adjective"))
KEY = "The yellow lamp was on."


@pytest.fixture(scope="module")
def engine(real_model):
    with LlamaEngine(real_model, parallel=4, n_ctx=768, n_threads=2) as e:
        yield e


def requests(engine, steer, n=4, max_tokens=160, sampling=None):
    prompt = engine.format_prompt("Write a very short story for a small child.")
    return [Request(prompt=prompt, max_tokens=max_tokens, seed=11 + i, steer=steer, sampling=sampling) for i in range(n)]


def test_steered_generation_is_the_same_for_the_same_seeds(engine):
    steer = Steer(SteerConfig(target_words=40, min_words=20), WORDS, key_sentence=KEY)
    a = [r.text for r in engine.generate(requests(engine, steer))]
    b = [r.text for r in engine.generate(requests(engine, steer))]
    assert a == b and len(set(a)) == len(a)


def test_the_key_sentence_is_in_every_story_that_was_not_cut_short(engine):
    steer = Steer(SteerConfig(target_words=40, min_words=20, cut=False), WORDS, key_sentence=KEY)
    results = engine.generate(requests(engine, steer, max_tokens=200))
    finished = [r for r in results if not r.truncated]
    assert finished, "every request hit max_tokens: raise it"
    for r in finished:
        assert contains_sentence(KEY, r.text), r.text
        assert r.forced_tokens > 0 or KEY.lower() in r.text.lower()


def test_a_story_past_max_words_is_cut_and_says_why(engine):
    steer = Steer(SteerConfig(max_words=12, min_words=200, words=False, key_sentence=False), WORDS)
    for r in engine.generate(requests(engine, steer, max_tokens=120)):
        assert r.cut is not None and r.cut.startswith("length:")
        assert not r.truncated and r.completion_tokens < 120


def test_end_of_turn_never_comes_before_min_words(engine):
    steer = Steer(SteerConfig(min_words=30, target_words=30, words=False, key_sentence=False, cut=False), ())
    for r in engine.generate(requests(engine, steer, max_tokens=200)):
        assert r.truncated or len(r.text.split()) >= 30


def test_the_dry_sampler_runs_in_the_chain_and_stays_deterministic(engine):
    # A list the model repeats itself in ("*Animal: name*" every line): DRY must change what is
    # drawn there; the same seeds still give the same text.
    prompt = engine.format_prompt("Write a list of ten animals, each on its own line, as: Animal: name.")
    reqs = lambda sampling: [Request(prompt=prompt, max_tokens=120, seed=11, sampling=sampling)]  # noqa: E731
    plain = engine.generate(reqs(None))[0].text
    a = engine.generate(reqs(SamplingParams(dry_multiplier=50.0)))[0].text
    b = engine.generate(reqs(SamplingParams(dry_multiplier=50.0)))[0].text
    assert a == b and a
    assert a != plain
