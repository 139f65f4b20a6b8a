"""Drive story plans through a recipe's stages on one engine, with checks, a judge and retries.

Each story has at most one request outstanding; its next stage is queued the moment the
previous one is accepted, so stages of different stories share every batch. A recipe with
`conversation = true` runs its stages as turns of one chat: each stage's prompt is the whole
conversation so far, and the engine continues the story's KV instead of re-reading it.
Checks are a list: the story-text checks run as soon as the story is written, then the judge
(if any) asks its questions, then the final checks (judge policy, dedup) decide.
"""
from __future__ import annotations

import json
from collections import deque
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np

from . import checks

from .engine.base import Engine, Request, Result, SamplingParams
from .engine.steer import CUT_CHECKS, LEVERS, STORY_ONLY_CUTS, Steer
from .judge import GRAMMAR, MAX_TOKENS, Judge
from .recipes import Recipe
from .sampler import StoryPlan, stage_seed, template_variables
from .vocab import Vocab

JUDGE_STAGE = 100  # stage number in the judge's sampler seeds, apart from any recipe stage


def as_said(raw: str, cleaned: str) -> str:
    """How an answer appears in the conversation's later turns: as the model wrote it when
    cleaning only touched whitespace (its KV is then kept as is), else the cleaned text the
    row records (so the model is never shown words the row does not have)."""
    return raw if raw.split() == cleaned.split() else cleaned


def judge_score(logits, ids: dict[str, int]) -> float | None:
    """log P(yes or Yes) - log P(no or No) at the first answer token (None without logits)."""
    if logits is None or len(logits) == 0:
        return None
    row = np.asarray(logits[0], dtype=np.float64)
    yes, no = np.logaddexp(row[ids["yes"]], row[ids["Yes"]]), np.logaddexp(row[ids["no"]], row[ids["No"]])
    return round(float(yes - no), 4)


class Feed:
    """Plans for Chain.run that may grow while it runs: whoever reads the outcomes can add a
    plan (a rejected story's replacement) before the chain pulls its next one."""

    def __init__(self, plans: Iterable[StoryPlan] = ()):
        self._todo = deque(plans)

    def add(self, plan: StoryPlan) -> None:
        self._todo.append(plan)

    def __iter__(self) -> Feed:
        return self

    def __next__(self) -> StoryPlan:
        if not self._todo:
            raise StopIteration
        return self._todo.popleft()


@dataclass(slots=True)
class Outcome:
    """A finished story: accepted (reason None) or rejected with its reason."""

    plan: StoryPlan
    outputs: dict[str, str]
    attempt: int  # 1-based number of the attempt that produced these outputs
    reason: str | None
    measured: dict
    prompt_tokens: int = 0
    prompt_tokens_reused: int = 0
    completion_tokens: int = 0
    # The judge's answer per asked feature as it wrote it (stripped, lowercased): "yes" or "no"
    # under the GBNF grammar; anything else is stored as it is, so a broken grammar shows.
    answers: dict[str, str] | None = None
    # The verdict per asked feature: the answer, or the score against a threshold measured on
    # the gold set for this judge model and prompt (Judge.verdict).
    verdicts: dict[str, str] | None = None
    judge_prompt_tokens: int = 0  # of the prompt tokens above, the judge's (evaluated only)
    judge_completion_tokens: int = 0
    failed: tuple[str, ...] = ()  # reason codes of the attempts that were retried
    failed_tokens: tuple[int, ...] = ()  # tokens each of those generated in its failed stage (and judge)
    forced_tokens: int = 0  # tokens steering inserted into the final story (its key sentence)
    # Per asked feature: log P(yes|Yes) - log P(no|No) at the judge's first answer token, from the
    # model's logits before the grammar; None where the engine gave no logits (the fake engine).
    scores: dict[str, float | None] | None = None

    def judge_answers(self) -> str:
        return json.dumps(self.answers) if self.answers else ""

    def judge_scores(self) -> str:
        return json.dumps(self.scores) if self.scores else ""

    def judged_features(self) -> list[str]:
        return [k for k, v in (self.verdicts or {}).items() if v == "yes"]


