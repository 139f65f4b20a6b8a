"""Steering policies (engine/steer.py) on a hand-made tokenizer: pure logic, no llama.cpp.

The real engine applies the same object to real logits (tests/test_engine_steer.py); here a
token is a word from a small table, so each lever's effect on the logits can be read exactly.
"""
from __future__ import annotations

import numpy as np
import pytest

from corpusforge.engine.steer import Steer, SteerConfig, Steering

EOG = 0
VOCAB = [" <eog>", " the", " dog", " ran", " red", " unic", "orn", " cat", ".", "\n\n", " It", " was", " big",
         ' "', "Hi", " runs", " running", " dogs", " Sam", " sat"]
IDS = {piece: i for i, piece in enumerate(VOCAB)}


def tokenize(text: str, add_special: bool = False) -> list[int]:
    """Greedy longest match over VOCAB (enough for the spellings the tests use)."""
    out, i = [], 0
    while i < len(text):
        piece = max((p for p in VOCAB if text.startswith(p, i)), key=len, default=None)
        if piece is None:
            i += 1
            continue
        out.append(IDS[piece])
        i += len(piece)
    return out


def steering(words=(("dog", "noun"), ("run", "verb"), ("red", "adjective")), key="", dialogue=False,
             cut_checks=None, **config) -> Steering:
    extra = {} if cut_checks is None else {"cut_checks": frozenset(cut_checks)}
    return Steering.compile(Steer(SteerConfig(**config), tuple(words), key_sentence=key, dialogue=dialogue, **extra),
                            tokenize, [EOG], {})


def feed(st: Steering, text: str) -> list:
    """Feed text token by token as if sampled; the (forced, cut, stop) of each step."""
    return [st.after(t, VOCAB[t], False) for t in tokenize(text)]


def logits_after(st: Steering) -> np.ndarray:
    row = np.zeros(len(VOCAB), dtype=np.float32)
    st.adjust(row)
    return row


def test_only_missing_words_are_biased_and_a_written_word_stops_its_bias():
    st = steering(min_words=0)
    before = logits_after(st)
    assert before[IDS[" dog"]] > 0 and before[IDS[" red"]] > 0 and before[IDS[" ran"]] > 0
    feed(st, " the dog sat.")
    after = logits_after(st)
    assert after[IDS[" dog"]] == 0  # written: no bias left on it
    assert after[IDS[" red"]] > 0 and after[IDS[" runs"]] > 0  # still missing, every inflection biased
    assert after[IDS[" cat"]] == 0


def test_an_inflected_form_counts_as_the_word_written():
    st = steering(min_words=0)
    feed(st, " the dogs running.")
    row = logits_after(st)
    assert row[IDS[" dog"]] == 0 and row[IDS[" runs"]] == 0 and row[IDS[" red"]] > 0


def test_the_word_bias_rises_with_the_length_of_the_story():
    st = steering(word_bias=1.0, word_bias_max=5.0, target_words=10, min_words=0)
    start = logits_after(st)[IDS[" red"]]
    feed(st, " the cat sat." * 2)
    middle = logits_after(st)[IDS[" red"]]
    feed(st, " the cat sat." * 4)
    late = logits_after(st)[IDS[" red"]]
    assert start == pytest.approx(1.0) and start < middle < late == pytest.approx(5.0)


def test_a_half_written_word_is_pushed_to_its_end():
    st = steering(words=(("unicorn", "noun"),), min_words=0)
    assert logits_after(st)[IDS["orn"]] == 0
    feed(st, " unic")
    row = logits_after(st)
    assert row[IDS["orn"]] >= SteerConfig().word_bias_max + 4  # finishing it beats starting it again
    assert row[IDS["orn"]] > row[IDS[" unic"]]


def test_end_of_turn_is_forbidden_before_min_words_and_while_a_word_is_missing():
    st = steering(min_words=4, target_words=4)
    assert logits_after(st)[EOG] == -np.inf
    feed(st, " the dog ran.")  # 3 words, red missing
    assert logits_after(st)[EOG] == -np.inf
    feed(st, " the red cat.")  # 6 words, all in
    assert logits_after(st)[EOG] > 0


def test_the_end_push_comes_only_right_after_a_sentence_ends_and_grows_past_the_target():
    st = steering(words=(), min_words=1, target_words=4, end_bias_max=8.0)
    feed(st, " the dog ran the cat")
    assert logits_after(st)[EOG] == 0  # mid-sentence: no push
    feed(st, ".")
    first = logits_after(st)[EOG]
    feed(st, " the dog ran the cat sat.")
    assert 0 < first < logits_after(st)[EOG] <= 8.0


def test_a_story_without_the_end_lever_gets_no_end_of_turn_bias():
    st = steering(words=(), end=False)
    assert logits_after(st)[EOG] == 0


