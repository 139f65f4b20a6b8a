"""Tests for corpusforge.vocab: the packaged default vocab, its fingerprint, and every load error.
Bad folders are a copy of the default with exactly one thing broken, or a hand-written axes.toml /
features.toml: loading is pure file parsing, so no model and no llama.cpp are needed.
"""
from __future__ import annotations

import pickle
import re
import shutil
import textwrap

import pytest

from corpusforge.errors import VocabError
from corpusforge.vocab import (
    FEATURE_NAMES, RESERVED_NAMES, Axis, AxisValue, Feature, Vocab, default_vocab_dir, load_vocab,
)


@pytest.fixture
def vocab_copy(tmp_path):
    """A writable copy of the default vocab folder."""
    folder = tmp_path / "vocab"
    shutil.copytree(default_vocab_dir(), folder)
    return folder


def edit(file, old, new):
    """Replace the first `old` in `file` with `new`, failing if `old` is absent."""
    text = file.read_text()
    assert old in text, f"{old!r} not in {file}"
    file.write_text(text.replace(old, new, 1))


def line_of(file, pattern):
    """Return the 1-based line number of the first line matching `pattern`."""
    for lineno, line in enumerate(file.read_text().splitlines(), start=1):
        if re.search(pattern, line):
            return lineno
    raise AssertionError(f"{pattern!r} not in {file}")


def load_error(folder) -> VocabError:
    """Load `folder` and return the VocabError it must raise."""
    with pytest.raises(VocabError) as info:
        load_vocab(folder)
    assert info.value.hint, "every VocabError must carry a hint naming the fix"
    return info.value


# --- the packaged default -------------------------------------------------------------

def test_default_vocab_has_at_least_1500_words_split_half_quarter_quarter():
    counts = load_vocab().counts()
    total = counts["nouns"] + counts["verbs"] + counts["adjectives"]
    assert total >= 1500
    assert 0.40 <= counts["nouns"] / total <= 0.60
    assert 0.18 <= counts["verbs"] / total <= 0.32
    assert 0.18 <= counts["adjectives"] / total <= 0.32
    assert counts["features"] == 6
    assert counts["axes"] == 3 and counts["axis_values"] >= 45


def test_default_words_are_lowercase_letters_and_unique_per_list():
    vocab = load_vocab()
    for words in (vocab.nouns, vocab.verbs, vocab.adjectives):
        assert all(re.fullmatch(r"[a-z]+", w) for w in words)
        assert len(set(words)) == len(words)
    assert {"dog", "ball", "tree"} <= set(vocab.nouns)
    assert {"jump", "run"} <= set(vocab.verbs)
    assert {"happy", "big"} <= set(vocab.adjectives)


def test_default_words_rarely_appear_in_two_lists():
    vocab = load_vocab()
    n, v, a = set(vocab.nouns), set(vocab.verbs), set(vocab.adjectives)
    assert len((n & v) | (n & a) | (v & a)) <= 20


def test_default_features_are_the_six_tinystories_labels_in_order():
    vocab = load_vocab()
    assert tuple(vocab.feature_names) == FEATURE_NAMES
    assert FEATURE_NAMES == ("Dialogue", "BadEnding", "MoralValue", "Twist", "Foreshadowing", "Conflict")
    assert vocab.features[0] == Feature("Dialogue", "the story should contain at least one dialogue", 0.5)
    assert all(0.0 < f.probability < 1.0 for f in vocab.features)


def test_default_features_are_judged_except_dialogue_which_a_regex_checks():
    vocab = load_vocab()
    assert {f.label: f.judge for f in vocab.features} == {label: label != "Dialogue" for label in FEATURE_NAMES}


def test_default_axes_are_opening_setting_theme_with_enough_simple_values():
    vocab = load_vocab()
    axes = {a.name: a for a in vocab.axes}
    assert list(axes) == ["opening", "setting", "theme"]
    assert len(axes["opening"].values) >= 10 and len(axes["setting"].values) >= 15 and len(axes["theme"].values) >= 20
    for axis in vocab.axes:
        assert axis.description and axis.name not in RESERVED_NAMES
        assert axis.labels() == [v.label for v in axis.values] and len(set(axis.labels())) == len(axis.values)
        for value in axis.values:
            assert re.fullmatch(r"[a-z][a-z0-9_]*", value.label)
            assert value.phrase[0].isupper() and value.phrase.endswith("."), value.phrase
            assert value.weight > 0


