"""Tests for corpusforge.recipes with axes: which variables templates may use, and that the shipped
recipes carry every axis into the prompts. Rendering only, from hand-written plans or vocab
folders: templates are text, so no model and no llama.cpp are needed.
"""
from __future__ import annotations

import shutil

import pytest

from corpusforge.errors import RecipeError
from corpusforge.recipes import builtin_dir, builtin_names, load_recipe
from corpusforge.sampler import StoryPlan, plan, template_variables
from corpusforge.vocab import default_vocab_dir, load_vocab

SHIPPED = ("tinystories-instruct", "tinystories-instruct-prompts", "tinystories-flat")


@pytest.fixture(scope="module")
def vocab():
    return load_vocab()


def prompts(recipe, vocab, p) -> dict[str, str]:
    """Every stage's rendered message for plan `p`, earlier outputs as placeholders."""
    out, earlier = {}, {}
    for stage in recipe.stages:
        out[stage.name] = stage.render({**template_variables(vocab, p), **earlier})
        earlier[stage.name] = f"<{stage.name}>"
    return out


def axis_names(vocab):
    return [a.name for a in vocab.axes]


def test_the_three_shipped_recipes_exist():
    assert set(SHIPPED) <= set(builtin_names())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_recipe_puts_every_chosen_axis_phrase_into_the_prompts(vocab, name):
    recipe = load_recipe(name, axis_names=axis_names(vocab))
    for i in range(20):
        p = plan(vocab, 0, i)
        text = "\n".join(prompts(recipe, vocab, p).values())
        for axis_phrase in template_variables(vocab, p)["axis_phrases"]:
            assert axis_phrase in text, (name, axis_phrase)


def test_separate_prompts_recipe_repeats_the_axes_in_the_story_prompt(vocab):
    """Its stages are prompts of their own, so the story stage must carry the axes itself."""
    recipe = load_recipe("tinystories-instruct-prompts", axis_names=axis_names(vocab))
    p = plan(vocab, 3, 3)
    story = prompts(recipe, vocab, p)["story"]
    assert all(phrase in story for phrase in template_variables(vocab, p)["axis_phrases"])


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_templates_start_with_constant_text_shared_by_every_plan(vocab, name):
    """The text before the first variable is the shared prefix the engine evaluates once."""
    recipe = load_recipe(name, axis_names=axis_names(vocab))
    a = prompts(recipe, vocab, plan(vocab, 0, 0))
    b = prompts(recipe, vocab, plan(vocab, 9, 77))
    first = recipe.stages[0]
    constant = first.source[:first.source.index("{")]
    assert len(constant) > 100 and a[first.name].startswith(constant) and b[first.name].startswith(constant)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_recipes_render_cleanly_for_a_vocab_without_axes(vocab, name):
    """A hand-written plan with no axes and no features: no empty `Details:` line, no double spaces."""
    recipe = load_recipe(name)
    bare = StoryPlan(0, 0, "cat", "run", "red", ())
    for text in prompts(recipe, vocab, bare).values():
        assert "Details:" not in text and "  " not in text and " ." not in text


def test_a_users_own_axis_reaches_the_shipped_prompts_without_template_edits(tmp_path):
    """A hand-written axes.toml with a new axis: axis_phrases carries it into the shipped recipes."""
    folder = tmp_path / "vocab"
    shutil.copytree(default_vocab_dir(), folder)
    (folder / "axes.toml").write_text(
        '[[axis]]\nname = "weather"\n[[axis.value]]\nlabel = "storm"\nphrase = "A big storm is coming."\n')
    own = load_vocab(folder)
    for name in SHIPPED:
        recipe = load_recipe(name, axis_names=axis_names(own))
        assert "A big storm is coming." in "\n".join(prompts(recipe, own, plan(own, 0, 1)).values())


def copy_recipe(tmp_path, template: str):
    """The flat recipe with its story.j2 replaced by `template`."""
    folder = tmp_path / "recipe"
    shutil.copytree(builtin_dir() / "tinystories-flat", folder)
    (folder / "story.j2").write_text(template)
    return folder


