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


def test_a_retried_attempt_records_the_tokens_its_failed_stage_generated():
    # Fake engine: a story's tokens are its words, so the failed story stage's count is known.
    failed_text = {}

    def story(p, attempt):
        if attempt == 1:
            failed_text[p.id] = story_text(p).replace(p.noun, "thing")
            return failed_text[p.id]
        return story_text(p)

    out = run(FakeEngine(answerer(story)), plans(2))
    assert all(o.failed_tokens == (len(failed_text[i].split()),) for i, o in out.items())


def test_wasted_tokens_count_failed_attempts_and_all_of_a_rejected_story():
    from corpusforge.build import Summary
    from corpusforge.runners.base import Event

    s = Summary(n=2)
    s.add(Event(0, 0, None, 10, 0, 300, failed=("words",), failed_tokens=(120,)), "m", 1.0)
    s.add(Event(1, 0, "dialogue: requested but no quoted speech", 10, 0, 500,
                failed=("words", "loop"), failed_tokens=(100, 40)), "m", 2.0)
    assert s.wasted == {"words": 220, "loop": 40, "dialogue": 360}


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
    assert all(r.prefix and r.prompt.startswith(r.prefix) for r in judge_requests)
    # Labels without worked examples share one prefix; MoralValue's (shots.toml) holds its examples.
    moral = [r for r in judge_requests if "Tom had two red apples" in r.prompt]
    assert len(moral) == 3 and all("Tom had two red apples" in r.prefix and r.prompt.count("<assistant>") == 2 for r in moral)
    assert len({r.prefix for r in judge_requests}) == 2


def test_a_measured_threshold_makes_the_score_the_verdict_and_leaves_the_written_answer(tmp_path):
    # Fake engine: the test plants the judge's first-token logits (score +2 or -2 by plan id),
    # which no random-weight model can be made to produce on purpose.
    import numpy as np

    engine = FakeEngine(answerer(judge=lambda req, label: "no"))
    ids = {w: engine.tokenize(w, add_special=False)[0] for w in ("yes", "Yes", "no", "No")}

    def logits(req):
        row = np.full(1000, -30.0)
        row[ids["yes"]] = row[ids["Yes"]] = 2.0 if req.tag.plan.id % 2 == 0 else -2.0
        row[ids["no"]] = row[ids["No"]] = 0.0
        return np.array([row])

    engine.logits = logits
    sha = "c" * 64
    gold = tmp_path / "judge_gold.json"
    gold.write_text(json.dumps({sha: {"MoralValue": {"verdict_threshold": 0.5, "prompt_sha256": JUDGE.prompt_sha256("MoralValue")},
                                      "Twist": {"verdict_threshold": 0.5, "prompt_sha256": "an edited template"}}}))
    judge = JUDGE.calibrated(sha, gold)
    assert judge.thresholds == (("MoralValue", 0.5),)  # Twist's figures are for another prompt
    out = run(engine, plans(4), judge=judge)
    for i, o in out.items():
        assert json.loads(o.judge_answers()) == {label: "no" for label in JUDGE_LABELS}  # as written
        assert o.judged_features() == (["MoralValue"] if i % 2 == 0 else [])
        assert json.loads(o.judge_scores())["MoralValue"] == (2.0 if i % 2 == 0 else -2.0)
    # Another judge model (or none measured): the verdict stays the written answer.
    assert JUDGE.calibrated("d" * 64, gold).thresholds == () and JUDGE.calibrated(None, gold).thresholds == ()


def test_the_judge_does_not_ask_a_feature_the_gold_set_measured_as_noise(tmp_path):
    # Gold figures written here (no model needed): Twist's verdict does not beat always-yes for
    # this prompt, MoralValue's does, BadEnding's were measured for another prompt (unknown).
    sha = "e" * 64
    gold = tmp_path / "judge_gold.json"
    base = {"always_yes_f1": 0.67}
    gold.write_text(json.dumps({sha: {
        "Twist": {**base, "f1": 0.65, "prompt_sha256": JUDGE.prompt_sha256("Twist")},
        "MoralValue": {**base, "f1": 0.2, "verdict_threshold": -0.6, "verdict": {"f1": 0.74},
                       "prompt_sha256": JUDGE.prompt_sha256("MoralValue")},
        "BadEnding": {**base, "f1": 0.1, "prompt_sha256": "an edited template"}}}))
    judge = JUDGE.calibrated(sha, gold)
    assert "Twist" not in judge.labels and {"MoralValue", "BadEnding"} <= set(judge.labels)
    assert set(JUDGE.calibrated(sha, gold, ask_all=True).labels) == set(JUDGE_LABELS)
    assert JUDGE.calibrated("f" * 64, gold).labels == JUDGE_LABELS  # a model never measured: all asked
    engine = FakeEngine(answerer(judge=lambda req, label: "yes"))
    out = run(engine, plans(2), judge=judge)
    asked = [r for r in engine.requests if r.grammar is not None]
    assert len(asked) == 2 * len(judge.labels) and not any("Twist" in r.prompt.split("Question:")[-1] for r in asked)
    assert all("Twist" not in json.loads(o.judge_answers()) for o in out.values())


