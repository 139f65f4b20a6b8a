"""Tests for corpusforge.checks: extraction of chat output, every label check, and the
detectors of a small model's failures (task talk, loops, unfinished ends, unfit words)."""
import time
from dataclasses import replace

import pytest

from corpusforge import checks
from corpusforge.checks import (
    CHECKS,
    Draft,
    Limits,
    contains_sentence,
    extract,
    extract_sentence,
    find_loop,
    has_dialogue,
    measure,
    mentions,
    run_checks,
    task_talk,
    text_checks,
    unfinished,
    unfit,
)
from corpusforge.vocab import load_vocab

UNFIT = load_vocab().unfit_words

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
    assert list(CHECKS) == ["truncated", "empty", "length", "words", "key_sentence", "dialogue",
                            "task_talk", "loop", "unfinished", "unfit"]


def test_a_good_draft_passes_every_check():
    assert run_checks(good_draft()) is None
    assert run_checks(good_draft(), unfit_words=UNFIT) is None


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
    with pytest.raises(ValueError, match="wordz.*truncated, empty, length, words, key_sentence, dialogue, "
                                         "task_talk, loop, unfinished, unfit"):
        run_checks(good_draft(), skip=["wordz"])


# --- the detectors of a small model's failures -------------------------------------------
# Fixtures are hand-written after what SmolLM2-135M-Instruct really writes for our prompts,
# and the false-positive guards after what a children's story really says.

# In the spirit of the TinyStories paper's second example (words disagree, network,
# beautiful; dialogue and a bad ending), written for these tests.
SECOND_STORY = (
    "Ben and his sister Mia found a beautiful web in the garden. It was a big network of thin, "
    "shiny threads, and a small spider sat in the middle.\n\n"
    "\"Let's take the web home,\" said Ben. Mia shook her head. \"No, it is the spider's home,\" "
    "she said. The two of them began to disagree, and their voices got loud.\n\n"
    "Ben reached out to grab the web. The threads broke, and the spider ran away under a leaf. "
    "The beautiful web was gone. Ben felt sad, and Mia cried a little. They went inside without a word."
)


def second_draft(**changes) -> Draft:
    draft = Draft(story=SECOND_STORY, noun="network", verb="disagree", adjective="beautiful",
                  features=("Dialogue", "BadEnding"), key_sentence="The beautiful web was gone.")
    return replace(draft, **changes)


# Ordinary children's-story text that must pass every detector.
ORDINARY = [
    STORY,
    SECOND_STORY,
    "Tom ran and ran and ran to the park. He was so fast! She was happy. He was happy. They were all happy.",
    '"Run, run, as fast as you can, you can not catch me!" said the cookie. The fox came closer. '
    '"Run, run, as fast as you can, you can not catch me!" said the cookie again, and it ran away.',
    '"Where is my ball?" Tom asked. He looked under the bed. "Where is my ball?" He looked in the box. '
    '"Where is my ball?" Then he saw it in the garden.',
    "Lily and her mom went to the shop. Lily and her mom bought a red apple. "
    "Then Lily and her mom went home and ate it together.",
    "Tom was three years old. He took a step, then another step, and climbed up step by step. "
    "Sure enough, the cat came back. The moral of the story is to be kind.",
    '"Here is your ball," said Mom. "I hope you like it." Tom smiled and said, "I am a big boy now, '
    'and I can write a story too!"',
    "Lily was a happy four-year-old girl. She liked simple things, like her red hat. "
    "Let me tell you a story about a cat. The toys were for children, and the cake was for a friend.",
    "Lily was sad and began to cry. Tom fell and hurt his knee. She was scared of the monster. "
    "Tom and Sam had a fight about the toy, and the flower died in the winter. They saw a shooting star. "
    "The knight had a sword. The baby bird had a big shell, and a bloodhound sniffed the grass.",
    'Mom read a story. The story was about a bear. "What happened then?" asked Tom. "Can I come with?"',
    "Once upon a time, a frog sang by the pond.\n\nThe End",
]


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_story_text_passes_every_detector(text):
    assert (task_talk(text), find_loop(text), unfinished(text), unfit(text, UNFIT)) == (None, None, None, None)


@pytest.mark.parametrize("draft", [good_draft(), second_draft()], ids=["thunder", "network"])
def test_both_paper_style_stories_pass_every_check_with_the_shipped_unfit_list(draft):
    assert run_checks(draft, unfit_words=UNFIT) is None


# --- task_talk ---

