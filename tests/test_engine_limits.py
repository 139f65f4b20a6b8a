"""The engine never crashes natively: bad settings, the AMX refusal and grammars, on the real tiny model.

A value llama.cpp cannot take is a GGML_ASSERT there (the process dies with no Python
exception), so these tests run real llama.cpp: surviving the call is half of what they check.
"""
from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from corpusforge.engine.base import Request, SamplingParams
from corpusforge.engine.llamacpp import LlamaEngine
from corpusforge.errors import ModelError

YES_NO = 'root ::= "yes" | "no"'
# Subprocesses import this checkout, not whichever copy of corpusforge is installed.
REPO_ENV = {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}
HOT = SamplingParams(temperature=1.0, top_p=1.0, min_p=0.0, repeat_penalty=1.0)


@pytest.mark.parametrize(
    ("settings", "names"),
    [
        ({"parallel": 64, "n_batch": 32}, "--n-batch 512"),  # the native abort
        ({"parallel": 8, "n_batch": 8, "prefix_slots": 3}, "--n-batch"),  # 11 sequences, 8 output rows
        ({"parallel": 0}, "--parallel"),
        ({"n_batch": 0}, "--n-batch"),
        ({"n_threads": 0}, "--threads"),
        ({"n_threads": 10_000}, "--threads"),
        ({"parallel": 300}, "--parallel"),
        ({"parallel": 8, "n_ubatch": 4}, "n_ubatch"),
        ({"type_k": "q4_1"}, "f16"),
        ({"prefix_slots": -1}, "prefix_slots"),
        ({"sampling": SamplingParams(top_p=0.0)}, "--top-p"),
    ],
)
def test_a_setting_llama_cpp_would_abort_on_is_a_model_error_naming_the_fix(tiny_model, settings, names):
    with pytest.raises(ModelError) as err:
        LlamaEngine(tiny_model, **{"n_threads": 2, **settings})
    assert names in str(err.value)


def test_a_full_batch_of_sequences_runs_every_sequence_in_one_decode(tiny_model):
    # n_batch = parallel + prefix slots: llama.cpp reserves one output row per sequence.
    with LlamaEngine(tiny_model, parallel=8, n_batch=8, prefix_slots=0, n_ctx=256, n_threads=2, sampling=SamplingParams(ignore_eos=True)) as e:
        results = e.generate([Request(prompt=e.format_prompt(f"a story about the number {i}"), max_tokens=6, seed=i) for i in range(8)])
        # Prompts longer than the batch went in chunks; 8 generating sequences filled it exactly.
        assert all(r.prompt_tokens > 8 for r in results)
    assert all(r.error is None and r.completion_tokens == 6 for r in results)


@pytest.mark.parametrize("n_ctx", [0, 8, 400_000_000])  # the last: more cells than llama.cpp can index
def test_a_context_size_llama_cpp_cannot_hold_is_refused_at_start(tiny_model, n_ctx):
    e = LlamaEngine(tiny_model, parallel=4, n_threads=2, check_memory=False)
    try:
        with pytest.raises(ModelError, match="--n-ctx"):
            e.start(n_ctx)
    finally:
        e.close()


@pytest.mark.parametrize("max_tokens", [0, -3])
def test_a_request_with_no_token_budget_is_refused_at_submit(tiny_model, max_tokens):
    with LlamaEngine(tiny_model, parallel=2, n_ctx=256, n_threads=2) as e:
        with pytest.raises(ModelError, match="max_tokens"):
            e.submit(Request(prompt="hello", max_tokens=max_tokens, seed=0))
        assert not e.busy()


def run_python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env={**os.environ, **REPO_ENV, **env}, timeout=300)


