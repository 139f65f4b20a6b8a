"""Engines that turn prompts into text. `llamacpp` is the batched CPU engine."""
from .base import EngineStats, Request, Result, SamplingParams

__all__ = ["EngineStats", "Request", "Result", "SamplingParams"]
