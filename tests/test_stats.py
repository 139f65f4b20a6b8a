"""`corpusforge stats`: figures checked against values worked out by hand, plots, the CLI.

Every test reads a hand-written fixture corpus (tests/corpus_fixture.py), not a real build: the
real model writes gibberish whose n-grams and openers nobody can count by hand, while these rows
were chosen so each expected number below can be derived in a comment.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from corpus_fixture import A, C, E, row, write_corpus, write_hand_corpus, write_hand_vocab

from corpusforge.errors import CorpusforgeError
from corpusforge.stats import compute_stats, render_tables, write_stats

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "corpusforge", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def hand(tmp_path_factory):
    """The hand corpus (5 kept, 3 rejects, models m-a and m-b), its vocab, and its stats."""
    root = tmp_path_factory.mktemp("hand")
    out = write_hand_corpus(root / "build")
    vocab = write_hand_vocab(root / "vocab")
    return out, vocab, compute_stats(out, vocab)


def test_fixture_texts_have_the_token_counts_the_hand_counts_assume():
    # Uses the fixture's story texts; guards the derivations below against an edit of the fixture.
    assert len(A.split()) == 10 and len(C.split()) == 30 and len(E.split()) == 5
    words_c = [w.strip('.,"').lower() for w in C.split()]
    assert len(set(words_c)) == 30


def test_distinct_n_matches_hand_count(hand):
    # Hand corpus, kept stories: A twice (10 tokens: once upon a time a cat sat on a mat; 8 types),
    # C (30 distinct tokens), D (C with the last word sang instead of played), E (come here sam said mom).
    # No word is shared between A, C and E.
    # unigrams: total 10+10+30+30+5 = 85; unique 8 + 30 + 1 (sang) + 5 = 44
    # bigrams:  total 9+9+29+29+4 = 80;   unique 9 (A's 9 all differ) + 29 + 1 (they sang) + 4 = 43
    # trigrams: total 8+8+28+28+3 = 75;   unique 8 + 28 + 1 (then they sang) + 3 = 40
    d = hand[2]["distinct"]
    assert d["total"] == [85, 80, 75]
    assert d["unique"] == [44, 43, 40]
    assert d["distinct_1"] == pytest.approx(44 / 85)
    assert d["distinct_2"] == pytest.approx(43 / 80)
    assert d["distinct_3"] == pytest.approx(40 / 75)
    assert d["exact"] is True


def test_openers_are_first_three_lowercased_words_without_punctuation(hand):
    # A, A -> "once upon a"; C, D -> "tim the little"; E ('"Come here, Sam," said Mom.') -> "come here sam".
    # Ties rank alphabetically. Shares are of the 5 kept stories.
    op = hand[2]["openers"]
    assert [(o["opener"], o["count"]) for o in op["top"]] == [("once upon a", 2), ("tim the little", 2), ("come here sam", 1)]
    assert [o["share"] for o in op["top"]] == pytest.approx([0.4, 0.4, 0.2])
    assert op["distinct"] == 3
    assert op["once_upon_a_time"] == {"count": 2, "share": pytest.approx(0.4)}


def test_duplicate_rates_per_model_match_hand_count(hand):
    # m-a keeps ids 0, 1, 4: id 1 is A again -> 1 exact of 3; its reject id 5 says duplicate:0.
    # m-b keeps ids 2, 3: id 3 is C with its last word changed: 25 of C's 26 five-word shingles
    # are shared (Jaccard 25/27 = 0.93 >= 0.8) -> 1 near of 2. Its two rejects are words/judge.
    dup = hand[2]["duplicates"]
    a, b = dup["by_model"]["m-a"], dup["by_model"]["m-b"]
    assert (a["kept"], a["exact"], a["near"], a["duplicate_rejects"]) == (3, 1, 0, 1)
    assert (b["kept"], b["exact"], b["near"], b["duplicate_rejects"]) == (2, 0, 1, 0)
    assert a["exact_rate"] == pytest.approx(1 / 3) and b["near_rate"] == pytest.approx(1 / 2)
    assert a["duplicate_reject_rate"] == pytest.approx(1 / 4)  # m-a has 4 rows in all
    o = dup["overall"]
    assert (o["kept"], o["exact"], o["near"], o["duplicate_rejects"]) == (5, 1, 1, 1)


def test_vocab_coverage_matches_hand_count(hand):
    # Vocab: nouns cat dog ball tree; verbs run sit jump; adjectives big red.
    # Requested over all 8 rows: nouns cat 3 (ids 0,1,4), dog 3 (2,3,7), ball 2 (5,6), tree 0
    #   -> used 3 of 4, uses [3,3,2,0]: min 0, median 2.5, max 3
    # verbs sit 3 (0,1,6), run 4 (2,3,4,7), jump 1 (5) -> 3 of 3, min 1, median 3, max 4
    # adjectives big 4 (0,1,4,5), red 3 (2,3,7); id 6's "shiny" is not in the vocab -> 2 of 2, 3 / 3.5 / 4
    # Kept rows only (0-4): cat 3, dog 2 -> nouns 2 of 4, [3,2,0,0] -> 0 / 1 / 3; verbs sit 2, run 3 -> 2 of 3.
    vc = hand[2]["vocab_coverage"]
    req, kept = vc["requested"], vc["kept"]
    assert {k: (r["used"], r["size"], r["min"], r["median"], r["max"]) for k, r in req.items()} == {
        "nouns": (3, 4, 0, 2.5, 3), "verbs": (3, 3, 1, 3, 4), "adjectives": (2, 2, 3, 3.5, 4)}
    assert {k: (r["used"], r["min"], r["median"], r["max"]) for k, r in kept.items()} == {
        "nouns": (2, 0, 1, 3), "verbs": (2, 0, 2, 3), "adjectives": (2, 2, 2.5, 3)}
    assert req["nouns"]["coverage"] == pytest.approx(0.75)
    assert vc["off_vocab_requests"] == 1 and vc["off_vocab_examples"] == ["adjective shiny"]


def test_counts_labels_and_cooccurrence_match_hand_count(hand):
    s = hand[2]
    assert s["splits"] == {"train": 3, "validation": 1, "test": 1, "rejects": 3}
    assert (s["rows"], s["kept"], s["planned"], s["partial"]) == (8, 5, 8, None)
    assert s["models"]["m-b"] == {"train": 1, "validation": 1, "test": 0, "rejects": 2, "kept": 2}
    # Reason code = text before the first ':'.
    assert s["reject_reasons"] == {"duplicate": 1, "judge": 1, "words": 1}
    assert s["reject_reasons_by_model"] == {"m-a": {"duplicate": 1}, "m-b": {"judge": 1, "words": 1}}
    # Dialogue asked by ids 0, 4 (kept) and 5 (reject): planned 3 of 8, kept 2 of 5.
    f = s["labels"]["features"]
    assert (f["Dialogue"]["planned"], f["Dialogue"]["kept"]) == (3, 2)
    assert f["Dialogue"]["kept_rate"] == pytest.approx(2 / 3)
    assert (f["Conflict"]["planned"], f["Conflict"]["kept"]) == (2, 1)
    assert f["MoralValue"] == {"planned": 0, "kept": 0, "planned_share": 0.0, "kept_share": 0.0, "kept_rate": None}
    # Axes are found as the ClassLabel columns outside lists, whatever they are called.
    assert set(s["labels"]["axes"]) == {"opening", "setting"}
    assert s["labels"]["axes"]["setting"]["home"]["planned"] == 5  # ids 1, 4, 5, 6, 7
    assert s["labels"]["axes"]["setting"]["forest"]["kept"] == 3  # ids 0, 2, 3
    # Kept pairs: id 0 Dialogue+Twist, id 2 BadEnding+Conflict, id 4 Dialogue+BadEnding.
    co = s["cooccurrence"]
    m = {(a, b): co["matrix"][i][j] for i, a in enumerate(co["labels"]) for j, b in enumerate(co["labels"])}
    assert (m[("Dialogue", "Twist")], m[("Twist", "Dialogue")], m[("BadEnding", "Conflict")], m[("Dialogue", "BadEnding")]) == (1, 1, 1, 1)
    assert (m[("Dialogue", "Dialogue")], m[("Conflict", "Conflict")], m[("Twist", "Conflict")]) == (2, 1, 0)


def test_label_checks_match_hand_count(hand):
    lc = hand[2]["label_checks"]
    # Dialogue vs has_dialogue, kept: id 4 both, id 0 asked but none, ids 1-3 neither -> 4/5 agree.
    assert lc["dialogue"]["kept"] == {"n": 5, "both": 1, "requested_only": 1, "measured_only": 0, "neither": 3,
                                      "agreement": pytest.approx(0.8)}
    # All rows add id 5 (asked, none) and ids 6, 7 (neither) -> 6/8.
    assert lc["dialogue"]["all"]["agreement"] == pytest.approx(0.75)
    # Judge, kept rows with answers (0, 1, 2, 4; id 3 has none): BadEnding asked by 2 (yes) and 4 (no).
    bad = lc["judge"]["BadEnding"]["kept"]
    assert (bad["n"], bad["both"], bad["requested_only"], bad["measured_only"], bad["neither"]) == (4, 1, 1, 0, 2)
    # All rows add reject 7: asked BadEnding, judge said no; did not ask Twist, judge said yes.
    assert lc["judge"]["BadEnding"]["all"]["requested_only"] == 2
    assert lc["judge"]["Twist"]["all"]["measured_only"] == 1 and lc["judge"]["Twist"]["all"]["agreement"] == pytest.approx(0.6)
    assert set(lc["judge"]) == {"BadEnding", "Twist"}  # only features the judge was asked


def test_lengths_and_readability_match_hand_values(hand):
    s = hand[2]
    # Kept word counts 10, 10, 30, 30, 5: sorted 5 10 10 30 30.
    w = s["lengths"]["words"]["summary"]
    assert (w["n"], w["min"], w["max"], w["median"], w["mean"]) == (5, 5, 30, 10, 17)
    # Range 5..30 is 26 values -> width ceil(26/20) = 2, 13 bins from 5; 5 -> bin 0, 10 -> bin 2, 30 -> bin 12.
    assert s["lengths"]["words"]["histogram"] == {"edges": list(range(5, 32, 2)), "counts": [1, 0, 2] + [0] * 9 + [2]}
    # flesch_reading_ease 100, 100, 80, 80, 90.
    assert s["readability"]["flesch_reading_ease"] == {"n": 5, "mean": pytest.approx(90), "median": pytest.approx(90)}


def test_child_vocabulary_counts_inflections_numbers_and_vocab_words(tmp_path):
    # A one-story fixture: "Zork jumped over 3 glorps and the blicks."
    # zork, blicks: on no list -> outside. jumped: inflection of "jump" (on the Dale-Chall list).
    # over, and, the: on the list. 3: a number. glorps: plural of the vocab noun "glorp".
    # -> 2 of 8 tokens outside.
    vocab = write_hand_vocab(tmp_path / "vocab")
    (vocab / "nouns.txt").write_text("cat\nglorp\n")
    out = write_corpus(tmp_path / "b", {"train": [row(0, "Zork jumped over 3 glorps and the blicks.")]})
    cv = compute_stats(out, vocab)["child_vocabulary"]
    assert (cv["tokens"], cv["outside"]) == (8, 2)
    assert cv["top_outside"] == [["blicks", 1], ["zork", 1]]


def test_older_build_without_judge_or_new_readability_columns_still_works(tmp_path):
    # The hand corpus minus the columns an older build lacks: no judge, only flesch_reading_ease.
    drop = ("judged_features", "judge_answers", "flesch_kincaid_grade", "dale_chall")
    out = write_hand_corpus(tmp_path / "old", drop=drop)
    s = compute_stats(out, write_hand_vocab(tmp_path / "vocab"))
    assert s["label_checks"]["judge"] == {}
    assert s["readability"]["dale_chall"]["n"] == 0 and s["readability"]["flesch_reading_ease"]["n"] == 5
    assert s["distinct"]["unique"] == [44, 43, 40]
    render_tables(s)  # renders with the empty parts


def test_partial_build_is_reported(tmp_path):
    # The hand corpus with n=10 planned (8 written) and an unfinished journal of 2 lines.
    out = write_hand_corpus(tmp_path / "p", n=10, journal_lines=2)
    s = compute_stats(out)
    assert s["partial"].startswith("partial build: 8 of 10 planned stories") and "2 more in an unfinished journal" in s["partial"]


def test_not_a_build_is_a_corpusforge_error(tmp_path):
    # An empty folder stands in for "not a build".
    with pytest.raises(CorpusforgeError, match="not a corpusforge build"):
        compute_stats(tmp_path)


def test_stats_json_is_written_and_reads_back(hand, tmp_path):
    path = write_stats(tmp_path, hand[2])
    assert path == tmp_path / "stats.json"
    back = json.loads(path.read_text())
    assert back["distinct"]["unique"] == [44, 43, 40] and "distinct_n" in back["definitions"]


def test_plots_are_valid_pngs_that_read_back(hand, tmp_path):
    # Plots drawn from the hand corpus's stats; each must be a real PNG two decoders accept.
    pytest.importorskip("matplotlib")
    import matplotlib.image as mpimg
    from PIL import Image

    from corpusforge.plots import write_plots

    paths = write_plots(tmp_path, hand[2])
    assert sorted(p.name for p in paths) == sorted(f"{n}.png" for n in ("labels", "cooccurrence", "lengths", "openers", "duplicates"))
    for p in paths:
        assert p.parent == tmp_path / "plots"
        assert p.read_bytes()[:8] == PNG_SIGNATURE, p
        with Image.open(p) as im:
            im.verify()
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100
        assert mpimg.imread(p).ndim == 3
    assert not list((tmp_path / "plots").glob(".*"))  # no temp files left


def test_card_section_embeds_plots_by_relative_path_with_key_numbers(hand, tmp_path):
    from corpusforge.plots import card_section

    plots = [tmp_path / "plots" / "labels.png", tmp_path / "plots" / "openers.png"]
    md = card_section(hand[2], plots)
    assert md.startswith("## Statistics")
    assert "![Labels, planned vs kept](plots/labels.png)" in md and "(plots/openers.png)" in md
    assert "0.518 / 0.537 / 0.533" in md  # distinct-1/2/3 = 44/85, 43/80, 40/75
    assert str(tmp_path) not in md


def test_missing_matplotlib_is_one_line_error_naming_the_extra(hand, tmp_path, monkeypatch):
    # sys.modules[name] = None makes `import matplotlib` raise ImportError, as if not installed.
    from corpusforge.plots import write_plots

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(CorpusforgeError) as err:
        write_plots(tmp_path, hand[2])
    assert err.value.message == "plotting needs matplotlib" and err.value.hint == "pip install 'corpusforge[stats]'"


def test_stats_cli_prints_tables_and_writes_json_and_plots(tmp_path):
    # The hand corpus through the real command line.
    out = write_hand_corpus(tmp_path / "b")
    vocab = write_hand_vocab(tmp_path / "vocab")
    proc = run("stats", str(out), "--vocab", str(vocab))
    assert proc.returncode == 0, proc.stderr
    assert "once upon a" in proc.stdout and "distinct-3" in proc.stdout
    assert json.loads((out / "stats.json").read_text())["kept"] == 5
    assert (out / "plots" / "openers.png").read_bytes()[:8] == PNG_SIGNATURE


def test_stats_cli_on_partial_build_warns_and_exits_0(tmp_path):
    # The hand corpus with a journal left behind (an unfinished build); --no-plots keeps it quick.
    out = write_hand_corpus(tmp_path / "b", journal_lines=3)
    proc = run("stats", str(out), "--no-plots")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith("warning: partial build") and len(proc.stderr.strip().splitlines()) == 1
    assert not (out / "plots").exists()


@pytest.mark.parametrize("command", [["stats"], ["export", "--format", "jsonl"], ["eval-labels"]])
def test_commands_on_a_folder_that_is_not_a_build_exit_1_with_one_line(command, tmp_path):
    # A folder holding an unrelated file: neither a manifest nor shards.
    (tmp_path / "notes.txt").write_text("hello\n")
    proc = run(command[0], str(tmp_path), *command[1:])
    assert proc.returncode == 1
    err = proc.stderr.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1 and "not a corpusforge build" in err, err
    assert "Traceback" not in proc.stderr + proc.stdout
