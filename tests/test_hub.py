"""Corpora out: `push` and the build's `HubSink`, through the one seam where HfApi is called.

The Hub's HTTP endpoint cannot exist here (no network). Most tests pass `RecordingHub`, a
recording stand-in for `HubClient`; the offline and HubClient tests run huggingface_hub's own
code (offline mode, commit operations) with no request leaving the machine.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import httpx2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from huggingface_hub import errors as hf_errors

from corpusforge.errors import CorpusforgeError
from corpusforge.hub import HubClient, HubSink, PushReport, push

TOKEN = "hf_FAKEtokenNEVERprintedXYZ123"
REPO = "someone/tiny-stories"
FINGERPRINT = {"seed": 0, "model_sha256": "abc"}


def http_error(status: int, text: str = "") -> hf_errors.HfHubHTTPError:
    response = httpx2.Response(status, request=httpx2.Request("POST", "https://huggingface.co/api/datasets/x/commit/main"))
    return hf_errors.HfHubHTTPError(f"{status} {text}", response=response)


class RecordingHub:
    """Stand-in for HubClient: records every call (the Hub's HTTP endpoint cannot exist here)."""

    def __init__(self, files: dict[str, bytes] | None = None, token: str | None = TOKEN, fail_times: int = 0,
                 error: Exception | None = None, fail_on: str = "commit", block: threading.Event | None = None):
        self.files = dict(files or {})
        self.token = token
        self.fail_times, self.error, self.fail_on = fail_times, error, fail_on
        self.block = block
        self.calls: list[str] = []
        self.commits: list[list[tuple[str, str]]] = []  # each: [("add"|"delete", path), ...] in order
        self.attempts = 0

    def _maybe_fail(self, where: str) -> None:
        if self.fail_on == where and self.fail_times:
            self.fail_times -= 1
            raise self.error or http_error(503, "Service Unavailable")

    def check(self) -> None:
        self.calls.append("check")
        if self.token is None:
            raise hf_errors.LocalTokenNotFoundError("no token")

    def create_repo(self, repo_id: str, *, private: bool) -> str:
        self.calls.append("create_repo")
        self._maybe_fail("create_repo")
        return f"https://huggingface.co/datasets/{repo_id}"

    def list_files(self, repo_id: str) -> dict[str, int]:
        self.calls.append("list_files")
        return {p: len(b) for p, b in self.files.items()}

    def read_text(self, repo_id: str, path: str) -> str:
        self.calls.append(f"read_text {path}")
        return self.files[path].decode()

    def commit(self, repo_id, add, delete, message) -> None:
        self.calls.append("commit")
        self.attempts += 1
        if self.block is not None:
            self.block.wait()
        self._maybe_fail("commit")
        for rel, data in add:
            self.files[rel] = data if isinstance(data, bytes) else Path(data).read_bytes()
        for rel in delete:
            del self.files[rel]
        self.commits.append([("add", rel) for rel, _ in add] + [("delete", rel) for rel in delete])


def write_shard(out: Path, rel: str, rows: int, start: int = 0) -> Path:
    path = out / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"id": list(range(start, start + rows)), "story": ["x" * (5 + start)] * rows}), path)
    return path


def make_build(out: Path, shards: dict[str, int], n: int | None = None, extras: bool = False) -> Path:
    """A build folder as `corpusforge build` leaves it: shards, card, manifest, state dir, temp files."""
    out.mkdir(parents=True, exist_ok=True)
    for i, (rel, rows) in enumerate(shards.items()):
        write_shard(out, rel, rows, start=i * 100)
    n = sum(shards.values()) if n is None else n
    (out / "corpusforge.json").write_text(json.dumps({"n": n, "fingerprint": FINGERPRINT}))
    (out / "README.md").write_text("---\nconfigs: []\n---\n# card\n")
    (out / ".corpusforge" / "journal").mkdir(parents=True, exist_ok=True)
    (out / ".corpusforge" / "stats").mkdir(parents=True, exist_ok=True)
    (out / ".corpusforge" / "stats" / "shard-00000.json").write_text("{}")
    (out / "data").mkdir(exist_ok=True)
    (out / "data" / ".train-00009.parquet.tmp").write_bytes(b"half a file")
    (out / ".README.md.tmp").write_text("half a card")
    if extras:
        (out / "stats.json").write_text("{}")
        (out / "plots").mkdir()
        (out / "plots" / "lengths.png").write_bytes(b"\x89PNG")
    return out


def wait_for(cond, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.005)


