"""The chain on the real tiny model: a conversation recipe continues each story's KV."""
from __future__ import annotations

import shutil

import pytest

from corpusforge.chain import Chain
from corpusforge.checks import CHECKS
from corpusforge.engine.base import SamplingParams
from corpusforge.engine.llamacpp import LlamaEngine
from corpusforge.errors import RecipeError
from corpusforge.recipes import builtin_dir, load_recipe
from corpusforge.sampler import plan
from corpusforge.vocab import load_vocab


@pytest.fixture(scope="module")
def vocab():
    return load_vocab()


def context(engine, chain, plans, budgets: dict[str, int]) -> int:
    """Tokens per sequence for the longest prompt (the recipe's worked example included, earlier
    answers at full budget), the longest answer and a key sentence the steering may insert."""
    earlier = {"summary": " word" * budgets["summary"], "key_sentence": " word" * budgets["key_sentence"]}
    longest = max(len(engine.tokenize(chain.prompt(p, i, earlier))) for p in plans for i in range(3))
    return longest + max(budgets.values()) + budgets["key_sentence"] + 16


def test_conversation_prompt_holds_earlier_turns_and_answers(tiny_model, vocab):
    recipe = load_recipe("tinystories-instruct")
    assert recipe.conversation
    with LlamaEngine(tiny_model, parallel=1, n_threads=2) as e:
        chain = Chain(e, recipe, vocab)
        p = plan(vocab, 0, 0)
        outputs = {"summary": "Tom finds a red ball.", "key_sentence": "Tom kicks the ball."}
        story = chain.prompt(p, 2, outputs)
        first = chain.prompt(p, 0, {})
    # Stage 3's prompt is stage 1's prompt, then the answers and the later user turns; the
    # recipe's worked example comes first, as earlier turns of the same chat.
    example_turns = sum(role == "user" for role, _ in recipe.examples)
    assert example_turns and story.startswith(first.rsplit("<|im_start|>assistant", 1)[0])
    assert story.count("<|im_start|>user") == 3 + example_turns
    assert story.count("<|im_start|>assistant") == 3 + example_turns
    assert "Tom finds a red ball." in story and "Tom kicks the ball." in story
    assert p.noun in first and p.verb in first and p.adjective in first


def test_later_stages_evaluate_only_their_new_turn(tiny_model, vocab):
    recipe = load_recipe("tinystories-instruct").with_max_tokens({"summary": 24, "key_sentence": 12, "story": 40})
    plans = [plan(vocab, 0, i) for i in range(6)]
    with LlamaEngine(tiny_model, parallel=3, n_threads=2, sampling=SamplingParams(ignore_eos=True), prefix_slots=3) as e:
        # No check and no mid-stream cut (steer "cut"): every story runs all three stages,
        # whatever the random model writes.
        chain = Chain(e, recipe, vocab, max_attempts=1, skip_checks=tuple(CHECKS), strict_stages=False, steer_off=("cut",))
        first_turn = [len(e.tokenize(chain.prompt(p, 0, {}))) for p in plans]
        e.start(context(e, chain, plans, {"summary": 24, "key_sentence": 12, "story": 40}))
        outcomes = list(chain.run(plans))
        assert not e.busy() and all(s.session is None for s in e.slots)  # every story released its KV
    assert sorted(o.plan.id for o in outcomes) == list(range(6))
    assert [o.reason for o in outcomes] == [None] * 6
    for o, n_first in zip(sorted(outcomes, key=lambda o: o.plan.id), first_turn):
        evaluated = o.prompt_tokens - o.prompt_tokens_reused
        # Three stages read ~3 conversations' worth of prompt; a story evaluates its first
        # turn (less the shared instructions) plus two short user turns, not the re-reads.
        assert o.prompt_tokens > 3 * n_first
        assert evaluated < n_first + 70


def test_conversation_flag_must_be_a_boolean(tmp_path):
    folder = tmp_path / "r"
    shutil.copytree(builtin_dir() / "tinystories-instruct", folder)
    toml = folder / "recipe.toml"
    toml.write_text(toml.read_text().replace("conversation = true", 'conversation = "yes"'))
    with pytest.raises(RecipeError) as err:
        load_recipe(str(folder))
    assert "conversation must be true or false" in str(err.value)


def test_a_recipe_of_separate_prompts_still_shares_each_stage_prefix(tiny_model, vocab, tmp_path):
    folder = tmp_path / "separate"
    shutil.copytree(builtin_dir() / "tinystories-instruct", folder)
    toml = folder / "recipe.toml"
    toml.write_text(toml.read_text().replace("conversation = true", "conversation = false"))
    # Each constant part ends at a line break: a space before the summary would merge with its
    # first word in some tokenizations, and then the shared tokens would depend on the text.
    (folder / "key_sentence.j2").write_text("Write one sentence from the middle of this story.\n\nSummary:\n{{ summary }}\n")
    (folder / "story.j2").write_text('Write the story.\n\nSummary:\n{{ summary }}\nSentence: {{ key_sentence }}\nWords: {{ verb }}, {{ noun }}\n')
    recipe = load_recipe(str(folder)).with_max_tokens({"summary": 16, "key_sentence": 8, "story": 24})
    assert not recipe.conversation
    plans = [plan(vocab, 0, i) for i in range(4)]
    with LlamaEngine(tiny_model, parallel=2, n_threads=2, sampling=SamplingParams(ignore_eos=True), prefix_slots=3) as e:
        chain = Chain(e, recipe, vocab, max_attempts=1, skip_checks=tuple(CHECKS), strict_stages=False, steer_off=("cut",))
        story_prompt = chain.prompt(plans[0], 2, {"summary": "Tom finds a red ball.", "key_sentence": "Tom kicks it."})
        e.start(context(e, chain, plans, {"summary": 16, "key_sentence": 8, "story": 24}))
        outcomes = list(chain.run(plans))
        # One prefix per stage, each evaluated once and then copied.
        assert e.stats.prefix_evaluations == 3
        assert e.stats.prefix_tokens_reused > 0
    # A stage of its own: one user turn (after the worked example's) that carries the earlier outputs itself.
    example_turns = sum(role == "user" for role, _ in recipe.examples)
    assert story_prompt.count("<|im_start|>user") == 1 + example_turns and "<|im_start|>assistant\nTom" not in story_prompt
    assert "Summary:\nTom finds a red ball." in story_prompt and "Sentence: Tom kicks it." in story_prompt
    assert sorted(o.plan.id for o in outcomes) == list(range(4)) and [o.reason for o in outcomes] == [None] * 4
    assert all(set(o.outputs) == {"summary", "key_sentence", "story"} for o in outcomes)
