"""Tests for corpusforge.dedup: exact and near duplicates, thresholds, lowest earlier id, rebuilds.

Hand-written fixture stories, not model output: the tiny model writes gibberish, while each
copy below differs from its original by edits we chose, so its true Jaccard can be stated.
`python tests/test_dedup.py` prints the timing and memory figures quoted in dedup.py.
"""
from __future__ import annotations

import math
import pickle

import pytest

from corpusforge.dedup import (
    DEFAULT_SHINGLE,
    DEFAULT_THRESHOLD,
    DedupIndex,
    Match,
    lsh_bands,
    normalise,
    shingles,
)
from corpusforge.errors import CorpusforgeError

STORIES = {
    1: (
        "Once upon a time, there was a little girl named Lily. She loved to play in the park "
        "near her house. One day, she found a shiny red ball under a big tree. \"Whose ball is "
        "this?\" Lily asked. A small boy named Tom came running. \"It is mine!\" he said. \"I lost "
        "it this morning.\" Lily smiled and gave the ball back to Tom. Tom was very happy. He "
        "asked Lily to play with him. They kicked the ball and ran after it until the sun went "
        "down. When it was time to go home, Tom gave Lily a hug. \"Thank you for being kind,\" he "
        "said. From that day on, Lily and Tom were best friends, and they played together in the "
        "park every day."
    ),
    2: (
        "Once upon a time, there was a little dog named Max. Max lived on a farm with a cow, a "
        "pig and three hens. Max liked to bark at the hens, and the hens did not like it. One "
        "rainy day, the barn door blew open and the hens ran out into the mud. They were cold "
        "and scared. Max stopped barking. He ran through the rain and pushed the hens back into "
        "the barn with his nose, one by one. The farmer saw what Max did and gave him a warm "
        "blanket and a bone. The hens were not afraid of Max any more. After that, Max never "
        "barked at them again, and every night the hens slept next to him in the straw."
    ),
    3: (
        "Once upon a time, there was a little boy named Ben who wanted to fly. He watched the "
        "birds every morning and flapped his arms, but he never left the ground. His grandpa "
        "saw him and said, \"Let us make something that can fly.\" Together they cut paper, tied "
        "string to two thin sticks and painted a bright yellow sun on the front. The next day "
        "the wind was strong. Ben ran across the hill and the kite jumped up into the sky. It "
        "went higher and higher, past the trees and almost to the clouds. Ben laughed and held "
        "the string tight. \"I am flying!\" he shouted. Grandpa laughed too. They stayed on the "
        "hill until the wind went to sleep."
    ),
    4: (
        "Once upon a time, there was a little girl named Mia who was afraid of the dark. Every "
        "night she asked her mom to leave the light on. One night the power went out and the "
        "whole house was black. Mia hid under her blanket. Then she heard a soft sound at the "
        "window. She peeked out and saw tiny lights dancing in the garden. They were fireflies! "
        "Mia opened the window and a firefly landed on her hand. It glowed green and warm. \"You "
        "are not scary at all,\" Mia whispered. Her mom came in with a candle and they watched "
        "the fireflies together. When the lights came back on, Mia asked her mom to turn them "
        "off again, because now she liked the dark."
    ),
    5: (
        "Tim had a small boat made of wood. His dad helped him carve it from an old log, and "
        "Tim painted it blue with a white stripe. On Saturday they carried the boat to the pond. "
        "Tim set it on the water and gave it a little push. The boat sailed past the ducks and "
        "the tall green reeds. Then a gust of wind pushed it far away, to the middle of the "
        "pond. Tim was sad. He thought his boat was lost forever. But a big white duck swam "
        "after it and nudged it back to the shore with her beak. Tim clapped his hands. He "
        "shared his bread with the duck, and after that she followed the little blue boat "
        "every time Tim came to play."
    ),
}


def edit(text: str, *swaps: tuple[str, str]) -> str:
    for old, new in swaps:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


