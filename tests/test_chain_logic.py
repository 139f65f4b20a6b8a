"""The chain's logic above the engine: retries, the checks list, dedup and the judge policy.

These tests use the fake engine (tests/fake_engine.py) because they need planted text -- an
exact or near duplicate, a story missing a word, a judge saying "no" -- that a random-weight
model cannot be made to write, and because they run in milliseconds. The real engine runs the
same chain in test_build.py and test_engine.py.
"""
from __future__ import annotations

import json
import random

import pytest

from corpusforge import checks
from corpusforge.chain import Chain
from corpusforge.dedup import DedupIndex
from corpusforge.judge import load_judge
from corpusforge.recipes import load_recipe
from corpusforge.sampler import PlanOptions, plan
from corpusforge.vocab import load_vocab
from fake_engine import FakeEngine

VOCAB = load_vocab()
RECIPE = load_recipe("tinystories-instruct", axis_names=tuple(a.name for a in VOCAB.axes))
WORDS = [w for w in VOCAB.nouns[:400]]


def plans(n, **options):
    return [plan(VOCAB, 0, i, PlanOptions(**options)) for i in range(n)]


def story_text(p, salt: int = 0) -> str:
    """A story that passes every text check for plan p: its words, its key sentence, dialogue,
    and 60 filler words drawn per (id, salt) so two stories share almost no 5-word shingle."""
    rng = random.Random(p.id * 1000 + salt)
    filler = " ".join(rng.choice(WORDS) for _ in range(60))
    return (f'Tom saw the sun {p.id}. "Look at the {p.adjective} {p.noun}," said Tom. '
            f"They {p.verb} together. {filler}.")


def answerer(story=lambda p, attempt: story_text(p), judge=lambda req, label: "yes"):
    def answer(req):
        s = req.tag
        if req.grammar is not None:
            return judge(req, JUDGE_LABELS[s.asked])
        if s.stage == 0:
            return "A short summary."
        if s.stage == 1:
            return f"Tom saw the sun {s.plan.id}."
        return story(s.plan, s.attempt)
    return answer


JUDGE = load_judge(RECIPE, VOCAB.features, "record")
JUDGE_LABELS = JUDGE.labels


def run(engine, plans_, **kw):
    return {o.plan.id: o for o in Chain(engine, RECIPE, VOCAB, **kw).run(plans_)}


def with_dedup(index, **kw):
    return checks.text_checks(**kw) + [checks.duplicate_check(index)]


def test_a_story_missing_its_noun_is_retried_with_a_new_seed_and_kept():
    def story(p, attempt):
        return story_text(p).replace(p.noun, "thing") if attempt == 1 else story_text(p)

    engine = FakeEngine(answerer(story))
    out = run(engine, plans(3))
    assert all(o.reason is None and o.attempt == 2 for o in out.values())
    assert all(o.failed == ("words",) for o in out.values())
    seeds = {(i, r.seed) for r, (i, stage, _) in zip(engine.requests, engine.submitted) if stage == 2}
    assert len(seeds) == 6  # two attempts per story, each with its own sampler seed


def test_after_the_last_attempt_a_failing_story_is_rejected_with_its_reason():
    engine = FakeEngine(answerer(lambda p, a: story_text(p).replace(p.noun, "thing")))
    out = run(engine, plans(2), max_attempts=2)
    assert all(o.reason.startswith("words: missing noun") and o.attempt == 2 for o in out.values())


def test_a_planted_exact_duplicate_is_caught_and_regenerated():
    # Story 3's first attempt repeats story 0 with other case and spacing: an exact duplicate.
    ps = plans(4)
    def story(p, attempt):
        if p.id == 3 and attempt == 1:
            return "  " + story_text(ps[0]).upper().replace(" ", "   ") + " "
        return story_text(p)

    index = DedupIndex()
    out = run(FakeEngine(answerer(story), parallel=1), ps, check_list=with_dedup(index, skip=("words", "key_sentence")))
    assert out[3].reason is None and out[3].attempt == 2 and out[3].failed == ("duplicate",)
    assert len(index) == 4


