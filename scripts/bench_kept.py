"""Kept stories per hour on a real model: `corpusforge build` against llama-server plus a checking client.

Both arms get the same plans (the build's own, `Prepared.plan`), the same formatted prompts
(each story's turns in order), the same sampler settings, at most 3 attempts retrying only the
failed stage, natural EOS, and the same verdicts (`corpusforge.checks`, the build's list).

- engine: `corpusforge build` itself (library call in a fresh process; --no-replace so both
  arms run the same plan set and kept/h is kept over wall; dedup off on both sides: 0
  duplicates in 300 kept stories of bench/quality.json). Its wall includes loading the
  model and writing parquet, the server's does not (it is up before the first request).
- llama-server: `-np` = `--parallel`, and the client a skilled user would write: one thread
  per slot, streaming /completion with `cache_prompt`, closing a stream as soon as the
  build's own mid-stream detector (engine/steer.py `Steering.after`, its cut and its
  end-at-newline) fires. Server-side options by measurement (--tune): a static `logit_bias`
  on the first token of every spelling of the required words, and the recipe's DRY setting;
  always the talk lever's one-token words banned by `logit_bias` (what of it a static bias can do).
- roof: a kept story's own tokens at llama-batched-bench's rates in the same round (prompt
  tokens at pp, generated at tg, B = --parallel): what the machine allows with no waste.

Rounds alternate the order of the arms. Writes bench/kept.json (never bench/results.json).
Build the tools first: `bash scripts/build_llama_tools.sh`.

    python scripts/bench_kept.py                          # 128 plans, 3 rounds -> bench/kept.json
    python scripts/bench_kept.py --tune 32 --rounds 0     # server options only
    python scripts/bench_kept.py --n 8 --rounds 1 --out bench/scratch/kept-smoke.json
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import re
import shutil
import signal
import statistics
import sys
import threading
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_quality import read_rows  # noqa: E402
from bench import SCRATCH, Server, in_child, machine, peak_rss_mb, run_batched_bench, spread  # noqa: E402
from corpusforge import checks  # noqa: E402
from corpusforge.build import build, prepare  # noqa: E402
from corpusforge.chain import as_said  # noqa: E402
from corpusforge.config import DEFAULT_PARALLEL, BuildConfig  # noqa: E402
from corpusforge.engine.steer import STORY_ONLY_CUTS, Steer, Steering, Talk  # noqa: E402
from corpusforge.models import pull_model, sha256_file  # noqa: E402
from corpusforge.runners.base import context_needed, make_chain  # noqa: E402
from corpusforge.sampler import stage_seed  # noqa: E402

KEPT = SCRATCH / "kept"
TUNING = KEPT / "tuning.json"  # the last --tune's rows; --tuning-from reads them back
MODEL = "smollm2-135m"
OWN_STAGES = ("summary", "key_sentence", "story")


def plan_args(ap: argparse.ArgumentParser) -> None:
    """The options every real-model build bench shares: which plans, on how many threads and sequences."""
    ap.add_argument("--n", type=int, default=128, help="plans")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--parallel", type=int, default=DEFAULT_PARALLEL)


def config_for(model: Path, n: int, seed: int, threads: int, parallel: int, out: Path, workers: int = 1) -> BuildConfig:
    """The build both arms run: the default recipe, the build's defaults, same plans (with
    --workers K: K shards, so each worker has one)."""
    return BuildConfig(n=n, model=(str(model),), out=out, seed=seed, n_threads=threads, parallel=parallel,
                       max_attempts=3, dedup=False, replace=False, overwrite=True, shard_size=max(-(-n // workers), 1),
                       workers=workers)


def own_tokens(tokenize, chain, prefix_tokens: int, plan, outputs: dict) -> tuple[int, int]:
    """(prompt, generated) tokens a kept story needs with no waste at all: its own outputs, and
    the prompt tokens of its final turn less the prefix every story shares and less its outputs."""
    n = {k: len(tokenize(outputs[k], add_special=False)) if outputs.get(k) else 0 for k in OWN_STAGES}
    last = len(chain.recipe.stages) - 1
    prompt = len(tokenize(chain.prompt(plan, last, outputs))) - prefix_tokens - (n["summary"] + n["key_sentence"])
    return max(0, prompt), sum(n.values())


# ----- engine arm: corpusforge build ------------------------------------------------------------

def edited_recipe(edits) -> str:
    """A copy of the default recipe with text replaced ((old, new) pairs, each found exactly once):
    how a lever round runs an earlier stop's recipe values."""
    src = ROOT / "templates" / "tinystories-instruct"
    dst = KEPT / "recipe-edited"
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    path = dst / "recipe.toml"
    text = path.read_text()
    for old, new in edits:
        if text.count(old) != 1:
            raise SystemExit(f"recipe edit {old!r}: found {text.count(old)} times in {src / 'recipe.toml'}, need exactly 1")
        text = text.replace(old, new)
    path.write_text(text)
    return str(dst)


