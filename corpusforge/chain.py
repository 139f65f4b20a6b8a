"""Drive story plans through a recipe's stages on one engine, with checks and retries.

Each story has at most one request outstanding; its next stage is queued the moment the
previous one is accepted, so stages of different stories share every batch. A recipe with
`conversation = true` runs its stages as turns of one chat: each stage's prompt is the whole
conversation so far, and the engine continues the story's KV instead of re-reading it.
"""
from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field

from . import checks
from .engine.base import Request, Result
from .recipes import Recipe
from .sampler import StoryPlan, stage_seed
from .vocab import Vocab


def as_said(raw: str, cleaned: str) -> str:
    """How an answer appears in the conversation's later turns: as the model wrote it when
    cleaning only touched whitespace (its KV is then kept as is), else the cleaned text the
    row records (so the model is never shown words the row does not have)."""
    return raw if raw.split() == cleaned.split() else cleaned


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


class Chain:
    """summary -> key sentence -> story (or any recipe) for many plans at once."""

    def __init__(
        self,
        engine,
        recipe: Recipe,
        vocab: Vocab,
        *,
        max_attempts: int = 3,
        limits: checks.Limits = checks.Limits(),
        skip_checks: Collection[str] = (),
        max_open: int | None = None,
        strict_stages: bool = True,
    ):
        self.engine, self.recipe, self.max_attempts = engine, recipe, max_attempts
        self.limits, self.skip_checks = limits, tuple(skip_checks)
        # False passes cut-off or empty intermediate outputs on (the benchmark forces fixed
        # lengths; a real build wants them retried).
        self.strict_stages = strict_stages
        self.phrases = {f.label: f.phrase for f in vocab.features}
        self.has_key_sentence = recipe.stage_index("key_sentence") is not None
        # One story in flight per slot plus a few waiting, so a freed slot is refilled at once.
        parallel = getattr(engine, "parallel", 1)
        self.max_open = max_open or parallel + max(1, parallel // 4)
        self.prefixes = [self._constant_prefix(i) for i in range(len(recipe.stages))]

    def variables(self, plan: StoryPlan, outputs: dict[str, str]) -> dict:
        """What a stage template sees: the plan's words and features, earlier outputs."""
        return {
            **plan.words(),
            "features": list(plan.features),
            "feature_phrases": [self.phrases[f] for f in plan.features],
            **outputs,
        }

    def prompt(self, plan: StoryPlan, stage: int, outputs: dict[str, str], said: dict[str, str] | None = None) -> str:
        """The full model prompt (chat-formatted) of one stage of one story.

        In a conversation, earlier answers appear as `said` holds them (see `_advance`),
        else as the cleaned outputs."""
        variables = self.variables(plan, outputs)
        messages = []
        if self.recipe.conversation:  # earlier stages as (user, assistant) turns before this one
            for earlier in self.recipe.stages[:stage]:
                answer = (said or {}).get(earlier.name, outputs[earlier.name])
                messages += [{"role": "user", "content": earlier.render(variables)},
                             {"role": "assistant", "content": answer}]
        messages.append({"role": "user", "content": self.recipe.stages[stage].render(variables)})
        return self.engine.format_prompt(messages)

    def _constant_prefix(self, stage: int) -> str:
        """The text every prompt of this stage starts with: render two unlike plans, compare."""
        a = StoryPlan(0, 0, "apple", "eat", "red", tuple(self.phrases))
        b = StoryPlan(1, 1, "zebra", "walk", "big", ())
        earlier = [s.name for s in self.recipe.stages[:stage]]
        pa = self.prompt(a, stage, {n: "One day a cat sat." for n in earlier})
        pb = self.prompt(b, stage, {n: "Zoe ran home fast." for n in earlier})
        n = 0
        while n < min(len(pa), len(pb)) and pa[n] == pb[n]:
            n += 1
        return pa[:n]

    def run(self, plans: Iterable[StoryPlan]) -> Iterator[Outcome]:
        """Yield one Outcome per plan, in the order stories finish."""
        todo = iter(plans)
        open_stories = 0
        exhausted = False
        while True:
            while not exhausted and open_stories < self.max_open:
                plan = next(todo, None)
                if plan is None:
                    exhausted = True
                    break
                self._submit(_Story(plan))
                open_stories += 1
            if not self.engine.busy():
                return
            for result in self.engine.step():
                outcome = self._advance(result)
                if outcome is not None:
                    open_stories -= 1
                    yield outcome

    def _submit(self, story: _Story) -> None:
        stage = self.recipe.stages[story.stage]
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
            )
        )

    @staticmethod
    def parse(stage, raw: str) -> str:
        """A stage's answer cleaned by its recipe parser (text or sentence)."""
        return (checks.extract_sentence if stage.parse == "sentence" else checks.extract)(raw)

    def _advance(self, result: Result) -> Outcome | None:
        """Take one stage result: queue the next stage, a retry, or finish the story."""
        story: _Story = result.request.tag
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
            reason = checks.run_checks(self._draft(story, result.truncated), self.limits, self.skip_checks)
            if reason is None:
                return self._outcome(story, None)
        if story.attempt < self.max_attempts and not result.error:
            # Retry only the stage that failed, with a fresh seed: earlier stages passed.
            story.attempt += 1
            self._submit(story)
            return None
        return self._outcome(story, reason)

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
        )

    def _outcome(self, story: _Story, reason: str | None) -> Outcome:
        self.engine.release(story.plan.id)
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
        )
