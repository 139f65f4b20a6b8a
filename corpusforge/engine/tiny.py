"""Make a tiny random-weight llama GGUF, with a tokenizer trained on the project's own text.
Real llama.cpp loads, quantizes and runs it, so tests and benchmarks need no download.
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import os
import pathlib
from dataclasses import dataclass
from importlib import resources

import numpy as np

from corpusforge.errors import ModelError


@dataclass(frozen=True, slots=True)
class TinyShape:
    dim: int
    layers: int
    heads: int
    kv_heads: int
    ffn: int
    context: int
    vocab: int | None = None  # pad the trained vocab up to this size; None keeps it as trained
    rope_theta: float = 10000.0
    rms_eps: float = 1e-5


SHAPES: dict[str, TinyShape] = {
    # Row sizes are multiples of 256 so every matrix can take Q4_K.
    "test": TinyShape(dim=256, layers=2, heads=4, kv_heads=2, ffn=512, context=2048),
    "smollm2-135m": TinyShape(dim=576, layers=30, heads=9, kv_heads=3, ffn=1536, context=8192,
                              vocab=49152, rope_theta=100000.0),
}
QUANTS: dict[str, int] = {"Q4_K_M": 15, "Q8_0": 7, "F16": 1}  # LLAMA_FTYPE_MOSTLY_*

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")  # ids 0, 1, 2 as in SmolLM2
BOS, EOS = 0, 2
CHAT_TEMPLATE = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content']"
                 " + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
                 "{{ '<|im_start|>assistant\\n' }}{% endif %}")
FUNCTION_WORDS = """a an the and or but so if then when while because after before until as of to in on at
by for with from up down out over under into onto off near far away back again very too not no yes all
some many much more most every each one two three four five first last next other same own only just
also still even now here there where what who whom whose which why how this that these those it its
I me my mine you your yours he him his she her hers we us our ours they them their theirs mom dad
is am are was were be been being do does did done have has had having can could will would shall
should may might must said says say saw see went go goes going came come got get gave give took take
made make let lets like liked wanted want looked look ran run played play was happy sad big little
once upon time day night morning lived named called asked told felt thought knew found loved
don't can't won't didn't isn't wasn't I'm it's that's let's he's she's they're we're you're"""
PUNCTUATION = ". , ! ? ; : ' \" ( ) - ... .\" !\" ?\" ,\""

GAIN = 0.32  # matrix std is GAIN/sqrt(fan_in): 0.02 at dim 256, the same activation scale for every shape
EMBED_STD = 0.02
# Sharper attention that writes less: with soft, strong heads, 30 layers of context averages
# swamp the token and every position gets the same next-token distribution.
QK_GAIN, WO_GAIN = 2.0, 0.5
OUTPUT_GAIN = 4.0  # spread of next-token logits (std about 1.3): peaked enough for varied greedy text

# Why the EOS bias exists: random weights almost never sample EOS, so every output would run
# to max_tokens. Every embedding gets a constant on BIAS_DIM, which stays large after the
# final RMSNorm (the blocks' own norms hide it); only special rows of the untied output
# matrix read that dimension. It lifts the EOS logit and sinks other special, unused and
# unprintable tokens. EOS_NOISE keeps a little of EOS's random row, so some contexts
# favour ending more than others and greedy decoding stops too.
# Calibrated with real llama.cpp (shapes test and smollm2-135m, seed 0, 150-token chat prompt,
# temperature 0.8, top_p 0.95): EOS after a mean of about 60-120 tokens, see tests/test_tiny.py.
BIAS_DIM = 0
EMBED_BIAS = 1.0  # in units of an embedding row's random norm
EOS_WEIGHT = 11.6
EOS_NOISE = 0.3
MUTE_WEIGHT = -30.0


def _text_lines() -> list[str]:
    """Return the deterministic training text: vocab words, templates, function words, punctuation."""
    from corpusforge.vocab import load_vocab

    vocab = load_vocab()
    # A leading space makes each word one "Ġword" token, the form it takes inside a sentence.
    lines = [f" {w}" for w in (*vocab.nouns, *vocab.verbs, *vocab.adjectives)]
    lines += [f"{w.capitalize()} {w} {w.capitalize()}" for w in FUNCTION_WORDS.split()]
    # The feature and axis phrases go into every prompt: trained on them, the tokenizer spells
    # them in few tokens, as a real model's would.
    lines += [f.phrase for f in vocab.features] + [v.phrase for a in vocab.axes for v in a.values]
    root = pathlib.Path(str(resources.files("corpusforge") / "templates"))
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        lines += file.read_text(encoding="utf-8", errors="replace").splitlines()
    lines.append(PUNCTUATION)
    return lines


