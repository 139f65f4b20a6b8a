"""Tests for corpusforge.checks: extraction of chat output and every label check."""
from dataclasses import replace

import pytest

from corpusforge.checks import (
    CHECKS,
    Draft,
    Limits,
    contains_sentence,
    extract,
    extract_sentence,
    has_dialogue,
    measure,
    mentions,
    run_checks,
)

STORY = (
    "Once upon a time, there was a little girl named Lily. She wanted to decorate her room "
    "for the party. She found a shiny star and put it on the wall.\n\n"
    "Then the thunder came. \"I am scared of the loud noise,\" Lily said to her mom. "
    "Mom gave her a big hug and said, \"It will pass soon.\" Lily smiled and felt brave."
)
KEY = "Mom gave her a big hug and said, “It will pass soon.”"


def good_draft(**changes) -> Draft:
    draft = Draft(story=STORY, noun="thunder", verb="decorate", adjective="shiny",
                  features=("Dialogue",), key_sentence=KEY)
    return replace(draft, **changes)


# --- extract ---------------------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    ("Sure! Here is a story:\n\nOnce upon a time, Tom had a red car.\n\nHe loved it.\n\n"
     "I hope you enjoyed the story!",
     "Once upon a time, Tom had a red car.\n\nHe loved it."),
    ("Here's a short summary for you:\nTom finds a shiny shell and shares it.<|im_end|>",
     "Tom finds a shiny shell and shares it."),
    ('Certainly, here is the sentence: "The thunder was loud, so Lily hid."',
     "The thunder was loud, so Lily hid."),
    ("**Story:**\n\nOnce upon a time, a cat sat.\n\nIt was warm.",
     "Once upon a time, a cat sat.\n\nIt was warm."),
    ("Title: The Shiny Car\n\nOnce upon a time, Ben saw a car.",
     "Once upon a time, Ben saw a car."),
    ("# The Brave Little Mouse\n\n**Once** upon a time, a *tiny* mouse lived in a _big_ house.",
     "Once upon a time, a tiny mouse lived in a big house."),
    ("```\nSummary: A girl decorates a cake with her mom.\n```",
     "A girl decorates a cake with her mom."),
    ("Random sentence: Ben ran to the park.", "Ben ran to the park."),
    ('Of course! Here\'s a story using the verb "decorate", the noun "thunder" and the adjective '
     '"shiny":\n\n"Once upon a time, Sue decorated a tree. The thunder was loud."\n\n'
     "Let me know if you want another one!",
     "Once upon a time, Sue decorated a tree. The thunder was loud."),
    ("Sure!\n\n- Once upon a   time, there   was a cat.\n\nThe end.\n\nFeel free to ask for changes.",
     "Once upon a time, there was a cat.\n\nThe end."),
    ("<|im_start|>assistant\nKey sentence: The sun was hot.<|im_end|><|im_start|>user\nthanks",
     "The sun was hot."),
    ("**Title: A Day at Sea**\n\n**Story:** Sam and his dad went to the sea.\n\n---\n\n"
     "Would you like me to write another story?",
     "Sam and his dad went to the sea."),
    ("“Tom's dog was happy. He ran and ran.”", "Tom's dog was happy. He ran and ran."),
    ("Sure! Once upon a time, a frog sang.", "Once upon a time, a frog sang."),
    ("Certainly, I'd be happy to help!\nOnce upon a time, a hen sat.\n"
     "Enjoy the story!\nI have used all three words and the features you asked for.",
     "Once upon a time, a hen sat."),
    ('**Key sentence:** "The shiny car went fast."\n\nThis sentence uses the noun and the adjective.',
     "The shiny car went fast."),
    ("Here is your story:\n\n\n\nTom   ran.\n\n\n\nHe   fell.\n", "Tom ran.\n\nHe fell."),
])
def test_extract_strips_chat_wrapping_exactly(raw, expected):
    assert extract(raw) == expected


@pytest.mark.parametrize("story", [
    "Lily had three toys: a ball, a doll and a car. She loved them all.",
    "Here is what Tom saw: a big red bus. It was loud.",
    '"Look!" said Sara.\n\nTom smiled. "It is big," he said. "Come and see."',
    "'Hello, Tom,' said Mom. Tom waved and said, 'Good morning.'",
    "Once upon a time, a dog played.\n\nThe end.",
    "Sure enough, the dog came back.\n\nGreat big waves hit the sand.",
    "Tom waved at the sea.\n\nEnjoy the sun, Tom.",
    "Tom was sad.\n\nI used to be scared of the dark, he said.",
])
def test_extract_leaves_a_clean_story_untouched(story):
    assert extract(story) == story


def test_extract_keeps_dialogue_quotes_at_both_ends():
    story = '"Hi," said Tom. "Bye."'
    assert extract(story) == story