@pytest.mark.parametrize("text, found", [
    # The real SmolLM2 failures.
    ("Lily found a red ball. A three-year-old child would likely understand this.", "three-year-old child would"),
    ("Step 2: The second sentence from the first paragraph tells us about Tom.", "step 2:"),
    ("We can create a short story for 3-4 years old children with a cat.", "we can create a short story"),
    ("The story must contain at least one dialogue.", "the story must"),
    ("Tom had a dog. This story uses simple words.", "this story uses"),
    ("Tom had a dog.\nA: The dog was brown.", "a:"),
    ("Tom had a dog. Here is a summary of what happened.", "here is a summary"),
    ("A fox had a special way of making people happy. The story is about helping someone.", "the story is about"),
    ("But the peacock began to cry.\nThe story ended with a little girl.", "the story ended with"),
    ("Ben jumped in the puddle.\n\nThis is a story of being brave and taking risks.", "this is a story of"),
    ("The last part of the story is about someone who seems different.", "the last part of the story"),
    ("The answer was: she has been doing that for years.", "the answer was:"),
    # The other families.
    ("It is written for 3 year olds.", "written for 3 year olds"),
    ("A story for young readers about a cat.", "story for young readers"),
    ("The words are suitable for children.", "words are suitable for children"),
    ("It is easy for a 4-year-old to follow.", "easy for a 4-year-old"),
    ("Tom saw the verb \"jump\" in the sky.", "the verb"),
    ("The key sentence is about the sun.", "key sentence"),
    ("Tom had a cat and a paragraph about it.", "paragraph"),
    ("In summary, Tom was happy.", "summary"),
    ("Tom had a hat. Features: Dialogue, Twist", "features:"),
    ("This shows foreshadowing because the sky was dark.", "foreshadowing"),
    ("The story should have a happy end.", "the story should"),
    ("Tom sat.\nSure! Here is another one.", "sure! here"),
    ("Tom sat down. I hope you enjoyed the story!", "i hope you enjoyed the story"),
    ("As an AI, I can not see the sun.", "as an ai"),
    ("In this story, Tom learns to share.", "in this story"),
    # The narrator pointing at its own story (real SmolLM2 kept stories the audit failed).
    ("The fox got a name.\nThis story happened when a shout came.", "this story"),
    ("She stood in the pond. This was not just a simple story about being careful.", "just a simple story about"),
    ("Tom ran home. It is just a story about a dog.", "just a story about"),
    ("Q: Who had the ball?\nTom had the ball.", "q:"),
])
def test_task_talk_finds_the_model_talking_about_its_task(text, found):
    assert task_talk(text) == f'task_talk: "{found}"'


@pytest.mark.parametrize("text", [
    "Tom was three years old and had a red car.",
    "She was a happy four-year-old girl.",
    "Tom took a step, then another step.",
    "Step by step, Lily climbed the hill.",
    "Lily liked simple things.",
    "Sure enough, the dog came back.",
    '"Sure!" said Tom. "Here is your ball."',
    '"I hope you like the cake," said Mom.',
    '"I am an AI," said the little robot.',
    '"This story is about a bear," said Grandma, and she began.',
    "The moral of the story is to share.",
    "Mom read a story. The story was about a bear.",
    "Let me tell you a story about a brave cat.",
    "The toys were for children and the cake was for a friend.",
    "Tom found a key in the box and a word on the wall.",
    "There was a bird in a cage. Where was the page?",
    "The sky looked like it would rain again, said Tom.",
])
def test_task_talk_leaves_story_text_alone(text):
    assert task_talk(text) is None


def test_task_talk_reports_the_earliest_talk():
    assert task_talk("This story uses simple words. Here is a summary.") == 'task_talk: "this story uses"'


# --- loop ---

@pytest.mark.parametrize("text, reason", [
    ("Lily saw " + "a sandy unicorn with a tail of a unicorn, " * 8 + "and she smiled.",
     'loop: "a sandy unicorn with a tail" x3'),
    ("Mom saw a tail of a unicorn. Dad saw a tail of a unicorn too. The dog found a tail of a unicorn "
     "in the grass, and the cat ate a tail of a unicorn.", 'loop: "a tail of a" x4'),
    ("The sun was very hot. Tom went out. The sun was very hot. He sat down. The sun was very hot.",
     'loop: sentence "the sun was very hot" x3'),
    ("Tom went to the park with his mom. He played. Tom went to the park with his mom. He slid. "
     "Tom went to the park with his mom.", 'loop: "tom went to the park with" x3'),
    ("He said " + "the " * 30, 'loop: "the the the the" x4'),
    # A real SmolLM2 story, shortened: the same opening sentence starts all three paragraphs.
    ("Ben looked down at his strolling steed. He felt lost.\n\nBen looked down at his strolling steed. "
     "His feet sank into the mud.\n\nBen looked down at his strolling steed. He felt lost again.",
     'loop: "ben looked down at his strolling" x3'),
])
def test_find_loop_finds_repeated_runs_and_sentences(text, reason):
    assert find_loop(text) == reason


