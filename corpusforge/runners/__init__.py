"""Runners: where shards run (this process, local worker processes, or Ray actors)."""
from __future__ import annotations

from .base import Event, ModelRef, Prepared, Runner, ShardDone, ShardWork


def make_runner(p: Prepared) -> Runner:
    """The local, multi-process or Ray runner this config asks for (models load here)."""
    c = p.config
    if c.ray:
        from .ray import RayRunner

        return RayRunner(p)
    if c.workers > 1:
        from .process import ProcessRunner

        return ProcessRunner(p)
    from .local import LocalRunner

    return LocalRunner(p)


__all__ = ["Event", "ModelRef", "Prepared", "Runner", "ShardDone", "ShardWork", "make_runner"]
