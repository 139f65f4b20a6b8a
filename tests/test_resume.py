"""Survive anything: kill -9 at several points, torn journals, Ctrl-C, growing --n, workers, Ray."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

from corpusforge.replace import slot_of
import pytest
from datasets import load_dataset

from corpusforge.schema import RowSchema
from corpusforge.shards import Store, read_journal
from corpusforge.vocab import load_vocab
from lenient import lenient_args

SCHEMA = RowSchema.from_vocab(load_vocab())

N, SHARD = 40, 8
LENIENT = lenient_args()  # keeps every story whatever the random model writes on this CPU


def build_cmd(model: Path, out: Path, n: int = N, *extra: str) -> list[str]:
    return [sys.executable, "-m", "corpusforge", "build", "--n", str(n), "--model", str(model), "--out", str(out),
            "--seed", "11", "--shard-size", str(SHARD), "--parallel", "4", "--threads", "2",
            "--max-tokens", "story=100", "--quiet", *LENIENT, *extra]


def loud(cmd: list[str]) -> list[str]:
    """The same command with the progress display (it prints the resume line)."""
    return [a for a in cmd if a != "--quiet"]


def done_ids(out: Path) -> list[int]:
    """Every id on disk, in parquet shards and journals, duplicates kept."""
    ids = []
    for sub in ("data", "rejects"):
        for p in (out / sub).glob("*.parquet"):
            ids += pq.read_table(p, columns=["id"]).column("id").to_pylist()
    for j in (out / ".corpusforge" / "journal").glob("*.jsonl"):
        ids += [r["id"] for r in read_journal(j)]
    return ids


def journal_lines(out: Path) -> int:
    return sum(len(read_journal(j)) for j in (out / ".corpusforge" / "journal").glob("*.jsonl"))


def sealed_shards(out: Path) -> int:
    return len({p.name.split("-")[1] for sub in ("data", "rejects") for p in (out / sub).glob("*.parquet")})


def kill_when(cmd: list[str], condition, timeout: float = 300) -> int:
    """Start a build, SIGKILL it once `condition()` holds; return how many ids were on disk."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if condition():
                    break
            except (OSError, ValueError):
                pass  # a file appeared or changed while we looked
            time.sleep(0.02)
        assert proc.poll() is None, "the build finished before the kill point"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    return len(done_ids(Path(cmd[cmd.index("--out") + 1])))


def assert_complete(out: Path, n: int) -> None:
    # --n counts kept stories: one kept story per slot 0..n-1, and every id (a slot's first plan
    # or a replacement of a rejected one, id + k * 10^9) exactly once.
    ids = done_ids(out)
    assert len(ids) == len(set(ids)), "every id exactly once"
    kept = [i for p in (out / "data").glob("*.parquet") for i in pq.read_table(p, columns=["id"]).column("id").to_pylist()]
    assert sorted(slot_of(i) for i in kept) == list(range(n)), "one kept story per slot"
    assert not list(out.rglob("*.tmp"))
    ds = load_dataset(str(out))
    assert sorted(i for split in ds.values() for i in split["id"]) == sorted(ids)