@pytest.mark.parametrize("text", [
    "Tom ran and ran and ran and ran to the park.",
    '"Run, run, as fast as you can!" said the cookie. The fox came. "Run, run, as fast as you can!" said the cookie.',
    "She was happy. He was happy. They were all happy. Mom was happy too.",
    '"Where is my ball?" He looked. "Where is my ball?" He looked again. "Where is my ball?" There it was.',
    "Lily and her mom went out. Lily and her mom ate. Lily and her mom sang.",
    "La la la, sang the bird. La la la, sang the frog.",
])
def test_find_loop_lets_ordinary_repetition_through(text):
    assert find_loop(text) is None


def test_loop_thresholds_are_module_constants(monkeypatch):
    text = "Lily and her mom went out. Lily and her mom ate. Lily and her mom sang."
    monkeypatch.setattr(checks, "LOOP_NGRAMS", ((4, 3),))
    assert find_loop(text) == 'loop: "lily and her mom" x3'
    monkeypatch.setattr(checks, "LOOP_NGRAMS", ())
    monkeypatch.setattr(checks, "LOOP_SENTENCE_MIN_WORDS", 4)
    assert find_loop("Where is my ball? No. Where is my ball? No. Where is my ball?") == \
        'loop: sentence "where is my ball" x3'


def test_find_loop_ignores_a_last_sentence_still_being_written():
    text = "The sun was very hot. Tom went out. The sun was very hot. He sat down. The sun was very hot"
    assert find_loop(text) is None
    assert find_loop(text + ".") == 'loop: sentence "the sun was very hot" x3'


# --- unfinished ---

@pytest.mark.parametrize("text, end", [
    ("Tom went to the park, and then the", "to the park, and then the"),
    ("The dog was happy. She went to the shop and", "she went to the shop and"),
    ('The dog barked. He said, "Let\'s go', 'he said, "let\'s go'),
    ("They played with the.", "they played with the."),
    ("Tom was happy and.", "tom was happy and."),
    ("Lily smiled. She took her", "she took her"),
    ('Lily smiled. She said, "We can go home.', 'she said, "we can go home.'),  # speech never closed
    ("Lily smiled. “We can go home.", "“we can go home."),
    ("Tom smiled…", "tom smiled…"),  # trails off: no last sentence
    ("Tom looked at the sky and smiled...", "looked at the sky and smiled..."),
    # Speech opened in an earlier paragraph and never closed (a real SmolLM2 failure, shortened).
    ('"I\'m sorry," he said. "The heavy bag was too much.\nThe dog went home. Tom went home too.',
     "tom went home too."),
])
def test_unfinished_finds_a_story_cut_off_mid_sentence(text, end):
    assert unfinished(text) == f'unfinished: last sentence "{end}"'


@pytest.mark.parametrize("text", [
    "Tom smiled.", "Tom smiled!", "Was it Tom?", 'Tom said, "Bye."', "Tom said, 'Bye!'", "(Tom smiled.)",
    'She said, "I want to!"', 'He asked, "Can I come with?"',
    "He hugged her.", "Tom smiled.\n\nThe End", "Tom smiled.   \n", "", "  \n",
])
def test_unfinished_accepts_every_proper_ending(text):
    assert unfinished(text) is None


def test_unfinished_reads_only_the_end_of_a_long_story():
    assert unfinished(STORY * 20) is None
    assert unfinished(STORY * 20 + " Then the") == 'unfinished: last sentence "then the"'


# --- unfit ---

@pytest.mark.parametrize("text, entry", [
    ("She took a knife and cut the rope.", "knife"),
    ("There were knives on the table.", "knives"),
    ("There was blood on the floor.", "blood"),
    ("The hunter wanted to kill the bird.", "kill"),
    ("The bad man killed it.", "kill"),
    ("He was stabbed in the dark.", "stab"),
    ("The men had guns.", "gun"),
    ("They found dead bodies in the woods.", "dead body"),
    ("They found a dead   body.", "dead body"),
    ("Dad drank a BEER.", "beer"),
    ("What the hell is that?", "hell"),
    ("He was strangling the cat.", "strangle"),
    ("The gun's handle was red.", "gun"),
])
def test_unfit_finds_listed_words_with_simple_inflections(text, entry):
    assert unfit(text, UNFIT) == f'unfit: "{entry}"'