# Story 1 shouted, re-spaced and re-punctuated: the same words, so an exact duplicate.
SHOUTED_1 = "  " + STORIES[1].upper().replace(" ", "   \n").replace(",", " ,").replace('"', "“") + " !!"
# Story 1 with two words changed (red -> blue, morning -> afternoon): true Jaccard 0.850 (k=5).
NEAR_1 = edit(STORIES[1], ("shiny red ball", "shiny blue ball"), ("this morning", "this afternoon"))
# Story 1 retold loosely: seven edits, two sentences reworded: true Jaccard 0.476 (k=5).
LOOSE_1 = edit(STORIES[1], ("loved to play", "liked to run"), ("shiny red ball", "shiny blue ball"),
               ("big tree", "tall tree"), ("this morning", "this afternoon"),
               ("Tom was very happy.", "Tom jumped up and down."),
               ("until the sun went down", "until it got dark"), ("gave Lily a hug", "waved at Lily"))
# Another story told with story 1's stock phrases (opening, "Thank you for being kind", ending).
STOCK = (
    "Once upon a time, there was a little girl named Sue. She loved to play with her cat near "
    "her house. One day, the cat climbed up a big tree and could not get down. \"Help!\" Sue "
    "asked her dad. Dad came running with a ladder. He climbed up and gave the cat back to Sue. "
    "Sue was very happy. She gave her dad a hug. \"Thank you for being kind,\" she said. The "
    "cat purred and went to sleep on her bed. From that day on, Sue and her cat were best "
    "friends, and they played together in the garden every day."
)


def jaccard(a: str, b: str, k: int = DEFAULT_SHINGLE) -> float:
    x, y = shingles(a, k), shingles(b, k)
    return len(x & y) / len(x | y)


def index_of_stories(**kwargs) -> DedupIndex:
    index = DedupIndex(**kwargs)
    for story_id, text in STORIES.items():
        index.add(story_id, text)
    return index


def test_fixture_stories_have_the_lengths_and_jaccards_the_tests_state():
    # Hand-written fixtures: pins the numbers quoted in comments here and in dedup.py.
    assert all(80 <= len(t.split()) <= 200 for t in STORIES.values())
    assert round(jaccard(STORIES[1], NEAR_1), 3) == 0.850
    assert round(jaccard(STORIES[1], LOOSE_1), 3) == 0.476
    assert round(jaccard(STORIES[1], STOCK, 5), 3) == 0.072
    assert round(jaccard(STORIES[1], STOCK, 3), 3) == 0.160
    pairs = [(a, b) for a in STORIES for b in STORIES if a < b]
    assert max(jaccard(STORIES[a], STORIES[b]) for a, b in pairs) < 0.03


def test_normalise_drops_case_quotes_and_punctuation_and_collapses_spacing():
    # A hand-written line with curly quotes, an apostrophe, a hyphen and ragged spacing.
    assert normalise("  “Don’t  GO!” said\tTom.\n\nIce-cream?  ") == "dont go said tom ice cream"
    assert normalise("...!?") == ""


def test_shingles_are_word_k_grams_and_a_short_text_is_one_shingle():
    # Hand-written five-word text: every k-gram can be listed by hand.
    assert shingles("The cat sat, the end.", 3) == {"the cat sat", "cat sat the", "sat the end"}
    assert shingles("The cat SAT!", 5) == {"the cat sat"}
    assert shingles("?!", 5) == set()


def test_a_copy_differing_only_in_case_spacing_and_punctuation_is_an_exact_duplicate_of_its_id():
    # Hand-written fixtures: story 1 shouted and re-spaced must map to id 1, not to a neighbour.
    index = index_of_stories()
    assert index.find(SHOUTED_1) == Match("exact", 1, 1.0)
    assert index.find(STORIES[3].lower()) == Match("exact", 3, 1.0)


def test_a_copy_with_two_words_changed_is_a_near_duplicate_at_the_default_threshold():
    # Hand-written fixtures: NEAR_1 has true Jaccard 0.850 with story 1, above the default 0.8.
    match = index_of_stories().find(NEAR_1)
    assert match is not None and (match.kind, match.other) == ("near", 1)
    assert DEFAULT_THRESHOLD <= match.similarity < 1.0
    assert abs(match.similarity - 0.850) < 0.1  # 128 permutations: standard error ~0.03


