"""`build --push-to`: shards reach the Hub as they are sealed, and a failing Hub never stops the build.

Real llama.cpp on the tiny model and real parquet; the Hub goes through the one seam where
HfApi is called, replaced by test_hub's recording stand-in, because the Hub's HTTP endpoint
cannot exist here (no network).
"""
from __future__ import annotations

from pathlib import Path

from corpusforge.build import build
from corpusforge.config import BuildConfig
from lenient import lenient_config
from test_hub import REPO, RecordingHub

FAST = {"retries": 2, "backoff": 0.01, "min_interval": 0.0}


def config(model: Path, out: Path) -> BuildConfig:
    # Lenient: every story is kept whatever the random model writes; what is sent is still
    # compared with what the build wrote, never with a count of files that assumes it.
    return BuildConfig(n=9, model=str(model), out=out, shard_size=3, parallel=4, n_threads=2, push_to=REPO,
                       **lenient_config(story_tokens=40))


def local_files(out: Path) -> set[str]:
    return {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")
            and ".corpusforge" not in p.parts}


def test_each_shard_reaches_the_hub_before_the_card_that_counts_it(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    out = tmp_path / "pushed"
    hub = RecordingHub()
    summary = build(config(tiny_model, out), hub_client=hub, hub_options=FAST)
    assert summary.push is not None and summary.push.unsent == []
    sent_order = [path for commit in hub.commits for kind, path in commit if kind == "add"]
    shards = [p for p in sent_order if p.endswith(".parquet")]
    assert sorted(set(shards)) == sorted(p for p in local_files(out) if p.endswith(".parquet"))
    for commit in hub.commits:  # inside every commit: its shards, then the card and the manifest
        adds = [path for kind, path in commit if kind == "add"]
        if "README.md" in adds:
            assert all(adds.index(p) < adds.index("README.md") for p in adds if p.endswith(".parquet"))
    assert "corpusforge.json" in sent_order
    assert set(hub.files) == local_files(out), "the repo ends as the folder: card, manifest, shards, stats, plots"
    assert not [p for p in hub.files if "journal" in p or p.endswith(".tmp")]
    assert hub.files["README.md"] == (out / "README.md").read_bytes()


def test_a_build_whose_uploads_fail_keeps_building_and_reports_what_is_unsent(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    out = tmp_path / "failing"
    hub = RecordingHub(fail_times=10**6)
    summary = build(config(tiny_model, out), hub_client=hub, hub_options=FAST)
    assert summary.done == 9, "every story was generated although no upload went through"
    assert hub.commits == []
    unsent = set(summary.push.unsent)
    assert {p for p in local_files(out) if p.endswith(".parquet")} <= unsent and "README.md" in unsent
    assert f"corpusforge push {out} {REPO}" in str(summary.push)


def test_with_two_workers_the_driver_uploads_every_shard_once(tiny_model, tmp_path, monkeypatch):
    # Workers only journal; the driver seals and uploads, so the stand-in is never pickled.
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    out = tmp_path / "workers"
    hub = RecordingHub()
    c = config(tiny_model, out)
    c.workers, c.n_threads = 2, 1
    summary = build(c, hub_client=hub, hub_options=FAST)
    assert summary.done == 9 and summary.push.unsent == []
    shards = [path for commit in hub.commits for kind, path in commit if kind == "add" and path.endswith(".parquet")]
    # Which splits a shard has files in depends on the text (a rejects file when a story fails);
    # every file the build wrote goes up exactly once, and each of the 3 shards has one at least.
    written = sorted(p for p in local_files(out) if p.endswith(".parquet"))
    assert sorted(shards) == written and len(set(shards)) == len(shards)
    assert {p.split("-")[1] for p in written} == {"00000", "00001", "00002"}
    assert set(hub.files) == local_files(out)


def test_a_rerun_uploads_only_what_the_repo_lacks(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    out = tmp_path / "rerun"
    build(config(tiny_model, out), hub_client=RecordingHub(fail_times=10**6), hub_options=FAST)  # nothing reached the Hub
    hub = RecordingHub()
    summary = build(config(tiny_model, out), hub_client=hub, hub_options=FAST)  # finished: generates nothing, sends all
    assert summary.kept + summary.rejected == 0 and summary.push.unsent == []
    assert set(hub.files) == local_files(out)
    sent_before = len(hub.commits)
    again = build(config(tiny_model, out), hub_client=hub, hub_options=FAST)
    assert again.push.unsent == []
    # No shard goes up twice. The small files (card, manifest, stats, plots) are rewritten at the
    # end of every run and the listing gives sizes only, so a rerun sends them once more.
    resent = [path for commit in hub.commits[sent_before:] for kind, path in commit if kind == "add"]
    assert not [p for p in resent if p.endswith(".parquet")], resent
    assert len(hub.commits) <= sent_before + 1


def test_a_hub_that_hangs_never_holds_a_finished_build(tiny_model, tmp_path, monkeypatch):
    # The stand-in's commit never returns; the build's wait for its sinks is bounded.
    import threading

    import corpusforge.build

    monkeypatch.setenv("HF_TOKEN", "hf_test")
    monkeypatch.setattr(corpusforge.build, "SINK_FINISH_TIMEOUT", 0.5)
    out = tmp_path / "hung"
    gate = threading.Event()
    try:
        summary = build(config(tiny_model, out), hub_client=RecordingHub(block=gate), hub_options=FAST)
        assert summary.done == 9
        assert {p for p in local_files(out) if p.endswith(".parquet")} <= set(summary.push.unsent)
        assert f"corpusforge push {out} {REPO}" in str(summary.push)
    finally:
        gate.set()
