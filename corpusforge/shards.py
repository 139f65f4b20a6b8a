"""The output folder: an append-only journal per open shard, sealed parquet shards, a lock.

A story counts as done once its journal line is written; a shard whose id range is complete
is compacted to parquet (temp file + rename) and its journal deleted. Any crash leaves a
state `Store.recover` can read back: finished shards intact, journals cut at the last full line.
Sealing also writes the shard's statistics (`.corpusforge/stats/`), so the card and the end
of build summary merge small files instead of re-reading every shard at every seal.
"""
from __future__ import annotations

import fcntl
import json
import math
import os
import re
import shutil
import time
from pathlib import Path

from .errors import OutputError
from .replace import slot_of
from .schema import KEPT_SPLITS, SPLIT_DIRS, RowSchema
from .shardstats import shard_stats

STATE_DIR = ".corpusforge"  # a dot folder: `datasets` ignores it
MANIFEST = "corpusforge.json"
_SHARD_RE = re.compile(r"^(train|validation|test|rejects)-(\d{5})-of-(\d{5})\.parquet$")


def shard_name(split: str, index: int, total: int) -> str:
    return f"{split}-{index:05d}-of-{total:05d}.parquet"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_parquet(table, final: Path) -> None:
    """Write a parquet file so that `final` is either absent, the old file, or complete."""
    import pyarrow.parquet as pq

    tmp = final.with_name(f".{final.name}.tmp")  # leading dot: never matched by train-*
    pq.write_table(table, tmp)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)
    _fsync_dir(final.parent)