def test_the_key_sentence_is_forced_at_the_first_paragraph_break():
    st = steering(words=(), key="It was big.", min_words=0)
    steps = feed(st, " the dog ran the cat sat the dog ran the cat sat the dog ran.\n\n")
    forced = [f for f, _, _ in steps if f]
    assert forced == [tokenize("It was big.")]
    assert st.text.endswith("\n\nIt was big.")
    assert feed(st, " the cat sat.\n\n")[-1][0] is None  # once only


def test_the_key_sentence_is_not_forced_when_the_model_wrote_it():
    st = steering(words=(), key="It was big.", min_words=0)
    steps = feed(st, " It was big. the dog ran the cat sat the dog ran the cat sat the dog.\n\n")
    assert not any(f for f, _, _ in steps)


def test_the_key_sentence_replaces_an_end_of_turn_that_comes_before_it():
    st = steering(words=(), key="It was big.", min_words=0, target_words=100)
    feed(st, " the dog ran.")
    forced, cut, stop = st.after(EOG, "", True)
    assert forced == tokenize(" It was big.") and cut is None and not stop


def test_a_story_longer_than_max_words_is_cut_with_a_length_reason():
    st = steering(words=(), max_words=5)
    reasons = [c for _, c, _ in feed(st, " the dog ran the cat sat the dog.")]
    assert any(r and r.startswith("length:") for r in reasons)


def test_a_loop_is_cut_while_it_is_written():
    st = steering(words=())
    reasons = [c for _, c, _ in feed(st, " the red dog ran." * 12)]
    assert any(r and r.startswith("loop:") for r in reasons)


def test_a_skipped_check_never_cuts_mid_stream_and_the_others_still_do():
    # --skip-check loop: the loop is written to the end (and then not checked either).
    st = steering(words=(), cut_checks={"length", "task_talk", "unfit"})
    assert not any(c for _, c, _ in feed(st, " the red dog ran." * 12))
    st = steering(words=(), cut_checks={"loop"}, max_words=5)
    reasons = [c for _, c, _ in feed(st, " the red dog ran." * 12)]
    assert not any(r and r.startswith("length:") for r in reasons) and any(r and r.startswith("loop:") for r in reasons)


def test_with_the_cut_lever_off_nothing_is_cut():
    st = steering(words=(), cut=False, max_words=5)
    assert not any(c for _, c, _ in feed(st, " the red dog ran." * 12))


def test_end_at_newline_stops_a_one_line_answer_after_min_words():
    st = steering(words=(), end_at_newline=True, min_words=2)
    steps = feed(st, " the dog ran.\n\n the cat")
    stops = [i for i, (_, _, stop) in enumerate(steps) if stop]
    assert stops and tokenize(" the dog ran.\n\n")[stops[0]] == IDS["\n\n"]


def test_the_text_only_detector_cuts_and_stops_streamed_text_without_forcing_anything():
    # What scripts/bench_kept.py's llama-server client applies to a streamed answer: it has no
    # tokenizer and cannot change logits, so the detector works on the pieces alone.
    det = Steering.detector(SteerConfig(max_words=5, key_sentence=True), cut_checks={"length", "loop"})
    pieces = [" the", " dog", " ran", " the", " cat", " sat", " down", "."]
    steps = [det.after(0, piece, False) for piece in pieces]
    assert not any(forced for forced, _, _ in steps)
    assert any(c and c.startswith("length:") for _, c, _ in steps)
    line = Steering.detector(SteerConfig(end_at_newline=True, min_words=2, max_words=80))
    assert [stop for _, _, stop in (line.after(0, p, False) for p in [" the", " dog", "\n", " more"])] == [False, False, True, False]
    skipped = Steering.detector(SteerConfig(max_words=5), cut_checks={"loop"})
    assert not any(c for _, c, _ in (skipped.after(0, p, False) for p in pieces))


def test_dialogue_steers_toward_an_opening_quote_until_one_is_written():
    st = steering(words=(), dialogue=True, min_words=0)
    assert logits_after(st)[IDS[' "']] > 0
    feed(st, ' the dog ran. "Hi')
    assert logits_after(st)[IDS[' "']] == 0


def test_steering_is_a_pure_function_of_the_tokens_written():
    a, b = steering(key="It was big."), steering(key="It was big.")
    text = " the dog ran.\n\n the cat sat. the red dog ran."
    assert feed(a, text) == feed(b, text)
    assert np.array_equal(logits_after(a), logits_after(b))


def test_levers_switched_off_turn_the_whole_policy_off():
    config = SteerConfig().off(["words", "end", "key_sentence", "cut"])
    assert not config.any()
    assert SteerConfig().off(["words"]).any()