def remote_manifest(fingerprint=FINGERPRINT) -> bytes:
    return json.dumps({"n": 1, "fingerprint": fingerprint}).encode()


# ----- push ------------------------------------------------------------------------------


def test_push_sends_shards_then_card_manifest_stats_plots_and_never_journal_or_temp_files(tmp_path):
    """Recording stand-in (the Hub's HTTP endpoint cannot exist here)."""
    out = make_build(tmp_path / "b", {"data/train-00000-of-00002.parquet": 3, "data/train-00001-of-00002.parquet": 2,
                                      "rejects/rejects-00000-of-00002.parquet": 1}, extras=True)
    (out / ".corpusforge" / "journal" / "done.txt").write_text("not a journal")
    hub = RecordingHub()
    report = push(out, REPO, client=hub)
    assert hub.commits == [[
        ("add", "data/train-00000-of-00002.parquet"),
        ("add", "data/train-00001-of-00002.parquet"),
        ("add", "rejects/rejects-00000-of-00002.parquet"),
        ("add", "README.md"),
        ("add", "corpusforge.json"),
        ("add", "stats.json"),
        ("add", "plots/lengths.png"),
    ]]
    assert hub.files["data/train-00000-of-00002.parquet"] == (out / "data/train-00000-of-00002.parquet").read_bytes()
    assert report.unsent == [] and report.error is None
    assert str(report) == f"hub: https://huggingface.co/datasets/{REPO} is up to date (7 files sent)"


def test_push_again_resumes_sending_only_what_the_repo_lacks(tmp_path):
    """Recording stand-in (the Hub's HTTP endpoint cannot exist here)."""
    out = make_build(tmp_path / "b", {"data/train-00000-of-00002.parquet": 3, "data/train-00001-of-00002.parquet": 2})
    there = {"data/train-00000-of-00002.parquet": (out / "data/train-00000-of-00002.parquet").read_bytes(),
             "corpusforge.json": remote_manifest(), ".gitattributes": b"*.parquet filter=lfs"}
    hub = RecordingHub(files=there)
    push(out, REPO, client=hub)
    assert hub.commits == [[("add", "data/train-00001-of-00002.parquet"), ("add", "README.md"), ("add", "corpusforge.json")]]


def test_push_deletes_shard_names_the_grown_build_renamed_in_the_same_commit(tmp_path):
    """Recording stand-in. --n grew, so train-0000i-of-00002 became -of-00003; datasets would load both."""
    out = make_build(tmp_path / "b", {f"data/train-0000{i}-of-00003.parquet": 2 for i in range(3)})
    old = {f"data/train-0000{i}-of-00002.parquet": (out / f"data/train-0000{i}-of-00003.parquet").read_bytes() for i in range(2)}
    hub = RecordingHub(files={**old, "corpusforge.json": remote_manifest()})
    report = push(out, REPO, client=hub)
    assert hub.commits == [[
        *[("add", f"data/train-0000{i}-of-00003.parquet") for i in range(3)],
        ("add", "README.md"), ("add", "corpusforge.json"),
        ("delete", "data/train-00000-of-00002.parquet"), ("delete", "data/train-00001-of-00002.parquet"),
    ]]
    assert sorted(p for p in hub.files if p.startswith("data/")) == [f"data/train-0000{i}-of-00003.parquet" for i in range(3)]
    assert report.deleted == ["data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"]


@pytest.mark.parametrize("journal", [False, True])
def test_push_refuses_an_unfinished_build_without_partial(tmp_path, journal):
    """Recording stand-in: nothing may reach it."""
    out = make_build(tmp_path / "b", {"data/train-00000-of-00002.parquet": 3}, n=3 if journal else 10)
    if journal:
        (out / ".corpusforge" / "journal" / "shard-00001.jsonl").write_text('{"id": 3}\n')
    hub = RecordingHub()
    with pytest.raises(CorpusforgeError) as e:
        push(out, REPO, client=hub)
    assert f"3 of {3 if journal else 10} stories done" in e.value.message
    assert "--partial" in e.value.hint
    assert hub.calls == []