class Store:
    """One build's output folder, opened for writing by one process at a time per shard."""

    def __init__(self, out: Path, n: int, shard_size: int, schema: RowSchema, lock: bool = True):
        self.out, self.n, self.shard_size, self.schema = Path(out), n, shard_size, schema
        self.state = self.out / STATE_DIR
        self.journals = self.state / "journal"
        self.stats_dir = self.state / "stats"
        self._files: dict[int, object] = {}
        self._unsynced = 0
        self._last_sync = time.monotonic()
        self._lock_fd = None
        if lock:
            self._lock()

    # ----- layout --------------------------------------------------------------------

    @property
    def num_shards(self) -> int:
        return max(1, math.ceil(self.n / self.shard_size))

    def shard_of(self, story_id: int) -> int:
        return slot_of(story_id) // self.shard_size  # a replacement stays in its slot's shard

    def shard_ids(self, shard: int) -> range:
        """The shard's slots: the ids of their first plans (replacements add STRIDE multiples)."""
        return range(shard * self.shard_size, min((shard + 1) * self.shard_size, self.n))

    def shard_path(self, split: str, shard: int) -> Path:
        return self.out / SPLIT_DIRS[split] / shard_name(split, shard, self.num_shards)

    def journal_path(self, shard: int) -> Path:
        return self.journals / f"shard-{shard:05d}.jsonl"

    def stats_path(self, shard: int) -> Path:
        return self.stats_dir / f"shard-{shard:05d}.json"

    def sealed_files(self, shard: int) -> list[Path]:
        """The parquet files of a sealed shard (kept splits first, then rejects)."""
        return [p for split in SPLIT_DIRS if (p := self.shard_path(split, shard)).exists()]

    def _lock(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.state / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputError(f"another corpusforge build is writing to {self.out}", "wait for it to finish or use another --out") from None
        self._lock_fd = fd

    # ----- reading back --------------------------------------------------------------

    def recover(self) -> dict[int, str]:
        """Tidy after a crash and return {id: split} for every story already done."""
        for d in sorted(set(SPLIT_DIRS.values())):
            (self.out / d).mkdir(parents=True, exist_ok=True)
            for tmp in (self.out / d).glob(".*.tmp"):
                tmp.unlink()
        self.journals.mkdir(parents=True, exist_ok=True)
        self.stats_dir.mkdir(parents=True, exist_ok=True)
        self._rename_to_total()
        done: dict[int, str] = {}
        for split, shard, path in self._shard_files():
            for i in _read_ids(path):
                done[i] = split
        for path in sorted(self.journals.glob("shard-*.jsonl")):
            rows = read_journal(path, repair=True)
            if rows and all(r["id"] in done for r in rows):
                path.unlink()  # compacted already; the crash came before the journal was removed
                continue
            for r in rows:
                done.setdefault(r["id"], r["split"])
        return done

    def shard_done(self, shard: int) -> dict[int, str]:
        """{id: split} of one shard's finished stories: its parquet files plus its journal."""
        done: dict[int, str] = {}
        for split in SPLIT_DIRS:
            path = self.shard_path(split, shard)
            if path.exists():
                done.update((i, split) for i in _read_ids(path))
        journal = self.journal_path(shard)
        if journal.exists():
            for r in read_journal(journal, repair=True):
                done.setdefault(r["id"], r["split"])
        return done

    def kept_rows(self, shard: int, columns: tuple[str, ...] = ("id", "story", "model")):
        """(split, row) of every kept story of a shard so far: sealed files, then its journal."""
        import pyarrow.parquet as pq

        for split in KEPT_SPLITS:
            path = self.shard_path(split, shard)
            if path.exists():
                for r in pq.read_table(path, columns=list(columns)).to_pylist():
                    yield split, r
        journal = self.journal_path(shard)
        if journal.exists():
            for r in read_journal(journal):
                if r["split"] in KEPT_SPLITS:
                    yield r["split"], {c: r[c] for c in columns}

    def duplicate_rejects(self, shard: int) -> dict[int, str]:
        """{id: "duplicate:<id>"} of a sealed shard's rejects that are duplicates."""
        import pyarrow.parquet as pq

        path = self.shard_path("rejects", shard)
        if not path.exists():
            return {}
        rows = pq.read_table(path, columns=["id", "reject_reason"]).to_pylist()
        return {r["id"]: r["reject_reason"] for r in rows if _duplicate_of(r["reject_reason"] or "") is not None}

    def _shard_files(self):
        for split, d in SPLIT_DIRS.items():
            for path in sorted((self.out / d).glob(f"{split}-*.parquet")):
                m = _SHARD_RE.match(path.name)
                if m:
                    yield split, int(m.group(2)), path

    def _rename_to_total(self) -> None:
        """Make every shard name say `-of-<current total>` (the total grows when --n grows)."""
        for split, shard, path in list(self._shard_files()):
            want = self.shard_path(split, shard)
            if path != want:
                os.replace(path, want)

    # ----- writing -------------------------------------------------------------------

    def append(self, row: dict, split: str) -> None:
        """Record a finished story; flushed at once (kill -9 safe), fsynced in small groups."""
        shard = self.shard_of(row["id"])
        f = self._files.get(shard)
        if f is None:
            f = self._files[shard] = open(self.journal_path(shard), "a", encoding="utf-8")
        f.write(json.dumps({**row, "split": split}, ensure_ascii=False) + "\n")
        f.flush()
        self._unsynced += 1
        if self._unsynced >= 16 or time.monotonic() - self._last_sync > 1.0:
            self.sync()

    def close_journal(self, shard: int) -> None:
        """Flush and close a finished shard's journal so another process (the driver) can seal it."""
        f = self._files.pop(shard, None)
        if f is not None:
            f.flush()
            os.fsync(f.fileno())
            f.close()

    def sync(self) -> None:
        for f in self._files.values():
            os.fsync(f.fileno())
        self._unsynced, self._last_sync = 0, time.monotonic()

    def seal(self, shard: int, moved: dict[int, str] | None = None) -> list[Path]:
        """Compact a complete shard: merge its parquet rows and journal into final shards.

        `moved` sends kept stories to rejects with a reason (the driver's cross-shard dedup);
        it may hold stories of other shards too, for the rejects of this one that name them.
        Returns the shard's files, for sinks (card, Hub upload)."""
        self.close_journal(shard)
        by_split: dict[str, dict[int, dict]] = {s: {} for s in SPLIT_DIRS}
        for split in SPLIT_DIRS:
            path = self.shard_path(split, shard)
            if path.exists():  # a shard reopened because --n grew, or a seal cut short by a crash
                for r in self._read_rows(path):
                    by_split[split][r["id"]] = r
        journal = self.journal_path(shard)
        for r in read_journal(journal) if journal.exists() else []:
            split = r.pop("split")
            by_split[split][r["id"]] = r
        for i, reason in (moved or {}).items():
            for split in KEPT_SPLITS:
                if i in by_split[split]:
                    by_split["rejects"][i] = {**by_split[split].pop(i), "reject_reason": reason}
        # A reject that named a moved story as its original now names that story's original,
        # so every `duplicate:<id>` points at a story that is kept.
        for r in by_split["rejects"].values():
            seen = {r["id"]}  # a chain of rejects ends at a kept story; never loop on a bad one
            while (of := _duplicate_of(r.get("reject_reason", ""))) not in seen and (target := (moved or {}).get(of)) is not None:
                r["reject_reason"] = target
                seen.add(of)
        # A split with no rows gets no file: `datasets` fails on a zero-row parquet file. Sealed
        # means every id of the range is in one of the files, so a crash between the two
        # writes leaves the journal in place and the next seal repeats both.
        rows_by_split = {split: [by_split[split][i] for i in sorted(by_split[split])] for split in SPLIT_DIRS}
        for split, rows in rows_by_split.items():
            path = self.shard_path(split, shard)
            if rows:
                write_parquet(self.schema.arrow_table(rows), path)
            elif path.exists():
                path.unlink()
        self._write_stats(shard, rows_by_split)
        if journal.exists():
            journal.unlink()
            _fsync_dir(self.journals)
        return self.sealed_files(shard)

    def _write_stats(self, shard: int, rows_by_split: dict[str, list[dict]]) -> None:
        self.stats_dir.mkdir(parents=True, exist_ok=True)
        stats = shard_stats(rows_by_split, {s: self.shard_path(s, shard) for s in SPLIT_DIRS}, self.schema.axis_names)
        tmp = self.stats_dir / f".shard-{shard:05d}.json.tmp"
        tmp.write_text(json.dumps(stats, sort_keys=True))
        os.replace(tmp, self.stats_path(shard))

    def all_stats(self) -> list[dict]:
        """The statistics of every sealed shard (computed from parquet for a shard sealed
        before stats files existed, and saved)."""
        out = []
        for shard in sorted({shard for _, shard, _ in self._shard_files()}):
            path = self.stats_path(shard)
            if not path.exists():
                by_split = {s: (self._read_rows(p) if (p := self.shard_path(s, shard)).exists() else []) for s in SPLIT_DIRS}
                self._write_stats(shard, by_split)
            out.append(json.loads(path.read_text()))
        return out

    def _read_rows(self, path: Path) -> list[dict]:
        """Rows of a shard back in journal form (labels as names)."""
        import pyarrow.parquet as pq

        return [self.schema.decode(r) for r in pq.read_table(path).to_pylist()]

    def close(self) -> None:
        for f in self._files.values():
            f.flush()
            os.fsync(f.fileno())
            f.close()
        self._files.clear()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def wipe(self) -> None:
        """Remove everything a build writes (for --overwrite); other files stay."""
        for name in sorted(set(SPLIT_DIRS.values())):
            shutil.rmtree(self.out / name, ignore_errors=True)
        shutil.rmtree(self.journals, ignore_errors=True)
        shutil.rmtree(self.stats_dir, ignore_errors=True)
        for name in (MANIFEST, "README.md"):
            (self.out / name).unlink(missing_ok=True)


def _duplicate_of(reason: str) -> int | None:
    code, _, rest = reason.partition(":")
    return int(rest) if code == "duplicate" and rest.isdigit() else None


def read_journal(path: Path, repair: bool = False) -> list[dict]:
    """The complete lines of a journal; a torn last line (kill -9 mid-write) is cut off."""
    data = path.read_bytes()
    good = data.rfind(b"\n") + 1
    if repair and good < len(data):
        with open(path, "rb+") as f:
            f.truncate(good)
            os.fsync(f.fileno())
    return [json.loads(line) for line in data[:good].decode("utf-8").splitlines() if line.strip()]


def _read_ids(path: Path) -> list[int]:
    import pyarrow.parquet as pq

    return pq.read_table(path, columns=["id"]).column("id").to_pylist()
