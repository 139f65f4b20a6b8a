"""Tests for corpusforge.vocab: the packaged default vocab, its fingerprint, and every load error.
Bad folders are a copy of the default with exactly one thing broken.
"""
from __future__ import annotations

import re
import shutil

import pytest

from corpusforge.errors import VocabError
from corpusforge.vocab import FEATURE_NAMES, Feature, Vocab, default_vocab_dir, load_vocab


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
    assert tuple(f.label for f in vocab.features) == FEATURE_NAMES
    assert FEATURE_NAMES == ("Dialogue", "BadEnding", "MoralValue", "Twist", "Foreshadowing", "Conflict")
    assert vocab.features[0] == Feature("Dialogue", "the story should contain at least one dialogue", 0.5)
    assert all(0.0 < f.probability < 1.0 for f in vocab.features)


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


def test_unknown_label_error_names_its_line(vocab_copy):
    features = vocab_copy / "features.toml"
    lineno = line_of(features, r'label = "Twist"')
    edit(features, 'label = "Twist"', 'label = "PlotTwist"')
    err = load_error(vocab_copy)
    assert f"{features}:{lineno}:" in err.message and "'PlotTwist'" in err.message


def test_missing_label_key_error_names_the_table_header(vocab_copy):
    features = vocab_copy / "features.toml"
    header = line_of(features, r'label = "Conflict"') - 1
    edit(features, 'label = "Conflict"\n', "")
    err = load_error(vocab_copy)
    assert f"{features}:{header}:" in err.message and "missing label" in err.message


def test_feature_table_left_out_is_a_missing_label_error(vocab_copy):
    features = vocab_copy / "features.toml"
    text = features.read_text()
    start = text.index('[[feature]]\nlabel = "Foreshadowing"')
    end = text.index("[[feature]]", start + 1)
    features.write_text(text[:start] + text[end:])
    err = load_error(vocab_copy)
    assert str(features) in err.message and "Foreshadowing" in err.message
    assert "Conflict" not in err.message


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
