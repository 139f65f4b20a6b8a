"""`--workers K`: K processes on this machine, each with its own model and a share of threads.

Workers pull shard numbers from a queue and report finished stories back; each shard has its
own journal, so no two processes ever write the same file.
"""
from __future__ import annotations

import multiprocessing as mp
import queue

from ..errors import CorpusforgeError
from .base import ShardWork, open_engine


def _worker(p, threads: int, shards, events) -> None:
    """Process body: load the models once, then run shards until the queue says stop."""
    try:
        work = ShardWork(p, threads)
    except CorpusforgeError as e:
        events.put(("error", str(e)))
        return
    try:
        while (shard := shards.get()) is not None:
            for item in work.run_shard(shard):
                events.put(("item", item))
    except KeyboardInterrupt:
        pass  # the journal is flushed per line; close() below fsyncs it
    finally:
        work.close()


class ProcessRunner:
    """Runs shards on `config.workers` local processes; the driver seals what they finish."""

    concurrent = True

    def __init__(self, p):
        self.p = p
        c = p.config
        self.k = c.workers
        self.threads = c.threads_per_worker()
        # A worker that cannot load a model fails in run(); check here too so that a bad
        # model is refused before the output folder is touched.
        for model in (*p.models, *([p.judge_model] if p.judge_model else [])):
            open_engine(p, model, threads=1).close()

    def run(self, shards: list[int]):
        ctx = mp.get_context("spawn")  # fork would copy the parent's llama.cpp state
        todo, events = ctx.Queue(), ctx.Queue()
        for s in shards:
            todo.put(s)
        k = min(self.k, max(1, len(shards)))
        for _ in range(k):
            todo.put(None)
        procs = [ctx.Process(target=_worker, args=(self.p, self.threads, todo, events), daemon=True) for _ in range(k)]
        for proc in procs:
            proc.start()
        try:
            while True:
                try:
                    kind, payload = events.get(timeout=0.5)
                except queue.Empty:
                    if all(not proc.is_alive() for proc in procs):
                        break
                    continue
                if kind == "error":
                    raise CorpusforgeError(f"a worker failed: {payload}", "fix the problem and rerun the same command to resume")
                if kind == "item":
                    yield payload
            while not events.empty():  # items sent just before the last worker exited
                kind, payload = events.get()
                if kind == "item":
                    yield payload
            bad = [proc.exitcode for proc in procs if proc.exitcode not in (0, None)]
            if bad:
                raise CorpusforgeError(f"{len(bad)} worker(s) died (exit codes {bad})", "rerun the same command to resume; finished stories are kept")
        finally:
            for proc in procs:
                if proc.is_alive():
                    proc.terminate()
                proc.join(timeout=10)

    def in_flight(self) -> int:
        return 0

    def close(self) -> None:
        pass