@pytest.mark.parametrize("raw", ["", "   \n\n", "Sure! Here is a story:\n\n<|im_end|>", "```\n```"])
def test_extract_returns_empty_string_when_nothing_is_left(raw):
    assert extract(raw) == ""


def test_extract_sentence_keeps_only_the_first_sentence():
    raw = 'Sure! Here is the key sentence:\n\n"The dog ran home." It was late.'
    assert extract_sentence(raw) == "The dog ran home."
    dialogue = 'Tom said, "Wait!" and ran home.'
    assert extract_sentence(dialogue + " It was late.") == dialogue
    assert extract_sentence("Sentence: Mr. Brown had a hat. He lost it.") == "Mr. Brown had a hat."
    assert extract_sentence("Here it is:\nThe bird sang.\nThen it flew.") == "The bird sang."


def test_extract_sentence_of_nothing_is_empty():
    assert extract_sentence("Sure!<|im_end|>") == ""


# --- mentions ----------------------------------------------------------------------------

@pytest.mark.parametrize("word, pos, text", [
    ("decorate", "verb", "They decorated the tree."),
    ("decorate", "verb", "She is decorating the cake."),
    ("decorate", "verb", "He decorates his room."),
    ("decorate", "verb", "DECORATE it now!"),
    ("thunder", "noun", "The thunders were loud."),
    ("mouse", "noun", "Two mice ate the cheese."),
    ("run", "verb", "Tom ran to the park."),
    ("run", "verb", "Tom was running."),
    ("go", "verb", "They went home."),
    ("go", "verb", "The cake was gone."),
    ("happy", "adjective", "Lily was happier than before."),
    ("happy", "adjective", "It was the happiest day."),
    ("good", "adjective", "This cake is better."),
    ("fish", "noun", "Dad fished all day."),
    ("dog", "noun", "The dog's bone was big."),
    ("dog", "noun", "The dog’s bone was big."),
    ("dog", "noun", "The dogs' bones were big."),
    ("cream", "noun", "They ate ice-cream."),
    ("ice cream", "noun", "They ate ice-cream."),
    ("ice cream", "noun", "They ate two ice creams."),
    ("ice-cream", "noun", "They ate ice cream."),
])
def test_mentions_accepts_inflections_possessives_and_hyphen_parts(word, pos, text):
    assert mentions(word, pos, text)


@pytest.mark.parametrize("word, pos, text", [
    ("car", "noun", "He pulled the cart."),
    ("car", "noun", "She had a scar."),
    ("car", "noun", "The carpet was red."),
    ("run", "verb", "The plane was on the runway."),
    ("run", "verb", "The bell rang."),
    ("decorate", "verb", "The decoration was pretty."),
    ("happy", "adjective", "Happiness is good."),
    ("ice cream", "noun", "The ice was cold and the cream was sweet."),
    ("dog", "noun", ""),
])
def test_mentions_rejects_near_misses(word, pos, text):
    assert not mentions(word, pos, text)


def test_mentions_rejects_an_unknown_part_of_speech():
    with pytest.raises(ValueError, match="noun, verb, adjective"):
        mentions("dog", "adverb", "The dog ran.")


# --- contains_sentence -------------------------------------------------------------------

def test_contains_sentence_ignores_whitespace_punctuation_case_and_curly_quotes():
    story = 'It was late. “Let’s   go!”  said\nTOM, and they left.'
    assert contains_sentence('"Let\'s go," said Tom.', story)


def test_contains_sentence_fails_when_one_word_differs():
    assert not contains_sentence("The dog ran fast.", "The dog ran quickly to the park.")


def test_contains_sentence_matches_on_word_boundaries_only():
    assert not contains_sentence("dog ran", "The hotdog ran away.")
    assert contains_sentence("dog ran", "The dog ran away.")


@pytest.mark.parametrize("sentence", ["", "   ", "...", "“”"])
def test_contains_sentence_never_matches_an_empty_sentence(sentence):
    assert not contains_sentence(sentence, "The dog ran.")


# --- has_dialogue ------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    'Tom looked up. "Can I play too?" he asked.',
    "Tom looked up. “Can I play too?” he asked.",
    "'Hello, Tom,' said Mom.",
    "Mom smiled. ‘Time for bed,’ she said.",
    "Mom said, 'Let's go home now.'",
])
def test_has_dialogue_finds_quoted_speech(text):
    assert has_dialogue(text)


@pytest.mark.parametrize("text", [
    "Tom's dog didn't bark. The kids' toys were fun, and it's late.",
    'The sign said "stop" in red.',
    'Tom said "hello there and ran away.',
    "Once upon a time, there was a cat. It was happy.",
    "He said 'cause it's fun. The dogs' bowls were full.",
])
def test_has_dialogue_is_not_fooled_by_apostrophes_or_single_words(text):
    assert not has_dialogue(text)


# --- measure -----------------------------------------------------------------------------