def run_engine(model: str, n: int, seed: int, threads: int, parallel: int, workers: int = 1, changes: dict | None = None) -> dict:
    out = KEPT / "engine"
    shutil.rmtree(out, ignore_errors=True)
    changes = dict(changes or {})
    if "recipe_edit" in changes:
        changes["recipe"] = edited_recipe(changes.pop("recipe_edit"))
    t0 = time.perf_counter()
    summary = build(config_for(Path(model), n, seed, threads, parallel, out, workers).with_(**changes))
    seconds = time.perf_counter() - t0
    data, rejects = read_rows(out)
    kept = [{"id": r["id"], "outputs": {k: r[k] for k in OWN_STAGES}} for r in data]
    return {
        "seconds": round(seconds, 1),
        "plans": n,
        "kept": len(kept),
        "attempts": sum(r["attempt"] for r in data + rejects),
        "generated_tokens": summary.generated_tokens,
        "prompt_tokens_evaluated": summary.prompt_tokens_evaluated,
        "reject_reasons": dict(Counter(r["reject_reason"].split(":")[0] for r in rejects).most_common()),
        "retry_reasons": dict(summary.retried.most_common()),
        "wasted_tokens": dict(summary.wasted.most_common()),
        "peak_rss_mb": peak_rss_mb(),
        "kept_rows": kept,
    }


# ----- llama-server arm: a streaming client with the build's checks ---------------------------

class Client:
    """The same plans through llama-server, checked and retried like the build."""

    def __init__(self, p, chain, fmt, options: dict):
        self.p, self.chain, self.fmt, self.options = p, chain, fmt, options
        self.stages = chain.recipe.stages
        self.base = p.config.sampling
        self.cache: dict = {}
        self.lock = threading.Lock()
        self.generated = 0
        self.cut = Counter()

    def body(self, plan, i: int, attempt: int, outputs: dict, said: dict) -> dict:
        stage = self.stages[i]
        s = self.chain.sampling[i] or self.base
        if not self.options["dry"]:
            s = replace(s, dry_multiplier=0.0)
        body = {
            "prompt": self.chain.prompt(plan, i, outputs, said), "n_predict": stage.max_tokens, "cache_prompt": True,
            "stream": True, "return_tokens": True, "seed": stage_seed(plan.seed, plan.id, i, attempt) & 0xFFFFFFFF,
            "temperature": s.temperature, "top_k": s.top_k, "top_p": s.top_p, "min_p": s.min_p,
            "repeat_penalty": s.repeat_penalty, "repeat_last_n": s.repeat_last_n,
            "dry_multiplier": s.dry_multiplier, "dry_base": s.dry_base, "dry_allowed_length": s.dry_allowed_length,
            "dry_penalty_last_n": s.dry_last_n,
            # The engine's sampler order (llamacpp.py): top_k, penalties, DRY, top_p, min_p, temperature.
            "samplers": ["top_k", "penalties", "dry", "top_p", "min_p", "temperature"],
        }
        bias = []
        if self.options["bias"] and stage.steer is not None and stage.steer.words:
            bias += [[t, self.options["bias"]] for t in self.word_tokens(plan)]
        if stage.steer is not None and stage.steer.cut and stage.steer.talk:
            # The talk lever's one-token words, banned statically (false: never sampled); its
            # next words depend on the text so far, which a static bias cannot see.
            bias += [[t, False] for t in self.talk_tokens()]
        if bias:
            body["logit_bias"] = bias
        return body

    def word_tokens(self, plan) -> list[int]:
        """The first token of every spelling of the three words: a static bias is all the API allows."""
        spec = Steer(self.stages[-1].steer, ((plan.noun, "noun"), (plan.verb, "verb"), (plan.adjective, "adjective")))
        with self.lock:
            forms = Steering.compile(spec, self.fmt.tokenize, [], self.cache).forms
        return sorted({seq[0] for word in forms for seq in word})

    def talk_tokens(self) -> list[int]:
        with self.lock:
            if "talk" not in self.cache:
                self.cache["talk"] = Talk.of(self.fmt.tokenize)
        return self.cache["talk"].always.tolist()

    def detector(self, i: int, plan) -> Steering | None:
        """The build's mid-stream detector for this stage (what closing a stream can apply): the
        story stage is also cut where a word or the asked-for speech is still missing at 1.5x
        its target, as in the build."""
        steer = self.stages[i].steer
        if steer is None:
            return None
        if i < len(self.stages) - 1:
            return Steering.detector(steer, tuple(self.p.vocab.unfit_words), self.chain.cut_checks - STORY_ONLY_CUTS)
        return Steering.detector(steer, tuple(self.p.vocab.unfit_words), self.chain.cut_checks,
                                 words=((plan.noun, "noun"), (plan.verb, "verb"), (plan.adjective, "adjective")),
                                 dialogue="Dialogue" in plan.features)

    def complete(self, port: int, body: dict, det: Steering | None) -> tuple[str, bool, str | None]:
        """(text, truncated, cut reason) of one streamed request; closes the stream on a cut."""
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1800)
        text, n, truncated, cut = "", 0, False, None
        try:
            conn.request("POST", "/completion", json.dumps(body), {"Content-Type": "application/json"})
            r = conn.getresponse()
            if r.status != 200:
                raise RuntimeError(f"llama-server answered {r.status}: {r.read()[:500]!r}")
            for line in r:
                if not line.startswith(b"data: "):
                    continue
                d = json.loads(line[6:])
                piece = d.get("content", "")
                n += len(d.get("tokens") or ([1] if piece else []))
                if d.get("stop"):
                    truncated = d.get("stop_type") == "limit"
                    text += piece
                    break
                if det is not None and piece:
                    _, cut, stop = det.after(0, piece, False)
                    if stop:
                        break
                text += piece
                if cut:
                    break
        finally:
            conn.close()  # on a cut or a stop this ends the server's slot at its next token
        with self.lock:
            self.generated += n
            if cut:
                self.cut[cut.split(":")[0]] += 1
        return text, truncated, cut

    def story(self, port: int, plan) -> dict:
        """One plan: stage by stage, retrying the failed stage (fresh seed), at most max_attempts."""
        outputs: dict[str, str] = {}
        said: dict[str, str] = {}
        i, attempt, failed = 0, 1, []
        while True:
            stage = self.stages[i]
            raw, truncated, cut = self.complete(port, self.body(plan, i, attempt, outputs, said), self.detector(i, plan))
            text = self.chain.parse(stage, raw)
            outputs[stage.name], said[stage.name] = text, as_said(raw, text)
            reason = cut
            if reason is None and i < len(self.stages) - 1:
                if truncated or not text:
                    reason = f"truncated: {stage.name}" if truncated else f"empty: {stage.name}"
                else:
                    i += 1
                    continue
            elif reason is None:
                draft = checks.Draft(story=text, noun=plan.noun, verb=plan.verb, adjective=plan.adjective,
                                     features=plan.features, key_sentence=outputs.get("key_sentence"),
                                     truncated=truncated, id=plan.id)
                reason = checks.first_failure(draft, self.chain.text_checks)
                if reason is None:
                    return {"id": plan.id, "attempt": attempt, "reason": None, "outputs": dict(outputs), "failed": failed}
            if attempt >= self.chain.max_attempts:
                return {"id": plan.id, "attempt": attempt, "reason": reason, "outputs": dict(outputs), "failed": failed}
            failed.append(reason.split(":")[0])
            attempt += 1


