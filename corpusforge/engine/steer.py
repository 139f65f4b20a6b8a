"""Steering: what keeps a small real model on task while it writes, token by token.

A request carries a `Steer` (plain data the chain builds from the plan: the words a story
must use, its length budget, its key sentence). The real engine compiles it into a
`Steering` per sequence, which before every sampling step adjusts that sequence's logits
(`adjust`) and after it may force tokens or cut the attempt (`after`). Everything here is a
pure function of the sequence's own tokens, so rows stay equal whatever shares the batch.
A fake engine ignores `Steer`.

Why each lever exists (measured on SmolLM2-135M-Instruct, scripts/bench_quality.py):
- a static bias on the words makes the model loop on them, so the bias here applies only
  to the words still missing, grows as the story nears its length, and stops once a word
  is written;
- the model rambles past its budget, so an end-of-turn push starts once every word is in
  and the story is long enough, and only right after a sentence ends;
- a 135M model almost never copies a given sentence verbatim, so the key sentence is
  inserted as forced tokens at the first paragraph (or sentence) break;
- a loop, task talk in the first sentence, unfit words or too many words doom an attempt:
  cutting it there gives its tokens to other stories.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from .. import checks

LEVERS = ("words", "end", "key_sentence", "cut")


@dataclass(frozen=True, slots=True)
class SteerConfig:
    """A recipe stage's steering settings ([stages.steer] in recipe.toml); all numbers in logits."""

    words: bool = True  # bias the missing required words
    word_bias: float = 1.0  # bias at the start of the story
    word_bias_max: float = 6.0  # bias once the story reaches its target length
    end: bool = True  # push toward end-of-turn once the story is complete
    end_bias_max: float = 8.0  # the push at 1.5x the target length (0 at the target)
    min_words: int = 60  # end-of-turn is forbidden before this many words
    target_words: int = 160  # where the word bias peaks and the end push starts
    key_sentence: bool = True  # insert the key sentence by construction
    cut: bool = True  # end a doomed attempt mid-stream
    max_words: int = 600
    # End the answer at its first line break once it has min_words (part of "end"): a summary
    # or a sentence is one line, and the 135M model otherwise runs on into a whole story.
    end_at_newline: bool = False

    def off(self, levers) -> SteerConfig:
        """The same settings with some levers switched off (ablation, --no-steer)."""
        return replace(self, **{k: False for k in levers if k in LEVERS})

    def to_dict(self) -> dict:
        return asdict(self)

    def any(self) -> bool:
        return any(getattr(self, k) for k in LEVERS)


CUT_CHECKS = ("length", "task_talk", "loop", "unfit")  # check names the mid-stream cut applies early


@dataclass(frozen=True, slots=True)
class Steer:
    """What one request's steering is about: built by the chain from the plan."""

    config: SteerConfig
    words: tuple[tuple[str, str], ...] = ()  # (word, part of speech)
    key_sentence: str = ""
    unfit_words: tuple[str, ...] = ()
    dialogue: bool = False  # the plan asks for dialogue: steer toward an opening quote too
    # The checks whose mid-stream form may cut the attempt: the build's checks minus --skip-check,
    # so a skipped check never ends an attempt while it is written either.
    cut_checks: frozenset[str] = frozenset(CUT_CHECKS)


_WORD = re.compile(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)*")
_SENTENCE_END = re.compile(r"[.!?][\"'”’)]*\s*$")
CUT_EVERY = 8  # tokens between mid-stream checks: the loop/unfit scans are O(text)