def test_unrelated_stories_are_not_duplicates_even_when_they_share_stock_phrases():
    # Hand-written fixtures: five different plots, and STOCK reuses story 1's set phrases.
    index = DedupIndex()
    for story_id, text in STORIES.items():
        assert index.check_and_add(story_id, text) is None
    assert index.find(STOCK) is None
    assert DedupIndex(threshold=0.5).find(STOCK) is None


def test_the_threshold_is_configurable_a_pair_between_two_thresholds_is_caught_only_below():
    # Hand-written fixtures: LOOSE_1 has true Jaccard 0.476 with story 1; 0.35 and 0.65 sit
    # well over three standard errors (~0.04) either side of it.
    low = index_of_stories(threshold=0.35).find(LOOSE_1)
    assert low is not None and (low.kind, low.other) == ("near", 1)
    assert index_of_stories(threshold=0.65).find(LOOSE_1) is None
    assert index_of_stories().find(LOOSE_1) is None


def test_check_and_add_indexes_only_texts_that_duplicate_nothing():
    # Hand-written fixtures: five originals go in, their exact and near copies stay out.
    index = DedupIndex()
    assert [index.check_and_add(i, t) for i, t in STORIES.items()] == [None] * 5
    assert index.check_and_add(6, SHOUTED_1) == Match("exact", 1, 1.0)
    assert index.check_and_add(7, NEAR_1).other == 1
    assert len(index) == 5 and 6 not in index and 7 not in index and 5 in index
    assert index.check_and_add(1, STORIES[1]) is None, "a story never duplicates itself"
    assert len(index) == 5


@pytest.mark.parametrize("order", [(9, 4, 12), (12, 4, 9), (4, 12, 9)])
def test_the_lowest_earlier_id_is_reported_whatever_the_insertion_order(order):
    # Hand-written fixtures: story 1 indexed under three ids, as a resume re-reading shards may.
    index = DedupIndex()
    for story_id in order:
        index.add(story_id, STORIES[1])
    assert index.find(SHOUTED_1) == Match("exact", 4, 1.0)
    assert index.find(NEAR_1).other == 4
    assert index.find(SHOUTED_1, exclude=4) == Match("exact", 9, 1.0)


def test_add_is_idempotent_for_the_same_id():
    # Hand-written fixtures: re-adding id 1, even with other text, keeps the first version.
    index = index_of_stories()
    index.add(1, STORIES[1])
    index.add(1, STORIES[2])
    assert len(index) == 5
    assert index.find(STORIES[1]) == Match("exact", 1, 1.0)
    assert index.find(STORIES[2]) == Match("exact", 2, 1.0)


def test_find_excludes_the_given_id():
    # Hand-written fixtures: a story looked up against an index that holds it, as stats does.
    index = index_of_stories()
    assert index.find(STORIES[2], exclude=2) is None
    assert index.find(NEAR_1, exclude=1) is None


def test_a_text_without_words_matches_only_exactly():
    # Hand-written punctuation-only texts: they have no shingles, so only the hash can match.
    index = index_of_stories()
    assert index.check_and_add(10, "...") is None
    assert index.find("!?!") == Match("exact", 10, 1.0)
    assert index.find("Once upon") is None


QUERIES = [*STORIES.values(), SHOUTED_1, NEAR_1, LOOSE_1, STOCK, "...", "Tom ran."]


def answers(index: DedupIndex) -> list:
    return [(index.find(q), index.find(q, exclude=1)) for q in QUERIES]


def test_add_many_gives_the_same_answers_as_repeated_add():
    # Hand-written fixtures plus copies under new ids, so exact, near and lowest-id answers all occur.
    items = [*STORIES.items(), (8, NEAR_1), (3, "dup id, ignored"), (0, SHOUTED_1), (11, "...")]
    one_by_one = DedupIndex()
    for story_id, text in items:
        one_by_one.add(story_id, text)
    batched = DedupIndex()
    batched.add_many(iter(items))
    assert len(batched) == len(one_by_one) == 8
    assert answers(batched) == answers(one_by_one)
    assert answers(batched)[5] == (Match("exact", 0, 1.0), Match("exact", 0, 1.0))