def test_an_axis_name_is_a_variable_only_when_the_vocab_has_that_axis(tmp_path):
    folder = copy_recipe(tmp_path, "Write a story. {{ weather }} {{ axis_labels['weather'] }} {{ axis_phrases | join(' ') }}\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(str(folder))
    assert "unknown variable weather" in info.value.message and "axis_phrases" in info.value.hint
    recipe = load_recipe(str(folder), axis_names=("weather",))
    p = StoryPlan(0, 0, "cat", "run", "red", (), (("weather", "storm"),))
    variables = {"noun": "cat", "verb": "run", "adjective": "red", "features": [], "feature_phrases": [],
                 "axis_phrases": ["A storm."], "axis_labels": p.axis_labels(), "weather": "A storm."}
    assert recipe.stages[0].render(variables) == "Write a story. A storm. storm A storm."


def test_a_stage_named_like_an_axis_is_refused(tmp_path):
    folder = copy_recipe(tmp_path, "Write a story.\n")
    toml = folder / "recipe.toml"
    toml.write_text(toml.read_text().replace('name = "story"', 'name = "weather"'))
    load_recipe(str(folder))  # fine without that axis
    with pytest.raises(RecipeError) as info:
        load_recipe(str(folder), axis_names=("weather",))
    assert "'weather' is already used" in info.value.message


# ----- steering, sampler overrides and example turns (recipe data, no model) ---------------

def instruct_copy(tmp_path):
    folder = tmp_path / "instruct"
    shutil.copytree(builtin_dir() / "tinystories-instruct", folder)
    return folder


def test_the_default_recipe_steers_every_stage_and_runs_dry_on_the_story():
    r = load_recipe("tinystories-instruct")
    assert [s.steer is not None for s in r.stages] == [True, True, True]
    story = r.stages[-1]
    assert story.steer.words and story.steer.key_sentence and story.steer.cut
    assert dict(story.sampling) == {"dry_multiplier": 0.8}
    assert r.system and len(r.examples) % 2 == 0 and r.examples[0][0] == "user"


@pytest.mark.parametrize("table, text, error", [
    ("steer", "wrods = true", "unknown steer setting 'wrods'"),
    ("steer", 'target_words = "many"', "steer.target_words must be int"),
    ("steer", "words = 1", "steer.words must be bool"),
    ("sampling", "dry_multiplier = -1.0", "sampling dry-multiplier must be 0 or more"),
    ("sampling", "top_q = 0.5", "unknown sampling setting 'top_q'"),
])
def test_a_bad_steering_or_sampling_setting_is_refused_with_the_stage_named(tmp_path, table, text, error):
    folder = copy_recipe(tmp_path, "Write a story.\n")
    (folder / "recipe.toml").write_text(
        f'name = "t"\n[[stages]]\nname = "story"\ntemplate = "story.j2"\nmax_tokens = 64\n[stages.{table}]\n{text}\n')
    with pytest.raises(RecipeError) as info:
        load_recipe(str(folder))
    assert error in info.value.message and "stage 1" in info.value.message


def test_example_turns_must_alternate_user_and_assistant(tmp_path):
    folder = instruct_copy(tmp_path)
    (folder / "examples.toml").write_text('[[turn]]\nrole = "assistant"\ncontent = "Hi."\n')
    with pytest.raises(RecipeError) as info:
        load_recipe(str(folder))
    assert "turn 1 must have role = 'user'" in info.value.message


def test_a_missing_examples_file_is_refused(tmp_path):
    folder = instruct_copy(tmp_path)
    (folder / "examples.toml").unlink()
    with pytest.raises(RecipeError) as info:
        load_recipe(str(folder))
    assert "examples file 'examples.toml' not found" in info.value.message


def test_editing_the_examples_changes_the_recipe_fingerprint(tmp_path):
    folder = instruct_copy(tmp_path)
    before = load_recipe(str(folder)).fingerprint
    ex = folder / "examples.toml"
    ex.write_text(ex.read_text().replace("red kite", "blue kite"))
    assert load_recipe(str(folder)).fingerprint != before


def test_the_system_line_and_examples_lead_every_prompt_and_are_shared_prefix(vocab):
    """The chain on a fake engine (only its chat formatting is used): the examples are constant
    text, so they fall inside the prefix every story of a stage shares."""
    from fake_engine import FakeEngine

    from corpusforge.chain import Chain

    r = load_recipe("tinystories-instruct", axis_names(vocab))
    chain = Chain(FakeEngine(lambda req: ""), r, vocab)
    p = plan(vocab, 0, 5)
    prompt = chain.prompt(p, 0, {})
    assert prompt.index(r.system) < prompt.index(r.examples[-1][1]) < prompt.index(p.noun)
    assert r.examples[-1][1] in chain.prefixes[0] and r.examples[-1][1] in chain.prefixes[2]