def run_server(server_bin: Path, model: Path, n: int, seed: int, threads: int, parallel: int, options: dict) -> dict:
    from corpusforge.engine.llamacpp import LlamaEngine

    p = prepare(config_for(model, n, seed, threads, parallel, KEPT / "server-plan"))  # writes nothing
    fmt = LlamaEngine(model, parallel=1, n_threads=1, prefix_slots=0)  # formats and counts prompts only
    chain = make_chain(fmt, p)
    n_ctx = context_needed(fmt, p)
    client = Client(p, chain, fmt, options)
    todo: queue.Queue = queue.Queue()
    for i in range(n):
        todo.put(p.plan(i))
    results, errors = [], []

    def worker(port: int) -> None:
        try:
            while not errors:
                try:
                    plan = todo.get_nowait()
                except queue.Empty:
                    return
                results.append(client.story(port, plan))
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            errors.append(e)

    with Server(server_bin, model, parallel=parallel, n_ctx=n_ctx, threads=threads, n_batch=p.config.n_batch,
                n_ubatch=p.config.n_batch, type_k="f16") as server:
        seconds = server.run_clients(worker, parallel)
        if errors:
            raise errors[0]
        metrics, rss, cmd = server.metrics(), server.peak_rss_mb(), server.cmd
    fmt.close()
    kept = [r for r in results if r["reason"] is None]
    return {
        "seconds": round(seconds, 1),
        "plans": n,
        "kept": len(kept),
        "attempts": sum(r["attempt"] for r in results),
        "generated_tokens": client.generated,  # streamed tokens, cut streams included
        "prompt_tokens_evaluated": int(metrics.get("prompt_tokens_total", 0)),  # finished requests only
        "reject_reasons": dict(Counter(r["reason"].split(":")[0] for r in results if r["reason"]).most_common()),
        "retry_reasons": dict(Counter(c for r in results for c in r["failed"]).most_common()),
        "streams_cut": dict(client.cut),
        "options": options,
        "peak_rss_mb": rss,
        "command": " ".join(cmd[1:]),
        "kept_rows": [{"id": r["id"], "outputs": r["outputs"]} for r in kept],
    }