PARAGRAPH = (
    "Once upon a time, there was a little dog named Max. Max liked to play in the park!\n\n"
    '"Come here, Max," said Mom. Max ran home.'
)


def test_measure_counts_a_known_paragraph_exactly():
    # 26 words, 4 sentences ("said Mom" continues the quote); readability is textstat's (below).
    m = measure(PARAGRAPH)
    assert {k: m[k] for k in ("has_dialogue", "word_count", "sentence_count", "paragraph_count", "once_upon_a_time")} == {
        "has_dialogue": True,
        "word_count": 26,
        "sentence_count": 4,
        "paragraph_count": 2,
        "once_upon_a_time": True,
    }


def test_measure_does_not_split_sentences_after_mr_or_inside_quotes():
    m = measure('Mr. Brown waved. "Hi!" said Sue. Then she left.')
    assert m["sentence_count"] == 3
    assert m["once_upon_a_time"] is False
    assert m["has_dialogue"] is False  # "Hi!" is one word


def test_measure_counts_each_nonempty_line_as_a_paragraph():
    assert measure("One day.\nTwo days.\n\n\nThree days.")["paragraph_count"] == 3


def test_measure_of_empty_story_is_zero():
    m = measure("")
    assert (m["word_count"], m["sentence_count"], m["paragraph_count"]) == (0, 0, 0)
    assert m["flesch_reading_ease"] == m["flesch_kincaid_grade"] == m["dale_chall"] == 0.0


def test_readability_comes_from_textstat_for_every_stored_metric():
    import textstat

    m = measure(PARAGRAPH)
    assert m["flesch_reading_ease"] == round(textstat.flesch_reading_ease(PARAGRAPH), 2)
    assert m["flesch_kincaid_grade"] == round(textstat.flesch_kincaid_grade(PARAGRAPH), 2)
    assert m["dale_chall"] == round(textstat.dale_chall_readability_score(PARAGRAPH), 2)
    hard = measure("Notwithstanding considerable institutional opposition, the administration implemented comprehensive reforms.")
    assert hard["flesch_reading_ease"] < m["flesch_reading_ease"] - 50, "a hard sentence reads much harder"
    assert hard["dale_chall"] > m["dale_chall"]


# --- checks ------------------------------------------------------------------------------

def test_checks_run_in_the_documented_order():
    assert list(CHECKS) == ["truncated", "empty", "length", "words", "key_sentence", "dialogue"]


def test_a_good_draft_passes_every_check():
    assert run_checks(good_draft()) is None


@pytest.mark.parametrize("changes, reason", [
    ({"truncated": True}, "truncated: hit max_tokens"),
    ({"story": "  \n "}, "empty: no story text after extraction"),
    ({"story": "The thunder came. She will decorate the shiny tree now, " + "yes " * 2},
     "length: 12 words, need 40-600"),
    ({"verb": "jump", "adjective": "purple"}, "words: missing verb 'jump', adjective 'purple'"),
    ({"noun": "car"}, "words: missing noun 'car'"),
    ({"key_sentence": "Mom gave her a small hug."}, "key_sentence: not found in story"),
    ({"key_sentence": ""}, "key_sentence: stage produced no sentence"),
    ({"story": STORY.replace('"', "")}, "dialogue: requested but no quoted speech"),
])
def test_each_failing_check_reports_its_code_and_detail(changes, reason):
    assert run_checks(good_draft(**changes)) == reason
    assert reason.split(":")[0] in CHECKS


def test_key_sentence_none_means_flat_recipe_and_is_not_checked():
    assert run_checks(good_draft(key_sentence=None)) is None


def test_dialogue_is_only_required_when_requested():
    assert run_checks(good_draft(story=STORY.replace('"', ""), features=("Twist",),
                                 key_sentence=None)) is None


def test_length_uses_the_given_limits():
    assert run_checks(good_draft(), Limits(min_words=10, max_words=20)) == "length: 64 words, need 10-20"
    assert run_checks(good_draft(), Limits(min_words=64, max_words=64)) is None


def test_run_checks_returns_the_first_failure_in_order():
    draft = good_draft(truncated=True, story="", key_sentence="")
    assert run_checks(draft) == "truncated: hit max_tokens"
    assert run_checks(draft, skip={"truncated"}) == "empty: no story text after extraction"


def test_run_checks_skips_named_checks():
    draft = good_draft(noun="car", key_sentence="Not in the story at all.")
    assert run_checks(draft) == "words: missing noun 'car'"
    assert run_checks(draft, skip=["words"]) == "key_sentence: not found in story"
    assert run_checks(draft, skip=["words", "key_sentence"]) is None


def test_run_checks_rejects_unknown_skip_names_and_lists_valid_ones():
    with pytest.raises(ValueError, match="wordz.*truncated, empty, length, words, key_sentence, dialogue"):
        run_checks(good_draft(), skip=["wordz"])
