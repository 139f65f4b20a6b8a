"""Shards one after another in this process."""
from __future__ import annotations

from .base import Prepared, ShardWork


class LocalRunner:
    # One process: the chain's dedup index sees every story kept so far, no driver pass needed.
    concurrent = False

    def __init__(self, p: Prepared):
        self.work = ShardWork(p)

    def run(self, shards: list[int]):
        for shard in shards:
            yield from self.work.run_shard(shard)

    def in_flight(self) -> int:
        return self.work.in_flight()

    def close(self) -> None:
        self.work.close()