# ----- per-arm figures ----------------------------------------------------------------------------

def figures(arm: dict, own: list[tuple[int, int]]) -> dict:
    """kept/h, attempts and tokens per kept story, and the share of generated tokens kept."""
    k = arm["kept"]
    kept_gen = sum(g for _, g in own)
    return {
        **{key: v for key, v in arm.items() if key != "kept_rows"},
        "kept_per_hour": round(3600 * k / arm["seconds"], 1),
        "attempts_per_kept": round(arm["attempts"] / k, 2) if k else None,
        "generated_tokens_per_kept": round(arm["generated_tokens"] / k, 1) if k else None,
        "own_tokens_per_kept": {"prompt": round(statistics.mean(p for p, _ in own), 1), "generated": round(statistics.mean(g for _, g in own), 1)} if own else None,
        # Kept stories' own outputs over every generated token (cut and rejected attempts included).
        "kept_token_share": round(min(1.0, kept_gen / arm["generated_tokens"]), 3) if arm["generated_tokens"] else None,
        # Where the rest went: each failure reason's tokens as a share of all generated ones.
        "wasted_share": {r: round(t / arm["generated_tokens"], 3) for r, t in arm.get("wasted_tokens", {}).items()}
        if arm["generated_tokens"] else {},
    }


def own_of(model: Path, n: int, seed: int, threads: int, parallel: int, rows: list[dict]) -> list[tuple[int, int]]:
    from corpusforge.engine.llamacpp import LlamaEngine

    p = prepare(config_for(model, n, seed, threads, parallel, KEPT / "own"))
    with LlamaEngine(model, parallel=1, n_threads=1, prefix_slots=0) as fmt:
        chain = make_chain(fmt, p)
        prefix = len(fmt.tokenize(chain.prefixes[0]))
        return [own_tokens(fmt.tokenize, chain, prefix, p.plan(r["id"]), r["outputs"]) for r in rows]


def kept_roof(lbb: dict, own: list[tuple[int, int]]) -> float | None:
    """Kept stories/h if every second went to kept stories' own tokens at llama.cpp's rates."""
    if not own:
        return None
    per_story = statistics.mean(pt / lbb["pp_tps"] + gt / lbb["tg_tps"] for pt, gt in own)
    return round(3600 / per_story, 1)


def tune(args, model: Path) -> list[dict]:
    """Each server option set once on --tune plans: which options help the checking client."""
    rows = []
    for name, opts in (("plain", {"bias": 0.0, "dry": False}), ("dry", {"bias": 0.0, "dry": True}),
                       ("dry+bias2", {"bias": 2.0, "dry": True}), ("dry+bias4", {"bias": 4.0, "dry": True})):
        s = run_server(args.server, model, args.tune, args.seed, args.threads, args.parallel, opts)
        f = figures(s, own_of(model, args.tune, args.seed, args.threads, args.parallel, s["kept_rows"]))
        rows.append({"name": name, **f})
        TUNING.write_text(json.dumps(rows, indent=2) + "\n")  # kept if a later round is interrupted
        print(f"  tune {name}: kept {f['kept']}/{args.tune}, {f['kept_per_hour']} kept/h, rejects {f['reject_reasons']}", flush=True)
    return rows


