"""Steering policies (engine/steer.py) on a hand-made tokenizer: pure logic, no llama.cpp.

The real engine applies the same object to real logits (tests/test_engine_steer.py); here a
token is a word from a small table, so each lever's effect on the logits can be read exactly.
"""
from __future__ import annotations

import numpy as np
import pytest

from corpusforge.engine.steer import Pieces, Steer, SteerConfig, Steering

EOG = 0
VOCAB = [" <eog>", " the", " dog", " ran", " red", " unic", "orn", " cat", ".", "\n\n", " It", " was", " big",
         ' "', "Hi", " runs", " running", " dogs", " Sam", " sat", "s", "shed", ",", " a", "It",
         '"', " story", " is", " about", " ends", " paragraph"]
IDS = {piece: i for i, piece in enumerate(VOCAB)}


def tokenize(text: str, add_special: bool = False) -> list[int]:
    """Greedy longest match over VOCAB; a text it cannot spell is [] (so a spelling such as
    " reddest" is no form of the word here, as compile() drops empty token lists)."""
    out, i = [], 0
    while i < len(text):
        piece = max((p for p in VOCAB if text.startswith(p, i)), key=len, default=None)
        if piece is None:
            return []
        out.append(IDS[piece])
        i += len(piece)
    return out


PIECES = Pieces.of(enumerate(VOCAB))


def steering(words=(("dog", "noun"), ("run", "verb"), ("red", "adjective")), key="", dialogue=False,
             cut_checks=None, **config) -> Steering:
    extra = {} if cut_checks is None else {"cut_checks": frozenset(cut_checks)}
    return Steering.compile(Steer(SteerConfig(**config), tuple(words), key_sentence=key, dialogue=dialogue, **extra),
                            tokenize, [EOG], {}, PIECES)


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
    st = steering(words=(), min_words=1, target_words=4, end_bias_max=8.0, finish=False)
    feed(st, " the dog ran the cat")
    assert logits_after(st)[EOG] == 0  # mid-sentence: no push (and with finish off, no ban)
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


def test_end_of_turn_is_forbidden_mid_sentence_and_inside_open_speech():
    st = steering(words=(), min_words=1, target_words=100)
    feed(st, " the dog ran the cat")
    assert logits_after(st)[EOG] == -np.inf  # mid-sentence: the unfinished check would fail it
    feed(st, ".")
    assert logits_after(st)[EOG] == 0  # a finished sentence: allowed (no push before the target)
    feed(st, '\n\n "Hi.')  # speech opened and not closed, though the sentence ends
    assert logits_after(st)[EOG] == -np.inf
    off = steering(words=(), min_words=1, target_words=100, finish=False)
    feed(off, " the dog ran the cat")
    assert logits_after(off)[EOG] == 0


def test_right_after_a_required_word_only_tokens_that_end_or_inflect_it_may_follow():
    st = steering(words=(("dog", "noun"),), min_words=0)
    feed(st, " the dog")
    row = logits_after(st)
    assert row[IDS["shed"]] == -np.inf and row[IDS["orn"]] == -np.inf and row[IDS["Hi"]] == -np.inf  # "dogshed"
    assert row[IDS["s"]] > -np.inf  # "dogs" is the word too
    assert row[IDS[" ran"]] == 0 and row[IDS["."]] == 0  # a word boundary: untouched
    feed(st, " ran")
    assert logits_after(st)[IDS["shed"]] == 0  # only right after the word
    off = steering(words=(("dog", "noun"),), min_words=0, boundary=False)
    feed(off, " the dog")
    assert logits_after(off)[IDS["shed"]] == 0


def test_pieces_list_the_word_continuing_tokens_and_what_grows_a_word_into_its_forms():
    assert set(PIECES.glue) == {IDS[p] for p in ("orn", "Hi", "s", "shed", "It")}
    assert set(PIECES.growing(" dog", [" dog", " dogs"])) == {IDS["s"]}
    assert PIECES.growing(" dogs", [" dog", " dogs"]).size == 0


def test_a_word_still_missing_at_one_and_a_half_times_the_target_cuts_the_attempt():
    st = steering(words=(("dog", "noun"), ("red", "adjective")), min_words=0, target_words=4)
    steps = feed(st, " the red cat sat.")  # 4 words: not yet
    assert not any(c for _, c, _ in steps)
    reasons = [c for _, c, _ in feed(st, " the cat sat.")]
    assert "words: missing noun 'dog' (cut while writing)" in reasons
    # All written by then: no cut.
    ok = steering(words=(("dog", "noun"),), min_words=0, target_words=4)
    assert not any(c for _, c, _ in feed(ok, " the dog sat. the cat sat. the cat sat."))


def test_the_missing_word_cut_follows_its_lever_and_the_checks_in_use():
    text = " the red cat sat. the cat sat. the cat sat."
    for kwargs in ({"cut_missing": False}, {"cut": False}, {"cut_checks": {"length", "loop"}}):
        st = steering(words=(("dog", "noun"),), min_words=0, target_words=4, **kwargs)
        assert not any(c for _, c, _ in feed(st, text)), kwargs