def test_a_planted_near_duplicate_is_caught_and_after_the_last_attempt_rejected_with_the_earlier_id():
    # Story 2 always repeats story 0 with one word changed: near (true Jaccard ~0.87), not exact.
    from corpusforge.dedup import shingles

    ps = plans(3)
    def story(p, attempt):
        if p.id == 2:
            return story_text(ps[0]).replace("together", "again")
        return story_text(p)

    a, b = shingles(story(ps[0], 1), 5), shingles(story(ps[2], 1), 5)
    assert 0.8 < len(a & b) / len(a | b) < 1.0

    index = DedupIndex()
    out = run(FakeEngine(answerer(story), parallel=1), ps, max_attempts=2,
              check_list=with_dedup(index, skip=("words", "key_sentence", "dialogue")))
    assert out[2].reason == "duplicate:0" and out[2].attempt == 2
    assert 2 not in index and 0 in index  # a rejected story never enters the index


def test_dedup_checks_against_stories_kept_before_this_chain_started():
    # The index is shared across shards: a story kept in an earlier shard counts.
    ps = plans(2)
    index = DedupIndex()
    index.add(999, story_text(ps[1]))
    out = run(FakeEngine(answerer(), parallel=1), ps, max_attempts=1, check_list=with_dedup(index))
    assert out[0].reason is None and out[1].reason == "duplicate:999"


def test_the_judge_asks_every_judged_feature_and_its_verdicts_are_kept():
    said = {"BadEnding": "no", "Twist": "yes"}
    engine = FakeEngine(answerer(judge=lambda req, label: said.get(label, "yes")))
    out = run(engine, plans(3), judge=JUDGE)
    for o in out.values():
        assert o.reason is None
        assert set(o.verdicts) == set(JUDGE_LABELS) and o.verdicts["BadEnding"] == "no"
        assert json.loads(o.judge_answers())["BadEnding"] == "no"
        assert "BadEnding" not in o.judged_features() and "Twist" in o.judged_features()
        assert o.judge_completion_tokens == len(JUDGE_LABELS)
    judge_requests = [r for r in engine.requests if r.grammar is not None]
    assert len(judge_requests) == 3 * len(JUDGE_LABELS)
    assert all(r.prompt.startswith(judge_requests[0].prefix) and r.prefix for r in judge_requests)


def test_judge_policy_reject_retries_a_contradicted_feature_then_rejects_it():
    ps = [p for p in plans(40) if "BadEnding" in p.features][:2]
    assert ps
    judge = load_judge(RECIPE, VOCAB.features, "reject")
    engine = FakeEngine(answerer(judge=lambda req, label: "no" if label == "BadEnding" else "yes"))
    out = run(engine, ps, judge=judge, max_attempts=2)
    assert all(o.reason == "judge:BadEnding" and o.attempt == 2 for o in out.values())


def test_judge_policy_record_keeps_a_contradicted_story():
    ps = [p for p in plans(40) if "BadEnding" in p.features][:2]
    engine = FakeEngine(answerer(judge=lambda req, label: "no"))
    out = run(engine, ps, judge=JUDGE)
    assert all(o.reason is None and o.verdicts["BadEnding"] == "no" for o in out.values())


def test_a_story_failing_text_checks_is_never_judged():
    engine = FakeEngine(answerer(lambda p, a: "too short"))
    out = run(engine, plans(2), judge=JUDGE, max_attempts=1)
    assert all(o.reason.startswith("length") and o.verdicts is None for o in out.values())
    assert not [r for r in engine.requests if r.grammar is not None]


def test_axes_reach_the_prompt_through_the_template():
    ps = plans(2)
    engine = FakeEngine(answerer())
    run(engine, ps)
    first = next(r for r, (i, stage, _) in zip(engine.requests, engine.submitted) if i == 0 and stage == 0)
    phrases = {v.label: v.phrase for a in VOCAB.axes for v in a.values}
    for axis, label in ps[0].axis_labels().items():
        assert phrases[label] in first.prompt


@pytest.mark.parametrize("bad", [0.0, 1.5])
def test_a_bad_dedup_threshold_is_refused(bad):
    from corpusforge.errors import CorpusforgeError

    with pytest.raises(CorpusforgeError):
        DedupIndex(threshold=bad)


def test_skip_check_reaches_the_mid_stream_cut_of_the_story_stage():
    # The cut applies loop/task-talk/unfit/length early; a check turned off must not cut either.
    engine = FakeEngine(answerer())
    chain = Chain(engine, RECIPE, VOCAB, check_list=checks.text_checks(skip={"loop", "unfit"}))
    assert chain.cut_checks == {"length", "task_talk"}
    story = chain._steer(type("S", (), {"plan": plans(1)[0], "stage": 2, "outputs": {"key_sentence": "Hi."}})())
    assert story.cut_checks == {"length", "task_talk"}
    assert Chain(engine, RECIPE, VOCAB).cut_checks == {"length", "task_talk", "loop", "unfit"}