def _interrupt(*_) -> None:
    raise KeyboardInterrupt  # a SIGTERM must stop llama-server too (Server.__exit__)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=128, help="plans per arm per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--parallel", type=int, default=DEFAULT_PARALLEL)
    ap.add_argument("--tune", type=int, default=0, help="first run every server option set on this many plans")
    ap.add_argument("--tuning-from", type=Path, help="the rows of an earlier --tune (bench/scratch/kept/tuning.json)")
    ap.add_argument("--bias", type=float, default=None, help="server logit_bias on the words (default: --tune's best, else 0)")
    ap.add_argument("--no-dry", action="store_true", help="server without the recipe's DRY")
    ap.add_argument("--server", type=Path, default=SCRATCH / "llama-server")
    ap.add_argument("--batched-bench", type=Path, default=SCRATCH / "llama-batched-bench")
    ap.add_argument("--scale-rounds", type=int, default=0,
                    help="engine alone, alternating: 1 worker x --threads threads against --workers K x 1 thread")
    ap.add_argument("--workers", type=int, default=os.cpu_count(), help="K for --scale-rounds")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "kept.json")
    ap.add_argument("--roof-at-depth", type=int, default=0, metavar="R",
                    help="with --summarize: R llama-batched-bench runs at a kept story's real depth (shared prefix + own tokens)")
    ap.add_argument("--lever-rounds", type=int, default=0,
                    help="instead of the arms: the engine with each lever of LEVERS changed, R rounds in alternating order")
    ap.add_argument("--levers", nargs="+", type=int, metavar="I",
                    help="with --lever-rounds: only these levers (0-based positions in LEVERS; 0, the default, always runs)")
    ap.add_argument("--summarize", action="store_true", help="recompute the summary of --out from its rounds (no runs)")
    ap.add_argument("--from-log", type=Path, help="rebuild --out from the printed rounds of a run that did not finish writing it")
    args = ap.parse_args()
    if args.from_log:
        old = json.loads(args.out.read_text()) if args.out.exists() else {}
        rounds = rounds_from_log(args.from_log.read_text())
        res = summarize(args, pull_model(MODEL), {"bias": args.bias or 0.0, "dry": not args.no_dry}, old.get("server_tuning", []),
                        rounds, 200, 256)
        res["rounds_source"] = f"parsed from {args.from_log.name}: the run's printed round lines"
        res.update({k: old[k] for k in ("scale", "levers", "levers_steering") if k in old})
        args.out.write_text(json.dumps(res, indent=2) + "\n")
        print(table(res))
        return
    if args.summarize:
        old = json.loads(args.out.read_text())
        args.n, args.seed, args.parallel, args.threads = old["plans_per_arm"], old["seed"], old["parallel"], old["threads"]
        res = summarize(args, pull_model(MODEL), old["server_options"], old["server_tuning"], old["rounds_real"],
                        old["roof_shape"]["npp"], old["roof_shape"]["ntg"])
        res.update({k: old[k] for k in ("scale", "roof_at_depth", "levers", "levers_steering") if k in old})
        if args.roof_at_depth:
            res["roof_at_depth"] = roof_at_depth(args, res)
        args.out.write_text(json.dumps(res, indent=2) + "\n")
        print(table(res))
        return
    if args.out.resolve() == (ROOT / "bench" / "results.json").resolve():
        raise SystemExit("--out bench/results.json is the random-weight bench's file: write kept figures elsewhere")
    # The lever rounds run the engine arm only: they need neither llama-server nor llama-batched-bench.
    if not args.lever_rounds and (not args.server.exists() or not args.batched_bench.exists()):
        raise SystemExit("llama-server / llama-batched-bench not built: run `bash scripts/build_llama_tools.sh`")
    signal.signal(signal.SIGTERM, _interrupt)
    KEPT.mkdir(parents=True, exist_ok=True)
    model = pull_model(MODEL)
    print(f"machine: {machine()}\nmodel: {model.name}, {args.n} plans per arm, {args.rounds} rounds, "
          f"--parallel {args.parallel}, {args.threads} threads", flush=True)

    if args.lever_rounds:
        results = json.loads(args.out.read_text()) if args.out.exists() else {}
        results["levers"] = levers(args, model)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out}")
        return
    tuning = tune(args, model) if args.tune else json.loads(args.tuning_from.read_text()) if args.tuning_from else []
    if args.bias is not None or not tuning:
        options = {"bias": args.bias or 0.0, "dry": not args.no_dry}
    else:
        # Ties (0 kept by every option set) go to the one that fails the words check least.
        best = max(tuning, key=lambda r: (r["kept_per_hour"], -r["reject_reasons"].get("words", 0)))
        options = dict(best["options"])
        print(f"  server options: {best['name']} (best kept/h of the tuning runs)")

    # The roof's shape: the first turn's prompt and a typical kept chain's output.
    npp, ntg = 200, 256
    rounds = []
    for r in range(args.rounds):
        row: dict = {"round": r + 1, "order": "engine first" if r % 2 == 0 else "server first"}
        arms = ("engine", "llama_server") if r % 2 == 0 else ("llama_server", "engine")
        for arm in arms:
            if arm == "engine":
                a = in_child(run_engine, str(model), args.n, args.seed, args.threads, args.parallel)
            else:
                a = run_server(args.server, model, args.n, args.seed, args.threads, args.parallel, options)
            own = own_of(model, args.n, args.seed, args.threads, args.parallel, a["kept_rows"])
            row[arm] = figures(a, own)
            if arm == "engine":
                row["_own"] = own
            f = row[arm]
            print(f"  round {r + 1} {arm}: kept {f['kept']}/{args.n} in {f['seconds']} s = {f['kept_per_hour']} kept/h, "
                  f"attempts/kept {f['attempts_per_kept']}, gen tok/kept {f['generated_tokens_per_kept']}, "
                  f"kept token share {f['kept_token_share']}, RSS {f['peak_rss_mb']} MB, rejects {f['reject_reasons']}", flush=True)
        lbb = run_batched_bench(args.batched_bench, model, [args.parallel], args.threads, npp, ntg)[args.parallel]
        own = row.pop("_own")
        row["roof"] = {**lbb, "kept_per_hour": kept_roof(lbb, own)}
        row["kept_roof_fraction"] = round(row["engine"]["kept_per_hour"] / row["roof"]["kept_per_hour"], 3) if own else None
        s = row["llama_server"]["kept_per_hour"]
        row["ratio_kept_vs_llama_server"] = round(row["engine"]["kept_per_hour"] / s, 3) if s else None
        print(f"  round {r + 1} roof: pp {lbb['pp_tps']} tg {lbb['tg_tps']} tok/s -> {row['roof']['kept_per_hour']} kept/h; "
              f"engine at {row['kept_roof_fraction']}, engine/server {row['ratio_kept_vs_llama_server']}", flush=True)
        rounds.append(row)

    old = json.loads(args.out.read_text()) if args.out.exists() else {}
    if rounds or tuning or not old:
        results = summarize(args, model, options, tuning, rounds, npp, ntg)
        # What other commands measured (--lever-rounds, --scale-rounds) stays in the file.
        results.update({k: old[k] for k in ("levers", "levers_steering", "scale") if k in old})
    else:  # --rounds 0 --scale-rounds R: add the scale figures to the file of an earlier run
        results = old
    if args.scale_rounds:
        results["scale"] = scale(args, model, results["rounds_real"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"wrote {args.out}")


# Each lever against the default build (every lever on), engine arm only (the server cannot
# steer): the BuildConfig changes that switch one off or on ("recipe_edit": text replaced in a
# copy of the default recipe).
STOP23_RECIPE = (("word_bias_max = 12.0", "word_bias_max = 6.0"), ("min_words = 90", "min_words = 60"))
LEVERS = {
    "default (all levers)": {},
    "no early cut (finish doomed attempts)": {"steer_off": ("cut",)},
    "new summary after 2 story failures": {"new_summary_after": 2},
    "new summary after 1 story failure": {"new_summary_after": 1},
    # One shard per --parallel plans: a shard starts on idle engines, so a freed sequence takes
    # only the shard's own retries, never the next plan (batch at a time, not continuous).
    "no refill across plans (batches of --parallel)": {"shard_size": DEFAULT_PARALLEL},
    # Stop 23's four: the steering of stop 22 (all four off), then each one alone off.
    "stop 22's steering (no boundary, finish, cut_missing, hold_line)": {"steer_off": ("boundary", "finish", "cut_missing", "hold_line")},
    "no word boundary (glued words allowed)": {"steer_off": ("boundary",)},
    "no finish rule (end of turn mid-sentence)": {"steer_off": ("finish",)},
    "no missing-word cut (finish stories that lack a word)": {"steer_off": ("cut_missing",)},
    "no hold_line (a summary may end without its words)": {"steer_off": ("hold_line",)},
    # Stop 24's: the talk and rewind levers, and two recipe values (the speech rule and the
    # line break inside open speech are fixes, not levers: they stay on).
    "stop 23's steering (no talk, no rewind, summary word_bias_max 6, story min_words 60)": {
        "steer_off": ("talk", "rewind"), "recipe_edit": STOP23_RECIPE},
    "no talk (task-talk words may be sampled)": {"steer_off": ("talk",)},
    "no rewind (a story lacking a word retries on the same summary)": {"steer_off": ("rewind",)},
    "summary word_bias_max 6 (stop 23's)": {"recipe_edit": STOP23_RECIPE[:1]},
    "story min_words 60 (stop 23's)": {"recipe_edit": STOP23_RECIPE[1:]},
}


def levers(args, model: Path) -> dict:
    """kept/h, kept token share and attempts per kept story for each lever (LEVERS)."""
    chosen = [name for i, name in enumerate(LEVERS) if i == 0 or not args.levers or i in args.levers]
    runs: dict[str, list[dict]] = {name: [] for name in chosen}
    for r in range(args.lever_rounds):
        order = chosen if r % 2 == 0 else chosen[::-1]
        for name in order:
            changes = dict(LEVERS[name])
            if "shard_size" in changes:
                changes["shard_size"] = args.parallel
            a = in_child(run_engine, str(model), args.n, args.seed, args.threads, args.parallel, 1, changes)
            f = figures(a, own_of(model, args.n, args.seed, args.threads, args.parallel, a["kept_rows"]))
            runs[name].append(f)
            print(f"  lever round {r + 1} {name}: kept {f['kept']}/{args.n} in {f['seconds']} s = {f['kept_per_hour']} kept/h, "
                  f"kept token share {f['kept_token_share']}, attempts/kept {f['attempts_per_kept']}, "
                  f"gen tok/kept {f['generated_tokens_per_kept']}, retries {f['retry_reasons']}, "
                  f"wasted share {f['wasted_share']}", flush=True)
    base = statistics.median(f["kept_per_hour"] for f in runs["default (all levers)"])
    return {
        "plans": args.n, "rounds": args.lever_rounds, "changes": {name: LEVERS[name] for name in chosen},
        "table": {name: {"kept_per_hour": spread([f["kept_per_hour"] for f in fs]),
                         "vs_default": round(statistics.median(f["kept_per_hour"] for f in fs) / base, 3),
                         "kept": fs[0]["kept"], "kept_token_share": fs[0]["kept_token_share"],
                         "attempts_per_kept": fs[0]["attempts_per_kept"],
                         "generated_tokens_per_kept": fs[0]["generated_tokens_per_kept"],
                         "retry_reasons": fs[0]["retry_reasons"], "reject_reasons": fs[0]["reject_reasons"],
                         "wasted_share": fs[0].get("wasted_share", {})}
                  for name, fs in runs.items()},
        "runs": runs,
    }


def scale(args, model: Path, rounds: list) -> dict:
    """--workers K x 1 thread on this machine against the rounds' engine (1 worker x --threads,
    same plans), and what the measured per-core rate projects for more cores."""
    one = [x["engine"]["kept_per_hour"] for x in rounds]
    many = []
    for r in range(args.scale_rounds):
        # In this process: a daemonic in_child may not start the build's worker processes.
        a = run_engine(str(model), args.n, args.seed, 1, args.parallel, args.workers)
        many.append(round(3600 * a["kept"] / a["seconds"], 1))
        print(f"  scale round {r + 1}: {args.workers} workers: kept {a['kept']}/{args.n} in {a['seconds']} s = {many[-1]} kept/h", flush=True)
    best = max(statistics.median(one), statistics.median(many))
    per_core = best / (os.cpu_count() or 1)
    return {
        "cores": os.cpu_count(),
        "workers": args.workers,
        "plans": args.n,
        "one_worker": spread(one),
        "workers_k": spread(many),
        "ratio_workers_vs_one": round(statistics.median(many) / statistics.median(one), 3),
        "kept_per_hour_per_core": round(per_core, 1),
        # A projection, not a measurement: llama.cpp's CPU decode scales with cores until memory
        # bandwidth binds; workers share nothing but the output folder (Ray: a shared filesystem).
        "projected_kept_per_hour": {"16_cores": round(16 * per_core), "per_ray_machine_of_16_cores": round(16 * per_core)},
    }


def roof_at_depth(args, res: dict) -> dict:
    """The roof again with a kept story's real context: the rounds' llama-batched-bench runs at
    pp 200 / tg 256, but every story sits behind the 693-token shared prefix (system line and
    worked example), and generation at depth is slower (attention over the whole context)."""
    from corpusforge.engine.llamacpp import LlamaEngine

    p = prepare(config_for(pull_model(MODEL), args.n, args.seed, args.threads, args.parallel, KEPT / "own"))
    with LlamaEngine(p.models[0].path, parallel=1, n_threads=1, prefix_slots=0) as fmt:
        prefix = len(fmt.tokenize(make_chain(fmt, p).prefixes[0]))
    own = [x["engine"]["own_tokens_per_kept"] for x in res["rounds_real"]]
    pt, gt = statistics.median(o["prompt"] for o in own), statistics.median(o["generated"] for o in own)
    npp, ntg = prefix + round(pt), round(gt)
    runs = [run_batched_bench(args.batched_bench, p.models[0].path, [args.parallel], args.threads, npp, ntg)[args.parallel]
            for _ in range(args.roof_at_depth)]
    # At depth the prefix is evaluated once for all stories (the engine copies it), so a kept
    # story's own prompt tokens cost pp time; the generated ones cost tg time at this depth.
    roofs = [round(3600 / (pt / r["pp_tps"] + gt / r["tg_tps"]), 1) for r in runs]
    return {"npp": npp, "ntg": ntg, "shared_prefix_tokens": prefix, "runs": runs, "kept_per_hour": spread(roofs),
            "kept_roof_fraction": round(res["kept_per_hour_engine"] / statistics.median(roofs), 3)}


def server_bound(rounds: list, eng: dict | None) -> dict:
    """When the server arm kept nothing, the ratio of medians is undefined: bound it instead.
    0 kept in all its rounds is consistent (95%, Poisson) with at most 3 kept over its summed
    time, so its kept/h is below 3 x 3600 / that time and the ratio above the engine's median
    over that."""
    if not rounds or not eng or sum(x["llama_server"]["kept"] for x in rounds):
        return {}
    upper = 3 * 3600 / sum(x["llama_server"]["seconds"] for x in rounds)
    return {"kept_per_hour_llama_server_upper_95": round(upper, 1),
            "ratio_kept_vs_llama_server_lower_95": round(eng["median"] / upper, 1)}


def summarize(args, model: Path, options: dict, tuning: list, rounds: list, npp: int, ntg: int) -> dict:
    """The results file: medians and spreads over the rounds, every round as it ran."""
    def med(arm: str, key: str):
        vals = [x[arm][key] for x in rounds if x[arm].get(key) is not None]
        return statistics.median(vals) if vals else None

    eng = spread([x["engine"]["kept_per_hour"] for x in rounds]) if rounds else None
    srv = spread([x["llama_server"]["kept_per_hour"] for x in rounds]) if rounds else None
    fractions = [x["kept_roof_fraction"] for x in rounds if x.get("kept_roof_fraction") is not None]
    return {
        "machine": machine(), "model": model.name, "model_sha256": sha256_file(model), "recipe": "tinystories-instruct",
        "plans_per_arm": args.n, "seed": args.seed, "parallel": args.parallel, "threads": args.threads,
        "server_options": options,
        "kept_per_hour_engine": eng["median"] if eng else None,
        "kept_per_hour_llama_server": srv["median"] if srv else None,
        "spread": {"engine": eng, "llama_server": srv},
        "ratio_kept_vs_llama_server": round(eng["median"] / srv["median"], 3) if eng and srv and srv["median"] else None,
        **server_bound(rounds, eng),
        "kept_token_share": med("engine", "kept_token_share"),
        "kept_token_share_llama_server": med("llama_server", "kept_token_share"),
        "kept_roof_fraction": statistics.median(fractions) if fractions else None,
        "attempts_per_kept": {"engine": med("engine", "attempts_per_kept"), "llama_server": med("llama_server", "attempts_per_kept")},
        "generated_tokens_per_kept": {"engine": med("engine", "generated_tokens_per_kept"),
                                      "llama_server": med("llama_server", "generated_tokens_per_kept")},
        "peak_rss_mb": {"engine": med("engine", "peak_rss_mb"), "llama_server": med("llama_server", "peak_rss_mb")},
        "roof_shape": {"npp": npp, "ntg": ntg, "B": args.parallel},
        "server_tuning": tuning,
        "rounds_real": rounds,
    }


_ARM_LINE = re.compile(r"round (\d+) (engine|llama_server): kept (\d+)/\d+ in ([\d.]+) s = ([\d.]+) kept/h, attempts/kept (\S+), "
                       r"gen tok/kept (\S+), kept token share (\S+), RSS ([\d.]+) MB, rejects (\{.*\})")
_ROOF_LINE = re.compile(r"round (\d+) roof: pp ([\d.]+) tg ([\d.]+) tok/s -> ([\d.]+) kept/h; engine at (\S+),")


def rounds_from_log(text: str) -> list[dict]:
    """The rounds as this script printed them (a run whose end was lost: the figures each line
    carries; retry reasons, wasted shares and own tokens are not printed, so they are absent)."""
    rounds: dict[int, dict] = {}
    num = lambda v: None if v == "None" else float(v)  # noqa: E731
    for m in _ARM_LINE.finditer(text):
        r = rounds.setdefault(int(m[1]), {"round": int(m[1]), "order": "engine first" if int(m[1]) % 2 else "server first"})
        r[m[2]] = {"kept": int(m[3]), "seconds": float(m[4]), "kept_per_hour": float(m[5]), "attempts_per_kept": num(m[6]),
                   "generated_tokens_per_kept": num(m[7]), "kept_token_share": num(m[8]), "peak_rss_mb": float(m[9]),
                   "reject_reasons": json.loads(m[10].replace("'", '"'))}
    for m in _ROOF_LINE.finditer(text):
        r = rounds[int(m[1])]
        r["roof"] = {"pp_tps": float(m[2]), "tg_tps": float(m[3]), "kept_per_hour": float(m[4])}
        r["kept_roof_fraction"] = num(m[5])
        s = r["llama_server"]["kept_per_hour"]
        r["ratio_kept_vs_llama_server"] = round(r["engine"]["kept_per_hour"] / s, 3) if s else None
    return [rounds[k] for k in sorted(rounds)]


def table(res: dict) -> str:
    lines = ["", "| round | order | engine kept/h | llama-server kept/h | ratio | engine kept token share | server kept token share | roof kept/h | engine / roof |",
             "|---|---|---|---|---|---|---|---|---|"]
    for x in res["rounds_real"]:
        e, s = x["engine"], x["llama_server"]
        lines.append(f"| {x['round']} | {x['order']} | {e['kept_per_hour']:.0f} | {s['kept_per_hour']:.0f} | {x['ratio_kept_vs_llama_server']} "
                     f"| {e['kept_token_share']} | {s['kept_token_share']} | {x['roof']['kept_per_hour']} | {x['kept_roof_fraction']} |")
    lines.append(f"\nmedian kept/h: engine {res['kept_per_hour_engine']}, llama-server {res['kept_per_hour_llama_server']}, "
                 f"ratio {res['ratio_kept_vs_llama_server']}; kept token share {res['kept_token_share']}; roof fraction {res['kept_roof_fraction']}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