@pytest.mark.parametrize("text", [
    "Lily was sad and began to cry.", "Tom fell and hurt his knee.", "She was scared of the monster.",
    "Tom and Sam had a fight about the toy.", "The flower died in the winter.", "They saw a shooting star.",
    "The knight had a sword.", "The heroine saved the day.", "A bloodhound sniffed the grass.",
    "Hello, said the shell.", "The kids were skilled.", "The dog began to whine.", "The body of the car was red.",
    "She had a gut feeling.", "The old man was dead tired.",
])
def test_unfit_leaves_a_childrens_story_alone(text):
    assert unfit(text, UNFIT) is None


def test_unfit_matches_a_custom_list_and_an_empty_list_checks_nothing():
    assert unfit("They ate a big spider.", ["big spider"]) == 'unfit: "big spider"'
    assert unfit("They ate big spiders.", ("big spider", "bug")) == 'unfit: "big spider"'
    assert unfit("They ate a big red spider.", ["big spider"]) is None
    assert unfit("She took a knife.", ()) is None


def test_the_shipped_unfit_list_has_the_words_the_task_names():
    assert {"knife", "blood", "kill", "gun", "dead body"} <= set(UNFIT)
    assert not {"sad", "cry", "hurt", "fall", "scared", "monster", "fight"} & set(UNFIT)


# --- the new checks in the chain's order ---

@pytest.mark.parametrize("story, reason", [
    (STORY + "\n\nThis story uses simple words.", 'task_talk: "this story uses"'),
    (STORY + " Lily smiled and felt brave. Lily smiled and felt brave.", 'loop: sentence "lily smiled and felt brave" x3'),
    (STORY + " Then the", 'unfinished: last sentence "then the"'),
    (STORY + " Then she took a knife.", 'unfit: "knife"'),
])
def test_each_new_check_reports_its_code_and_detail(story, reason):
    assert run_checks(good_draft(story=story), unfit_words=UNFIT) == reason
    assert reason.split(":")[0] in CHECKS


def test_the_unfit_check_needs_the_list_passed_to_text_checks():
    draft = good_draft(story=STORY + " Then she took a knife.")
    assert run_checks(draft) is None
    assert checks.first_failure(draft, text_checks(unfit_words=UNFIT)) == 'unfit: "knife"'
    assert checks.first_failure(draft, text_checks(skip={"unfit"}, unfit_words=UNFIT)) is None


# --- mid-stream use by the engine ---

STREAMED = [
    ("Tom had a dog. Here is a summary of what he did. The end.", task_talk),
    ("Lily saw " + "a sandy unicorn with a tail of a unicorn, " * 8 + "and she smiled.", find_loop),
    ("Tom went out. She took a knife and cut the rope. Then she went home.", lambda t: unfit(t, UNFIT)),
]


@pytest.mark.parametrize("text, detect", STREAMED, ids=["task_talk", "loop", "unfit"])
def test_a_verdict_on_a_prefix_holds_with_the_same_reason_for_the_whole_text(text, detect):
    # The engine passes the text so far, up to its last whitespace, every few tokens.
    prefixes = [text[:i] for i in range(1, len(text) + 1) if i == len(text) or text[i].isspace()]
    verdicts = [detect(p) for p in prefixes]
    first = next(i for i, v in enumerate(verdicts) if v)
    assert all(v is None for v in verdicts[:first])
    assert set(verdicts[first:]) == {detect(text)}


def test_detectors_are_fast_on_a_600_word_story():
    text = " ".join([STORY, SECOND_STORY] * 5)  # about 650 words, with dialogue
    assert len(text.split()) >= 600
    for detect in (task_talk, find_loop, unfinished, lambda t: unfit(t, UNFIT)):
        detect(text)  # warm the caches
        best = min(_seconds(detect, text) for _ in range(5))
        assert best < 0.005, f"{detect} took {best * 1000:.1f} ms"


def _seconds(detect, text) -> float:
    start = time.perf_counter()
    detect(text)
    return time.perf_counter() - start


def test_every_word_and_next_word_the_talk_lever_bans_is_task_talk_to_the_check():
    # The steering's "talk" lever bans these (engine/steer.py Talk): each must be what
    # task_talk() rejects, or the lever would forbid story text for nothing.
    for word in checks.TALK_WORDS:
        assert checks.task_talk(f"Tom saw the {word} today."), word
    leads = ["The story", "The story is", "This is a story", "In this", "It was a simple", "It had a bad",
             "That was the moral", "I liked the plot"]
    assert len(leads) == len(checks.TALK_NEXT)
    for lead, (rule, words) in zip(leads, checks.TALK_NEXT):
        assert rule.search(lead.lower()), lead
        for word in words:
            assert checks.task_talk(f"{lead} {word} with a dog."), (lead, word)
    assert not checks.task_talk("The story was about a bear.")  # a story read inside the story
