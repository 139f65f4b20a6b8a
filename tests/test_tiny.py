"""Tests for corpusforge.engine.tiny: the random-weight GGUF loads, tokenizes and stops in real llama.cpp.
Every model here is made by make_tiny_model and run by llama-cpp-python; nothing is mocked.
"""
from __future__ import annotations

import hashlib

import llama_cpp
import pytest

from corpusforge.engine.tiny import CHAT_TEMPLATE, EOS, QUANTS, make_tiny_model
from corpusforge.errors import ModelError

TOPICS = ["a red ball", "a happy dog", "the big tree", "a small cat who jumps", "rain on the hill"]


def load(path) -> llama_cpp.Llama:
    return llama_cpp.Llama(model_path=str(path), n_ctx=512, n_threads=2, verbose=False)


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def llm(tiny_model):
    return load(tiny_model)


def test_model_loads_as_llama_with_the_chatml_template(llm):
    assert llm.metadata["general.architecture"] == "llama"
    assert llm.metadata["tokenizer.chat_template"] == CHAT_TEMPLATE
    assert llm.metadata["tokenizer.ggml.pre"] == "smollm"
    assert llm.token_eos() == EOS


def test_sentence_round_trips_through_tokenize_and_detokenize(llm):
    text = "Once upon a time, a happy dog"
    tokens = llm.tokenize(text.encode(), add_bos=False)
    assert llm.detokenize(tokens).decode() == text
    assert len(tokens) == 8  # each word (and the comma) is one token, not a run of letters


def test_chat_special_tokens_are_single_tokens(llm):
    for i, special in enumerate(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]):
        assert llm.tokenize(special.encode(), add_bos=False, special=True) == [i]
    tokens = llm.tokenize(b"<|im_start|>user\nhi<|im_end|>", add_bos=False, special=True)
    assert tokens[0] == 1 and tokens[-1] == 2 and not {0, 1, 2} & set(tokens[1:-1])


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path, tiny_model):
    again = make_tiny_model(tmp_path / "again.gguf")
    other = make_tiny_model(tmp_path / "other.gguf", seed=1)
    assert sha256(again) == sha256(tiny_model)
    assert sha256(other) != sha256(tiny_model)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.gguf", "other.gguf"]  # no temp files left


def test_quant_names_map_to_llama_cpp_ftype_constants():
    assert QUANTS == {name: getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{name}") for name in QUANTS}


@pytest.mark.parametrize("quant", ["Q8_0", "F16"])
def test_other_quantizations_load_and_generate(tmp_path, quant):
    model = load(make_tiny_model(tmp_path / f"{quant}.gguf", quant=quant))
    assert model.metadata["general.file_type"] == str(QUANTS[quant])
    assert len(model.create_completion("Once upon a time", max_tokens=8, temperature=0)["choices"]) == 1


@pytest.mark.parametrize("kwargs", [{"shape": "huge"}, {"quant": "Q2_K"}])
def test_unknown_shape_or_quant_raises_model_error_with_choices(tmp_path, kwargs):
    with pytest.raises(ModelError) as err:
        make_tiny_model(tmp_path / "m.gguf", **kwargs)
    assert "use one of" in err.value.hint
    assert not (tmp_path / "m.gguf").exists()


def test_unwritable_path_raises_model_error_and_leaves_nothing(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ModelError, match="cannot write"):
        make_tiny_model(blocker / "m.gguf")
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_greedy_chat_generation_ends_with_eos_for_most_prompts(llm):
    lengths = []
    for topic in TOPICS:
        prompt = f"<|im_start|>user\nWrite a short story about {topic}.<|im_end|>\n<|im_start|>assistant\n"
        tokens = llm.tokenize(prompt.encode(), add_bos=False, special=True)
        n = 0
        for token in llm.generate(tokens, temp=0.0, repeat_penalty=1.0, reset=True):
            if token == EOS or n == 400:
                break
            n += 1
        lengths.append(n)
    assert sum(n < 400 for n in lengths) >= 3, lengths
    assert len(set(lengths)) > 1, lengths  # the prompt changes what is generated