def test_a_pickled_index_gives_the_same_answers_and_keeps_growing():
    # Hand-written fixtures: a worker process receives the index pickled.
    index = index_of_stories()
    index.add(8, NEAR_1)
    copy = pickle.loads(pickle.dumps(index))
    assert answers(copy) == answers(index) and len(copy) == 6
    assert copy.check_and_add(20, STOCK) is None and copy.find(STOCK) == Match("exact", 20, 1.0)


def test_two_indexes_in_one_process_agree_as_the_seeds_are_fixed():
    # Hand-written fixtures: a near match's similarity is the same number in every index.
    assert index_of_stories().find(NEAR_1) == index_of_stories().find(NEAR_1)


@pytest.mark.parametrize("threshold", [0, 0.0, -0.1, 1.01, math.nan, "0.8", True])
def test_a_bad_threshold_raises_naming_the_option(threshold):
    with pytest.raises(CorpusforgeError, match="--dedup-threshold"):
        DedupIndex(threshold=threshold)


@pytest.mark.parametrize("shingle", [0, -3, 2.5, "5", True])
def test_a_bad_shingle_size_raises_naming_the_option(shingle):
    with pytest.raises(CorpusforgeError, match="--shingle-size"):
        DedupIndex(shingle=shingle)


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.8, 0.9, 1.0])
def test_lsh_bands_propose_a_pair_at_the_threshold_at_least_95_percent_of_the_time(threshold):
    bands, rows = lsh_bands(threshold, 128)
    assert bands * rows <= 128
    assert 1 - (1 - threshold ** rows) ** bands >= 0.95


# --- figures for dedup.py: `python tests/test_dedup.py` -----------------------------------

def _synthetic(n: int, seed: int = 0) -> list[str]:
    """n varied ~200-word stories: stock story sentences filled from the shipped word lists."""
    import random
    from pathlib import Path

    vocab = Path(__file__).parent.parent / "corpusforge" / "vocab"
    words = {name: [w for w in (vocab / f"{name}.txt").read_text().split("\n") if w and w[0] != "#"]
             for name in ("nouns", "verbs", "adjectives")}
    names = "Lily Tom Ben Mia Sue Max Tim Anna Sam Lucy Jack Zoe".split()
    sentences = ["Once upon a time, there was a little {a} {n} named {p}.", "The {a} {n} wanted to {v} the {n}.",
                 "{p} saw a {a} {n} near the {n}.", "\"Can I {v} your {n}?\" {p} asked.",
                 "They liked to {v} in the {a} {n} every day.", "Then the {n} began to {v}, and {p} was very {a}.",
                 "{p} and the {n} played together all day.", "{p} smiled and gave the {n} a big hug."]
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        text = []
        while sum(len(s.split()) for s in text) < 195:
            text.append(rng.choice(sentences).format(a=rng.choice(words["adjectives"]), n=rng.choice(words["nouns"]),
                                                     v=rng.choice(words["verbs"]), p=rng.choice(names)))
        out.append(" ".join(text))
    return out


def _figures() -> None:
    import gc
    import time
    import tracemalloc

    texts = _synthetic(11_000)
    print(f"mean words per story: {sum(len(t.split()) for t in texts) / len(texts):.0f}")

    def cpu(fn) -> float:
        start = time.process_time()
        fn()
        return time.process_time() - start

    def check_1000(index: DedupIndex) -> float:
        return cpu(lambda: [index.check_and_add(i, t) for i, t in enumerate(texts[:1000])])

    print(f"check_and_add 1,000 into 0: {check_1000(DedupIndex()):.2f} s CPU")
    full = DedupIndex()
    print(f"add_many 10,000: {cpu(lambda: full.add_many(enumerate(texts[1000:], 1000))):.2f} s CPU")
    print(f"check_and_add 1,000 into 10,000: {check_1000(full):.2f} s CPU")
    blob = pickle.dumps(full)
    print(f"pickle: {len(blob) / len(full):.0f} B a story; unpickle {cpu(lambda: pickle.loads(blob)):.2f} s CPU")
    gc.collect()
    tracemalloc.start()
    held = DedupIndex()
    held.add_many(enumerate(texts[1000:], 1000))
    gc.collect()
    now, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"memory: {now / len(held):.0f} B a story held, peak {(peak - now) / 1e6:.1f} MB above that")


if __name__ == "__main__":
    _figures()
