"""Tests of scripts/audit.py: hand-written fixtures for each rule, good and bad."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import audit as A  # noqa: E402

# Two good, complete children's stories (written for these tests) that must pass every rule.
KITE_STORY = (
    "On a windy morning, Mia took her red kite to the top of the hill. The wind pulled hard "
    "on the string. Mia ran as fast as she could, and the kite rose up into the blue sky. Her "
    "little brother Sam clapped his hands. \"Can I hold it?\" he asked. Mia smiled and gave him "
    "the string. Sam held on tight, but the kite dipped and got stuck in a tall tree. Sam felt "
    "sad and began to cry. \"It's okay,\" said Mia. \"We can get it down together.\" They found "
    "a long stick and gently pushed the kite free. Then they ran down the hill, laughing, while "
    "the kite danced behind them. That night Sam said it was the best day ever."
)
KITE_WORDS = ["kite", "run", "windy"]

COOKIE_STORY = (
    "Ben had a jar of cookies on the kitchen table. His mom had baked them that morning, and "
    "the whole house smelled sweet. Ben wanted to eat every cookie by himself.\n\n"
    "Then his friend Lucy knocked on the door. She looked tired and hungry after her long walk "
    "from the park. Ben looked at the jar, and then he looked at Lucy. He remembered what his "
    "grandpa always told him: being kind makes your heart feel warm. So Ben picked the two "
    "biggest cookies and gave one to Lucy.\n\n"
    "\"Thank you, Ben!\" she said with a big smile. They sat on the front steps, sharing "
    "cookies and telling silly jokes until the sun went down. Ben learned that sharing made "
    "the cookies taste even better.\n\nThe end."
)
COOKIE_WORDS = ["cookie", "share", "kind"]

FILLER = (
    "Anna walked to the pond with her dad. They saw ducks, frogs and a turtle on a log. "
    "Dad gave her some bread for the ducks, and she laughed when they quacked at her."
)


@pytest.mark.parametrize("story,words", [(KITE_STORY, KITE_WORDS), (COOKIE_STORY, COOKIE_WORDS)])
def test_good_stories_pass_every_rule(story, words):
    result = A.audit(story, words)
    assert set(result) == set(A.RULES)
    assert all(result.values()), result


# --------------------------------------------------------------------------------------- words

@pytest.mark.parametrize("story,words", [
    ("The dogs ran to the red barn.", ["dog", "run", "red"]),                 # plural, irregular past
    ("The DOG Runs to the RED barn.", ["dog", "run", "red"]),                 # case-insensitive, -s
    ("Two babies were carrying the happiest puppy.", ["baby", "carry", "happy"]),  # -ies, -ing, -iest
    ("Mom baked the nicest cake. Her sun-hat was on.", ["hat", "bake", "nice"]),  # hyphen compound
    ("He stopped at the bigger tree.", ["tree", "stop", "big"]),              # doubled consonant
    ("The children went to a better park.", ["child", "go", "good"]),         # irregular forms
    ("Three mice were making noise in the tallest wolves' den.", ["mouse", "make", "tall"]),
    ("Tom's boxes were hiding under the quietest bed.", ["box", "hide", "quiet"]),
    ("The bus's horn was buzzing. It was a sunny day.", ["bus", "buzz", "sunny"]),
    ("She ate ice creams and dropped a shinier spoon.", ["ice cream", "drop", "shiny"]),  # multi-word
    ("The knives lay still. A cat was lying down, being lazier.", ["knife", "lie", "lazy"]),
])
def test_words_present(story, words):
    assert A.audit(story, words)["words"]


@pytest.mark.parametrize("story,words", [
    ("The dogs ran to the barn.", ["dog", "run", "red"]),           # adjective missing
    ("We ate a hotdog and ran home happy.", ["dog", "run", "happy"]),  # not a whole word
    ("She ran to catch the big ball.", ["cat", "run", "big"]),       # "catch" is not "cat"
    ("The kit showed great skill.", ["kit", "kill", "great"]),       # "skill" is not "kill"
    ("", ["dog", "run", "red"]),
])
def test_words_missing(story, words):
    assert not A.audit(story, words)["words"]


def test_inflections_tables():
    assert {"ran", "running", "runs"} <= A.inflections("run", "verb")
    assert {"flies", "flew", "flown", "flying"} <= A.inflections("fly", "verb")
    assert {"leaves"} <= A.inflections("leaf", "noun")
    assert {"bigger", "biggest"} <= A.inflections("big", "adj")
    assert "worse" in A.inflections("bad", "adj")


# -------------------------------------------------------------------------------- no_task_talk

@pytest.mark.parametrize("text", [
    "This is a story for a 3-year-old child about a dog.",
    "The story is short so 3-year-olds can follow it.",
    "Here is a fun tale for young children about a bear.",
    "Toddlers would understand this one because it is short.",
    "The bunny hopped. It uses simple words so kids can read it.",
    "The story should have a happy ending, so the bunny found her mom.",
    "At the end of this story, the bunny was happy.",
    "The bunny hopped away. (The verb is hop.)",
    "The noun in the story is bunny and the adjective is soft.",
    "Key sentence: The bunny found a carrot.",
    "Summary: a bunny finds a carrot in the garden.",
    "Features: dialogue, a happy ending.",
    "Step 1: The bunny wakes up. Step 2: The bunny eats.",
    "Here's a story about a bunny. The bunny hopped in the field.",
    "Sure! Once upon a time, a bunny lived in a hole.",
    "The bunny was happy. I hope you enjoyed reading about her!",
    "Title: The Happy Bunny\nOnce upon a time, there was a bunny.",
    "The bunny slept. That is the end of the story.",
    "Q: What did the bunny eat?\nA: A carrot.",
    "As an AI, I cannot tell scary stories, but here is a nice one.",
    "The bunny ran home (note: I used the word run here).",
    "Once upon a time, [NAME] went to the park.",
    "## The Brave Bunny\nThe bunny was brave.",
])
def test_task_talk_flagged(text):
    assert A.task_talk_hits(text), text
    assert not A.audit(text, [])["no_task_talk"]


@pytest.mark.parametrize("text", [
    "Tom was three years old and loved his blue truck.",
    "Lily was a 4-year-old girl with curly hair.",
    "Lily took a step toward the door. Then she took two more steps.",
    "It was a simple plan, but it worked. The nest was simple and warm.",
    "The bunny went to sleep in her warm bed.\nThe end.",
    "\"I hope you feel better soon,\" said Mom, and she kissed his head.",
    "\"Sure!\" said Max. \"Here is my ball.\"",
    "Grandpa told them a story about a brave little fish.",
    "The cat (who was very old) slept in the sun all day.",
    "Mom left a note: be home by six.",
    "Sure enough, the puppy found the bone under the bed.",
    "The kids played tag and then had a snack.",
])
def test_task_talk_not_flagged(text):
    assert not A.task_talk_hits(text), (text, A.task_talk_hits(text))
    assert A.audit(text, [])["no_task_talk"]


# ------------------------------------------------------------------------------------- no_loop

@pytest.mark.parametrize("text", [
    # a word 5-gram three times
    "The little bird sang a song. Then the little bird sang a song again. Mom smiled. "
    "The little bird sang a song for the third time.",
    # the same sentence three times
    "Lily was happy. She played with her ball. Lily was happy. She ran in the yard. Lily was happy.",
    # one word as more than 15% of a 40+ word text
    "The ball was red. Tom threw the ball to Sam, and Sam threw the ball back. The ball went up "
    "high. The ball came down. The ball hit the tree. Ball, ball, said the dog. The ball rolled "
    "away. Tom ran after the ball and got the ball.",
    # a degenerate run
    "The dog said no no no no no no and ran away from the bath.",
    # a looping tail
    FILLER + " And they played and played and played and played and played and played.",
])
def test_loop_flagged(text):
    assert A.loop_reasons(text), text
    assert not A.audit(text, [])["no_loop"]


@pytest.mark.parametrize("text", [
    KITE_STORY,
    # a refrain used twice is fine
    "Run, run, as fast as you can! said the cookie. The fox chased him. Run, run, as fast as you "
    "can! said the cookie again, and he hid in the grass until the fox went home.",
    # "no, no!" is fine
    "\"No, no!\" said Sam when the cat jumped on the table. The cat jumped down and purred.",
    # a name used often in a short text is not a loop
    FILLER + " Anna threw the last piece, and a small duck took it. Anna waved goodbye.",
])
def test_loop_not_flagged(text):
    assert not A.loop_reasons(text), (text, A.loop_reasons(text))
    assert A.audit(text, [])["no_loop"]


# ----------------------------------------------------------------------------- complete_ending

@pytest.mark.parametrize("text", [
    "They went home.",
    "\"We did it!\"",
    "Is that you?",
    "She smiled (and so did he.)",
    "He was so happy.\u201d",
    "The bunny went to sleep.\nThe end.",
    "She had no one to play with.",
    "Where did it come from?",
    "The sun came out.   \n",
])
def test_ending_complete(text):
    assert A.audit(text, [])["complete_ending"]


@pytest.mark.parametrize("text", [
    "They went to the park and then they went to the",
    "She looked at the.",
    "Tom and.",
    "They played all day",
    "Then Mom said:",
    "The dog ran,",
    "He was sad because.",
    "They waved to Mr.",
    "And then...",
    "And then\u2026",
    "\"Let's go",
    "He said, \"Let's go home.",
    "",
])
def test_ending_incomplete(text):
    assert not A.audit(text, [])["complete_ending"]


# ---------------------------------------------------------------------------------- child_safe

@pytest.mark.parametrize("text", [
    "He took a knife and cut the man.",
    "She cut her brother's arm with a knife.",
    "The robber stabbed him.",
    "There was blood on the floor.",
    "The man pulled out a gun.",
    "He shot the man.",
    "The wolf killed the sheep.",
    "The king was murdered in his bed.",
    "They found a dead body in the woods.",
    "There was a corpse in the box.",
    "Dad drank three beers.",
    "The man was drunk.",
    "He smoked a cigarette.",
    "What the hell is that?",
    "Damn, said the pirate.",
    "They had sex.",
])
def test_unsafe_flagged(text):
    assert A.unsafe_hits(text), text
    assert not A.audit(text, [])["child_safe"]


@pytest.mark.parametrize("text", [
    "Mom used a knife to cut the bread for her.",
    "Dad cut her a slice of cake with the big knife.",
    "Mom used scissors to cut her hair.",
    "Tim fell down and hurt his knee. He cried, and Mom gave him a hug.",
    "Lily was sad and scared when she got lost in the store.",
    "The monster under the bed was just a pile of socks.",
    "The boys played with water guns in the yard.",
    "They saw a shooting star. Sam shot the ball into the net.",
    "He had great skill. The class said hello and found a shell.",
    "The heroine of the game saved the cat.",
    "The old flower died, so they planted a new seed.",
])
def test_safe_not_flagged(text):
    assert not A.unsafe_hits(text), (text, A.unsafe_hits(text))
    assert A.audit(text, [])["child_safe"]


# -------------------------------------------------------------------------------------- length

@pytest.mark.parametrize("text,ok", [
    ("one two three four", False),
    ("one two three four five", True),
    ("It's a sun-hat, she said to me.", True),   # 7 words: it's, a, sun-hat, she, said, to, me
    ("one two three four five six seven eight nine ten", True),
    ("one two three four five six seven eight nine ten eleven", False),
])
def test_length_bounds(text, ok):
    assert A.audit(text, [], min_words=5, max_words=10)["length"] is ok


def test_length_defaults():
    assert not A.audit("The cat sat.", [])["length"]
    assert A.audit(KITE_STORY, KITE_WORDS)["length"]
    assert not A.audit("word " * 601, [])["length"]
    assert A.word_count("It's a sun-hat.") == 3


# ----------------------------------------------------------------------------------- audit_all

def test_audit_all_counts_shares():
    rows = [
        {"story": KITE_STORY, "words": KITE_WORDS},                     # passes all
        {"story": COOKIE_STORY, "words": ["cookie", "share", "tall"]},  # fails words only
        (KITE_STORY.rsplit(".", 2)[0] + " and the", KITE_WORDS),        # fails complete_ending
        {"story": "The dog ran.", "words": ["dog", "run", "big"]},      # fails words + length
    ]
    report = A.audit_all(rows, examples=1)
    assert report["n"] == 4
    share = report["pass_share"]
    assert share["words"] == pytest.approx(2 / 4)
    assert share["complete_ending"] == pytest.approx(3 / 4)
    assert share["length"] == pytest.approx(3 / 4)
    assert share["no_task_talk"] == share["no_loop"] == share["child_safe"] == 1.0
    assert report["all"] == pytest.approx(1 / 4)
    assert [ex["index"] for ex in report["failures"]["words"]] == [1]  # capped at examples=1
    assert report["failures"]["complete_ending"][0]["index"] == 2
    assert report["failures"]["child_safe"] == []


def test_audit_all_empty():
    report = A.audit_all([])
    assert report["n"] == 0 and report["all"] == 0.0
    assert set(report["pass_share"]) == set(A.RULES)


def test_cli_jsonl(tmp_path, capsys):
    path = tmp_path / "kept.jsonl"
    rows = [{"story": KITE_STORY, "words": KITE_WORDS}, {"story": "The dog", "words": ["dog", "run", "big"]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert A.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "rows: 2" in out
    assert "all" in out and "50.00%" in out
    assert A.main([str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["pass_share"]["words"] == 0.5


def test_cli_parquet(tmp_path, capsys):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "kept.parquet"
    pq.write_table(pa.table({"story": [KITE_STORY, COOKIE_STORY], "words": [KITE_WORDS, COOKIE_WORDS]}), path)
    assert A.main([str(path)]) == 0
    assert "100.00%" in capsys.readouterr().out