def test_amx_refusal_frees_the_model_once_and_the_process_exits_cleanly(tiny_model):
    # Before the fix the refused engine kept its freed model and __del__ freed it again: exit 139.
    proc = run_python(f"""
        import gc
        from corpusforge.engine.llamacpp import LlamaEngine
        from corpusforge.errors import ModelError
        try:
            LlamaEngine({str(tiny_model)!r}, parallel=2, n_threads=2)
        except ModelError as e:
            print("refused:", e.hint)
        gc.collect()
        print("alive")
    """, CORPUSFORGE_ASSUME_AMX="1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "scripts/install.sh" in proc.stdout and proc.stdout.rstrip().endswith("alive")


def test_amx_refusal_in_the_cli_exits_1_with_one_line_and_writes_nothing(tiny_model, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "corpusforge", "build", "--n", "2", "--model", str(tiny_model), "--out", str(out), "--quiet"],
        capture_output=True, text=True, env={**os.environ, **REPO_ENV, "CORPUSFORGE_ASSUME_AMX": "1"}, timeout=300,
    )
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:")
    assert "bash scripts/install.sh" in lines[0] and "--safe-cpu" in lines[0]
    assert not out.exists() or not any(out.iterdir())


def test_safe_cpu_is_not_refused_when_amx_is_assumed(tiny_model, monkeypatch):
    monkeypatch.setenv("CORPUSFORGE_ASSUME_AMX", "1")
    with LlamaEngine(tiny_model, parallel=1, n_ctx=256, n_threads=2, safe_cpu=True) as e:
        [r] = e.generate([Request(prompt="hello", max_tokens=3, seed=0)])
    assert r.completion_tokens == 3 or not r.truncated


def test_a_yes_no_grammar_answers_exactly_yes_or_no_in_a_batch_with_free_requests(tiny_model):
    # The random-weight model would write gibberish; the grammar leaves it two answers.
    with LlamaEngine(tiny_model, parallel=4, n_ctx=256, n_threads=2, sampling=HOT) as e:
        reqs = []
        for i in range(16):
            prompt = e.format_prompt(f"Is story {i} any good? Answer yes or no.")
            reqs.append(Request(prompt=prompt, max_tokens=8, seed=100 + i, grammar=YES_NO if i % 2 == 0 else None))
        results = e.generate(reqs)
    judged = [r for r in results if r.request.grammar]
    free = [r for r in results if not r.request.grammar]
    assert len(judged) == 8
    assert all(r.text in ("yes", "no") and not r.truncated and r.error is None for r in judged), [r.text for r in judged]
    # The ordinary requests beside them are not constrained.
    assert any(r.text not in ("yes", "no") for r in free)


def test_a_grammar_decides_where_the_answer_ends_even_with_ignore_eos(tiny_model):
    # ignore_eos masks end-of-generation tokens, the only ones a finished grammar allows.
    with LlamaEngine(tiny_model, parallel=2, n_ctx=256, n_threads=2, sampling=SamplingParams(ignore_eos=True)) as e:
        results = e.generate([Request(prompt=e.format_prompt("ok?"), max_tokens=8, seed=s, grammar=YES_NO) for s in range(4)])
    assert all(r.text in ("yes", "no") for r in results)


def test_a_grammar_answer_is_the_same_for_the_same_seed(tiny_model):
    with LlamaEngine(tiny_model, parallel=3, n_ctx=256, n_threads=2, sampling=HOT) as e:
        grammar = 'root ::= ("cat" | "dog" | "bird") (" and " ("cat" | "dog" | "bird"))?'
        run = lambda: [r.text for r in e.generate([Request(prompt=e.format_prompt(f"pets {i}"), max_tokens=12, seed=i, grammar=grammar)
                                                   for i in range(6)])]  # noqa: E731
        a, b = run(), run()
    assert a == b
    assert all(t.split(" and ")[0] in ("cat", "dog", "bird") for t in a)


@pytest.mark.parametrize("grammar", ['root ::= "yes', 'answer ::= "yes"', "root ::= undefined-rule", "root ::= [a-"])
def test_an_invalid_grammar_is_a_model_error_not_a_crash(tiny_model, grammar):
    with LlamaEngine(tiny_model, parallel=2, n_ctx=256, n_threads=2) as e:
        with pytest.raises(ModelError, match="grammar"):
            e.submit(Request(prompt="hello", max_tokens=4, seed=0, grammar=grammar))
        assert not e.busy()
        [ok] = e.generate([Request(prompt="hello", max_tokens=4, seed=0, grammar=YES_NO)])
    assert ok.text in ("yes", "no")


def test_closing_twice_and_collecting_a_closed_engine_is_safe(tiny_model):
    e = LlamaEngine(tiny_model, parallel=2, n_ctx=256, n_threads=2)
    e.close()
    e.close()
    del e
    gc.collect()