def test_questions_with_worked_examples_come_last_so_a_story_is_read_again_only_once():
    # Fake engine: the order of requests is what is under test, not the text.
    assert JUDGE_LABELS[-1] == "MoralValue" and dict(JUDGE.shots).keys() == {"MoralValue"}
    engine = FakeEngine(answerer(), parallel=1)
    run(engine, plans(1), judge=JUDGE)
    prefixes = [r.prefix for r in engine.requests if r.grammar is not None]
    # One prefix change per story: the questions without examples continue the same KV.
    assert sum(a != b for a, b in zip(prefixes, prefixes[1:])) == 1


def test_a_judge_asked_nothing_keeps_the_story_unjudged():
    engine = FakeEngine(answerer())
    out = run(engine, plans(2), judge=JUDGE.asking([]))
    assert not [r for r in engine.requests if r.grammar is not None]
    assert all(o.reason is None and o.answers is None and o.judged_features() == [] for o in out.values())


@pytest.mark.parametrize("shots, fix", [
    ('[[Twist]]\nstory = "A cat sat."\nanswer = "maybe"\n', "answer = \"yes\""),
    ('[[Dialogue]]\nstory = "A cat sat."\nanswer = "yes"\n', "use one of"),
    ('[Twist]\nstory = "A cat sat."\n', "[[Twist]]"),
    ('[[Twist\n', "fix the TOML syntax"),
])
def test_a_bad_shots_file_names_the_fix(tmp_path, shots, fix):
    import shutil

    from corpusforge.errors import RecipeError
    from corpusforge.recipes import builtin_dir

    folder = tmp_path / "recipe"
    shutil.copytree(builtin_dir() / "tinystories-instruct", folder)
    (folder / "judge" / "shots.toml").write_text(shots)
    recipe = load_recipe(str(folder), axis_names=tuple(a.name for a in VOCAB.axes))
    with pytest.raises(RecipeError) as e:
        load_judge(recipe, VOCAB.features)
    assert "shots.toml" in e.value.message and fix in e.value.hint + e.value.message


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
    chain = Chain(engine, RECIPE, VOCAB, check_list=checks.text_checks(skip={"loop", "unfit", "dialogue"}))
    assert chain.cut_checks == {"length", "task_talk", "words"}
    story = chain._steer(type("S", (), {"plan": plans(1)[0], "stage": 2, "outputs": {"key_sentence": "Hi."}})())
    assert story.cut_checks == {"length", "task_talk", "words"}
    assert Chain(engine, RECIPE, VOCAB).cut_checks == {"length", "task_talk", "loop", "unfit", "words", "dialogue"}


def test_a_summary_is_never_cut_for_a_missing_word_or_speech():
    # Fake engine (only the requests' steering is read). The words and dialogue checks read the
    # story alone: a summary without the noun is fine, so its stage must not cut on it.
    chain = Chain(FakeEngine(answerer()), RECIPE, VOCAB)
    summary = chain._steer(type("S", (), {"plan": plans(1)[0], "stage": 0, "outputs": {}})())
    assert summary.words and summary.cut_checks == {"length", "task_talk", "loop", "unfit"}


@pytest.mark.parametrize("after, stages_of_attempt_3", [(0, [2]), (2, [0, 1, 2])])
def test_new_summary_after_k_story_failures_starts_the_story_over(after, stages_of_attempt_3):
    # Fake engine: the test plants a story that fails its noun twice, then passes.
    def story(p, attempt):
        return story_text(p).replace(p.noun, "thing") if attempt < 3 else story_text(p)

    engine = FakeEngine(answerer(story), parallel=1)
    # "rewind" off: the fake summary lacks every word, which would start each retry over too.
    out = run(engine, plans(1), max_attempts=3, new_summary_after=after, steer_off=("rewind",))
    assert out[0].reason is None and out[0].attempt == 3 and out[0].failed == ("words", "words")
    assert [stage for (_, stage, attempt) in engine.submitted if attempt == 3] == stages_of_attempt_3
    assert [stage for (_, stage, attempt) in engine.submitted if attempt == 2] == [2]  # one failure: the story alone


def _summary_then_story(summary):
    """Fake answers: `summary(plan)` as the summary; a story without its noun at the first try."""
    base = answerer(lambda p, attempt: story_text(p).replace(p.noun, "thing") if attempt == 1 else story_text(p))

    def answer(req):
        return summary(req.tag.plan) if req.tag.stage == 0 else base(req)
    return answer


@pytest.mark.parametrize("summary, steer_off, stages_of_attempt_2", [
    (lambda p: "Tom had a day.", (), [0, 1, 2]),  # the summary lacks the noun too: a new summary
    (lambda p: f"Tom had a {p.noun}.", (), [2]),  # the summary has it: the story alone again
    (lambda p: "Tom had a day.", ("rewind",), [2]),  # --no-steer rewind
])
def test_a_story_lacking_a_word_its_summary_lacks_starts_over_from_a_new_summary(summary, steer_off, stages_of_attempt_2):
    # Fake engine: the rule reads only the stage outputs and the retry reason.
    engine = FakeEngine(_summary_then_story(summary), parallel=1)
    out = run(engine, plans(1), max_attempts=3, steer_off=steer_off)
    assert out[0].reason is None and out[0].attempt == 2 and out[0].failed == ("words",)
    assert [stage for (_, stage, attempt) in engine.submitted if attempt == 2] == stages_of_attempt_2
