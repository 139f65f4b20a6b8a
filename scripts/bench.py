"""Throughput benchmark: the corpusforge engine against llama.cpp's own llama-server and roof.

Both systems get the same plans, fully formatted prompts, sampling settings and token budgets
(EOS is masked so every request generates exactly its budget). Rounds alternate the order of
the systems; each round also measures llama.cpp's roof (llama-batched-bench at the same B with
a story's prompt/answer shape). Build the tools first: `bash scripts/build_llama_tools.sh`.
Writes bench/results.json.

    python scripts/bench.py                              # 64 stories, 3 rounds, --parallel 32
    python scripts/bench.py --stories 8 --rounds 1       # smoke run
    python scripts/bench.py --variant compact:compact=1 --variant q8k:type_k=q8_0   # levers, same rounds
    python scripts/bench.py --sweep 48,64,96 --naive     # more parallel counts; the naive loop as a reference row
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import queue
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import traceback
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from corpusforge import checks  # noqa: E402
from corpusforge.chain import Chain, as_said  # noqa: E402
from corpusforge.checks import CHECKS  # noqa: E402
from corpusforge.config import DEFAULT_PARALLEL  # noqa: E402
from corpusforge.engine.base import Request, SamplingParams  # noqa: E402
from corpusforge.recipes import load_recipe  # noqa: E402
from corpusforge.sampler import plan, stage_seed  # noqa: E402
from corpusforge.vocab import load_vocab  # noqa: E402

SCRATCH = ROOT / "bench" / "scratch"
BUDGET = {"summary": 64, "key_sentence": 32, "story": 256}
SAMPLING = SamplingParams(ignore_eos=True)  # same lengths on both sides (random weights)
ENGINE_OPTIONS = {"type_k": str, "n_ubatch": int, "compact": lambda v: v not in ("0", "false", "no"), "n_batch": int, "parallel": int}


# ----- shared setup ------------------------------------------------------------------------

def make_model(path: Path, shape: str, quant: str) -> Path:
    from corpusforge.engine.tiny import make_tiny_model

    if not path.exists():
        make_tiny_model(path, shape=shape, quant=quant)
    return path


def workload(recipe_name: str, budget: dict, stories: int, seed: int):
    vocab = load_vocab()
    recipe = load_recipe(recipe_name).with_max_tokens(budget)
    return vocab, recipe, [plan(vocab, seed, i) for i in range(stories)]


def formatter(model: Path):
    """An engine used only to format and count prompts (the model's chat template; no context)."""
    from corpusforge.engine.llamacpp import LlamaEngine

    return LlamaEngine(model, parallel=1, n_threads=1, prefix_slots=0)


def context_per_sequence(engine, chain: Chain, plans, recipe) -> int:
    """Tokens one sequence needs (the longest stage at full budgets), rounded like LlamaEngine.start."""
    need = max(len(engine.tokenize(chain.prompt(plans[0], i, {s.name: " word" * s.max_tokens for s in recipe.stages[:i]})))
               + st.max_tokens for i, st in enumerate(recipe.stages))
    return -(-(need + 64) // 256) * 256


def story_shape(engine, chain: Chain, plans, recipe) -> tuple[int, int]:
    """(prompt, answer) tokens of a story laid out as one prompt and one answer: the final turn's
    prompt without the earlier answers in it, and all the budgets. Same final context as a story."""
    earlier = {s.name: " word" * s.max_tokens for s in recipe.stages[:-1]}
    last = len(recipe.stages) - 1
    prompt = [len(engine.tokenize(chain.prompt(p, last, earlier))) for p in plans]
    ntg = sum(s.max_tokens for s in recipe.stages)
    return round(statistics.mean(prompt)) - (ntg - recipe.stages[-1].max_tokens), ntg


def peak_rss_mb(pid: int | str = "self") -> float | None:
    """The process's peak resident memory (VmHWM), MB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def _child(conn, fn, args) -> None:
    try:
        conn.send(("ok", fn(*args)))
    except BaseException as e:  # noqa: BLE001 - reported by the parent
        conn.send(("error", f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))
    finally:
        conn.close()


def in_child(fn, *args):
    """Run fn(*args) in a fresh process: each run starts cold, and its VmHWM is its own.
    An interrupted parent stops the child too (it never outlives the bench)."""
    ctx = get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, fn, args), daemon=True)
    proc.start()
    send.close()
    try:
        try:
            status, value = recv.recv()
        except EOFError:
            raise RuntimeError(f"the benchmark child died (exit code {proc.exitcode})") from None
        proc.join(60)
    finally:
        if proc.is_alive():
            proc.terminate()
        proc.join()
    if status != "ok":
        raise RuntimeError(f"benchmark child failed: {value}")
    return value


# ----- (a) the corpusforge engine ---------------------------------------------------------

def run_engine(model: str, recipe_name: str, budget: dict, stories: int, seed: int, threads: int, n_ctx: int, opts: dict) -> dict:
    """The corpusforge chain on the batched engine: all stages of all stories share batches."""
    from corpusforge.engine.llamacpp import LlamaEngine

    vocab, recipe, plans = workload(recipe_name, budget, stories, seed)
    opts = dict(opts)
    parallel = opts.pop("parallel", DEFAULT_PARALLEL)
    engine = LlamaEngine(model, parallel=parallel, n_threads=threads, sampling=SAMPLING, prefix_slots=len(recipe.stages), **opts)
    chain = Chain(engine, recipe, vocab, max_attempts=1, skip_checks=tuple(CHECKS), strict_stages=False)
    engine.start(n_ctx)
    # The chain measures each finished story (readability); its word tables load on first use
    # (~1.1 s here), which is start-up, not throughput.
    checks.measure("Warm up. The cat sat.")
    t0 = time.perf_counter()
    done = sum(1 for _ in chain.run(plans))
    seconds = time.perf_counter() - t0
    s = engine.stats
    prof = dict(s.extra["profile"])
    kv_mb = round((engine.estimate_memory(parallel, n_ctx, 0, len(recipe.stages)) - _model_size(engine)) / 2**20, 1)
    engine.close()
    assert done == len(plans)
    return {
        "parallel": parallel,
        "options": opts,
        "seconds": round(seconds, 2),
        "stories_per_hour": round(3600 * len(plans) / seconds, 1),
        "generated_tokens": s.generated_tokens,
        "prompt_tokens_evaluated": s.prompt_tokens_evaluated,
        "prompt_tokens_reused": s.prompt_tokens_reused,
        "prefix_tokens_reused": s.prefix_tokens_reused,  # copied from a shared prefix
        "session_tokens_reused": s.prompt_tokens_reused - s.prefix_tokens_reused,  # kept from a story's earlier turns
        "prefix_evaluations": s.prefix_evaluations,
        "tps": round((s.prompt_tokens_evaluated + s.generated_tokens) / seconds, 1),
        # Prompt chunks and generation share every decode, so both rates are over the wall.
        "prompt_tps_wall": round(s.prompt_tokens_evaluated / seconds, 1),
        "gen_tps_wall": round(s.generated_tokens / seconds, 1),
        "decode_calls": s.decode_calls,
        "profile": profile_summary(prof, seconds),
        "kv_cache_mb": kv_mb,
        "peak_rss_mb": peak_rss_mb(),
    }


def _model_size(engine) -> int:
    from corpusforge.engine.llamacpp import _lib

    return _lib().llama_model_size(engine.model)


def profile_summary(p: dict, wall: float) -> dict:
    """Shares of the wall time and per-step figures from the engine's counters."""
    parts = ["decode_s", "prefix_decode_s", "fill_s", "sample_s", "finish_s", "start_s", "compact_s", "caller_s"]
    share = {k.removesuffix("_s"): round(p[k] / wall, 3) for k in parts}
    share["other"] = round(1 - sum(p[k] for k in parts) / wall, 3)
    steps = max(1, p["steps"])
    return {
        "share_of_wall": share,
        "steps": p["steps"],
        "ms_per_decode": round(1000 * p["decode_s"] / steps, 2),
        # Steps that only generate, against llama-batched-bench's tg step at the same B.
        "ms_per_generation_only_decode": round(1000 * p["gen_only_decode_s"] / max(1, p["gen_only_steps"]), 2),
        "generation_only_steps": p["gen_only_steps"],
        # The rest of the decode time went to steps that also evaluated prompt tokens.
        "ms_per_prompt_token_in_mixed_steps": round(1000 * (p["decode_s"] - p["gen_only_decode_s"]
                                                            - (steps - p["gen_only_steps"]) * p["gen_only_decode_s"] / max(1, p["gen_only_steps"]))
                                                    / max(1, p["prompt_tokens"]), 2),
        "graph_computes_per_decode": round(p["ubatches"] / steps, 2),  # llama.cpp micro-batches (split_equal)
        "generating_per_decode": round(p["gen_tokens"] / steps, 2),
        "sample_us_per_token": round(1e6 * p["sample_s"] / max(1, p["gen_tokens"]), 1),
        "slot_moves": p["slot_moves"],
        "seconds": {k: round(v, 3) for k, v in p.items() if k.endswith("_s")},
    }


# ----- (b) llama-server with a concurrent client -------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """llama-server on 127.0.0.1, always stopped on exit (also on Ctrl-C: the caller's finally)."""

    def __init__(self, binary: Path, model: Path, *, parallel: int, n_ctx: int, threads: int, n_batch: int, n_ubatch: int,
                 type_k: str, unified: bool = False):
        self.port = free_port()
        self.cmd = [str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(self.port),
                    "-np", str(parallel), "-c", str(parallel * n_ctx), "-t", str(threads), "-tb", str(threads),
                    "-b", str(n_batch), "-ub", str(n_ubatch), "-ctk", type_k,
                    "-kvu" if unified else "-no-kvu", "--metrics", "--no-webui"]
        self.log = SCRATCH / "llama-server.log"
        self.proc = None

    def __enter__(self):
        self._logf = open(self.log, "w")
        self.proc = subprocess.Popen(self.cmd, stdout=self._logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            return self._wait_ready()
        except BaseException:  # `with` calls __exit__ only after __enter__ returned: stop it here (Ctrl-C too)
            self.__exit__()
            raise

    def _wait_ready(self):
        deadline = time.time() + 300
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama-server exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                status, _ = self.get("/health")
                if status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"llama-server did not come up in 300 s:\n{self.log.read_text()[-3000:]}")

    def get(self, path: str) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            return r.status, r.read().decode()
        finally:
            conn.close()

    def metrics(self) -> dict:
        status, text = self.get("/metrics")
        out = {}
        for line in text.splitlines():
            if line.startswith("llamacpp:"):
                name, _, value = line.partition(" ")
                out[name.removeprefix("llamacpp:")] = float(value)
        return out

    def peak_rss_mb(self) -> float | None:
        return peak_rss_mb(self.proc.pid)

    def run_clients(self, client, count: int) -> float:
        """`count` threads of client(port) until all return; the seconds that took. Stops early
        (raises) if the server dies under them."""
        threads = [threading.Thread(target=client, args=(self.port,), daemon=True) for _ in range(count)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.5)
                if self.proc.poll() is not None:
                    raise RuntimeError(f"llama-server died:\n{self.log.read_text()[-3000:]}")
        return time.perf_counter() - t0

    def __exit__(self, *exc):
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(15)
                except subprocess.TimeoutExpired:
                    pass
        finally:  # also when a second Ctrl-C lands in the wait above
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._logf.close()


def run_server(server_bin: Path, model: Path, fmt, recipe_name: str, budget: dict, stories: int, seed: int, threads: int,
               n_ctx: int, parallel: int, clients: int, n_batch: int, n_ubatch: int, type_k: str, unified: bool = False) -> dict:
    """The same stories through llama-server: `clients` threads, each sending one story's turns in order."""
    vocab, recipe, plans = workload(recipe_name, budget, stories, seed)
    chain = Chain(fmt, recipe, vocab, max_attempts=1, skip_checks=tuple(CHECKS), strict_stages=False)
    todo: queue.Queue = queue.Queue()
    for p in plans:
        todo.put(p)
    lock = threading.Lock()
    totals = {"prompt_tokens": 0, "prompt_tokens_evaluated": 0, "prompt_tokens_cached": 0, "generated_tokens": 0, "requests": 0}
    errors: list[BaseException] = []

    def client(port: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1800)
        try:
            while not errors:
                try:
                    p = todo.get_nowait()
                except queue.Empty:
                    return
                outputs: dict[str, str] = {}
                said: dict[str, str] = {}
                for i, stage in enumerate(recipe.stages):
                    body = {
                        "prompt": chain.prompt(p, i, outputs, said),
                        "n_predict": stage.max_tokens,
                        "cache_prompt": True,
                        "ignore_eos": True,
                        "seed": stage_seed(p.seed, p.id, i, 1) & 0xFFFFFFFF,
                        "temperature": SAMPLING.temperature,
                        "top_k": SAMPLING.top_k,
                        "top_p": SAMPLING.top_p,
                        "min_p": SAMPLING.min_p,
                        "repeat_penalty": SAMPLING.repeat_penalty,
                        "repeat_last_n": SAMPLING.repeat_last_n,
                        # The engine's chain, in its order (the server adds the EOG bias first and dist last).
                        "samplers": ["top_k", "penalties", "top_p", "min_p", "temperature"],
                        "stream": False,
                    }
                    conn.request("POST", "/completion", json.dumps(body), {"Content-Type": "application/json"})
                    r = conn.getresponse()
                    data = json.loads(r.read())
                    if r.status != 200:
                        raise RuntimeError(f"llama-server answered {r.status}: {data}")
                    raw = data["content"]
                    outputs[stage.name] = chain.parse(stage, raw)
                    said[stage.name] = as_said(raw, outputs[stage.name])
                    t = data.get("timings", {})
                    with lock:
                        totals["prompt_tokens"] += data["tokens_evaluated"]
                        totals["prompt_tokens_evaluated"] += t.get("prompt_n", 0)
                        totals["prompt_tokens_cached"] += t.get("cache_n", 0)
                        totals["generated_tokens"] += data["tokens_predicted"]
                        totals["requests"] += 1
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            errors.append(e)
        finally:
            conn.close()

    with Server(server_bin, model, parallel=parallel, n_ctx=n_ctx, threads=threads, n_batch=n_batch, n_ubatch=n_ubatch,
                type_k=type_k, unified=unified) as server:
        seconds = server.run_clients(client, clients)
        if errors:
            raise errors[0]
        metrics = server.metrics()
        rss = server.peak_rss_mb()
        cmd = server.cmd
    decodes = metrics.get("n_decode_total", 0)
    return {
        "parallel": parallel,
        "clients": clients,
        "kv": "unified" if unified else "split",
        "seconds": round(seconds, 2),
        "stories_per_hour": round(3600 * len(plans) / seconds, 1),
        "requests": totals["requests"],
        "generated_tokens": totals["generated_tokens"],
        "prompt_tokens": totals["prompt_tokens"],
        "prompt_tokens_evaluated": totals["prompt_tokens_evaluated"],  # sum of timings.prompt_n
        "prompt_tokens_cached": totals["prompt_tokens_cached"],
        "tps": round((totals["prompt_tokens_evaluated"] + totals["generated_tokens"]) / seconds, 1),
        "gen_tps_wall": round(totals["generated_tokens"] / seconds, 1),
        "decode_calls": int(decodes),
        "ms_per_decode_wall": round(1000 * seconds / decodes, 2) if decodes else None,
        "busy_slots_per_decode": round(metrics.get("n_busy_slots_per_decode", 0), 2),
        "peak_rss_mb": rss,
        "command": " ".join(cmd[1:]),
    }


# ----- (c) llama.cpp's roof: llama-batched-bench ------------------------------------------

def run_batched_bench(binary: Path, model: Path, parallels: list[int], threads: int, npp: int, ntg: int,
                      n_batch: int = 512, n_ubatch: int = 512, type_k: str = "f16") -> dict[int, dict]:
    """llama-batched-bench rows {B: {pp_tps, tg_tps}} for B in `parallels`, split KV like the engine."""
    per_seq = -(-(npp + ntg + 1) // 256) * 256
    cmd = [str(binary), "-m", str(model), "-c", str(max(parallels) * per_seq), "-b", str(n_batch), "-ub", str(n_ubatch),
           "-npp", str(npp), "-ntg", str(ntg), "-npl", ",".join(map(str, parallels)), "-t", str(threads), "-tb", str(threads),
           "-ctk", type_k, "--output-format", "jsonl"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    rows = {}
    for line in (proc.stdout + proc.stderr).splitlines():
        line = line.strip()
        if line.startswith("{") and "speed_tg" in line:
            r = json.loads(line)
            rows[r["pl"]] = {"pp_tps": round(r["speed_pp"], 2), "tg_tps": round(r["speed_tg"], 2), "seconds": round(r["t"], 2)}
    if set(parallels) - set(rows):
        raise RuntimeError(f"llama-batched-bench printed no result for {parallels}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return {b: {**row, "command": " ".join(cmd[1:])} for b, row in rows.items()}


def roof(lbb: dict, prompt_tokens: int, generated_tokens: int) -> float:
    """llama.cpp's tokens/s for a token mix: every prompt token at its pp rate, every generated one at its tg rate."""
    return (prompt_tokens + generated_tokens) / (prompt_tokens / lbb["pp_tps"] + generated_tokens / lbb["tg_tps"])


# ----- (d) reference rows: the naive loop, generation only ----------------------------------

def run_naive(model: str, recipe_name: str, budget: dict, stories: int, seed: int, threads: int) -> dict:
    """One high-level create_completion per stage per story, one after another."""
    from llama_cpp import Llama, llama_perf_context

    vocab, recipe, plans = workload(recipe_name, budget, stories, seed)
    fmt = formatter(Path(model))
    chain = Chain(fmt, recipe, vocab)
    eog = fmt.eog_tokens()
    llm = Llama(model_path=model, n_ctx=2048, n_batch=512, n_threads=threads, n_threads_batch=threads, verbose=False)
    prompt_tokens = completion_tokens = 0
    t0 = time.perf_counter()
    for p in plans:
        outputs: dict[str, str] = {}
        said: dict[str, str] = {}
        for i, stage in enumerate(recipe.stages):
            res = llm.create_completion(
                chain.prompt(p, i, outputs, said), max_tokens=stage.max_tokens, temperature=SAMPLING.temperature,
                top_p=SAMPLING.top_p, min_p=SAMPLING.min_p, top_k=SAMPLING.top_k, repeat_penalty=SAMPLING.repeat_penalty,
                seed=stage_seed(p.seed, p.id, i, 1), logit_bias={t: float("-inf") for t in eog},
            )
            raw = res["choices"][0]["text"]
            outputs[stage.name] = chain.parse(stage, raw)
            said[stage.name] = as_said(raw, outputs[stage.name])
            prompt_tokens += res["usage"]["prompt_tokens"]
            completion_tokens += res["usage"]["completion_tokens"]
    seconds = time.perf_counter() - t0
    # Llama reuses the common start of consecutive prompts: fewer prompt tokens evaluated than sent.
    perf = llama_perf_context(llm._ctx.ctx)
    llm.close()
    fmt.close()
    return {
        "seconds": round(seconds, 2),
        "stories_per_hour": round(3600 * len(plans) / seconds, 1),
        "prompt_tokens": prompt_tokens,
        "generated_tokens": completion_tokens,
        "prompt_tokens_evaluated": perf.n_p_eval,
        "gen_tps_wall": round(completion_tokens / seconds, 1),
        "peak_rss_mb": peak_rss_mb(),
    }


def engine_generation_rate(model: str, parallel: int, threads: int, npp: int, ntg: int) -> dict:
    """Pure generation tok/s of the engine at B=parallel, measured like llama-batched-bench's S_TG."""
    from corpusforge.engine.llamacpp import LlamaEngine

    with LlamaEngine(model, parallel=parallel, n_ctx=npp + ntg + 16, n_threads=threads, sampling=SAMPLING, prefix_slots=0) as e:
        vocab = load_vocab()
        for i in range(parallel):
            words = " ".join(vocab.nouns[(i * 37 + k) % len(vocab.nouns)] for k in range(npp * 2))
            e.submit(Request(prompt=e.detokenize(e.tokenize(words)[:npp]), max_tokens=ntg, seed=i))
        while any(s.feed for s in e.slots) or e.waiting:  # prompt phase
            e.step()
        g0, t0 = e.stats.generated_tokens, time.perf_counter()
        while e.busy():
            e.step()
        seconds = time.perf_counter() - t0
        return {"gen_tps": round((e.stats.generated_tokens - g0) / seconds, 1), "seconds": round(seconds, 2)}


# ----- report --------------------------------------------------------------------------------

def machine() -> str:
    cpu = "unknown CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, {platform.system()} {platform.release()}"


def spread(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 1), "min": min(values), "max": max(values), "all": values}


def parse_variant(text: str) -> tuple[str, dict]:
    """NAME:key=value,key=value -> (NAME, engine options)."""
    name, _, body = text.partition(":")
    opts = {}
    for kv in filter(None, body.split(",")):
        k, _, v = kv.partition("=")
        if k not in ENGINE_OPTIONS:
            raise SystemExit(f"--variant {text}: unknown option {k!r}; known: {', '.join(ENGINE_OPTIONS)}")
        opts[k] = ENGINE_OPTIONS[k](v)
    return name, opts


def print_profile(name: str, e: dict) -> None:
    p = e["profile"]
    share = ", ".join(f"{k} {v:.0%}" for k, v in p["share_of_wall"].items() if v)
    print(f"    profile {name}: {share}; {p['ms_per_decode']} ms/decode ({p['ms_per_generation_only_decode']} generation only, "
          f"{p['ms_per_prompt_token_in_mixed_steps']} per prompt token), {p['graph_computes_per_decode']} graph computes/decode, "
          f"{p['generating_per_decode']} generating/decode, sampling {p['sample_us_per_token']} us/token, {p['slot_moves']} slot moves")


def _interrupt(*_) -> None:
    """A SIGTERM must also stop llama-server: raise, so every finally (Server.__exit__) runs."""
    raise KeyboardInterrupt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="GGUF to use (default: tiny-model smollm2-135m Q4_K_M in bench/scratch)")
    ap.add_argument("--stories", type=int, default=64)
    ap.add_argument("--recipe", default="tinystories-instruct", help="recipe name or folder (budgets apply by stage name)")
    ap.add_argument("--parallel", type=int, default=DEFAULT_PARALLEL)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget", default=",".join(f"{k}={v}" for k, v in BUDGET.items()))
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of engine, llama-server and roof")
    ap.add_argument("--n-batch", type=int, default=512, help="engine and server")
    ap.add_argument("--n-ubatch", type=int, default=None, help="engine and server (default: n_batch)")
    ap.add_argument("--type-k", default="f16", help="K cache type, engine and server: f16 or q8_0")
    ap.add_argument("--compact", action="store_true", help="engine: keep generating sequence ids in one run")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME:key=val,...",
                    help=f"an extra engine row in every round with other options ({', '.join(ENGINE_OPTIONS)})")
    ap.add_argument("--sweep", default="", help="extra engine parallel counts as variants, e.g. 48,64,96")
    ap.add_argument("--server", type=Path, default=SCRATCH / "llama-server")
    ap.add_argument("--server-clients", type=int, default=None, help="concurrent client threads (default: --parallel)")
    ap.add_argument("--server-unified", action="store_true", help="also run llama-server -kvu each round")
    ap.add_argument("--batched-bench", type=Path, default=SCRATCH / "llama-batched-bench")
    ap.add_argument("--naive", action="store_true", help="add the naive create_completion loop as a reference row (once)")
    ap.add_argument("--gen-rounds", type=int, default=2, help="generation-only rounds: engine vs llama-batched-bench at 200/128")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    args = ap.parse_args()

    signal.signal(signal.SIGTERM, _interrupt)
    SCRATCH.mkdir(parents=True, exist_ok=True)
    model = args.model or make_model(SCRATCH / "smollm2-135m-Q4_K_M.gguf", "smollm2-135m", "Q4_K_M")
    budget = {k: int(v) for k, v in (kv.split("=") for kv in args.budget.split(","))}
    n_ubatch = args.n_ubatch or args.n_batch
    base = {"parallel": args.parallel, "n_batch": args.n_batch, "type_k": args.type_k, "compact": args.compact}
    if args.n_ubatch:
        base["n_ubatch"] = args.n_ubatch
    variants = dict(parse_variant(v) for v in args.variant)
    for p in filter(None, args.sweep.split(",")):
        variants[f"P{p}"] = {"parallel": int(p)}
    have_server, have_lbb = args.server.exists(), args.batched_bench.exists()
    if not have_server or not have_lbb:
        print("llama-server / llama-batched-bench not built: run `bash scripts/build_llama_tools.sh` (engine rows only)")

    vocab, recipe, plans = workload(args.recipe, budget, args.stories, args.seed)
    fmt = formatter(model)
    chain = Chain(fmt, recipe, vocab)
    n_ctx = context_per_sequence(fmt, chain, plans, recipe)
    npp, ntg = story_shape(fmt, chain, plans, recipe)
    common = (str(model), args.recipe, budget, args.stories, args.seed, args.threads, n_ctx)
    print(f"machine: {machine()}\nmodel: {model.name}, recipe {recipe.name}, {args.stories} stories, budgets {budget}, "
          f"threads {args.threads}, context {n_ctx}/sequence, story shape pp {npp} tg {ntg}")

    rounds = []
    for r in range(args.rounds):
        row: dict = {"round": r + 1, "order": "engine first" if r % 2 == 0 else "server first"}

        def engine_rows():
            # The base engine and its variants, in reverse order every other round (no order bias).
            runs = [(None, {})] + list(variants.items())
            for name, opts in (runs if r % 2 == 0 else runs[::-1]):
                e = in_child(run_engine, *common, {**base, **opts})
                if name is None:
                    row["engine"] = e
                else:
                    row.setdefault("variants", {})[name] = e
                print(f"  round {r + 1} engine{' ' + name if name else ''}: {e['stories_per_hour']:.0f} stories/h, "
                      f"{e['tps']:.0f} tok/s (prompt evaluated + generated), peak RSS {e['peak_rss_mb']} MB")
                print_profile(name or "engine", e)

        def server_rows():
            if not have_server:
                return
            clients = args.server_clients or args.parallel
            for unified in ([False, True] if args.server_unified else [False]):
                key = "llama_server_kvu" if unified else "llama_server"
                row[key] = run_server(args.server, model, fmt, args.recipe, budget, args.stories, args.seed, args.threads, n_ctx,
                                      args.parallel, clients, args.n_batch, n_ubatch, args.type_k, unified)
                s = row[key]
                print(f"  round {r + 1} {key}: {s['stories_per_hour']:.0f} stories/h, {s['tps']:.0f} tok/s, "
                      f"{s['busy_slots_per_decode']} busy slots/decode, {s['ms_per_decode_wall']} ms/decode over wall, peak RSS {s['peak_rss_mb']} MB")

        for part in ((engine_rows, server_rows) if r % 2 == 0 else (server_rows, engine_rows)):
            part()
        if have_lbb:
            row["roof"] = run_batched_bench(args.batched_bench, model, [args.parallel], args.threads, npp, ntg,
                                            args.n_batch, n_ubatch, args.type_k)[args.parallel]
            e = row["engine"]
            row["roof_tps"] = round(roof(row["roof"], e["prompt_tokens_evaluated"], e["generated_tokens"]), 1)
            row["roof_fraction"] = round(e["tps"] / row["roof_tps"], 3)
            print(f"  round {r + 1} roof (llama-batched-bench B={args.parallel}, pp {npp}, tg {ntg}): pp {row['roof']['pp_tps']} tok/s, "
                  f"tg {row['roof']['tg_tps']} tok/s -> {row['roof_tps']} tok/s for the engine's mix; engine at {row['roof_fraction']:.0%}")
        if "llama_server" in row:
            row["ratio_vs_llama_server"] = round(row["engine"]["stories_per_hour"] / row["llama_server"]["stories_per_hour"], 3)
        rounds.append(row)

    naive = in_child(run_naive, str(model), args.recipe, budget, args.stories, args.seed, args.threads) if args.naive else None
    if naive:
        print(f"naive loop: {naive['stories_per_hour']:.0f} stories/h, peak RSS {naive['peak_rss_mb']} MB")
    gens, lbbs = [], []
    for _ in range(args.gen_rounds):
        gens.append(in_child(engine_generation_rate, str(model), args.parallel, args.threads, 200, 128))
        if have_lbb:
            lbbs.append(run_batched_bench(args.batched_bench, model, [1, args.parallel], args.threads, 200, 128))
    fmt.close()

    eng = spread([x["engine"]["stories_per_hour"] for x in rounds])
    srv = spread([x["llama_server"]["stories_per_hour"] for x in rounds]) if have_server else None
    med = lambda key, sub: round(statistics.median(x[key][sub] for x in rounds), 1) if all(key in x for x in rounds) else None  # noqa: E731
    results = {
        "machine": machine(),
        "model": model.name,
        "recipe": recipe.name,
        "stories": args.stories,
        "budgets": budget,
        "threads": args.threads,
        "parallel": args.parallel,
        "engine_options": base,
        "context_per_sequence": n_ctx,
        "stories_per_hour_engine": eng["median"],
        "stories_per_hour_llama_server": srv["median"] if srv else None,
        "spread": {"engine": eng, "llama_server": srv},
        "ratio_vs_llama_server": round(eng["median"] / srv["median"], 3) if srv else None,
        "ratio_per_round": [x.get("ratio_vs_llama_server") for x in rounds],
        # Roof: llama-batched-bench at B=parallel with a story's shape (pp = the story's prompt
        # without earlier answers, tg = all budgets), applied to the engine's own token mix.
        "story_shape": {"npp": npp, "ntg": ntg},
        "roof_tps": round(statistics.median(x["roof_tps"] for x in rounds), 1) if have_lbb else None,
        "engine_tps": med("engine", "tps"),
        "roof_fraction": round(statistics.median(x["roof_fraction"] for x in rounds), 3) if have_lbb else None,
        "prompt_tokens_evaluated": {"engine": med("engine", "prompt_tokens_evaluated"), "llama_server": med("llama_server", "prompt_tokens_evaluated")},
        "generated_tokens": {"engine": med("engine", "generated_tokens"), "llama_server": med("llama_server", "generated_tokens")},
        "peak_rss_mb": {"engine": med("engine", "peak_rss_mb"), "llama_server": med("llama_server", "peak_rss_mb")},
        "variants": {name: {"options": {**base, **variants[name]},
                            **spread([x["variants"][name]["stories_per_hour"] for x in rounds]),
                            "ratio_vs_engine": round(statistics.median(x["variants"][name]["stories_per_hour"] / x["engine"]["stories_per_hour"] for x in rounds), 3),
                            "peak_rss_mb": statistics.median(x["variants"][name]["peak_rss_mb"] for x in rounds),
                            "kv_cache_mb": rounds[0]["variants"][name]["kv_cache_mb"]}
                     for name in variants},
        "stories_per_hour_naive": naive["stories_per_hour"] if naive else None,
        "naive": naive,
        "generation_only": {
            "npp": 200, "ntg": 128,
            "engine_rounds": [g["gen_tps"] for g in gens],
            "llama_batched_bench_rounds": [x[args.parallel]["tg_tps"] for x in lbbs],
            "llama_batched_bench_single_rounds": [x[1]["tg_tps"] for x in lbbs],
            "ratio_of_best": round(max(g["gen_tps"] for g in gens) / max(x[args.parallel]["tg_tps"] for x in lbbs), 3) if gens and lbbs else None,
        },
        "rounds": rounds,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"wrote {args.out}")


def print_table(res: dict) -> None:
    print("\n| round | order | engine stories/h | llama-server stories/h | engine / server | roof fraction |")
    print("|---|---|---|---|---|---|")
    for x in res["rounds"]:
        s = x.get("llama_server", {}).get("stories_per_hour", "-")
        print(f"| {x['round']} | {x['order']} | {x['engine']['stories_per_hour']:.0f} | {s} | {x.get('ratio_vs_llama_server', '-')} | {x.get('roof_fraction', '-')} |")
    print(f"\nmedian: engine {res['stories_per_hour_engine']}, llama-server {res['stories_per_hour_llama_server']}, "
          f"ratio {res['ratio_vs_llama_server']}; engine {res['engine_tps']} tok/s vs roof {res['roof_tps']} ({res['roof_fraction']})")
    print(f"prompt tokens evaluated {res['prompt_tokens_evaluated']}, peak RSS MB {res['peak_rss_mb']}")
    for name, v in res["variants"].items():
        print(f"variant {name} {v['options']}: median {v['median']} stories/h ({v['ratio_vs_engine']}x engine), RSS {v['peak_rss_mb']} MB, KV {v['kv_cache_mb']} MB")


if __name__ == "__main__":
    main()