@dataclass(slots=True)
class Steering:
    """The engine-side state of one sequence's steering."""

    spec: Steer
    forms: list[list[list[int]]]  # per missing word: token sequences of its spellings
    eog: list[int]
    text: str = ""
    missing: list[int] = field(default_factory=list)  # indexes into spec.words
    n_words: int = 0
    key_done: bool = False
    first_sentence_checked: bool = False
    since_cut_check: int = 0
    generated: list[int] = field(default_factory=list)
    tokenize: object = None  # the engine's tokenizer, for the forced key sentence
    quotes: list[int] = field(default_factory=list)  # tokens opening speech, while none is written

    @classmethod
    def compile(cls, spec: Steer, tokenize, eog: list[int], cache: dict) -> Steering:
        """Token sequences of every spelling of every word (" word" and its inflections)."""
        forms = []
        for word, pos in spec.words:
            key = (word, pos)
            if key not in cache:
                spellings = sorted(_spellings(word, pos))
                seqs = {tuple(tokenize(s, add_special=False)) for s in spellings}
                cache[key] = [list(t) for t in sorted(seqs) if t]
            forms.append(cache[key])
        quotes = []
        if spec.dialogue and spec.config.words:
            if "quotes" not in cache:
                cache["quotes"] = sorted({t[0] for t in (tokenize(q, add_special=False) for q in (' "', '"', " “")) if t})
            quotes = cache["quotes"]
        return cls(spec, forms, eog, tokenize=tokenize, quotes=quotes, missing=list(range(len(spec.words))) if spec.config.words else [],
                   key_done=not (spec.config.key_sentence and spec.key_sentence.strip()))

    @classmethod
    def detector(cls, config: SteerConfig, unfit_words: tuple[str, ...] = (), cut_checks=frozenset(CUT_CHECKS)) -> Steering:
        """Only what can be applied to text streamed from elsewhere (a server): the mid-stream
        cut and the end at a line break, fed through `after`; nothing that changes logits.
        scripts/bench_kept.py's llama-server client closes its stream when this fires."""
        spec = Steer(config.off(("words", "key_sentence")), unfit_words=unfit_words, cut_checks=frozenset(cut_checks))
        return cls.compile(spec, None, [], {})

    # ----- before sampling -------------------------------------------------------------

    def adjust(self, logits: np.ndarray) -> None:
        """Add this step's biases to the sequence's logits row (in place)."""
        c = self.spec.config
        progress = min(1.0, self.n_words / max(1, c.target_words))
        bias = c.word_bias + (c.word_bias_max - c.word_bias) * progress
        if self.quotes:
            logits[self.quotes] += bias
        if self.missing:
            for i in self.missing:
                for seq in self.forms[i]:
                    k = _partial(self.generated, seq)
                    if k:  # the word is half written: finish it
                        logits[seq[k]] += c.word_bias_max + 4.0
                    else:
                        logits[seq[0]] += bias
        if c.end:
            if (self.n_words < c.min_words or ((self.missing or self.quotes) and self.n_words < 1.5 * c.target_words)
                    or checks.open_quote(self.text[self.text.rfind("\n") + 1:])):
                # Too short, a word still to come, or speech still open: not yet (past 1.5x
                # the target a missing word may end it and fail the words check instead).
                logits[self.eog] = -np.inf
            elif self.n_words >= c.target_words and _SENTENCE_END.search(self.text):
                over = (self.n_words - c.target_words) / max(1, c.target_words)
                logits[self.eog] += c.end_bias_max * min(1.0, 0.25 + 2 * over)

    # ----- after sampling --------------------------------------------------------------

    def after(self, token: int, piece: str, is_eog: bool) -> tuple[list[int] | None, str | None, bool]:
        """Take the sampled token: (tokens to force after it, reason to cut the attempt, stop here)."""
        c = self.spec.config
        if c.end and c.end_at_newline and "\n" in piece and self.n_words >= c.min_words and not is_eog:
            return None, None, True
        if not is_eog:
            self.generated.append(token)
            self.text += piece
            self.n_words = len(_WORD.findall(self.text))
            if self.quotes and ('"' in piece or "“" in piece):
                self.quotes = []
            if self.missing and not piece[:1].isalnum():  # a word boundary: did a missing word land?
                # Only the text's tail can hold a word that just ended (a scan of the whole
                # story per token per sequence would grow with its square).
                tail = self.text[-80:]
                self.missing = [i for i in self.missing if not checks.mentions(*self.spec.words[i], tail)]
        forced = self._key_sentence(piece, is_eog)
        return forced, None if forced else self._cut(is_eog), False

    def _key_sentence(self, piece: str, is_eog: bool) -> list[int] | None:
        if self.key_done:
            return None
        c, key = self.spec.config, self.spec.key_sentence.strip()
        if checks.contains_sentence(key, self.text):
            self.key_done = True
            return None
        at_break = "\n" in piece and self.n_words >= 12 and self.text.rstrip().endswith((".", "!", "?", '"', "”"))
        late = self.n_words >= c.target_words // 2 and _SENTENCE_END.search(self.text)
        if at_break or late or (is_eog and self.n_words):
            self.key_done = True
            text = key if at_break else " " + key
            tokens = self._tokens_of(text)
            self.generated += tokens
            self.text += text
            self.n_words = len(_WORD.findall(self.text))
            return tokens
        return None

    def _cut(self, is_eog: bool) -> str | None:
        c = self.spec.config
        if not c.cut or is_eog:
            return None
        on = self.spec.cut_checks
        if self.n_words > c.max_words and "length" in on:
            return f"length: over {c.max_words} words (cut while writing)"
        if not self.first_sentence_checked and _SENTENCE_END.search(self.text):
            self.first_sentence_checked = True
            if "task_talk" in on and (reason := checks.task_talk(self.text)):
                return reason
        self.since_cut_check += 1
        if self.since_cut_check >= CUT_EVERY:
            self.since_cut_check = 0
            # Only whole words for unfit: "gun" may still become "gunny".
            done = self.text[: max(self.text.rfind(" "), 0)]
            return (("loop" in on and checks.find_loop(self.text))
                    or ("unfit" in on and checks.unfit(done, self.spec.unfit_words)) or None)
        return None

    def _tokens_of(self, text: str) -> list[int]:
        return list(self.tokenize(text, add_special=False))


def _spellings(word: str, pos: str) -> set[str]:
    """How the word may appear after a space or at a sentence start, in any inflection."""
    upos = {"noun": "NOUN", "verb": "VERB", "adjective": "ADJ"}[pos]
    forms = checks._forms(word, upos) if " " not in word else {word}
    # Lowercase only: biasing " Mole" as well turned the words into names ("Mole Mole Chews",
    # "Shouting Shun") in the first real-model run.
    return {" " + f for f in forms}


def _partial(generated: list[int], seq: list[int]) -> int:
    """k if the last k generated tokens are the first k tokens of `seq` (0 < k < len), else 0."""
    for k in range(len(seq) - 1, 0, -1):
        if len(generated) >= k and generated[-k:] == seq[:k]:
            return k
    return 0