def test_push_partial_writes_the_card_with_progress_and_uploads_it(tmp_path, monkeypatch):
    """Recording stand-in. card.write_card is replaced by a stub that records the `partial=`
    contract (the real card is tested in test_card)."""
    out = make_build(tmp_path / "b", {"data/train-00000-of-00002.parquet": 3}, n=10)
    seen = {}

    def write_card(out_, manifest, *, partial=None):
        seen.update(out=Path(out_), n=manifest["n"], partial=partial)
        (Path(out_) / "README.md").write_text(f"partial build: {partial[0]} of {partial[1]}\n")

    monkeypatch.setitem(sys.modules, "corpusforge.card", types.SimpleNamespace(write_card=write_card))
    hub = RecordingHub()
    push(out, REPO, client=hub, partial=True)
    assert seen == {"out": out, "n": 10, "partial": (3, 10)}
    assert hub.files["README.md"] == b"partial build: 3 of 10\n"
    assert [op for op in hub.commits[0]] == [("add", "data/train-00000-of-00002.parquet"), ("add", "README.md"), ("add", "corpusforge.json")]


@pytest.mark.parametrize("remote, needle", [
    ({"data/train.csv": b"a,b"}, "files corpusforge does not write: data/train.csv"),
    ({"data/train-00000-of-00001-5f2a.parquet": b"x"}, "files corpusforge does not write"),
    ({"data/train-00000-of-00001.parquet": b"x", "README.md": b"card"}, "did not build"),
    ({"corpusforge.json": remote_manifest({"seed": 7})}, "another corpusforge build"),
])
def test_push_refuses_a_repo_that_holds_another_dataset(tmp_path, remote, needle):
    """Recording stand-in: the layout check runs before any commit."""
    out = make_build(tmp_path / "b", {"data/train-00000-of-00001.parquet": 2})
    hub = RecordingHub(files=remote)
    with pytest.raises(CorpusforgeError) as e:
        push(out, REPO, client=hub)
    assert needle in e.value.message
    assert "new repo" in e.value.hint
    assert hub.commits == []


def test_push_into_a_fresh_repo_with_only_gitattributes_and_a_readme_is_fine(tmp_path):
    """Recording stand-in: a repo created on the website holds .gitattributes and maybe a README."""
    out = make_build(tmp_path / "b", {"data/train-00000-of-00001.parquet": 2})
    hub = RecordingHub(files={".gitattributes": b"", "README.md": b"hello"})
    push(out, REPO, client=hub)
    assert len(hub.commits) == 1


@pytest.mark.parametrize("error, fail_on, needle, hint", [
    (http_error(401, f"Invalid credentials in Authorization header Bearer {TOKEN}"), "create_repo", "refused the token for someone/tiny-stories (401)", "hf auth login"),
    (http_error(403, "You don't have the rights"), "create_repo", "no write access to someone/tiny-stories (403)", "write access"),
    (http_error(403, "forbidden"), "commit", "no write access", "write access"),
    (hf_errors.OfflineModeIsEnabled("offline"), "create_repo", "HF_HUB_OFFLINE is set", "unset HF_HUB_OFFLINE"),
    (ConnectionError(f"connection reset while sending Authorization: Bearer {TOKEN}\nsecond line"), "commit", "ConnectionError", "network"),
])
def test_push_failures_are_one_line_naming_the_fix_and_never_show_the_token(tmp_path, error, fail_on, needle, hint):
    """Recording stand-in raising huggingface_hub's own error types (no HTTP endpoint here)."""
    out = make_build(tmp_path / "b", {"data/train-00000-of-00001.parquet": 2})
    hub = RecordingHub(error=error, fail_times=99, fail_on=fail_on)
    with pytest.raises(CorpusforgeError) as e:
        push(out, REPO, client=hub, backoff=0.001)
    text = str(e.value)
    assert needle in e.value.message and hint in e.value.hint
    assert hub.calls.count("commit") == (4 if needle == "ConnectionError" else int(fail_on == "commit"))  # 403 is not retried
    assert TOKEN not in text and "\n" not in text


def test_push_without_a_token_says_how_to_get_one(tmp_path):
    """Recording stand-in with no token."""
    out = make_build(tmp_path / "b", {"data/train-00000-of-00001.parquet": 2})
    hub = RecordingHub(token=None)
    with pytest.raises(CorpusforgeError) as e:
        push(out, REPO, client=hub)
    assert "no Hugging Face token" in e.value.message and "HF_TOKEN" in e.value.hint and "hf auth login" in e.value.hint
    assert hub.calls == ["check"]


@pytest.mark.parametrize("repo_id, needle", [("tiny-stories", "needs an owner"), ("a/b/c", "needs an owner"),
                                             ("some one/x", "bad dataset repo id")])