def test_asked_for_speech_still_missing_at_one_and_a_half_times_the_target_cuts_the_attempt():
    st = steering(words=(), dialogue=True, min_words=0, target_words=4)
    reasons = [c for _, c, _ in feed(st, " the red cat sat. the cat sat.")]
    assert "dialogue: requested but no quoted speech (cut while writing)" in reasons
    spoken = steering(words=(), dialogue=True, min_words=0, target_words=4)
    assert tokenize(' the cat sat. "Hi Sam," the dog ran.')
    assert not any(c for _, c, _ in feed(spoken, ' the cat sat. "Hi Sam," the dog ran.'))
    one_word = steering(words=(), dialogue=True, min_words=0, target_words=4)  # the check wants two words
    assert "dialogue: requested but no quoted speech (cut while writing)" in [
        c for _, c, _ in feed(one_word, ' the cat sat. "Hi," the dog ran.')]


def test_one_word_in_quotes_is_no_speech_yet_and_the_pull_rests_while_a_quote_is_open():
    st = steering(words=(), dialogue=True, min_words=0)
    feed(st, ' the dog ran. "Hi')
    assert logits_after(st)[IDS['"']] == 0 and logits_after(st)[IDS[' "']] == 0  # open: a quote would close it
    feed(st, '" the dog ran.')
    assert logits_after(st)[IDS[' "']] > 0  # "Hi" is one word: the dialogue check would still fail
    feed(st, ' "Hi Sam"')
    assert logits_after(st)[IDS[' "']] == 0 and not st.need_quote


def test_task_talk_words_and_next_words_are_never_sampled_where_the_check_would_reject_them():
    st = steering(words=(), min_words=0)
    assert logits_after(st)[IDS[" paragraph"]] == -np.inf  # never in a story
    feed(st, " the dog ran. the story")
    row = logits_after(st)
    assert row[IDS[" ends"]] == -np.inf and row[IDS[" is"]] == 0  # "the story ends with": task talk
    feed(st, " is")
    row = logits_after(st)
    assert row[IDS[" about"]] == -np.inf and row[IDS[" ends"]] == 0
    for kwargs in ({"talk": False}, {"cut": False}, {"cut_checks": {"length", "loop"}}):
        off = steering(words=(), min_words=0, **kwargs)
        feed(off, " the dog ran. the story")
        assert logits_after(off)[IDS[" ends"]] == 0 and logits_after(off)[IDS[" paragraph"]] == 0, kwargs


def test_task_talk_after_the_first_sentence_cuts_at_the_sentence_end_that_shows_it():
    st = steering(words=(), min_words=0, target_words=100)
    steps = feed(st, " the dog ran. the cat sat. the story is about the dog. the cat sat.")
    reasons = [c for _, c, _ in steps]
    first = next(i for i, c in enumerate(reasons) if c)
    assert reasons[first].startswith("task_talk:") and VOCAB[tokenize(" the dog ran. the cat sat. the story is about the dog.")[-1]] == "."
    assert first == len(tokenize(" the dog ran. the cat sat. the story is about the dog.")) - 1


def test_a_required_word_inside_the_forced_key_sentence_counts_as_written():
    st = steering(words=(("dog", "noun"),), key="It was a big dog.", min_words=0, target_words=20)
    feed(st, " the cat sat the cat sat the cat sat the cat sat.\n\n")
    assert "dog" in st.text and st.missing == []


def test_the_detector_cuts_a_streamed_story_that_still_lacks_a_word():
    det = Steering.detector(SteerConfig(target_words=4), words=(("dog", "noun"),))
    pieces = [" the", " cat", " sat", ".", " the", " cat", " sat", "."]
    reasons = [c for _, c, _ in (det.after(0, p, False) for p in pieces)]
    assert "words: missing noun 'dog' (cut while writing)" in reasons


def test_a_required_word_glued_into_a_longer_word_is_still_missing():
    # "cornshed" holds no "corn": the word counts only once a boundary follows it.
    st = steering(words=(("dog", "noun"),), min_words=0, boundary=False)
    feed(st, " the dog")
    assert st.missing == [0]  # " dog" may still grow
    feed(st, "shed.")
    assert st.missing == [0]
    feed(st, " the dog.")
    assert st.missing == []


def test_a_one_line_answer_may_not_break_its_line_while_a_word_is_missing():
    st = steering(words=(("dog", "noun"),), end_at_newline=True, min_words=2, target_words=4)
    feed(st, " the cat sat.")
    assert logits_after(st)[IDS["\n\n"]] == -np.inf  # "dog" still to come
    feed(st, " the dog ran.")
    assert logits_after(st)[IDS["\n\n"]] == 0
    late = steering(words=(("dog", "noun"),), end_at_newline=True, min_words=2, target_words=2)
    feed(late, " the cat sat.")  # 3 words = 1.5x the target: the line may end without it
    assert logits_after(late)[IDS["\n\n"]] == 0
    off = steering(words=(("dog", "noun"),), end_at_newline=True, min_words=2, target_words=4, hold_line=False)
    feed(off, " the cat sat.")
    assert logits_after(off)[IDS["\n\n"]] == 0


def test_a_line_may_not_break_inside_open_speech():
    # finished() counts the quotes of the whole text: speech left open at a line break would
    # keep the story from ever ending (it ran to max_tokens instead).
    st = steering(words=(), min_words=0)
    feed(st, ' the dog ran. "Hi Sam')
    assert logits_after(st)[IDS["\n\n"]] == -np.inf
    feed(st, '"')
    assert logits_after(st)[IDS["\n\n"]] == 0
    off = steering(words=(), min_words=0, finish=False)
    feed(off, ' the dog ran. "Hi Sam')
    assert logits_after(off)[IDS["\n\n"]] == 0
