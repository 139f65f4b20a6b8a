"""Batched llama.cpp engine on llama-cpp-python's low-level API.

Continuous batching over `parallel` KV sequences, shared-prefix reuse by sequence copy,
conversations continued in place (a finished request's KV is kept for its session's next
turn), prompt chunks mixed with generation tokens in one decode, one seeded sampler per request
(with an optional GBNF grammar). Every setting is checked here before llama.cpp sees it: a bad
value there is a native abort, not an exception.
"""
from __future__ import annotations

import ctypes
import heapq
import itertools
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ModelError
from .base import EngineStats, Request, Result, SamplingParams
from .steer import Pieces, Steering

# Quantized weights are where the AMX matmul of a native build crashes; float ones are fine.
_FLOAT_FTYPES = {0, 1, 32}  # LLAMA_FTYPE_ALL_F32, MOSTLY_F16, MOSTLY_BF16
# K cache types a user may pick (ggml type ids). A quantized V cache would need flash
# attention on every backend; a quantized K cache does not, so only K is offered.
KV_TYPES = {"f16": 1, "q8_0": 8}
_QUANT_BLOCK = {"q8_0": 32}  # a quantized K row is whole blocks: head size must divide
_MAX_SEQ = 256  # llama.cpp's LLAMA_MAX_SEQ: more sequences throw inside llama_init_from_model
_MAX_THREADS = 512  # GGML_MAX_N_THREADS
_llama = None


def _lib():
    """Import llama_cpp once, quietly (its import is slow and prints through a log hook)."""
    global _llama
    if _llama is None:
        try:
            import llama_cpp
            from llama_cpp import _logger
        except ImportError as e:  # pragma: no cover - a broken install
            raise ModelError(f"llama-cpp-python cannot be imported: {e}", "run: bash scripts/install.sh") from None
        _logger.set_verbose(bool(os.environ.get("CORPUSFORGE_LLAMA_VERBOSE")))
        llama_cpp.llama_backend_init()
        _llama = llama_cpp
    return _llama


def build_has_amx() -> bool:
    """True when this llama-cpp-python build runs ggml's AMX kernels (see scripts/install.sh).

    Test hook: CORPUSFORGE_ASSUME_AMX=1 answers True, so the refusal path can be tested on a
    build (like CI's) that has no AMX."""
    if os.environ.get("CORPUSFORGE_ASSUME_AMX") == "1":
        return True
    return "AMX_INT8 = 1" in _lib().llama_print_system_info().decode(errors="replace")