@dataclass(slots=True)
class _Story:
    plan: StoryPlan
    stage: int = 0
    attempt: int = 1
    outputs: dict[str, str] = field(default_factory=dict)
    said: dict[str, str] = field(default_factory=dict)  # each answer as the conversation shows it
    prompt_tokens: int = 0
    prompt_tokens_reused: int = 0
    completion_tokens: int = 0
    draft: checks.Draft | None = None
    answers: dict[str, str] | None = None
    verdicts: dict[str, str] | None = None
    asked: int = 0  # judge questions answered so far
    judge_prompt_tokens: int = 0
    judge_completion_tokens: int = 0
    failed: list[str] = field(default_factory=list)
    failed_tokens: list[int] = field(default_factory=list)
    tokens_at_try: int = 0  # completion_tokens when the stage now running was submitted
    forced_tokens: int = 0
    scores: dict[str, float | None] | None = None
    last_stage_failures: int = 0  # failed attempts at the last stage since the first stage ran


class Chain:
    """summary -> key sentence -> story (or any recipe) for many plans at once."""

    def __init__(
        self,
        engine: Engine,
        recipe: Recipe,
        vocab: Vocab,
        *,
        max_attempts: int = 3,
        check_list: list[checks.Check] | None = None,
        limits: checks.Limits = checks.Limits(),
        skip_checks: Collection[str] = (),
        judge: Judge | None = None,
        judge_engine: Engine | None = None,
        max_open: int | None = None,
        strict_stages: bool = True,
        steer_off: Collection[str] = (),
        new_summary_after: int = 0,
    ):
        self.engine, self.recipe, self.vocab, self.max_attempts = engine, recipe, vocab, max_attempts
        # After this many failed attempts at the last stage, the next attempt starts again from
        # the first stage (a new summary) instead of retrying the last one; 0: never.
        self.new_summary_after = new_summary_after
        # The story-text checks run first; `final` ones (dedup, judge policy) after the judge.
        all_checks = (check_list if check_list is not None
                      else checks.text_checks(limits, skip_checks, getattr(vocab, "unfit_words", ())))
        self.text_checks = [c for c in all_checks if not c.final]
        self.final_checks = [c for c in all_checks if c.final]
        self.judge, self.judge_engine = judge, judge_engine or engine
        # False passes cut-off or empty intermediate outputs on (the benchmark forces fixed
        # lengths; a real build wants them retried).
        self.strict_stages = strict_stages
        # Levers switched off (--no-steer, the bench's ablation): steering levers and "dry",
        # the recipe's sampler overrides.
        self.steer_off = levers_off(steer_off)
        base = getattr(engine, "sampling", None) or SamplingParams()
        self.sampling = [None if not s.sampling or "dry" in self.steer_off else replace(base, **dict(s.sampling))
                         for s in recipe.stages]
        self.has_key_sentence = recipe.stage_index("key_sentence") is not None
        self.cut_checks = frozenset(c.name for c in self.text_checks) & frozenset(CUT_CHECKS)
        # One story in flight per slot plus a few waiting, so a freed slot is refilled at once.
        parallel = getattr(engine, "parallel", 1)
        self.max_open = max_open or parallel + max(1, parallel // 4)
        self.prefixes = [self._constant_prefix(i) for i in range(len(recipe.stages))]
        self.judge_prefix = {label: self._judge_prefix(label) for label in judge.labels} if judge else {}
        # The answer tokens the judge score weighs: the grammar allows only lowercase, but the
        # 135M model's own top tokens there are "Yes" and "No" (measured), so both cases count.
        self.answer_ids = ({w: self.judge_engine.tokenize(w, add_special=False)[0] for w in ("yes", "Yes", "no", "No")}
                           if judge else {})

    def variables(self, plan: StoryPlan, outputs: dict[str, str]) -> dict:
        """What a stage template sees: the plan's words, features and axes, earlier outputs."""
        return {**template_variables(self.vocab, plan), **outputs}

    def prompt(self, plan: StoryPlan, stage: int, outputs: dict[str, str], said: dict[str, str] | None = None) -> str:
        """The full model prompt (chat-formatted) of one stage of one story.

        In a conversation, earlier answers appear as `said` holds them (see `_advance`),
        else as the cleaned outputs."""
        variables = self.variables(plan, outputs)
        messages = [{"role": "system", "content": self.recipe.system}] if self.recipe.system else []
        messages += [{"role": role, "content": content} for role, content in self.recipe.examples]
        if self.recipe.conversation:  # earlier stages as (user, assistant) turns before this one
            for earlier in self.recipe.stages[:stage]:
                answer = (said or {}).get(earlier.name, outputs[earlier.name])
                messages += [{"role": "user", "content": earlier.render(variables)},
                             {"role": "assistant", "content": answer}]
        messages.append({"role": "user", "content": self.recipe.stages[stage].render(variables)})
        return self.engine.format_prompt(messages)

    def _probe_plans(self) -> tuple[StoryPlan, StoryPlan]:
        """Two plans that differ in every variable: what both prompts share is constant text."""
        axes = self.vocab.axes
        a = StoryPlan(0, 0, "apple", "eat", "red", tuple(self.vocab.feature_names),
                      tuple((ax.name, ax.values[0].label) for ax in axes))
        b = StoryPlan(1, 1, "zebra", "walk", "big", (),
                      tuple((ax.name, ax.values[-1].label) for ax in axes))
        return a, b

    def _constant_prefix(self, stage: int) -> str:
        """The text every prompt of this stage starts with: render two unlike plans, compare."""
        a, b = self._probe_plans()
        earlier = [s.name for s in self.recipe.stages[:stage]]
        pa = self.prompt(a, stage, {n: "One day a cat sat." for n in earlier})
        pb = self.prompt(b, stage, {n: "Zoe ran home fast." for n in earlier})
        return _common_text(pa, pb)

    def _judge_prompt(self, label: str, story: str) -> str:
        return self.judge_engine.format_prompt(self.judge.conversation(label, story))

    def _judge_prefix(self, label: str) -> str:
        # Labels without worked examples share one prefix (chat header, instructions); a label
        # with examples has its own, so the examples are evaluated once per build, not per story.
        return _common_text(self._judge_prompt(label, "One day a cat sat."), self._judge_prompt(label, "Zoe ran home fast."))

    def run(self, plans: Iterable[StoryPlan]) -> Iterator[Outcome]:
        """Yield one Outcome per plan, in the order stories finish."""
        todo = iter(plans)
        refill = isinstance(plans, Feed)  # may grow between outcomes: never exhausted for good
        open_stories = 0
        exhausted = False
        engines = [self.engine] + ([self.judge_engine] if self.judge_engine is not self.engine else [])
        while True:
            while not exhausted and open_stories < self.max_open:
                plan = next(todo, None)
                if plan is None:
                    exhausted = not refill
                    break
                self._submit(_Story(plan))
                open_stories += 1
            busy = [e for e in engines if e.busy()]
            if not busy:
                return
            for engine in busy:
                for result in engine.step():
                    outcome = self._advance(result)
                    if outcome is not None:
                        open_stories -= 1
                        yield outcome

    def _submit(self, story: _Story) -> None:
        stage = self.recipe.stages[story.stage]
        story.tokens_at_try = story.completion_tokens
        self.engine.submit(
            Request(
                prompt=self.prompt(story.plan, story.stage, story.outputs, story.said),
                max_tokens=stage.max_tokens,
                seed=stage_seed(story.plan.seed, story.plan.id, story.stage, story.attempt),
                prefix=self.prefixes[story.stage],
                # Later stages first: finishing open stories keeps fewer of them in flight.
                priority=(-story.stage, story.plan.id),
                tag=story,
                # The engine keeps the story's KV between its requests: a conversation's next
                # turn and a retry of the same prompt evaluate only what is new.
                session=story.plan.id,
                sampling=self.sampling[story.stage],
                steer=self._steer(story),
            )
        )

    def _steer(self, story: _Story) -> Steer | None:
        """The stage's steering for this story: its words, its key sentence (story stage)."""
        stage = self.recipe.stages[story.stage]
        if stage.steer is None:
            return None
        config = stage.steer.off(self.steer_off)
        if not config.any():
            return None
        p = story.plan
        last = story.stage == len(self.recipe.stages) - 1
        return Steer(config, ((p.noun, "noun"), (p.verb, "verb"), (p.adjective, "adjective")),
                     key_sentence=story.outputs.get("key_sentence", "") if last and self.has_key_sentence else "",
                     unfit_words=getattr(self.vocab, "unfit_words", ()), dialogue=last and "Dialogue" in p.features,
                     cut_checks=self.cut_checks if last else self.cut_checks - STORY_ONLY_CUTS)

    def _ask_judge(self, story: _Story) -> None:
        """The next judge question of a story. Questions go one after another on one judge
        session, so each evaluates only its own words after the story (kept in the KV)."""
        label = self.judge.labels[story.asked]
        self.judge_engine.submit(
            Request(
                prompt=self._judge_prompt(label, story.draft.story),
                max_tokens=MAX_TOKENS,
                seed=stage_seed(story.plan.seed, story.plan.id, JUDGE_STAGE + story.asked, story.attempt),
                prefix=self.judge_prefix[label],
                priority=(-JUDGE_STAGE, story.plan.id),
                tag=story,
                session=("judge", story.plan.id),
                grammar=GRAMMAR,
                keep_logits=True,  # the first answer token's logits: the judge score
            )
        )

    @staticmethod
    def parse(stage, raw: str) -> str:
        """A stage's answer cleaned by its recipe parser (text or sentence)."""
        return (checks.extract_sentence if stage.parse == "sentence" else checks.extract)(raw)

    def _advance(self, result: Result) -> Outcome | None:
        """Take one result: queue the next stage, a judge question, a retry, or finish the story."""
        story: _Story = result.request.tag
        if result.request.grammar is not None and story.draft is not None:
            return self._take_verdict(story, result)
        stage = self.recipe.stages[story.stage]
        story.prompt_tokens += result.prompt_tokens
        story.prompt_tokens_reused += result.prompt_tokens_reused
        story.completion_tokens += result.completion_tokens
        text = self.parse(stage, result.text)
        story.outputs[stage.name] = text
        story.said[stage.name] = as_said(result.text, text)
        reason = None
        if result.error:
            reason = f"engine: {result.error}"
        elif result.cut:
            reason = result.cut
        elif story.stage < len(self.recipe.stages) - 1:
            if self.strict_stages and result.truncated:
                reason = f"truncated: {stage.name} hit max_tokens"
            elif self.strict_stages and not text:
                reason = f"empty: {stage.name} is empty"
            else:
                story.stage += 1
                self._submit(story)
                return None
        else:
            story.forced_tokens = result.forced_tokens
            story.draft = self._draft(story, result.truncated)
            reason = checks.first_failure(story.draft, self.text_checks)
            if reason is None:
                if self.judge is not None and self.judge.labels:
                    story.answers, story.verdicts, story.scores, story.asked = {}, {}, {}, 0
                    self._ask_judge(story)
                    return None
                return self._final(story)
        return self._retry_or_reject(story, reason, fatal=bool(result.error))

    def _take_verdict(self, story: _Story, result: Result) -> Outcome | None:
        story.judge_prompt_tokens += result.prompt_tokens - result.prompt_tokens_reused
        story.judge_completion_tokens += result.completion_tokens
        story.prompt_tokens += result.prompt_tokens
        story.prompt_tokens_reused += result.prompt_tokens_reused
        story.completion_tokens += result.completion_tokens
        if result.error:
            return self._retry_or_reject(story, f"engine: {result.error}", fatal=True)
        label = self.judge.labels[story.asked]
        story.answers[label] = result.text.strip().lower()
        story.scores[label] = judge_score(result.logits, self.answer_ids)
        story.verdicts[label] = self.judge.verdict(label, story.answers[label], story.scores[label])
        story.asked += 1
        if story.asked < len(self.judge.labels):
            self._ask_judge(story)
            return None
        self.judge_engine.release(("judge", story.plan.id))
        story.draft.judged = dict(story.verdicts)
        return self._final(story)

    def _final(self, story: _Story) -> Outcome | None:
        """The judge policy and dedup on a story that passed the text checks."""
        reason = self.judge.contradiction(story.plan.features, story.verdicts) if self.judge else None
        reason = reason or checks.first_failure(story.draft, self.final_checks)
        if reason is None:
            for check in self.final_checks + self.text_checks:
                if check.accept is not None:
                    check.accept(story.draft)
            return self._outcome(story, None)
        return self._retry_or_reject(story, reason)

    def _retry_or_reject(self, story: _Story, reason: str, fatal: bool = False) -> Outcome | None:
        if story.attempt < self.max_attempts and not fatal:
            # Retry only the stage that failed, with a fresh seed: earlier stages passed.
            story.failed.append(reason.split(":")[0])
            story.failed_tokens.append(story.completion_tokens - story.tokens_at_try)
            story.attempt += 1
            story.draft, story.answers, story.verdicts, story.scores = None, None, None, None
            if story.stage == len(self.recipe.stages) - 1:
                story.last_stage_failures += 1
                if ((self.new_summary_after and story.last_stage_failures >= self.new_summary_after)
                        or self._rewind(story, reason)):
                    story.stage, story.outputs, story.said, story.last_stage_failures = 0, {}, {}, 0
            self._submit(story)
            return None
        return self._outcome(story, reason)

    def _rewind(self, story: _Story, reason: str) -> bool:
        """True if the last stage lacks a required word that no earlier stage steering the words
        wrote either ("rewind"): then the next attempt starts from a new summary. In a 128-story
        SmolLM2 build 7 of the 8 stories rejected for a word had a summary without it, and three
        tries at the story on that summary all failed; with every word in its summary a story was
        kept at its first try 71 times in 86, with a word missing there 18 times in 42."""
        if "rewind" in self.steer_off or not reason.startswith("words"):
            return False
        p, stages = story.plan, self.recipe.stages
        missing = [(w, pos) for w, pos in ((p.noun, "noun"), (p.verb, "verb"), (p.adjective, "adjective"))
                   if not checks.mentions(w, pos, story.outputs.get(stages[-1].name, ""))]
        earlier = [story.outputs.get(s.name, "") for s in stages[:-1] if s.steer is not None and s.steer.words]
        return bool(earlier) and any(not any(checks.mentions(w, pos, text) for text in earlier) for w, pos in missing)

    def _draft(self, story: _Story, truncated: bool) -> checks.Draft:
        p = story.plan
        return checks.Draft(
            story=story.outputs[self.recipe.stages[-1].name],
            noun=p.noun,
            verb=p.verb,
            adjective=p.adjective,
            features=p.features,
            key_sentence=story.outputs.get("key_sentence") if self.has_key_sentence else None,
            truncated=truncated,
            id=p.id,
        )

    def _outcome(self, story: _Story, reason: str | None) -> Outcome:
        self.engine.release(story.plan.id)
        if self.judge is not None:
            self.judge_engine.release(("judge", story.plan.id))
        final = story.outputs.get(self.recipe.stages[-1].name, "")
        return Outcome(
            plan=story.plan,
            outputs=dict(story.outputs),
            attempt=story.attempt,
            reason=reason,
            measured=checks.measure(final),
            prompt_tokens=story.prompt_tokens,
            prompt_tokens_reused=story.prompt_tokens_reused,
            completion_tokens=story.completion_tokens,
            answers=dict(story.answers) if story.answers is not None and story.draft is not None else None,
            verdicts=dict(story.verdicts) if story.verdicts is not None and story.draft is not None else None,
            judge_prompt_tokens=story.judge_prompt_tokens,
            judge_completion_tokens=story.judge_completion_tokens,
            failed=tuple(story.failed),
            failed_tokens=tuple(story.failed_tokens),
            forced_tokens=story.forced_tokens,
            scores=dict(story.scores) if story.scores is not None and story.draft is not None else None,
        )


# What --no-steer may name ("all": every one): the steering's levers, "dry" (the recipe's sampler
# overrides) and "rewind" (a story lacking a word its summary lacks starts over from the summary).
STEER_LEVERS = LEVERS + ("dry", "rewind")


def levers_off(names: Collection[str]) -> frozenset[str]:
    return frozenset(STEER_LEVERS if "all" in names else names)


def steering_settings(recipe: Recipe, steer_off: Collection[str] = ()) -> dict:
    """Every steering setting in force, per stage: what each row and the resume fingerprint record."""
    off = levers_off(steer_off)
    stages = {}
    for s in recipe.stages:
        entry = {}
        if s.steer is not None:
            entry["steer"] = s.steer.off(off).to_dict()
        if s.sampling and "dry" not in off:
            entry["sampling"] = dict(s.sampling)
        if entry:
            stages[s.name] = entry
    return {"off": sorted(off), "stages": stages}


def _common_text(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]