def test_push_refuses_a_bad_repo_id_before_any_request(tmp_path, repo_id, needle):
    out = make_build(tmp_path / "b", {"data/train-00000-of-00001.parquet": 2})
    hub = RecordingHub()
    with pytest.raises(CorpusforgeError) as e:
        push(out, repo_id, client=hub)
    assert needle in e.value.message and "owner/name" in e.value.hint
    assert hub.calls == []


def test_push_refuses_a_folder_that_is_not_a_build(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "README.md").write_text("hi")
    with pytest.raises(CorpusforgeError, match="not a corpusforge build"):
        push(tmp_path / "x", REPO, client=RecordingHub())


# ----- the real seam and huggingface_hub, offline -----------------------------------------


def test_hub_client_makes_a_dataset_repo_and_one_commit_of_real_operations(tmp_path, monkeypatch):
    """HfApi is replaced by a recorder (no HTTP endpoint here); the commit operations are
    huggingface_hub's own CommitOperationAdd/Delete, which hash the files offline."""
    import huggingface_hub
    from huggingface_hub.hf_api import RepoFile, RepoFolder

    calls = []

    class RecordingApi:
        def __init__(self, token=None, endpoint=None):
            calls.append(("init", token))

        def create_repo(self, repo_id, **kw):
            calls.append(("create_repo", repo_id, kw))
            return f"https://huggingface.co/datasets/{repo_id}"

        def list_repo_tree(self, repo_id, **kw):
            calls.append(("list_repo_tree", repo_id, kw))
            return [RepoFile(path="data/train-00000-of-00001.parquet", size=9, oid="x"), RepoFolder(path="data", oid="y")]

        def create_commit(self, repo_id, operations, **kw):
            calls.append(("create_commit", repo_id, [(type(op).__name__, op.path_in_repo) for op in operations], kw))
            calls.append(("sha", operations[0].upload_info.sha256.hex()))

    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    shard = write_shard(tmp_path, "data/train-00000-of-00002.parquet", 2)
    client = HubClient(token=TOKEN)
    client.create_repo(REPO, private=True)
    assert client.list_files(REPO) == {"data/train-00000-of-00001.parquet": 9}
    client.commit(REPO, [("data/train-00000-of-00002.parquet", shard), ("README.md", b"card")], ["data/train-00000-of-00001.parquet"], "msg")
    import hashlib

    assert calls == [
        ("init", TOKEN),
        ("create_repo", REPO, {"repo_type": "dataset", "private": True, "exist_ok": True}),
        ("list_repo_tree", REPO, {"repo_type": "dataset", "recursive": True}),
        ("create_commit", REPO, [("CommitOperationAdd", "data/train-00000-of-00002.parquet"), ("CommitOperationAdd", "README.md"),
                                 ("CommitOperationDelete", "data/train-00000-of-00001.parquet")],
         {"commit_message": "msg", "repo_type": "dataset"}),
        ("sha", hashlib.sha256(shard.read_bytes()).hexdigest()),
    ]


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("HF_")} | env
    return subprocess.run([sys.executable, "-m", "corpusforge", *args], capture_output=True, text=True, env=full, timeout=120)