def test_kill_9_at_several_points_then_resume_ends_with_exactly_n_ids(tiny_model, tmp_path):
    out = tmp_path / "corpus"
    cmd = build_cmd(tiny_model, out)
    points = [
        ("first journal line", lambda: journal_lines(out) >= 1),
        ("first shard sealed", lambda: sealed_shards(out) >= 1),
        ("mid shard, 3 shards sealed", lambda: sealed_shards(out) >= 3 and journal_lines(out) >= 2),
    ]
    report = []
    for name, cond in points:
        raw = kill_when(cmd, cond)
        # A kill between a shard's rename and its journal's deletion leaves ids in both;
        # recovery must count each once (and is what the resume runs first).
        store = Store(out, N, SHARD, SCHEMA, lock=False)
        on_disk = len(store.recover())
        store.close()
        assert 0 < on_disk <= raw
        # Resume starts from everything that was on disk at the kill: journalled work is never lost.
        proc = subprocess.run(loud(cmd), capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
        assert f"resuming: {on_disk:,} of {N:,} stories done" in proc.stderr
        report.append((name, on_disk))
        assert_complete(out, N)
        # start over for the next kill point, from a fresh folder
        out = tmp_path / f"corpus-{len(report)}"
        cmd = build_cmd(tiny_model, out)
    assert [r[0] for r in report] == [p[0] for p in points]


def test_resume_of_a_finished_build_generates_nothing(tiny_model, tmp_path):
    out = tmp_path / "done"
    cmd = build_cmd(tiny_model, out, 12)
    subprocess.run(cmd, check=True, timeout=600)
    before = {p: p.read_bytes() for p in out.rglob("*.parquet")}
    proc = subprocess.run(loud(cmd), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "resuming: 12 of 12 stories done" in proc.stderr
    assert {p: p.read_bytes() for p in out.rglob("*.parquet")} == before


def test_torn_journal_line_and_temp_files_are_repaired_on_resume(tiny_model, tmp_path):
    out = tmp_path / "torn"
    cmd = build_cmd(tiny_model, out, 12)
    kill_when(cmd, lambda: journal_lines(out) >= 2)
    journal = sorted((out / ".corpusforge" / "journal").glob("*.jsonl"))[0]
    good = len(read_journal(journal))
    with open(journal, "a") as f:
        f.write('{"id": 99999, "story": "half a li')  # what kill -9 leaves mid-write
    (out / "data" / ".train-00000.parquet.tmp").write_bytes(b"PAR1 no footer")
    store = Store(out, 12, SHARD, SCHEMA, lock=False)
    done = store.recover()
    store.close()
    assert 99999 not in done and len(read_journal(journal)) == good
    assert not list(out.rglob("*.tmp"))
    subprocess.run(cmd, check=True, timeout=600)
    assert_complete(out, 12)


def test_crash_between_shard_rename_and_journal_delete_keeps_each_id_once(tiny_model, tmp_path):
    out = tmp_path / "between"
    cmd = build_cmd(tiny_model, out, SHARD)
    kill_when(cmd, lambda: journal_lines(out) >= SHARD - 1 or sealed_shards(out) >= 1)
    subprocess.run(cmd, check=True, timeout=600)
    # Recreate the state of a crash right after the parquet rename: journal back, shard present.
    rows = []
    for sub, split in (("data", "train"), ("rejects", "rejects")):
        for p in (out / sub).glob("*.parquet"):
            for r in pq.read_table(p).to_pylist():
                rows.append({**r, "features": [], "split": split})
    journal = out / ".corpusforge" / "journal" / "shard-00000.jsonl"
    journal.write_text("".join(json.dumps(r) + "\n" for r in rows))
    store = Store(out, SHARD, SHARD, SCHEMA, lock=False)
    done = store.recover()
    store.close()
    assert sorted(done) == list(range(SHARD)) and not journal.exists()
    assert_complete(out, SHARD)


def test_ctrl_c_stops_quickly_with_journal_flushed_and_says_how_to_resume(tiny_model, tmp_path):
    out = tmp_path / "int"
    n = 120  # enough that the build is surely still running when the signal comes
    cmd = build_cmd(tiny_model, out, n)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while journal_lines(out) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    stopped_in = time.monotonic() - t0
    assert proc.returncode == 130, err
    assert "run the same command again to resume" in err and "Traceback" not in err
    assert stopped_in < 10
    on_disk = len(done_ids(out))
    assert f"stopped: {on_disk:,} of {n:,} stories done" in err
    subprocess.run(cmd, check=True, timeout=600)
    assert_complete(out, n)


def test_growing_n_extends_the_build_and_renames_shards(tiny_model, tmp_path):
    out = tmp_path / "grow"
    subprocess.run(build_cmd(tiny_model, out, 10), check=True, timeout=600)
    first = {r["id"]: r["story"] for rs in parquet_rows(out).values() for r in rs}
    subprocess.run(build_cmd(tiny_model, out, 20), check=True, timeout=600)
    assert_complete(out, 20)
    names = [p.name for sub in ("data", "rejects") for p in (out / sub).glob("*.parquet")]
    assert names and all(n.endswith("-of-00003.parquet") for n in names), names
    again = {r["id"]: r["story"] for rs in parquet_rows(out).values() for r in rs}
    assert sorted(first) == list(range(10)), "the first run sealed its 10 stories"
    assert all(again[i] == s for i, s in first.items()), "finished stories are kept as they were"


def test_shrinking_n_is_refused(tiny_model, tmp_path):
    out = tmp_path / "shrink"
    subprocess.run(build_cmd(tiny_model, out, 6), check=True, timeout=600)
    proc = subprocess.run(build_cmd(tiny_model, out, 4), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1 and "--n can only grow" in proc.stderr


def parquet_rows(out: Path) -> dict[str, list]:
    return {p.name: pq.read_table(p).to_pylist() for sub in ("data", "rejects") for p in sorted((out / sub).glob("*.parquet"))}


@pytest.fixture(scope="module")
def one_worker(tiny_model, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("w1") / "corpus"
    subprocess.run(build_cmd(tiny_model, out, 24, "--threads", "1"), check=True, timeout=600)
    return out


def test_two_workers_give_the_same_rows_as_one(one_worker, tiny_model, tmp_path):
    out = tmp_path / "w2"
    subprocess.run(build_cmd(tiny_model, out, 24, "--threads", "1", "--workers", "2"), check=True, timeout=600)
    assert parquet_rows(out) == parquet_rows(one_worker)


def test_ray_build_gives_the_same_rows_as_local(one_worker, tiny_model, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "ray"
    env = {**os.environ, "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}
    proc = subprocess.run(build_cmd(tiny_model, out, 24, "--threads", "1", "--workers", "2", "--ray"),
                          capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert parquet_rows(out) == parquet_rows(one_worker)


def test_a_two_model_build_records_both_is_deterministic_and_resumes_after_kill_9(tiny_model, second_model, tmp_path):
    """Real llama.cpp, two different tiny models (weight seeds 0 and 1) in one build."""
    import hashlib

    from corpusforge.sampler import PlanOptions, plan
    from corpusforge.vocab import load_vocab

    two = ["--model", f"{second_model}:2"]
    whole, again, killed = tmp_path / "whole", tmp_path / "again", tmp_path / "killed"
    subprocess.run(build_cmd(tiny_model, whole, 24, *two), check=True, timeout=600)
    subprocess.run(build_cmd(tiny_model, again, 24, *two), check=True, timeout=600)
    assert parquet_rows(whole) == parquet_rows(again), "same seed and models: same rows"
    shas = {m.name: hashlib.sha256(m.read_bytes()).hexdigest() for m in (tiny_model, second_model)}
    manifest = json.loads((whole / "corpusforge.json").read_text())
    assert {m["name"]: m["sha256"] for m in manifest["fingerprint"]["models"]} == shas
    vocab, options = load_vocab(), PlanOptions(model_weights=(1.0, 2.0), validation_fraction=0.02, test_fraction=0.02)
    rows_ = [r for rs in parquet_rows(whole).values() for r in rs]
    names = [tiny_model.name, second_model.name]
    for r in rows_:
        assert r["model"] == names[plan(vocab, 11, r["id"], options).model] and r["model_sha256"] == shas[r["model"]]
    assert {r["model"] for r in rows_} == set(names)

    kill_when(build_cmd(tiny_model, killed, 24, *two), lambda: sealed_shards(killed) >= 1)
    subprocess.run(build_cmd(tiny_model, killed, 24, *two), check=True, timeout=600)
    assert_complete(killed, 24)
    assert sorted((r["id"], r["model"]) for rs in parquet_rows(killed).values() for r in rs) == \
        sorted((r["id"], r["model"]) for r in rows_)
