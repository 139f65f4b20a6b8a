"""`corpusforge export`: the Instruct format round trip, plain text, JSONL with label names, the CLI.

The tests read hand-written fixture corpora (tests/corpus_fixture.py): the round trip needs
stories with known multi-line text, empty fields and every label, which a build with the
random-weight model cannot be made to produce on demand.
"""
from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
from corpus_fixture import hand_rows, row, synthetic_rows, write_corpus, write_hand_corpus

from corpusforge.errors import CorpusforgeError
from corpusforge.export import EOT, export, parse_instruct


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "corpusforge", *args], capture_output=True, text=True, timeout=300)


def as_text(out, fmt, split="train") -> str:
    buf = io.StringIO()
    export(out, fmt, buf, split)
    return buf.getvalue()


def fields(r: dict) -> dict:
    return {"features": r["features"], "words": {k: r["words"][k] for k in ("verb", "noun", "adjective")},
            "summary": r["summary"], "key_sentence": r["key_sentence"], "story": r["story"]}


# Multi-paragraph stories, quotes, a colon at a line start, a story line that looks like a field,
# no features, no key sentence (the flat recipe has none), every feature at once.
TRICKY = [
    row(0, "Once upon a time, Sue had a kite.\n\n\"Look!\" she said. \"It flies!\"\n\nThe end.",
        features=["Dialogue", "Twist"], summary="Sue flies a kite.", key_sentence="\"Look!\" she said.",
        words={"noun": "kite", "verb": "fly", "adjective": "windy"}),
    row(1, "Tom was sad.\nSummary: the dog ran away.\nBut it came back.", features=[],
        summary="A dog runs away and comes back.", key_sentence="",
        words={"noun": "dog", "verb": "run", "adjective": "sad"}),
    row(2, "Everything happened: a storm, a fight and a lesson.", features=list(
        ("Dialogue", "BadEnding", "MoralValue", "Twist", "Foreshadowing", "Conflict")),
        summary="A storm.", key_sentence="A lesson was learned.",
        words={"noun": "storm", "verb": "learn", "adjective": "dark"}),
]


def test_instruct_export_reparses_into_the_same_fields(tmp_path):
    # Fixture: the TRICKY rows above; parse_instruct must give back exactly what each row holds.
    out = write_corpus(tmp_path / "b", {"train": TRICKY})
    parsed = parse_instruct(as_text(out, "instruct"))
    assert parsed == [fields(r) for r in TRICKY]


def test_instruct_export_of_every_split_and_a_few_hundred_rows_reparses(tmp_path):
    # Fixture: the hand corpus (all four splits) and 300 synthetic stories, as two builds.
    hand = write_hand_corpus(tmp_path / "hand")
    for split, rows in hand_rows().items():
        assert parse_instruct(as_text(hand, "instruct", split)) == [fields(r) for r in rows]
    rows = synthetic_rows(300, seed=1)
    big = write_corpus(tmp_path / "big", {"train": rows})
    assert parse_instruct(as_text(big, "instruct")) == [fields(r) for r in rows]


def test_instruct_record_layout_follows_tinystories_instruct(tmp_path):
    # Fixture: TRICKY row 0. Words are verb, noun, adjective (the paper's "quit, oak, gloomy");
    # the story starts on the line after "Story:"; records end with <|endoftext|>.
    out = write_corpus(tmp_path / "b", {"train": TRICKY[:2]})
    text = as_text(out, "instruct")
    first = text.split(EOT)[0]
    assert first.splitlines()[:5] == ["Features: Dialogue, Twist", "Words: fly, kite, windy", "Summary: Sue flies a kite.",
                                      "Random sentence: \"Look!\" she said.", "Story:"]
    assert text.count(EOT) == 2 and text.endswith(EOT + "\n")
    second = text.split(EOT)[1]
    assert "Features:" not in second and "Random sentence:" not in second  # empty fields are left out


def test_text_export_is_the_stories_separated_by_endoftext(tmp_path):
    # Fixture: the TRICKY rows; the text format carries the stories and nothing else.
    out = write_corpus(tmp_path / "b", {"train": TRICKY})
    chunks = as_text(out, "text").split(EOT)
    assert [c.strip() for c in chunks[:-1]] == [r["story"] for r in TRICKY] and chunks[-1].strip() == ""


def test_jsonl_export_has_label_names_not_classlabel_ids(tmp_path):
    # Fixture: the hand corpus's rejects split, which has axis values and judge labels.
    out = write_hand_corpus(tmp_path / "b")
    lines = as_text(out, "jsonl", "rejects").splitlines()
    objs = [json.loads(x) for x in lines]
    assert [o["id"] for o in objs] == [5, 6, 7]
    assert objs[0]["features"] == ["Dialogue"] and objs[0]["opening"] == "once" and objs[0]["setting"] == "home"
    assert objs[2]["judged_features"] == ["Twist"] and objs[2]["reject_reason"] == "judge:BadEnding"
    assert objs[1]["words"] == {"noun": "ball", "verb": "sit", "adjective": "shiny"}


def test_export_of_a_missing_split_names_the_splits_there_are(tmp_path):
    # Fixture: a build with a train split only.
    out = write_corpus(tmp_path / "b", {"train": TRICKY})
    with pytest.raises(CorpusforgeError) as err:
        as_text(out, "text", "validation")
    assert "no validation split" in err.value.message and err.value.hint == "pass --split train"


def test_export_cli_writes_a_file_and_warns_once_on_a_partial_build(tmp_path):
    # Fixture: the hand corpus with an unfinished journal (a build still running or killed).
    out = write_hand_corpus(tmp_path / "b", journal_lines=2)
    dest = tmp_path / "train.txt"
    proc = run("export", str(out), "--format", "instruct", "--out", str(dest))
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr.strip().splitlines()
    assert err[0].startswith("warning: partial build") and err[1] == f"wrote 3 train rows to {dest}"
    assert [r["story"] for r in parse_instruct(dest.read_text())] == [r["story"] for r in hand_rows()["train"]]


def test_export_cli_to_stdout(tmp_path):
    # Fixture: the hand corpus; the test split holds one story.
    out = write_hand_corpus(tmp_path / "b")
    proc = run("export", str(out), "--format", "text", "--split", "test")
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout == hand_rows()["test"][0]["story"] + "\n" + EOT + "\n"