def check_settings(*, parallel: int, n_batch: int, n_ubatch: int | None, n_threads: int | None,
                   prefix_slots: int, type_k: str) -> None:
    """Refuse engine settings that llama.cpp would abort on (GGML_ASSERT: no Python exception)."""

    def need(ok: bool, message: str, fix: str) -> None:
        if not ok:
            raise ModelError(message, fix)

    def whole(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    need(whole(parallel) and parallel >= 1, f"--parallel must be at least 1 (got {parallel})", "pass --parallel 32")
    need(whole(n_batch) and n_batch >= 1, f"--n-batch must be at least 1 (got {n_batch})", "pass --n-batch 512")
    need(whole(prefix_slots) and prefix_slots >= 0, f"prefix_slots must be 0 or more (got {prefix_slots})", "pass prefix_slots=3")
    need(parallel + prefix_slots <= _MAX_SEQ,
         f"--parallel {parallel} plus {prefix_slots} shared-prefix sequences is more than llama.cpp's {_MAX_SEQ}",
         f"pass --parallel {_MAX_SEQ - prefix_slots} or less")
    # llama.cpp reserves one output row per sequence when it creates the context and asserts
    # that they fit in n_batch rows (n_outputs_max); every generating sequence also puts one
    # token in each decode. More sequences than n_batch is a GGML_ASSERT: the process dies.
    n_seq = parallel + prefix_slots
    need(n_batch >= n_seq,
         f"--n-batch {n_batch} is less than the {n_seq} sequences it must hold (--parallel {parallel} + {prefix_slots} shared prefixes)",
         f"pass --n-batch {max(n_seq, 512)} or --parallel {max(1, n_batch - prefix_slots)}")
    if n_ubatch is not None:
        need(whole(n_ubatch) and parallel <= n_ubatch <= n_batch,
             f"n_ubatch must be between --parallel ({parallel}) and --n-batch ({n_batch}) (got {n_ubatch})",
             f"pass n_ubatch={n_batch}")
    need(n_threads is None or (whole(n_threads) and 1 <= n_threads <= _MAX_THREADS),
         f"--threads must be between 1 and {_MAX_THREADS} (got {n_threads})", f"pass --threads {os.cpu_count() or 1}")
    need(type_k in KV_TYPES, f"K cache type {type_k!r} is not one of {', '.join(KV_TYPES)}", "pass type_k='f16'")


def check_sampling(p: SamplingParams) -> None:
    """Refuse sampler settings llama.cpp would misread."""
    for flag, rule in p.problems():
        raise ModelError(f"{flag} {rule}", f"pass a valid {flag}")


# Where a step's wall time goes (seconds), and how llama.cpp will split each batch: with split
# KV a decode runs one graph compute per micro-batch, and a micro-batch holds one run of
# consecutive sequence ids with the same number of tokens each (llama_batch_allocr::split_equal).
PROFILE_KEYS = (
    "start_s",  # starting requests: tokenizing, session/prefix bookkeeping, sampler setup
    "prefix_decode_s",  # evaluating a shared prefix the first time (its own decodes)
    "fill_s",  # choosing the batch and writing it into llama_batch
    "decode_s",  # llama_decode of the step's batch
    "sample_s",  # llama_sampler_sample (+ copying logits when asked)
    "finish_s",  # detokenizing finished answers, freeing samplers
    "compact_s",  # moving sequences into lower slots (compact=True)
    "caller_s",  # between two steps: the caller's Python (the chain's parsing, prompts, checks)
    "gen_only_decode_s",  # of decode_s, the steps with no prompt tokens
    "steps", "gen_only_steps", "ubatches", "gen_tokens", "prompt_tokens", "slot_moves",
)


@dataclass(slots=True)
class _Prefix:
    seq: int
    tokens: list[int]
    last_used: int = 0


@dataclass(slots=True)
class _Slot:
    seq: int
    request: Request | None = None
    sampler: object = None
    feed: list[int] = field(default_factory=list)  # prompt tokens not yet decoded
    pos: int = 0
    prompt_tokens: int = 0
    reused: int = 0
    generated: list[int] = field(default_factory=list)
    next_token: int | None = None  # sampled, to be decoded next step
    prompt: list[int] = field(default_factory=list)
    logits: list = field(default_factory=list)
    out_index: int = -1  # row of this slot's logits in the last batch
    session: object = None  # whose conversation the KV holds (kept after the request ends)
    kv: list[int] = field(default_factory=list)  # tokens in the KV while parked for `session`
    parked: int = 0  # clock when parked: the least recently parked slot is evicted first
    steering: Steering | None = None
    forced: list[int] = field(default_factory=list)  # tokens steering inserts after next_token
    n_forced: int = 0


class LlamaEngine:
    """One loaded GGUF model serving many independent requests.

    Speed options (all default to the plain behaviour; each keeps the same tokens per seed for
    a given `parallel`): `type_k` "q8_0" stores K in 8 bits (K cache 590 -> 452 MB at
    --parallel 32), `n_ubatch` sets llama.cpp's micro-batch (default: n_batch), `compact`
    moves a busy sequence into a free lower slot so the busy ids stay one run (with split KV a
    gap costs another graph compute). On the bench (64 stories, --parallel 32, smollm2-135m
    shape, 2 threads) none moved stories/hour beyond run-to-run noise (2,710-2,826): 97% of
    the wall is llama_decode, and a generation-only step costs what llama-batched-bench's does.
    """

    def __init__(
        self,
        model_path: str | os.PathLike,
        *,
        parallel: int = 16,
        n_ctx: int | None = None,
        n_threads: int | None = None,
        n_batch: int = 512,
        sampling: SamplingParams = SamplingParams(),
        prefix_slots: int = 3,
        safe_cpu: bool = False,
        check_memory: bool = True,
        type_k: str = "f16",
        n_ubatch: int | None = None,
        compact: bool = False,
    ):
        self.model = self.ctx = None  # close() (and __del__) must find these even if we raise below
        check_settings(parallel=parallel, n_batch=n_batch, n_ubatch=n_ubatch, n_threads=n_threads,
                       prefix_slots=prefix_slots, type_k=type_k)
        check_sampling(sampling)
        ll = _lib()
        self.path = Path(model_path)
        self.parallel, self.n_ctx_seq, self.sampling = parallel, n_ctx, sampling
        self.prefix_slots = prefix_slots
        self.n_threads = n_threads or os.cpu_count() or 1
        self.type_k, self.n_ubatch_wanted, self.compact = type_k, n_ubatch, compact
        mparams = ll.llama_model_default_params()
        mparams.use_extra_bufts = not safe_cpu
        model = ll.llama_model_load_from_file(str(self.path).encode(), mparams)
        if not model:
            raise ModelError(f"llama.cpp could not load {self.path}", "check that it is a complete GGUF file")
        if not safe_cpu and ll.llama_model_ftype(model) not in _FLOAT_FTYPES and build_has_amx():
            # Free it here and never keep the pointer: an engine holding a freed model was
            # freed again by __del__ -> close() at garbage collection, a double free that
            # turned this refusal into a segfault (exit 139).
            ll.llama_model_free(model)
            raise ModelError(
                "this llama-cpp-python build uses AMX kernels that crash (SIGILL) on quantized models",
                "reinstall it with `bash scripts/install.sh`, or pass --safe-cpu to run at about half speed",
            )
        self.model = model
        self.vocab = ll.llama_model_get_vocab(self.model)
        self.n_vocab = ll.llama_vocab_n_tokens(self.vocab)
        self.add_bos = bool(ll.llama_vocab_get_add_bos(self.vocab))
        self.chat_template = self.metadata("tokenizer.chat_template")
        block = _QUANT_BLOCK.get(type_k)
        head_k = ll.llama_model_n_embd(self.model) // max(1, ll.llama_model_n_head(self.model))
        if block and head_k % block:
            self.close()
            raise ModelError(f"a {type_k} K cache needs a head size divisible by {block}; this model's is {head_k}",
                             "use the f16 K cache (the default)")
        self.n_batch_wanted, self.check_memory = n_batch, check_memory
        self.slots = [_Slot(i) for i in range(parallel)]
        self.prefixes: dict[tuple[int, ...], _Prefix] = {}
        self.waiting: list[tuple] = []
        self._counter = itertools.count()
        self._clock = 0
        self.stats = EngineStats()
        self.profile = self.stats.extra.setdefault("profile", dict.fromkeys(PROFILE_KEYS, 0))
        self._step_end: float | None = None
        self._eog: list[int] | None = None
        self._prefix_tokens: dict[str, list[int]] = {}
        self._grammars_ok: set[str] = set()
        self._steer_cache: dict = {}
        self._pieces: dict[int, str] = {}
        self._pieces_table: Pieces | None = None
        if n_ctx:
            try:
                self.start(n_ctx)
            except BaseException:
                self.close()
                raise

    def start(self, n_ctx: int) -> None:
        """Create the llama.cpp context: `n_ctx` tokens for each of `parallel` sequences."""
        ll = _lib()
        if self.ctx is not None:
            raise RuntimeError("engine already started")
        parallel, prefix_slots = self.parallel, self.prefix_slots
        if not isinstance(n_ctx, int) or n_ctx < 16:
            raise ModelError(f"--n-ctx must be at least 16 tokens per sequence (got {n_ctx})", "pass --n-ctx 1024, or leave it out to size it from the recipe")
        # llama.cpp pads the total context to a multiple of 256 and then splits it evenly;
        # a per-sequence size that is a multiple of 256 keeps every sequence at what we asked.
        n_ctx = -(-n_ctx // 256) * 256
        n_seq = parallel + prefix_slots
        if n_ctx * n_seq >= 2**31:  # llama.cpp keeps the total in a uint32 (and would wrap)
            raise ModelError(f"--parallel {parallel} with --n-ctx {n_ctx} is {n_ctx * n_seq:,} context tokens, more than llama.cpp can index",
                             "lower --parallel or --n-ctx")
        self.n_ctx_seq = n_ctx
        if self.check_memory:
            check_fits(self.estimate_memory(parallel, n_ctx, self.n_batch_wanted, prefix_slots), parallel, n_ctx)
        cparams = ll.llama_context_default_params()
        cparams.n_ctx = n_ctx * n_seq
        cparams.n_batch = min(self.n_batch_wanted, cparams.n_ctx)
        cparams.n_ubatch = min(self.n_ubatch_wanted or cparams.n_batch, cparams.n_batch)
        cparams.n_seq_max = n_seq
        cparams.n_threads = cparams.n_threads_batch = self.n_threads
        cparams.type_k = KV_TYPES[self.type_k]
        # Independent sequences: a unified KV makes every token attend over every cell,
        # measured 1.6-2x slower here.
        cparams.kv_unified = False
        cparams.no_perf = True
        self.ctx = ll.llama_init_from_model(self.model, cparams)
        if not self.ctx:
            raise ModelError("llama.cpp could not create a context", f"lower --parallel ({parallel}) or --n-ctx ({n_ctx})")
        self.n_batch, self.n_ubatch = cparams.n_batch, cparams.n_ubatch
        self.mem = ll.llama_get_memory(self.ctx)
        self.batch = ll.llama_batch_init(self.n_batch, 0, 1)

    # ----- model facts -----------------------------------------------------------------

    def metadata(self, key: str) -> str | None:
        """A GGUF metadata value as text, or None."""
        ll = _lib()
        buf = ctypes.create_string_buffer(1 << 16)
        n = ll.llama_model_meta_val_str(self.model, key.encode(), buf, len(buf))
        if n < 0:
            return None
        if n >= len(buf):
            buf = ctypes.create_string_buffer(n + 1)
            ll.llama_model_meta_val_str(self.model, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", errors="replace")

    def eog_tokens(self) -> list[int]:
        """Every end-of-generation token id (computed once; a scan of the vocab)."""
        if self._eog is None:
            ll = _lib()
            self._eog = [t for t in range(self.n_vocab) if ll.llama_vocab_is_eog(self.vocab, t)]
        return self._eog

    def token_text(self, token: int) -> str:
        return _lib().llama_vocab_get_text(self.vocab, token).decode("utf-8", errors="replace")

    def estimate_memory(self, parallel: int, n_ctx: int, n_batch: int, prefix_slots: int) -> int:
        """Bytes the context will need beyond the mmapped weights: KV cache + compute + logits."""
        ll = _lib()
        n_layer = ll.llama_model_n_layer(self.model)
        n_embd = ll.llama_model_n_embd(self.model)
        kv_dim = n_embd // ll.llama_model_n_head(self.model) * ll.llama_model_n_head_kv(self.model)
        k_bytes = 34 / 32 if self.type_k == "q8_0" else 2  # q8_0: 32 values + a 2-byte scale per block
        kv = n_layer * kv_dim * (k_bytes + 2) * n_ctx * (parallel + prefix_slots)  # K, and V in f16
        # Compute buffers scale with the ubatch; logits are n_vocab floats per output row.
        compute = n_batch * (self.n_vocab * 4 + n_embd * 4 * 24)
        return kv + compute + ll.llama_model_size(self.model)

    # ----- text ------------------------------------------------------------------------

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        ll = _lib()
        raw = text.encode("utf-8")
        cap = len(raw) + 8
        buf = (ll.llama_token * cap)()
        n = ll.llama_tokenize(self.vocab, raw, len(raw), buf, cap, add_special and self.add_bos, True)
        if n < 0:
            buf = (ll.llama_token * -n)()
            n = ll.llama_tokenize(self.vocab, raw, len(raw), buf, -n, add_special and self.add_bos, True)
        return list(buf[:n])

    def detokenize(self, tokens: list[int], *, special: bool = False) -> str:
        """Text of `tokens`; `special` also spells control tokens (<|im_end|>, ...) as text."""
        ll = _lib()
        if not tokens:
            return ""
        arr = (ll.llama_token * len(tokens))(*tokens)
        cap = len(tokens) * 16 + 16
        buf = ctypes.create_string_buffer(cap)
        n = ll.llama_detokenize(self.vocab, arr, len(tokens), buf, cap, False, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = ll.llama_detokenize(self.vocab, arr, len(tokens), buf, -n, False, special)
        return buf.raw[:n].decode("utf-8", errors="replace")

    def format_prompt(self, messages: str | list[dict]) -> str:
        """The model's own chat template around one user message or a conversation
        ([{"role": "user"|"assistant", "content": ...}, ...]); plain text without a template."""
        from .chat import render_chat

        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        if not self.chat_template:
            return "".join(m["content"] + "\n\n" for m in messages)
        bos = self.token_text(_lib().llama_vocab_bos(self.vocab))
        eos = self.token_text(_lib().llama_vocab_eos(self.vocab))
        text = render_chat(self.chat_template, messages, bos, eos)
        # The tokenizer adds BOS itself when the model asks for it; a template that also
        # writes it would give two.
        if self.add_bos and bos and text.startswith(bos):
            text = text[len(bos):]
        return text

    # ----- scheduling ------------------------------------------------------------------

    def submit(self, request: Request) -> None:
        """Queue a request; lower `priority` starts first, ties in submission order.

        A request llama.cpp cannot run (max_tokens < 1, a grammar it cannot parse) is refused
        here with a ModelError, before it reaches a batch."""
        mt = request.max_tokens
        if not isinstance(mt, int) or isinstance(mt, bool) or mt < 1:
            raise ModelError(f"a request's max_tokens must be at least 1 (got {mt!r})", "pass --max-tokens STAGE=N with N >= 1")
        if request.grammar:
            self.check_grammar(request.grammar)
        if request.sampling is not None:
            check_sampling(request.sampling)
        heapq.heappush(self.waiting, (request.priority, next(self._counter), request))

    def busy(self) -> bool:
        return bool(self.waiting) or any(s.request is not None for s in self.slots)

    def in_flight(self) -> int:
        return sum(s.request is not None for s in self.slots)

    def generate(self, requests: list[Request]) -> list[Result]:
        """Run all requests to completion; results in request order."""
        order = {id(r): i for i, r in enumerate(requests)}
        for r in requests:
            self.submit(r)
        out: list[Result | None] = [None] * len(requests)
        while self.busy():
            for res in self.step():
                out[order[id(res.request)]] = res
        return out  # type: ignore[return-value]

    def release(self, session: object) -> None:
        """Drop the KV kept for `session` (its conversation is over)."""
        for slot in self.slots:
            if slot.request is None and slot.session == session:
                self._clear(slot)

    def _slot_for(self, req: Request, waited: set) -> _Slot | None:
        """The slot a request starts in: its own parked conversation, an empty slot, or the
        least recently parked one that no waiting request will continue."""
        free = [s for s in self.slots if s.request is None]
        if req.session is not None:
            own = next((s for s in free if s.session == req.session), None)
            if own is not None:
                return own
        empty = next((s for s in free if s.session is None), None)
        if empty is not None:
            return empty
        evictable = [s for s in free if s.session not in waited]
        return min(evictable, key=lambda s: s.parked) if evictable else None

    def step(self) -> list[Result]:
        """Start waiting requests in free slots, run one decode, return what finished."""
        ll = _lib()
        prof, clock = self.profile, time.perf_counter
        t0 = clock()
        if self._step_end is not None:
            prof["caller_s"] += t0 - self._step_end
        prefix_before = prof["prefix_decode_s"]
        finished: list[Result] = []
        if self.waiting and any(s.request is None for s in self.slots):
            pending = [heapq.heappop(self.waiting) for _ in range(len(self.waiting))]
            waited = {entry[2].session for entry in pending}
            for entry in pending:  # in priority order; a request without a slot keeps waiting
                slot = self._slot_for(entry[2], waited)
                if slot is None:
                    heapq.heappush(self.waiting, entry)
                    continue
                err = self._start(slot, entry[2])
                if err:
                    finished.append(err)
        t1 = clock()
        prof["start_s"] += t1 - t0 - (prof["prefix_decode_s"] - prefix_before)
        if self.compact:
            self._compact()
            prof["compact_s"] += clock() - t1
        active = [s for s in self.slots if s.request is not None]
        if not active:
            self._step_end = None  # idle: the time until the next request is not the caller's work
            return finished
        t1 = clock()
        # Generation tokens first (one each), then prompt chunks fill the rest of n_batch.
        # check_settings keeps parallel <= n_batch, so the generation tokens always fit.
        budget = self.n_batch - sum(1 for s in active if s.next_token is not None)
        plan: list[tuple[_Slot, list[int]]] = []
        for s in active:  # slots are in seq-id order: llama.cpp batches consecutive seqs best
            if s.next_token is not None:
                # Forced tokens (steering's key sentence) ride along as far as the batch has room.
                extra = s.forced[: max(0, budget)]
                budget -= len(extra)
                del s.forced[: len(extra)]
                plan.append((s, [s.next_token, *extra]))
            elif s.feed and budget > 0:
                take = s.feed[:budget]
                budget -= len(take)
                plan.append((s, take))
        b = self.batch
        n = 0
        for s, toks in plan:
            for j, t in enumerate(toks):
                b.token[n], b.pos[n], b.n_seq_id[n] = t, s.pos + j, 1
                b.seq_id[n][0] = s.seq
                last = j == len(toks) - 1 and (s.next_token is not None or len(toks) == len(s.feed))
                b.logits[n] = last
                if last:
                    s.out_index = n
                n += 1
        b.n_tokens = n
        t2 = clock()
        rc = ll.llama_decode(self.ctx, b)
        t3 = clock()
        prof["fill_s"] += t2 - t1
        prof["decode_s"] += t3 - t2
        prof["steps"] += 1
        if all(s.next_token is not None for s, _ in plan):  # generation only: comparable to llama-batched-bench's tg
            prof["gen_only_decode_s"] += t3 - t2
            prof["gen_only_steps"] += 1
        prof["ubatches"] += _count_ubatches([(s.seq, len(toks)) for s, toks in plan], self.n_ubatch)
        self.stats.decode_seconds += t3 - t2
        self.stats.decode_calls += 1
        if rc != 0:
            raise ModelError(f"llama_decode failed with code {rc}", f"lower --parallel ({self.parallel}) or raise --n-ctx")
        sample_s = finish_s = 0.0
        for s, toks in plan:
            s.pos += len(toks)
            if s.next_token is not None:
                s.generated += toks
                s.next_token = None
                self.stats.generated_tokens += len(toks)
                prof["gen_tokens"] += len(toks)
                if s.forced:  # the rest of a forced run goes in the next decode, nothing sampled
                    s.next_token = s.forced.pop(0)
                    continue
            else:
                del s.feed[: len(toks)]
                self.stats.prompt_tokens_evaluated += len(toks)
                prof["prompt_tokens"] += len(toks)
                if s.feed:
                    continue
            req = s.request
            ts = clock()
            if req.keep_logits:
                s.logits.append(self._logits_row(s.out_index))
            if s.steering is not None:
                s.steering.adjust(np.ctypeslib.as_array(ll.llama_get_logits_ith(self.ctx, s.out_index), shape=(self.n_vocab,)))
            tok = ll.llama_sampler_sample(s.sampler, self.ctx, s.out_index)
            tf = clock()
            sample_s += tf - ts
            is_eog = bool(ll.llama_vocab_is_eog(self.vocab, tok))
            if s.steering is not None:
                forced, cut, stop = s.steering.after(tok, self._piece(tok), is_eog)
                if cut or stop:  # like an end-of-generation token: `tok` is dropped, never decoded
                    finished.append(self._finish(s, truncated=False, cut=cut))
                    finish_s += clock() - tf
                    continue
                if forced and len(s.generated) + len(forced) + 1 < req.max_tokens and s.pos + len(forced) + 1 < self.n_ctx_seq:
                    for t in forced:  # penalties and DRY see the inserted text as written
                        ll.llama_sampler_accept(s.sampler, t)
                    s.n_forced += len(forced)
                    if is_eog:  # the sentence goes where the model wanted to stop
                        s.next_token, s.forced = forced[0], forced[1:]
                    else:
                        s.next_token, s.forced = tok, list(forced)
                    continue
            if is_eog:
                finished.append(self._finish(s, truncated=False))
                finish_s += clock() - tf
            elif len(s.generated) + 1 >= req.max_tokens or s.pos >= self.n_ctx_seq:
                s.generated.append(tok)  # sampled but never decoded: still part of the text
                self.stats.generated_tokens += 1
                finished.append(self._finish(s, truncated=True))
                finish_s += clock() - tf
            else:
                s.next_token = tok
        prof["sample_s"] += sample_s
        prof["finish_s"] += finish_s
        self._step_end = clock() if self.busy() or finished else None
        return finished

    def _compact(self) -> None:
        """Move the highest busy sequences down into empty slots below them (compact=True).

        With split KV llama.cpp runs one graph compute per run of consecutive sequence ids, so
        a gap costs a second pass over the weights every step. A move copies the sequence's
        whole KV stream (llama.cpp applies it before the next decode) and the slot's state; a
        parked conversation's slot is never a target, its next turn looks for it there."""
        ll = _lib()
        busy = [s for s in self.slots if s.request is not None]
        if not busy:
            return
        holes = [s for s in self.slots[: busy[-1].seq] if s.request is None and s.session is None]
        while holes and busy and holes[0].seq < busy[-1].seq:
            dst, src = holes.pop(0), busy.pop()
            ll.llama_memory_seq_rm(self.mem, dst.seq, -1, -1)
            ll.llama_memory_seq_cp(self.mem, src.seq, dst.seq, -1, -1)
            ll.llama_memory_seq_rm(self.mem, src.seq, -1, -1)
            for name in _Slot.__slots__:
                if name != "seq":
                    a, b = getattr(src, name), getattr(dst, name)
                    setattr(dst, name, a)
                    setattr(src, name, b)
            src.pos, src.session, src.kv = 0, None, []
            self.profile["slot_moves"] += 1

    def _start(self, slot: _Slot, req: Request) -> Result | None:
        ll = _lib()
        kept = 0
        if req.session is not None and slot.session == req.session and slot.kv:
            head = self._kv_text(slot.kv)
            if len(req.prompt) > len(head) and req.prompt.startswith(head):
                # The prompt goes on from the KV's text (a conversation's next turn): keep it
                # all and tokenize only the new text. The model then reads its answer in the
                # tokens it wrote, which may not be how the tokenizer would split that text.
                tokens = slot.kv + self.tokenize(req.prompt[len(head):], add_special=False)
                kept = len(slot.kv)
            else:
                # E.g. a retry: keep the common start (at least one token is left to decode,
                # for logits) and roll the rest, the rejected answer, back.
                tokens = self.tokenize(req.prompt)
                kept = _common(slot.kv, tokens[:-1])
        else:
            tokens = self.tokenize(req.prompt)
        if len(tokens) + 1 > self.n_ctx_seq:
            self._clear(slot)
            return Result(req, "", 0, len(tokens), truncated=False, error=f"prompt: {len(tokens)} tokens, context {self.n_ctx_seq}")
        shared = self._shared_tokens(req.prefix, tokens) if req.prefix else []
        reused = copied = 0
        if kept and kept >= len(shared):
            ll.llama_memory_seq_rm(self.mem, slot.seq, kept, -1)
            reused = kept
        else:
            self._clear(slot)
            if len(shared) >= 2 and self.prefix_slots:
                prefix = self._prefix(shared)
                ll.llama_memory_seq_cp(self.mem, prefix.seq, slot.seq, -1, -1)
                reused = copied = len(shared)
        slot.session, slot.kv = req.session, []
        slot.steering = (Steering.compile(req.steer, self.tokenize, self.eog_tokens(), self._steer_cache, self._vocab_pieces())
                         if req.steer is not None and req.steer.config.any() else None)
        slot.forced, slot.n_forced = [], 0
        slot.request, slot.sampler = req, self._sampler(req)
        slot.feed, slot.pos, slot.prompt_tokens, slot.reused = tokens[reused:], reused, len(tokens), reused
        slot.generated, slot.next_token, slot.prompt, slot.logits = [], None, tokens, []
        self.stats.prompt_tokens_reused += reused
        self.stats.prefix_tokens_reused += copied
        self.stats.requests_started += 1
        return None

    def _kv_text(self, kv: list[int]) -> str:
        """The prompt text a KV token list spells (without the BOS the tokenizer adds)."""
        if self.add_bos and kv and kv[0] == _lib().llama_vocab_bos(self.vocab):
            kv = kv[1:]
        return self.detokenize(kv, special=True)

    def _clear(self, slot: _Slot) -> None:
        """Empty a slot's KV sequence and forget whose conversation it held."""
        _lib().llama_memory_seq_rm(self.mem, slot.seq, -1, -1)
        slot.session, slot.kv, slot.pos = None, [], 0

    def _shared_tokens(self, text: str, tokens: list[int]) -> list[int]:
        """The tokens of a shared prefix `text` that the prompt `tokens` really starts with."""
        ptoks = self._prefix_tokens.get(text)
        if ptoks is None:  # every request of a stage shares one prefix text: tokenize it once
            ptoks = self._prefix_tokens[text] = self.tokenize(text)
        # BPE may merge across the prefix/suffix boundary: keep only what the full prompt
        # really starts with, and leave at least one token to decode for logits.
        return ptoks[: _common(ptoks, tokens[:-1])]

    def _prefix(self, ptoks: list[int]) -> _Prefix:
        """The cached KV sequence holding `ptoks`, evaluating it the first time."""
        ll = _lib()
        self._clock += 1
        key = tuple(ptoks)
        hit = self.prefixes.get(key)
        if hit is not None:
            hit.last_used = self._clock
            return hit
        used = {p.seq for p in self.prefixes.values()}
        free = [self.parallel + i for i in range(self.prefix_slots) if self.parallel + i not in used]
        if free:
            seq = free[0]
        else:  # evict the least recently used prefix
            old_key = min(self.prefixes, key=lambda k: self.prefixes[k].last_used)
            seq = self.prefixes.pop(old_key).seq
        ll.llama_memory_seq_rm(self.mem, seq, -1, -1)
        t0 = time.perf_counter()
        self._decode_alone(seq, ptoks)
        self.profile["prefix_decode_s"] += time.perf_counter() - t0
        self.stats.prompt_tokens_evaluated += len(ptoks)
        self.stats.prefix_evaluations += 1
        entry = _Prefix(seq, ptoks, self._clock)
        self.prefixes[key] = entry
        return entry

    def _decode_alone(self, seq: int, tokens: list[int], start: int = 0, logits: str = "none") -> list[np.ndarray]:
        """Decode one sequence's tokens from position `start` in n_batch chunks; logits none|last|all."""
        ll = _lib()
        b, rows = self.batch, []
        for c0 in range(0, len(tokens), self.n_batch):
            chunk = tokens[c0 : c0 + self.n_batch]
            for j, t in enumerate(chunk):
                b.token[j], b.pos[j], b.n_seq_id[j] = t, start + c0 + j, 1
                b.seq_id[j][0] = seq
                b.logits[j] = logits == "all" or (logits == "last" and c0 + j == len(tokens) - 1)
            b.n_tokens = len(chunk)
            t0 = time.perf_counter()
            rc = ll.llama_decode(self.ctx, b)
            self.stats.decode_seconds += time.perf_counter() - t0
            if rc != 0:
                raise ModelError(f"llama_decode failed with code {rc}", "raise --n-ctx")
            wanted = range(len(chunk)) if logits == "all" else [len(chunk) - 1] if logits == "last" and c0 + len(chunk) == len(tokens) else []
            rows += [self._logits_row(j) for j in wanted]
        return rows

    def _logits_row(self, index: int) -> np.ndarray:
        ptr = _lib().llama_get_logits_ith(self.ctx, index)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()

    def check_grammar(self, grammar: str) -> None:
        """Raise ModelError for a GBNF text llama.cpp cannot parse (it returns no sampler; we never
        pass that on). submit() calls it; a recipe's grammar can be checked before a build starts."""
        if grammar in self._grammars_ok:
            return
        ll = _lib()
        g = ll.llama_sampler_init_grammar(self.vocab, grammar.encode("utf-8"), b"root")
        if not g:
            first = grammar.strip().splitlines()[0][:60] if grammar.strip() else ""
            raise ModelError(f"llama.cpp cannot parse the request's GBNF grammar ({first!r} ...)",
                             'fix its syntax; it must define the rule `root`, e.g. root ::= "yes" | "no"')
        ll.llama_sampler_free(g)
        self._grammars_ok.add(grammar)

    def _sampler(self, req: Request):
        ll = _lib()
        p = req.sampling or self.sampling
        chain = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())
        add = lambda smpl: ll.llama_sampler_chain_add(chain, smpl)  # noqa: E731
        if req.grammar:
            # First in the chain: every later sampler (top_k first of all) then only ever sees
            # tokens the grammar allows, so it can never be left with only forbidden ones; the
            # grammar's accept() would throw on such a token, and a C++ throw kills the process.
            self.check_grammar(req.grammar)
            add(ll.llama_sampler_init_grammar(self.vocab, req.grammar.encode("utf-8"), b"root"))
        if p.ignore_eos and not req.grammar:
            # A grammar ends its answer with an end-of-generation token once it is complete
            # (then the only token it allows), so masking EOG would leave no token at all.
            eog = self.eog_tokens()
            biases = (ll.llama_logit_bias * len(eog))(*[ll.llama_logit_bias(t, float("-inf")) for t in eog])
            add(ll.llama_sampler_init_logit_bias(self.n_vocab, len(eog), biases))
        # top_k first: every later sampler then works on k candidates instead of the whole
        # vocabulary (a full-vocab top_p sort cost ~5 ms per token at 49k tokens, more than
        # the batched decode itself). Penalties after it for the same reason.
        if p.top_k > 0:
            add(ll.llama_sampler_init_top_k(p.top_k))
        if p.repeat_penalty != 1.0:
            add(ll.llama_sampler_init_penalties(self.n_vocab, p.repeat_last_n, p.repeat_penalty, 0.0, 0.0))
        if p.dry_multiplier > 0:
            # llama.cpp's default sequence breakers: a repeat never spans a line, quote or colon.
            breakers = [b"\n", b":", b'"', b"*"]
            arr = (ctypes.c_char_p * len(breakers))(*breakers)
            add(ll.llama_sampler_init_dry(self.vocab, p.dry_multiplier, p.dry_base, p.dry_allowed_length,
                                          p.dry_last_n, arr, len(breakers)))
        if p.temperature <= 0:
            add(ll.llama_sampler_init_greedy())
            return chain
        add(ll.llama_sampler_init_top_p(p.top_p, 1))
        add(ll.llama_sampler_init_min_p(p.min_p, 1))
        add(ll.llama_sampler_init_temp(p.temperature))
        add(ll.llama_sampler_init_dist(req.seed & 0xFFFFFFFF))
        return chain

    def _vocab_pieces(self) -> Pieces:
        """What steering reads of the vocabulary (once: ~49k token_to_piece calls)."""
        if self._pieces_table is None:
            self._pieces_table = Pieces.of((t, self._piece(t)) for t in range(self.n_vocab))
        return self._pieces_table

    def _piece(self, token: int) -> str:
        """The text of one token as it follows others (cached: steering reads every one)."""
        piece = self._pieces.get(token)
        if piece is None:
            buf = ctypes.create_string_buffer(64)
            n = _lib().llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False)
            piece = self._pieces[token] = buf.raw[: max(0, n)].decode("utf-8", errors="replace")
        return piece

    def _finish(self, slot: _Slot, truncated: bool, cut: str | None = None) -> Result:
        ll = _lib()
        req = slot.request
        res = Result(req, self.detokenize(slot.generated), len(slot.generated), slot.prompt_tokens, truncated, None, slot.reused,
                     tokens=slot.prompt + slot.generated, logits=np.stack(slot.logits) if slot.logits else None,
                     cut=cut, forced_tokens=slot.n_forced)
        ll.llama_sampler_free(slot.sampler)
        if req.session is not None:  # park: the session's next turn continues this KV
            decoded = slot.generated[:-1] if truncated else slot.generated  # the last sampled token of a cut-off answer was never decoded
            slot.kv = slot.prompt + decoded
            self._clock += 1
            slot.parked = self._clock
        else:
            self._clear(slot)
        slot.request, slot.sampler, slot.feed, slot.generated, slot.next_token = None, None, [], [], None
        slot.steering, slot.forced = None, []
        self.stats.requests_finished += 1
        return res

    # ----- checks and teardown ---------------------------------------------------------

    def sequence_logits(self, tokens: list[int]) -> np.ndarray:
        """Teacher-forced logits at every position of `tokens`, run alone on one sequence."""
        if self.busy():
            raise RuntimeError("sequence_logits needs an idle engine")
        self._clear(self.slots[0])
        seq = self.slots[0].seq
        rows = self._decode_alone(seq, tokens, logits="all")
        self._clear(self.slots[0])
        return np.stack(rows)

    def prompt_logits(self, prompt: str, prefix: str = "") -> np.ndarray:
        """Logits after the last prompt token, through the same prefix path as a request."""
        if self.busy():
            raise RuntimeError("prompt_logits needs an idle engine")
        req = Request(prompt=prompt, max_tokens=1, seed=0, prefix=prefix, sampling=SamplingParams(temperature=0))
        slot = self.slots[0]
        err = self._start(slot, req)
        if err:
            raise ModelError(err.error or "prompt does not fit", "raise --n-ctx")
        [row] = self._decode_alone(slot.seq, slot.feed, slot.pos, logits="last")
        self._finish(slot, truncated=False)
        return row

    def close(self) -> None:
        ll = _lib()
        if getattr(self, "ctx", None):
            for s in self.slots:
                if s.sampler:
                    ll.llama_sampler_free(s.sampler)
            ll.llama_batch_free(self.batch)
            ll.llama_free(self.ctx)
            self.ctx = None
        if getattr(self, "model", None):
            ll.llama_model_free(self.model)
            self.model = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass


def _count_ubatches(runs: list[tuple[int, int]], n_ubatch: int) -> int:
    """How many graph computes llama.cpp's split_equal makes of a batch of (seq id, n tokens)
    runs in increasing seq order: each micro-batch takes one run of consecutive ids that still
    have tokens, the same number from each, at most n_ubatch in all."""
    seqs = [q for q, _ in runs]
    left = [k for _, k in runs]
    count = 0
    while True:
        chosen, last = [], None
        for i, q in enumerate(seqs):
            if left[i] and (last is None or q == last + 1):
                chosen.append(i)
                last = q
        if not chosen:
            return count
        each = max(1, min(min(left[i] for i in chosen), n_ubatch // len(chosen)))
        for i in chosen:
            left[i] -= each
        count += 1


def _common(a: list[int], b: list[int]) -> int:
    """Length of the common start of two token lists."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def available_memory() -> int | None:
    """MemAvailable from /proc/meminfo in bytes (None where there is no /proc)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def check_fits(need: int, parallel: int, n_ctx: int) -> None:
    """Refuse a size the machine cannot hold, before llama.cpp allocates it."""
    have = available_memory()
    if have is not None and need > 0.9 * have:
        raise ModelError(
            f"--parallel {parallel} with --n-ctx {n_ctx} needs about {need / 2**30:.1f} GiB, "
            f"only {have / 2**30:.1f} GiB is free",
            "lower --parallel or --n-ctx",
        )