def train_tokenizer() -> tuple[list[str], list[str], list[int]]:
    """Train a byte-level BPE on the project's text; return tokens in id order, merges, unprintable ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    # The same split as SmolLM2 (digits one by one, then GPT-2 byte-level), llama.cpp's "smollm".
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=16384, min_frequency=1, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_text_lines(), trainer)
    model = json.loads(tok.to_str())["model"]
    tokens = sorted(model["vocab"], key=model["vocab"].get)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    texts = [tok.decode([i], skip_special_tokens=False) for i in range(len(tokens))]
    unprintable = [i for i, t in enumerate(texts) if "\ufffd" in t or not t.replace("\n", "").isprintable()]
    return tokens, merges, unprintable


def _weights(s: TinyShape, n_vocab: int, muted: list[int], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Return random llama tensors (numpy row-major: out x in) with the planted EOS bias."""
    def mat(rows: int, cols: int, gain: float = GAIN) -> np.ndarray:
        # std gain/sqrt(fan_in) keeps every shape's activations at the same scale.
        return (rng.standard_normal((rows, cols), dtype=np.float32) * (gain / np.sqrt(cols))).astype(np.float16)

    head = s.dim // s.heads
    ones = np.ones(s.dim, dtype=np.float32)
    # The blocks' own norms hide BIAS_DIM, so every token still looks different to them.
    blind = ones.copy()
    blind[BIAS_DIM] = 0
    embd = mat(n_vocab, s.dim, EMBED_STD * np.sqrt(s.dim))
    embd[:, BIAS_DIM] = EMBED_BIAS * EMBED_STD * np.sqrt(s.dim)
    out = mat(n_vocab, s.dim, OUTPUT_GAIN)
    out[:, BIAS_DIM] = 0
    out[EOS] *= EOS_NOISE
    out[muted, BIAS_DIM] = MUTE_WEIGHT / np.sqrt(s.dim)
    out[EOS, BIAS_DIM] = EOS_WEIGHT / np.sqrt(s.dim)
    # Residual writers shrink with depth (GPT-2 init), so 30 layers add up like 2.
    deep = GAIN / np.sqrt(2 * s.layers)
    t = {"token_embd.weight": embd, "output_norm.weight": ones, "output.weight": out}
    for i in range(s.layers):
        t |= {f"blk.{i}.attn_norm.weight": blind, f"blk.{i}.ffn_norm.weight": blind,
              f"blk.{i}.attn_q.weight": mat(s.dim, s.dim, QK_GAIN),
              f"blk.{i}.attn_k.weight": mat(s.kv_heads * head, s.dim, QK_GAIN),
              f"blk.{i}.attn_v.weight": mat(s.kv_heads * head, s.dim),
              f"blk.{i}.attn_output.weight": mat(s.dim, s.dim, deep * WO_GAIN),
              f"blk.{i}.ffn_gate.weight": mat(s.ffn, s.dim),
              f"blk.{i}.ffn_up.weight": mat(s.ffn, s.dim),
              f"blk.{i}.ffn_down.weight": mat(s.dim, s.ffn, deep)}
    return t


def _write_f16(path: pathlib.Path, s: TinyShape, seed: int) -> None:
    """Write the unquantized model (F16 matrices, F32 norms) with tokenizer and chat template."""
    import gguf

    tokens, merges, unprintable = train_tokenizer()
    types = [gguf.TokenType.CONTROL] * len(SPECIAL_TOKENS) + [gguf.TokenType.NORMAL] * (len(tokens) - 3)
    if s.vocab is not None:
        pad = s.vocab - len(tokens)
        tokens += [f"<|unused_{i}|>" for i in range(pad)]
        types += [gguf.TokenType.UNUSED] * pad
    # Lone bytes of multi-byte characters and control bytes are muted too: sampled text is clean UTF-8.
    muted = [i for i, t in enumerate(types) if t != gguf.TokenType.NORMAL and i != EOS] + unprintable
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(f"corpusforge-tiny-{s.dim}x{s.layers}")
    w.add_context_length(s.context)
    w.add_embedding_length(s.dim)
    w.add_block_count(s.layers)
    w.add_feed_forward_length(s.ffn)
    w.add_head_count(s.heads)
    w.add_head_count_kv(s.kv_heads)
    w.add_rope_dimension_count(s.dim // s.heads)
    w.add_rope_freq_base(s.rope_theta)
    w.add_layer_norm_rms_eps(s.rms_eps)
    w.add_vocab_size(len(tokens))
    w.add_file_type(QUANTS["F16"])
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")  # GPT-2 byte-level regex with single digits, and no space cleanup
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(BOS)
    w.add_eos_token_id(EOS)
    w.add_eot_token_id(EOS)
    w.add_pad_token_id(EOS)
    w.add_add_bos_token(False)
    w.add_chat_template(CHAT_TEMPLATE)
    for name, tensor in _weights(s, len(tokens), muted, np.random.default_rng(seed)).items():
        w.add_tensor(name, tensor)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _quantize(src: pathlib.Path, dst: pathlib.Path, ftype: int) -> None:
    """Quantize src into dst with llama.cpp's own quantizer."""
    import llama_cpp
    from llama_cpp._utils import suppress_stdout_stderr

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    with suppress_stdout_stderr(disable=False):  # a line per tensor, and a warning per 576-wide one
        failed = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if failed:
        raise ModelError(f"llama.cpp could not quantize {src} to {dst}",
                         "check free disk space and the llama-cpp-python build")


def make_tiny_model(path: str | os.PathLike, shape: str = "test", quant: str = "Q4_K_M", seed: int = 0) -> pathlib.Path:
    """Write a random-weight llama GGUF of `shape` and `quant` to `path`; the same arguments give the same bytes."""
    if shape not in SHAPES:
        raise ModelError(f"unknown tiny model shape {shape!r}", f"use one of: {', '.join(SHAPES)}")
    if quant not in QUANTS:
        raise ModelError(f"unknown quantization {quant!r}", f"use one of: {', '.join(QUANTS)}")
    target = pathlib.Path(path)
    raw = target.with_name(f".{target.name}.f16.tmp")
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _write_f16(raw, SHAPES[shape], seed)
        _quantize(raw, tmp, QUANTS[quant])
        os.replace(tmp, target)
    except OSError as exc:
        raise ModelError(f"cannot write {target}: {exc.strerror or exc}", "pick a writable folder for the model") from None
    finally:
        for leftover in (raw, tmp):
            with contextlib.suppress(OSError):
                leftover.unlink()
    return target