def test_default_opening_once_upon_a_time_is_one_ordinary_value_among_many():
    # TinyStories' most worn opening must not dominate: its weight is no larger than the typical value's.
    opening = next(a for a in load_vocab().axes if a.name == "opening")
    weights = sorted(v.weight for v in opening.values)
    once = next(v for v in opening.values if "once upon a time" in v.phrase.lower())
    assert once.weight <= weights[len(weights) // 2]
    assert opening.values[0] is not once


def test_default_vocab_dir_is_the_package_folder_and_source_records_it():
    folder = default_vocab_dir()
    assert (folder / "nouns.txt").is_file()
    assert load_vocab(None).source == load_vocab(folder).source


def test_every_default_verb_inflects_with_lemminflect():
    lemminflect = pytest.importorskip("lemminflect")
    for verb in load_vocab().verbs:
        for tag in ("VBD", "VBG", "VBZ"):
            assert lemminflect.getInflection(verb, tag=tag), f"{verb!r} has no {tag} form"


def test_vocab_is_a_frozen_slotted_record():
    vocab = load_vocab()
    assert isinstance(vocab, Vocab) and not hasattr(vocab, "__dict__")
    with pytest.raises(AttributeError):
        vocab.nouns = ()


# --- fingerprint ----------------------------------------------------------------------

def test_fingerprint_is_the_same_for_the_same_content_in_another_folder(vocab_copy):
    fingerprint = load_vocab().fingerprint()
    assert re.fullmatch(r"[0-9a-f]{64}", fingerprint)
    assert load_vocab(vocab_copy).fingerprint() == fingerprint
    assert load_vocab(vocab_copy).source != load_vocab().source


def test_fingerprint_ignores_comments_and_blank_lines(vocab_copy):
    before = load_vocab(vocab_copy).fingerprint()
    nouns = vocab_copy / "nouns.txt"
    nouns.write_text("# another comment\n\n" + nouns.read_text().replace("\ndog\n", "\n  dog  # pet\n\n"))
    assert load_vocab(vocab_copy).fingerprint() == before


@pytest.mark.parametrize("name, old, new", [
    ("nouns.txt", "dog", "doggy"), ("verbs.txt", "jump", "leapfrog"), ("adjectives.txt", "happy", "happier"),
])
def test_fingerprint_changes_when_a_word_changes(vocab_copy, name, old, new):
    before = load_vocab(vocab_copy).fingerprint()
    edit(vocab_copy / name, f"\n{old}\n", f"\n{new}\n")
    assert load_vocab(vocab_copy).fingerprint() != before


def test_fingerprint_changes_when_word_order_changes(vocab_copy):
    # The sampler picks words by index, so a reordered list samples a different corpus.
    before = load_vocab(vocab_copy).fingerprint()
    edit(vocab_copy / "nouns.txt", "\ndog\n", "\n")
    (vocab_copy / "nouns.txt").write_text((vocab_copy / "nouns.txt").read_text() + "dog\n")
    assert load_vocab(vocab_copy).fingerprint() != before


def test_fingerprint_changes_when_a_phrase_changes(vocab_copy):
    before = load_vocab(vocab_copy).fingerprint()
    edit(vocab_copy / "features.toml", "the story has a bad ending", "the story ends sadly")
    assert load_vocab(vocab_copy).fingerprint() != before


def test_fingerprint_changes_when_a_probability_changes(vocab_copy):
    before = load_vocab(vocab_copy).fingerprint()
    edit(vocab_copy / "features.toml", "probability = 0.5", "probability = 0.6")
    assert load_vocab(vocab_copy).fingerprint() != before


def test_fingerprint_changes_when_a_judge_flag_changes(vocab_copy):
    before = load_vocab(vocab_copy).fingerprint()
    edit(vocab_copy / "features.toml", "probability = 0.25\njudge = true", "probability = 0.25\njudge = false")
    assert load_vocab(vocab_copy).fingerprint() != before


@pytest.mark.parametrize("old, new", [
    ('phrase = "The story happens in a park."', 'phrase = "The story happens in a big park."'),
    ('label = "park"', 'label = "green_park"'),
    ('label = "park"\n', 'label = "park"\nweight = 2\n'),
    ('name = "theme"', 'name = "topic"'),
])
def test_fingerprint_changes_when_an_axis_changes(vocab_copy, old, new):
    """Axes decide plans and prompts, so any edit to a name, label, phrase or weight is a new vocab."""
    before = load_vocab(vocab_copy).fingerprint()
    edit(vocab_copy / "axes.toml", old, new)
    assert load_vocab(vocab_copy).fingerprint() != before


def test_fingerprint_changes_when_axis_values_are_reordered(vocab_copy):
    """The sampler picks a value by its place in the file, so order is part of the vocab."""
    axes = vocab_copy / "axes.toml"
    before = load_vocab(vocab_copy).fingerprint()
    block = '[[axis.value]]\nlabel = "park"\nphrase = "The story happens in a park."\n\n'
    edit(axes, block, "")
    edit(axes, '[[axis.value]]\nlabel = "home"', block + '[[axis.value]]\nlabel = "home"')
    assert load_vocab(vocab_copy).fingerprint() != before


def test_fingerprint_ignores_an_axis_description(vocab_copy):
    """A description reaches neither plans nor prompts, so rewording it must not block a resume."""
    before = load_vocab(vocab_copy).fingerprint()
    edit(vocab_copy / "axes.toml", 'description = "where the story happens"', 'description = "the place"')
    assert load_vocab(vocab_copy).fingerprint() == before


# --- unfit.txt ------------------------------------------------------------------------

def test_default_unfit_list_loads_words_and_phrases_without_comments():
    unfit = load_vocab().unfit_words
    assert {"knife", "knives", "blood", "kill", "gun", "dead body"} <= set(unfit)
    assert all(re.fullmatch(r"[a-z]+( [a-z]+)*", w) for w in unfit) and len(set(unfit)) == len(unfit)


def test_no_default_vocab_word_is_caught_by_the_unfit_check():
    """A story must use its sampled word: an unfit one would reject every story that draws it."""
    from corpusforge.checks import _forms, unfit  # _forms: every inflection lemminflect knows

    vocab = load_vocab()
    for upos, words in (("NOUN", vocab.nouns), ("VERB", vocab.verbs), ("ADJ", vocab.adjectives)):
        for word in words:
            for form in _forms(word, upos):
                assert unfit(f"Tom saw the {form}.", vocab.unfit_words) is None, form


def test_a_folder_without_unfit_txt_uses_the_shipped_list(vocab_copy):
    (vocab_copy / "unfit.txt").unlink()
    assert load_vocab(vocab_copy).unfit_words == load_vocab().unfit_words
    assert load_vocab(vocab_copy).fingerprint() == load_vocab().fingerprint()


def test_an_unfit_txt_of_only_comments_turns_the_check_off(vocab_copy):
    (vocab_copy / "unfit.txt").write_text("# nothing is unfit here\n\n")
    assert load_vocab(vocab_copy).unfit_words == ()


def test_unfit_phrases_keep_one_space_between_words_and_drop_comments(vocab_copy):
    (vocab_copy / "unfit.txt").write_text("  big   spider  # scary\nogre\n")
    assert load_vocab(vocab_copy).unfit_words == ("big spider", "ogre")


def test_fingerprint_changes_when_an_unfit_word_is_added(vocab_copy):
    before = load_vocab(vocab_copy).fingerprint()
    unfit = vocab_copy / "unfit.txt"
    unfit.write_text(unfit.read_text() + "ogre\n")
    assert load_vocab(vocab_copy).fingerprint() != before


def test_fingerprint_ignores_the_order_and_comments_of_unfit_words(vocab_copy):
    """Any listed word rejects a story, so only the set of words decides what is kept."""
    before = load_vocab(vocab_copy).fingerprint()
    unfit = vocab_copy / "unfit.txt"
    words = load_vocab(vocab_copy).unfit_words
    unfit.write_text("# reordered\n" + "\n".join(reversed(words)) + "\n")
    assert load_vocab(vocab_copy).fingerprint() == before


@pytest.mark.parametrize("line, what", [
    ("Knife", "has uppercase letters"), ("ice-pick", "is not a word or phrase"), ("gun2", "is not a word or phrase"),
])
def test_bad_unfit_entry_error_names_its_line(vocab_copy, line, what):
    unfit = vocab_copy / "unfit.txt"
    unfit.write_text("# header\nblood\n" + line + "\n")
    err = load_error(vocab_copy)
    assert f"{unfit}:3:" in err.message and what in err.message


def test_duplicate_unfit_entry_error_names_both_lines(vocab_copy):
    unfit = vocab_copy / "unfit.txt"
    unfit.write_text("blood\ngun\nblood\n")
    err = load_error(vocab_copy)
    assert f"{unfit}:3:" in err.message and "first on line 1" in err.message


def test_an_unfit_word_that_is_also_a_vocab_word_is_an_error(vocab_copy):
    unfit = vocab_copy / "unfit.txt"
    unfit.write_text(unfit.read_text() + "dog\n")
    err = load_error(vocab_copy)
    assert "'dog' is also in nouns.txt" in err.message and "delete 'dog'" in err.hint


def test_vocab_with_unfit_words_survives_pickling_for_worker_processes():
    vocab = load_vocab()
    again = pickle.loads(pickle.dumps(vocab))
    assert again == vocab and again.unfit_words == vocab.unfit_words and again.fingerprint() == vocab.fingerprint()


# --- folder and word-list errors ------------------------------------------------------

def test_missing_folder_is_an_error_naming_the_folder(tmp_path):
    err = load_error(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in err.message


@pytest.mark.parametrize("name", ["nouns.txt", "verbs.txt", "adjectives.txt", "features.toml"])
def test_missing_file_is_an_error_naming_the_file(vocab_copy, name):
    (vocab_copy / name).unlink()
    err = load_error(vocab_copy)
    assert str(vocab_copy / name) in err.message and "missing" in err.message


def test_list_with_only_comments_is_an_empty_list_error(vocab_copy):
    (vocab_copy / "verbs.txt").write_text("# verbs\n\n   # nothing here\n")
    err = load_error(vocab_copy)
    assert str(vocab_copy / "verbs.txt") in err.message and "empty" in err.message


def test_duplicate_word_error_names_both_lines(vocab_copy):
    nouns = vocab_copy / "nouns.txt"
    first = line_of(nouns, r"^dog$")
    nouns.write_text(nouns.read_text() + "dog\n")
    last = len(nouns.read_text().splitlines())
    err = load_error(vocab_copy)
    assert f"{nouns}:{last}:" in err.message
    assert f"line {first}" in err.message and "'dog'" in err.message


def test_uppercase_word_error_says_use_lowercase_at_its_line(vocab_copy):
    verbs = vocab_copy / "verbs.txt"
    lineno = line_of(verbs, r"^jump$")
    edit(verbs, "\njump\n", "\nJump\n")
    err = load_error(vocab_copy)
    assert f"{verbs}:{lineno}:" in err.message
    assert "use lowercase" in err.hint and "'jump'" in err.hint


def test_two_words_on_a_line_error_says_one_word_per_line(vocab_copy):
    adjectives = vocab_copy / "adjectives.txt"
    lineno = line_of(adjectives, r"^happy$")
    edit(adjectives, "\nhappy\n", "\nvery happy\n")
    err = load_error(vocab_copy)
    assert f"{adjectives}:{lineno}:" in err.message
    assert "one word per line" in err.hint


@pytest.mark.parametrize("token", ["ice-cream", "don't", "abc1", "café"])
def test_token_with_non_letters_is_not_a_word(vocab_copy, token):
    nouns = vocab_copy / "nouns.txt"
    lineno = line_of(nouns, r"^ball$")
    edit(nouns, "\nball\n", f"\n{token}\n")
    err = load_error(vocab_copy)
    assert f"{nouns}:{lineno}:" in err.message and "not a word" in err.message


# --- features.toml errors -------------------------------------------------------------

def test_invalid_toml_error_names_the_file_and_line(vocab_copy):
    features = vocab_copy / "features.toml"
    lineno = line_of(features, r'label = "Twist"')
    edit(features, 'label = "Twist"', 'label = "Twist')
    err = load_error(vocab_copy)
    assert str(features) in err.message and "not valid TOML" in err.message
    assert f"line {lineno}" in err.message


@pytest.mark.parametrize("bad", ["Plot Twist", "2Twist", "Twist!", "_Twist", ""])
def test_feature_label_that_is_not_a_name_error_names_its_line(vocab_copy, bad):
    features = vocab_copy / "features.toml"
    lineno = line_of(features, r'label = "Twist"')
    edit(features, 'label = "Twist"', f'label = "{bad}"')
    err = load_error(vocab_copy)
    assert f"{features}:{lineno}:" in err.message and f"{bad!r} is not a name" in err.message


def test_any_feature_labels_are_accepted_in_file_order(tmp_path, vocab_copy):
    """A hand-written features.toml with labels outside TinyStories' six: they load as written."""
    (vocab_copy / "features.toml").write_text(textwrap.dedent("""\
        [[feature]]
        label = "Rhyme"
        phrase = "the story rhymes"
        probability = 0.2
        judge = true

        [[feature]]
        label = "Humor_2"
        phrase = "the story is funny"
        probability = 1
    """))
    vocab = load_vocab(vocab_copy)
    assert vocab.features == (Feature("Rhyme", "the story rhymes", 0.2, True), Feature("Humor_2", "the story is funny", 1.0, False))
    assert vocab.feature_names == ["Rhyme", "Humor_2"]


def test_missing_label_key_error_names_the_table_header(vocab_copy):
    features = vocab_copy / "features.toml"
    header = line_of(features, r'label = "Conflict"') - 1
    edit(features, 'label = "Conflict"\n', "")
    err = load_error(vocab_copy)
    assert f"{features}:{header}:" in err.message and "missing label" in err.message


def test_feature_table_left_out_leaves_the_others_in_order(vocab_copy):
    """Any subset of features is a valid space; there is no fixed list to be missing from."""
    features = vocab_copy / "features.toml"
    text = features.read_text()
    start = text.index('[[feature]]\nlabel = "Foreshadowing"')
    end = text.index("[[feature]]", start + 1)
    features.write_text(text[:start] + text[end:])
    assert load_vocab(vocab_copy).feature_names == ["Dialogue", "BadEnding", "MoralValue", "Twist", "Conflict"]


def test_features_file_without_features_is_an_error(vocab_copy):
    features = vocab_copy / "features.toml"
    features.write_text("# no features yet\n")
    err = load_error(vocab_copy)
    assert f"{features}:1:" in err.message and "no [[feature]] tables" in err.message


@pytest.mark.parametrize("bad", ["1", '"yes"', "0.5"])
def test_judge_that_is_not_a_bool_error_names_its_line(vocab_copy, bad):
    features = vocab_copy / "features.toml"
    lineno = line_of(features, r"judge = true")
    edit(features, "judge = true", f"judge = {bad}")
    err = load_error(vocab_copy)
    assert f"{features}:{lineno}:" in err.message and "is not true or false" in err.message


def test_unknown_feature_key_error_names_its_line(vocab_copy):
    """A typo such as `probabilty` must not silently fall back to a default."""
    features = vocab_copy / "features.toml"
    lineno = line_of(features, r"probability = 0.5")
    edit(features, "probability = 0.5", "probabilty = 0.5")
    err = load_error(vocab_copy)
    assert f"{features}:{lineno}:" in err.message and "unknown key 'probabilty'" in err.message


def test_unknown_top_level_table_in_features_error_names_its_line(vocab_copy):
    features = vocab_copy / "features.toml"
    features.write_text(features.read_text() + '\n[[features]]\nlabel = "Rhyme"\n')
    lineno = line_of(features, r"^\[\[features\]\]")
    err = load_error(vocab_copy)
    assert f"{features}:{lineno}:" in err.message and "unknown key 'features'" in err.message


def test_duplicate_label_error_names_both_lines(vocab_copy):
    features = vocab_copy / "features.toml"
    first = line_of(features, r'label = "Dialogue"')
    second = line_of(features, r'label = "Twist"')
    edit(features, 'label = "Twist"', 'label = "Dialogue"')
    err = load_error(vocab_copy)
    assert f"{features}:{second}:" in err.message
    assert f"line {first})" in err.message and "duplicate label 'Dialogue'" in err.message


def test_missing_phrase_error_names_its_table(vocab_copy):
    features = vocab_copy / "features.toml"
    header = line_of(features, r'label = "MoralValue"') - 1
    edit(features, 'phrase = "the story has a moral value"\n', "")
    err = load_error(vocab_copy)
    assert f"{features}:{header}:" in err.message and "'MoralValue' has no phrase" in err.message


def test_empty_phrase_error_names_its_line(vocab_copy):
    features = vocab_copy / "features.toml"
    lineno = line_of(features, r'phrase = "the story has a moral value"')
    edit(features, 'phrase = "the story has a moral value"', 'phrase = "  "')
    err = load_error(vocab_copy)
    assert f"{features}:{lineno}:" in err.message and "no phrase" in err.message


@pytest.mark.parametrize("bad", ["1.5", "-0.1", '"0.5"', "true", "nan", "inf"])
def test_probability_outside_zero_to_one_error_names_its_line(vocab_copy, bad):
    features = vocab_copy / "features.toml"
    lineno = line_of(features, r"probability = 0.5")
    edit(features, "probability = 0.5", f"probability = {bad}")
    err = load_error(vocab_copy)
    assert f"{features}:{lineno}:" in err.message and "not a number in [0, 1]" in err.message


def test_missing_probability_error_names_its_table(vocab_copy):
    features = vocab_copy / "features.toml"
    header = line_of(features, r'label = "Dialogue"') - 1
    edit(features, "probability = 0.5\n", "")
    err = load_error(vocab_copy)
    assert f"{features}:{header}:" in err.message and "probability None" in err.message


def test_probability_bounds_zero_and_one_are_accepted(vocab_copy):
    features = vocab_copy / "features.toml"
    edit(features, "probability = 0.5", "probability = 1")
    edit(features, "probability = 0.25", "probability = 0")
    vocab = load_vocab(vocab_copy)
    assert vocab.features[0].probability == 1.0 and isinstance(vocab.features[0].probability, float)
    assert vocab.features[1].probability == 0.0


# --- axes.toml ------------------------------------------------------------------------
# A hand-written two-axis file, short enough to see every line: each error test breaks one thing.

AXES = """\
# two small axes
[[axis]]
name = "mood"
description = "how the story feels"

[[axis.value]]
label = "calm"
phrase = "The story feels calm."

[[axis.value]]
label = "silly"
phrase = "The story feels silly."
weight = 2

[[axis]]
name = "season"

[[axis.value]]
label = "winter"
phrase = "It is winter."
"""


AXIS_HEADER, VALUE_HEADER, AXES_TYPO = r"^\[\[axis\]\]", r"^\[\[axis\.value\]\]", r"^\[\[axes\]\]"


def axes_error(folder, text) -> tuple[VocabError, object]:
    """Write `text` as the folder's axes.toml; return the VocabError loading must raise, and the file."""
    file = folder / "axes.toml"
    file.write_text(text)
    return load_error(folder), file


def line_in(text, pattern, nth=0):
    """The 1-based line of the nth line of `text` matching `pattern`."""
    hits = [n for n, line in enumerate(text.splitlines(), start=1) if re.search(pattern, line)]
    assert len(hits) > nth, f"{pattern!r} not in the axes text"
    return hits[nth]


def test_hand_written_axes_load_in_file_order_with_default_weight_and_description(vocab_copy):
    (vocab_copy / "axes.toml").write_text(AXES)
    vocab = load_vocab(vocab_copy)
    assert vocab.axes == (
        Axis("mood", "how the story feels", (AxisValue("calm", "The story feels calm.", 1.0),
                                             AxisValue("silly", "The story feels silly.", 2.0))),
        Axis("season", "", (AxisValue("winter", "It is winter.", 1.0),)),
    )
    assert vocab.axes[0].labels() == ["calm", "silly"]
    assert isinstance(vocab.axes[0].values[1].weight, float)


def test_missing_axes_file_means_no_axes(vocab_copy):
    """axes.toml is optional: a vocab folder from before axes existed loads unchanged."""
    (vocab_copy / "axes.toml").unlink()
    vocab = load_vocab(vocab_copy)
    assert vocab.axes == () and vocab.counts()["axes"] == 0


def test_axes_file_with_only_comments_means_no_axes(vocab_copy):
    (vocab_copy / "axes.toml").write_text("# no axes for now\n\n")
    assert load_vocab(vocab_copy).axes == ()


def test_reserved_names_are_every_column_and_plan_variable():
    # Pinned: schema.py columns, sampler.template_variables keys and the built-in stage names.
    assert RESERVED_NAMES == {
        "noun", "verb", "adjective", "features", "feature_phrases", "axis_phrases", "axis_labels", "summary",
        "key_sentence", "story", "id", "words", "model", "model_sha256", "split", "seed", "attempt", "recipe",
        "judged_features", "judge_answers", "judge_scores", "reject_reason", "has_dialogue", "once_upon_a_time", "word_count",
        "sentence_count", "paragraph_count", "flesch_reading_ease", "flesch_kincaid_grade", "dale_chall",
        "prompt_tokens", "completion_tokens", "generation", "corpusforge_version", "template_sha256",
        "feature", "pair",  # the kinds of the per-shard statistics keys (feature:X, pair:A+B)
    }


def test_axes_invalid_toml_error_names_the_file_and_line(vocab_copy):
    text = AXES.replace('label = "silly"', 'label = "silly')
    err, file = axes_error(vocab_copy, text)
    assert f"{file}:{line_in(text, 'label = .silly')}:" in err.message and "not valid TOML" in err.message


def test_axes_unknown_top_level_table_error_names_its_line(vocab_copy):
    text = AXES + '\n[[axes]]\nname = "weather"\n'
    err, file = axes_error(vocab_copy, text)
    assert f"{file}:{line_in(text, AXES_TYPO)}:" in err.message and "unknown key 'axes'" in err.message


def test_axis_that_is_not_a_table_is_an_error(vocab_copy):
    text = 'axis = "mood"\n'
    err, file = axes_error(vocab_copy, text)
    assert f"{file}:1:" in err.message and "not a list of [[axis]] tables" in err.message


def test_axis_without_name_error_names_its_header(vocab_copy):
    text = AXES.replace('name = "season"\n', "")
    err, file = axes_error(vocab_copy, text)
    assert f"{file}:{line_in(text, AXIS_HEADER, 1)}:" in err.message and "axis has no name" in err.message


@pytest.mark.parametrize("bad", ['"Mood"', '"2mood"', '"my-mood"', '"class"', '"true"', '""', "5"])
def test_axis_name_that_is_not_a_lowercase_identifier_error_names_its_line(vocab_copy, bad):
    text = AXES.replace('name = "mood"', f"name = {bad}")
    err, file = axes_error(vocab_copy, text)
    assert f"{file}:{line_in(text, '^name = ', 0)}:" in err.message and "not a lowercase identifier" in err.message


@pytest.mark.parametrize("name", ["story", "model", "split", "features", "axis_phrases", "once_upon_a_time", "feature", "pair"])
def test_reserved_axis_name_is_an_error_naming_its_line(vocab_copy, name):
    """An axis is a column and a template variable, so it must not shadow one the story already has."""
    text = AXES.replace('name = "season"', f'name = "{name}"')
    err, file = axes_error(vocab_copy, text)
    assert f"{file}:{line_in(text, '^name = ', 1)}:" in err.message and "reserved" in err.message
    assert "rename the axis" in err.hint


def test_duplicate_axis_name_error_names_both_lines(vocab_copy):
    text = AXES.replace('name = "season"', 'name = "mood"')
    err, file = axes_error(vocab_copy, text)
    first, second = line_in(text, '^name = "mood"', 0), line_in(text, '^name = "mood"', 1)
    assert f"{file}:{second}:" in err.message and f"first at line {first})" in err.message


def test_axis_description_that_is_not_text_error_names_its_line(vocab_copy):
    text = AXES.replace('description = "how the story feels"', "description = 3")
    err, file = axes_error(vocab_copy, text)
    assert f"{file}:{line_in(text, '^description')}:" in err.message and "description is not text" in err.message


def test_axis_without_values_error_names_its_header(vocab_copy):
    text = AXES + '\n[[axis]]\nname = "weather"\n'
    err, file = axes_error(vocab_copy, text)
    assert f"{file}:{line_in(text, AXIS_HEADER, 2)}:" in err.message and "'weather' has no values" in err.message


def test_unknown_key_in_an_axis_error_names_its_line(vocab_copy):
    """`values = [...]` instead of [[axis.value]] tables must not load as an axis without values."""
    text = AXES.replace('name = "season"\n', 'name = "season"\nvalues = ["winter"]\n').replace(
        '[[axis.value]]\nlabel = "winter"\nphrase = "It is winter."\n', "")
    err, file = axes_error(vocab_copy, text)
    assert f"{file}:{line_in(text, '^values')}:" in err.message and "unknown key 'values'" in err.message


def test_unknown_key_in_a_value_error_names_its_line(vocab_copy):
    """A typo such as `weigth` would otherwise silently mean the default weight 1."""
    text = AXES.replace("weight = 2", "weigth = 2")
    err, file = axes_error(vocab_copy, text)
    assert f"{file}:{line_in(text, '^weigth')}:" in err.message and "unknown key 'weigth'" in err.message


def test_value_without_label_error_names_its_header(vocab_copy):
    text = AXES.replace('label = "silly"\n', "")
    err, file = axes_error(vocab_copy, text)
    assert f"{file}:{line_in(text, VALUE_HEADER, 1)}:" in err.message and "has no label" in err.message


@pytest.mark.parametrize("bad", ["Silly", "very silly", "1silly", "silly!"])
def test_value_label_that_is_not_a_lowercase_name_error_names_its_line(vocab_copy, bad):
    text = AXES.replace('label = "silly"', f'label = "{bad}"')
    err, file = axes_error(vocab_copy, text)
    assert f"{file}:{line_in(text, 'label = ', 1)}:" in err.message and "not a lowercase name" in err.message


def test_duplicate_value_label_error_names_both_lines(vocab_copy):
    text = AXES.replace('label = "silly"', 'label = "calm"')
    err, file = axes_error(vocab_copy, text)
    assert f"{file}:{line_in(text, 'label = ', 1)}:" in err.message
    assert f"first at line {line_in(text, 'label = ', 0)})" in err.message and "duplicate label 'calm'" in err.message


def test_value_without_phrase_error_names_its_header(vocab_copy):
    text = AXES.replace('phrase = "The story feels silly."\n', "")
    err, file = axes_error(vocab_copy, text)
    assert f"{file}:{line_in(text, VALUE_HEADER, 1)}:" in err.message and "'silly' has no phrase" in err.message


def test_empty_value_phrase_error_names_its_line(vocab_copy):
    text = AXES.replace('phrase = "The story feels silly."', 'phrase = " "')
    err, file = axes_error(vocab_copy, text)
    assert f"{file}:{line_in(text, 'phrase = ', 1)}:" in err.message and "has no phrase" in err.message


@pytest.mark.parametrize("bad", ["0", "-1", '"2"', "true", "nan", "inf"])
def test_weight_that_is_not_a_positive_number_error_names_its_line(vocab_copy, bad):
    text = AXES.replace("weight = 2", f"weight = {bad}")
    err, file = axes_error(vocab_copy, text)
    assert f"{file}:{line_in(text, '^weight')}:" in err.message and "not a number above 0" in err.message
