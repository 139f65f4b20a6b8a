"""`--ray`: shards as Ray work on actors that each hold a loaded model.

Ray restarts a dead actor and retries its shard; a retried shard reads its own journal and
redoes only what is missing. Every node must see `--out` (a shared filesystem on a cluster).
"""
from __future__ import annotations

import time

from ..errors import CorpusforgeError

INSTALL_HINT = "install it with: pip install 'corpusforge[ray]'"


def _ray():
    try:
        import ray
    except ImportError:
        raise CorpusforgeError("--ray needs the ray package", INSTALL_HINT) from None
    return ray


def _actor_class(ray):
    @ray.remote(max_restarts=3, max_task_retries=3)
    class ShardActor:
        """Holds one loaded model; runs whole shards and streams their events to the driver."""

        def __init__(self, p, threads: int, events):
            from corpusforge.runners.base import ShardWork

            self.events = events
            self.work = ShardWork(p, threads)

        def run(self, shard: int) -> int:
            batch, last = [], time.monotonic()
            for item in self.work.run_shard(shard):
                batch.append(item)
                if time.monotonic() - last > 0.5:  # a few puts a second, not one per story
                    self.events.put(batch)
                    batch, last = [], time.monotonic()
            if batch:
                self.events.put(batch)
            return shard

    return ShardActor


class RayRunner:
    """Runs shards on a Ray cluster (or a local Ray started here when no address is given).

    Actors only journal; the driver seals each finished shard, dedups it against the rest of
    the corpus and hands it to the sinks (card, Hub upload)."""

    concurrent = True

    def __init__(self, p):
        ray = _ray()
        self.ray, self.p = ray, p
        c = p.config
        if not ray.is_initialized():
            try:
                ray.init(address=c.ray_address, include_dashboard=False, log_to_driver=False,
                         configure_logging=False, ignore_reinit_error=True)
            except Exception as e:
                raise CorpusforgeError(f"cannot connect to Ray at {c.ray_address or 'a new local instance'}: {e}",
                                       "check --ray-address (ray://host:10001 or host:6379) or drop it to start Ray locally") from None
        from ray.util.queue import Queue

        self.events = Queue()
        cpus = int(ray.cluster_resources().get("CPU", 1))
        n_actors = c.workers if c.workers > 1 else max(1, cpus // max(1, c.n_threads or cpus))
        threads = c.n_threads or max(1, cpus // n_actors)
        cls = _actor_class(ray).options(num_cpus=threads)
        self.actors = [cls.remote(p, threads, self.events) for _ in range(n_actors)]
        try:  # load every model now, so a bad model fails before the output is touched
            ray.get([a.__ray_ready__.remote() for a in self.actors])
        except Exception as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, CorpusforgeError):
                raise cause from None
            raise CorpusforgeError(f"Ray workers failed to start: {str(e).splitlines()[0]}", "see the Ray logs") from None

    def run(self, shards: list[int]):
        from ray.util import ActorPool

        ray = self.ray
        pool = ActorPool(self.actors)
        for s in shards:
            pool.submit(lambda a, shard: a.run.remote(shard), s)
        while pool.has_next() or not self.events.empty():
            for batch in self._drain():
                yield from batch
            if pool.has_next():
                try:
                    pool.get_next_unordered(timeout=0.2)
                except TimeoutError:
                    pass
                except ray.exceptions.RayError as e:
                    raise CorpusforgeError(f"a shard failed after Ray's retries: {str(e).splitlines()[0]}",
                                           "rerun the same command to resume") from None
        for batch in self._drain():
            yield from batch

    def _drain(self):
        while not self.events.empty():
            yield self.events.get()

    def in_flight(self) -> int:
        return 0

    def close(self) -> None:
        for a in getattr(self, "actors", []):
            self.ray.kill(a)
        self.actors = []
