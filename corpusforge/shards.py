"""The output folder: an append-only journal per open shard, sealed parquet shards, a lock.

A story counts as done once its journal line is written; a shard whose id range is complete
is compacted to parquet (temp file + rename) and its journal deleted. Any crash leaves a
state `Store.open` can read back: finished shards intact, journals cut at the last full line.
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
from .schema import SPLIT_DIRS, arrow_table

STATE_DIR = ".corpusforge"  # a dot folder: `datasets` ignores it
MANIFEST = "corpusforge.json"
_SHARD_RE = re.compile(r"^(train|rejects)-(\d{5})-of-(\d{5})\.parquet$")


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

    def __init__(self, out: Path, n: int, shard_size: int, lock: bool = True):
        self.out, self.n, self.shard_size = Path(out), n, shard_size
        self.state = self.out / STATE_DIR
        self.journals = self.state / "journal"
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
        return story_id // self.shard_size

    def shard_ids(self, shard: int) -> range:
        return range(shard * self.shard_size, min((shard + 1) * self.shard_size, self.n))

    def shard_path(self, split: str, shard: int) -> Path:
        return self.out / SPLIT_DIRS[split] / shard_name(split, shard, self.num_shards)

    def journal_path(self, shard: int) -> Path:
        return self.journals / f"shard-{shard:05d}.jsonl"

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
        for d in SPLIT_DIRS.values():
            (self.out / d).mkdir(parents=True, exist_ok=True)
            for tmp in (self.out / d).glob(".*.tmp"):
                tmp.unlink()
        self.journals.mkdir(parents=True, exist_ok=True)
        self._rename_to_total()
        done: dict[int, str] = {}
        for split, shard, path in self._shard_files():
            for i in _read_ids(path):
                done[i] = split
        for path in sorted(self.journals.glob("shard-*.jsonl")):
            shard = int(path.stem.split("-")[1])
            rows = read_journal(path, repair=True)
            ids = self.shard_ids(shard)
            if all(i in done for i in ids) and ids:
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

    def sync(self) -> None:
        for f in self._files.values():
            os.fsync(f.fileno())
        self._unsynced, self._last_sync = 0, time.monotonic()

    def seal(self, shard: int) -> None:
        """Compact a complete shard: merge its parquet rows and journal into final shards."""
        f = self._files.pop(shard, None)
        if f is not None:
            f.flush()
            os.fsync(f.fileno())
            f.close()
        by_split: dict[str, dict[int, dict]] = {s: {} for s in SPLIT_DIRS}
        for split in SPLIT_DIRS:
            path = self.shard_path(split, shard)
            if path.exists():  # a shard reopened because --n grew
                for r in _read_rows(path):
                    by_split[split][r["id"]] = r
        journal = self.journal_path(shard)
        for r in read_journal(journal) if journal.exists() else []:
            split = r.pop("split")
            by_split[split][r["id"]] = r
        # A split with no rows gets no file: `datasets` fails on a zero-row parquet file. Sealed
        # means every id of the range is in one of the files, so a crash between the two
        # writes leaves the journal in place and the next seal repeats both.
        for split in SPLIT_DIRS:
            rows = [by_split[split][i] for i in sorted(by_split[split])]
            path = self.shard_path(split, shard)
            if rows:
                write_parquet(arrow_table(rows), path)
            elif path.exists():
                path.unlink()
        if journal.exists():
            journal.unlink()
            _fsync_dir(self.journals)

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
        for name in (*SPLIT_DIRS.values(),):
            shutil.rmtree(self.out / name, ignore_errors=True)
        shutil.rmtree(self.journals, ignore_errors=True)
        for name in (MANIFEST, "README.md"):
            (self.out / name).unlink(missing_ok=True)


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


def _read_rows(path: Path) -> list[dict]:
    """Rows of a shard back in journal form (features as names)."""
    import pyarrow.parquet as pq

    from .vocab import FEATURE_NAMES

    rows = pq.read_table(path).to_pylist()
    for r in rows:
        r["features"] = [FEATURE_NAMES[i] for i in r["features"]]
    return rows
