"""A fake engine for fast unit tests of the logic above the engine (chain, retries, dedup, judge).

It implements the `Engine` protocol and answers every request from a function, so a test can
plant exactly the text it needs (a duplicate, a missing word, a "no" from the judge) -- text a
random-weight model cannot be made to write. Real llama.cpp is tested elsewhere on the tiny model.
"""
from __future__ import annotations

from corpusforge.engine.base import Engine, EngineStats, Request, Result


class FakeEngine:
    def __init__(self, answer, parallel: int = 4, logits=None):
        # logits(req) -> rows of logits (one per generated token) for requests with keep_logits,
        # e.g. a judge score a test plants; None: no logits, as an engine without them.
        self.answer, self.parallel, self.logits = answer, parallel, logits
        self.stats = EngineStats()
        self.waiting: list[Request] = []
        self.requests: list[Request] = []  # every request ever submitted, in order
        # (story id, stage, attempt) of each request when it was submitted: the tag is the
        # chain's live story record, which moves on after the request.
        self.submitted: list[tuple[int, int, int]] = []
        self.released: list[object] = []

    def format_prompt(self, messages) -> str:
        if isinstance(messages, str):
            return messages
        return "".join(f"<{m['role']}>{m['content']}\n" for m in messages)

    def submit(self, request: Request) -> None:
        self.waiting.append(request)
        self.requests.append(request)
        t = request.tag
        self.submitted.append((t.plan.id, t.stage, t.attempt) if hasattr(t, "plan") else (-1, -1, -1))

    def step(self) -> list[Result]:
        batch, self.waiting = self.waiting[: self.parallel], self.waiting[self.parallel:]
        out = []
        for req in batch:
            text = self.answer(req)
            logits = self.logits(req) if self.logits is not None and req.keep_logits else None
            out.append(Result(req, text, len(text.split()), len(req.prompt.split()), truncated=False, logits=logits))
        return out

    def busy(self) -> bool:
        return bool(self.waiting)

    def in_flight(self) -> int:
        return 0

    def release(self, session) -> None:
        self.released.append(session)

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        return [hash(w) % 1000 for w in text.split()]

    def close(self) -> None:
        pass


assert isinstance(FakeEngine(lambda r: ""), Engine)  # the protocol is what the chain is typed against