def test_cli_push_offline_fails_at_once_in_one_line_without_the_token(tmp_path):
    """The real huggingface_hub code path with HF_HUB_OFFLINE=1 (read at import, hence a subprocess)."""
    out = make_build(tmp_path / "b", {"data/train-00000-of-00001.parquet": 2})
    env = {"HF_HUB_OFFLINE": "1", "HF_TOKEN": TOKEN, "HF_HOME": str(tmp_path / "hf")}
    t0 = time.monotonic()
    for args in (["push", str(out), REPO], ["push", str(out), "--repo", REPO]):
        proc = run_cli(*args, env=env)
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.startswith("error:") and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "HF_HUB_OFFLINE is set" in proc.stderr
        assert TOKEN not in proc.stdout + proc.stderr
    # huggingface_hub itself refuses at once, before any connection is tried
    code = ("from corpusforge.hub import HubClient\n"
            f"try:\n    HubClient(token={TOKEN!r}).create_repo({REPO!r}, private=False)\n"
            "except Exception as e:\n    print(type(e).__name__)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert proc.stdout.strip() == "OfflineModeIsEnabled", proc.stderr
    assert time.monotonic() - t0 < 60


def test_cli_push_without_a_token_and_without_a_repo(tmp_path):
    """Real huggingface_hub get_token() with an empty HF_HOME; no request is made."""
    out = make_build(tmp_path / "b", {"data/train-00000-of-00001.parquet": 2})
    env = {"HF_HOME": str(tmp_path / "hf")}
    proc = run_cli("push", str(out), "--repo", REPO, env=env)
    assert proc.returncode == 1 and "no Hugging Face token" in proc.stderr and "hf auth login" in proc.stderr
    proc = run_cli("push", str(out), env=env)
    assert proc.returncode == 2 and "--repo owner/name" in proc.stderr


# ----- the build's sink --------------------------------------------------------------------


def sink_for(out: Path, hub: RecordingHub, **kw) -> HubSink:
    kw = {"retries": 3, "backoff": 0.001, "min_interval": 0.0, **kw}
    return HubSink(out, REPO, client=hub, **kw)


def test_sink_sends_each_shard_before_the_card_that_counts_it(tmp_path):
    """Recording stand-in: one commit per sealed shard, the refreshed card and manifest after it."""
    out = make_build(tmp_path / "b", {}, n=4)
    hub = RecordingHub()
    sink = sink_for(out, hub)
    sink.start()
    for i in range(2):
        path = write_shard(out, f"data/train-0000{i}-of-00002.parquet", 2, start=10 * i)
        (out / "README.md").write_text(f"card after shard {i}\n")
        sink.on_seal([path])
        wait_for(lambda: len(hub.commits) == i + 1)
    report = sink.finish()
    assert hub.commits == [
        [("add", "data/train-00000-of-00002.parquet"), ("add", "README.md"), ("add", "corpusforge.json")],
        [("add", "data/train-00001-of-00002.parquet"), ("add", "README.md"), ("add", "corpusforge.json")],
    ]
    assert hub.files["README.md"] == b"card after shard 1\n"
    assert report.unsent == [] and report.sent == ["data/train-00000-of-00002.parquet", "README.md", "corpusforge.json",
                                                   "data/train-00001-of-00002.parquet"]


def test_sink_on_seal_returns_at_once_while_the_hub_blocks(tmp_path):
    """Recording stand-in whose commit blocks: the build thread only enqueues."""
    out = make_build(tmp_path / "b", {}, n=2)
    gate = threading.Event()
    hub = RecordingHub(block=gate)
    sink = sink_for(out, hub)
    sink.start()
    shard = write_shard(out, "data/train-00000-of-00001.parquet", 2)

    def seal_returns_at_once() -> bool:
        # on a thread of its own, so a blocking on_seal fails this test instead of hanging it
        caller = threading.Thread(target=sink.on_seal, args=([shard],), daemon=True)
        caller.start()
        caller.join(0.5)
        return not caller.is_alive()

    try:
        assert seal_returns_at_once()
        wait_for(lambda: hub.attempts == 1)  # the upload thread is now stuck in commit
        assert seal_returns_at_once() and seal_returns_at_once()
        assert sink.unsent() == ["data/train-00000-of-00001.parquet", "README.md", "corpusforge.json"]
    finally:
        gate.set()
    assert sink.finish(timeout=10).unsent == []
    assert len(hub.commits) == 1  # the seals queued meanwhile had nothing left to send


def test_sink_start_queues_only_what_the_repo_lacks_for_a_resumed_build(tmp_path):
    """Recording stand-in holding the first shard already."""
    out = make_build(tmp_path / "b", {"data/train-00000-of-00002.parquet": 2, "data/train-00001-of-00002.parquet": 2}, n=6)
    hub = RecordingHub(files={"data/train-00000-of-00002.parquet": (out / "data/train-00000-of-00002.parquet").read_bytes(),
                              "corpusforge.json": remote_manifest()})
    sink = sink_for(out, hub, manifest={"n": 6, "fingerprint": FINGERPRINT})
    sink.start()
    wait_for(lambda: len(hub.commits) == 1)
    assert hub.commits[0] == [("add", "data/train-00001-of-00002.parquet"), ("add", "README.md"), ("add", "corpusforge.json")]
    assert sink.finish().unsent == []
    assert len(hub.commits) == 1  # nothing changed since: no empty commit at the end


def test_sink_retries_a_hub_that_fails_twice_then_succeeds(tmp_path):
    """Recording stand-in failing with HTTP 503 twice."""
    out = make_build(tmp_path / "b", {}, n=2)
    hub = RecordingHub(fail_times=2)
    sink = sink_for(out, hub)
    sink.start()
    sink.on_seal([write_shard(out, "data/train-00000-of-00001.parquet", 2)])
    report = sink.finish(timeout=10)
    assert hub.attempts == 3 and len(hub.commits) == 1
    assert report.unsent == [] and report.error is None


def test_sink_whose_hub_always_fails_keeps_going_and_reports_what_is_unsent(tmp_path):
    """Recording stand-in that always fails: finish() reports, never raises."""
    out = make_build(tmp_path / "b", {}, n=4)
    hub = RecordingHub(fail_times=10**6)
    sink = sink_for(out, hub, retries=2)
    sink.start()
    for i in range(2):
        sink.on_seal([write_shard(out, f"data/train-0000{i}-of-00002.parquet", 2, start=10 * i)])
    report = sink.finish(timeout=10)
    assert isinstance(report, PushReport) and hub.commits == []
    assert report.unsent == ["data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet", "README.md", "corpusforge.json"]
    assert "(503)" in report.error.message
    line = str(report)
    assert line.startswith("hub: 4 files not sent to someone/tiny-stories") and f"corpusforge push {out} {REPO}" in line
    assert "\n" not in line


def test_sink_does_not_retry_a_refusal_a_retry_cannot_fix(tmp_path):
    """Recording stand-in answering 403 to the commit."""
    out = make_build(tmp_path / "b", {}, n=2)
    hub = RecordingHub(fail_times=10**6, error=http_error(403, "forbidden"))
    sink = sink_for(out, hub, retries=5)
    sink.start()
    sink.on_seal([write_shard(out, "data/train-00000-of-00001.parquet", 2)])
    wait_for(lambda: hub.attempts == 1)
    time.sleep(0.05)  # room for a retry that must not come
    assert hub.attempts == 1
    report = sink.finish(timeout=10)
    assert hub.attempts == 2  # finish tries once more, once
    assert "no write access" in report.error.message


def test_sink_finish_with_a_timeout_returns_while_the_hub_hangs(tmp_path):
    """Recording stand-in that never answers."""
    out = make_build(tmp_path / "b", {}, n=2)
    gate = threading.Event()
    hub = RecordingHub(block=gate)
    sink = sink_for(out, hub)
    sink.start()
    sink.on_seal([write_shard(out, "data/train-00000-of-00001.parquet", 2)])
    t0 = time.monotonic()
    report = sink.finish(timeout=0.2)
    assert time.monotonic() - t0 < 2
    assert report.unsent == ["data/train-00000-of-00001.parquet", "README.md", "corpusforge.json"]
    gate.set()


def test_sink_coalesces_seals_that_arrive_within_the_commit_interval(tmp_path):
    """Recording stand-in: the Hub limits commits per hour, so close seals share one commit."""
    out = make_build(tmp_path / "b", {}, n=6)
    hub = RecordingHub()
    sink = sink_for(out, hub, min_interval=3600)
    sink.start()
    sink.on_seal([write_shard(out, "data/train-00000-of-00003.parquet", 2)])
    wait_for(lambda: len(hub.commits) == 1)  # the first commit goes at once
    for i in (1, 2):
        sink.on_seal([write_shard(out, f"data/train-0000{i}-of-00003.parquet", 2, start=10 * i)])
    time.sleep(0.1)
    assert len(hub.commits) == 1  # the rest wait for the interval (or for finish)
    sink.finish(timeout=10)
    assert hub.commits[1:] == [[("add", "data/train-00001-of-00003.parquet"), ("add", "data/train-00002-of-00003.parquet"),
                                ("add", "README.md"), ("add", "corpusforge.json")]]


def test_push_splits_big_uploads_and_sends_the_card_and_deletions_last(tmp_path, monkeypatch):
    """Recording stand-in. The Hub advises < 100 files per commit (3 here, to keep it small);
    the card and the stale deletions go in the last commit, after every shard."""
    import corpusforge.hub as hub_module

    monkeypatch.setattr(hub_module, "MAX_FILES_PER_COMMIT", 3)
    out = make_build(tmp_path / "b", {f"data/train-0000{i}-of-00005.parquet": 1 for i in range(5)})
    hub = RecordingHub(files={"data/train-00000-of-00004.parquet": b"old", "corpusforge.json": remote_manifest()})
    push(out, REPO, client=hub)
    assert hub.commits == [
        [("add", f"data/train-0000{i}-of-00005.parquet") for i in range(3)],
        [("add", f"data/train-0000{i}-of-00005.parquet") for i in (3, 4)],
        [("add", "README.md"), ("add", "corpusforge.json"), ("delete", "data/train-00000-of-00004.parquet")],
    ]

