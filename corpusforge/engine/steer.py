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
  cutting it there gives its tokens to other stories; so does a required word (or the
  asked-for speech) still missing at 1.5x the target length, where the end-of-turn ban lifts;
- a required word's tokens get glued onto ("cornshed", "fingerpaint": 2 of 8 words
  rejects in a 64-story build), so right after one the next token must end the word or
  grow it into another of its inflections ("boundary");
- the model stops mid-sentence (15 of 74 retries were "unfinished"), so end-of-turn is
  allowed only where checks.finished() holds, and a line may not break inside open speech,
  after which it could never hold ("finish");
- speech of one word ("Bend!", "great") is no dialogue to the check, and 9 of 12 dialogue
  retries in a 128-story build had only such quotes: so the pull toward an opening quote
  lasts until the text holds speech the check accepts, and rests while a quote is open;
- task talk ("The story is about", "this story", "paragraph": 19 of 59 retries in that build)
  is kept out token by token ("talk": the words and next words checks.TALK_WORDS/TALK_NEXT
  list), and what gets through is cut at the sentence end where the check first finds it;
- a story whose summary lacks a word mostly lacks it too (in a 64-story build, 1 of 8 words
  rejects had all three words in its summary, 39 of 64 kept stories did), and a summary ends
  at its first line break: so its line may not break while a word is missing ("hold_line").
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from .. import checks

MAIN_LEVERS = ("words", "end", "key_sentence", "cut")
# Finer levers, each part of a main one (and off with it): boundary of words, finish and
# hold_line of end, cut_missing and talk of cut. --no-steer and the bench's lever table name them one by one.
LEVERS = MAIN_LEVERS + ("boundary", "finish", "cut_missing", "hold_line", "talk")


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
    boundary: bool = True  # after a required word, the next token ends it (or inflects it)
    finish: bool = True  # end-of-turn only where the text ends a sentence (checks.finished)
    cut_missing: bool = True  # cut at 1.5x target_words when a word or the speech is still missing
    hold_line: bool = True  # with end_at_newline: no line break while a word is missing (part of "end")
    talk: bool = True  # the words and next words of task talk are never sampled (part of "cut")
    # End the answer at its first line break once it has min_words (part of "end"): a summary
    # or a sentence is one line, and the 135M model otherwise runs on into a whole story.
    end_at_newline: bool = False

    def off(self, levers) -> SteerConfig:
        """The same settings with some levers switched off (ablation, --no-steer)."""
        return replace(self, **{k: False for k in levers if k in LEVERS})

    def to_dict(self) -> dict:
        return asdict(self)

    def any(self) -> bool:
        return any(getattr(self, k) for k in MAIN_LEVERS)


# Check names the mid-stream cut applies early. "words" and "dialogue" are the last stage's
# checks only: the chain leaves them out of an earlier stage's cut_checks.
CUT_CHECKS = ("length", "task_talk", "loop", "unfit", "words", "dialogue")
STORY_ONLY_CUTS = frozenset({"words", "dialogue"})


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
    talk_checked: int = 0  # the text's length when task talk was last looked for (at a sentence end)
    since_cut_check: int = 0
    generated: list[int] = field(default_factory=list)
    tokenize: object = None  # the engine's tokenizer, for the forced key sentence
    quotes: list[int] = field(default_factory=list)  # tokens opening speech, while none is written
    need_quote: bool = False  # speech asked for and none written yet
    pieces: object = None  # Pieces of the engine's vocabulary, or None
    grow: list[list[np.ndarray]] = field(default_factory=list)  # per missing word, per form: tokens that inflect it
    talk: Talk | None = None  # the task-talk tokens banned ("talk"), or None

    @classmethod
    def compile(cls, spec: Steer, tokenize, eog: list[int], cache: dict, pieces: Pieces | None = None) -> Steering:
        """Token sequences of every spelling of every word (" word" and its inflections), and
        with `pieces`, the tokens that may follow each one inside a word (they inflect it)."""
        forms, grow = [], []
        glue = pieces if spec.config.words and spec.config.boundary else None
        for word, pos in spec.words if spec.config.words else ():
            key = (word, pos)
            if key not in cache:
                spellings = sorted(_spellings(word, pos))
                seqs = {tuple(tokenize(s, add_special=False)): s for s in spellings}
                cache[key] = [(list(t), seqs[t]) for t in sorted(seqs) if t]
            forms.append([t for t, _ in cache[key]])
            if glue is not None:
                if ("grow",) + key not in cache:
                    texts = [text for _, text in cache[key]]
                    cache[("grow",) + key] = [glue.growing(text, texts) for text in texts]
                grow.append(cache[("grow",) + key])
        quotes = []
        if spec.dialogue and spec.config.words:
            if "quotes" not in cache:
                cache["quotes"] = sorted({t[0] for t in (tokenize(q, add_special=False) for q in (' "', '"', " “")) if t})
            quotes = cache["quotes"]
        talk = None
        if spec.config.cut and spec.config.talk and "task_talk" in spec.cut_checks and tokenize is not None:
            if "talk" not in cache:
                cache["talk"] = Talk.of(tokenize)
            talk = cache["talk"]
        return cls(spec, forms, eog, tokenize=tokenize, quotes=quotes, missing=list(range(len(spec.words))) if spec.config.words else [],
                   key_done=not (spec.config.key_sentence and spec.key_sentence.strip()), need_quote=spec.dialogue,
                   pieces=pieces, grow=grow, talk=talk)

    @classmethod
    def detector(cls, config: SteerConfig, unfit_words: tuple[str, ...] = (), cut_checks=frozenset(CUT_CHECKS),
                 words: tuple[tuple[str, str], ...] = (), dialogue: bool = False) -> Steering:
        """Only what can be applied to text streamed from elsewhere (a server): the mid-stream
        cut and the end at a line break, fed through `after`; nothing that changes logits.
        With `words` (and `dialogue`) it also cuts where a word (or the speech) is still
        missing at 1.5x the target length, as the build does (those need no logits either).
        scripts/bench_kept.py's llama-server client closes its stream when this fires."""
        spec = Steer(config.off(("words", "key_sentence")), words=tuple(words), unfit_words=unfit_words,
                     cut_checks=frozenset(cut_checks), dialogue=dialogue)
        s = cls.compile(spec, None, [], {})
        s.forms, s.missing = [], list(range(len(spec.words)))  # tracked from the text, never biased
        return s

    # ----- before sampling -------------------------------------------------------------

    def adjust(self, logits: np.ndarray) -> None:
        """Add this step's biases to the sequence's logits row (in place)."""
        c = self.spec.config
        progress = min(1.0, self.n_words / max(1, c.target_words))
        bias = c.word_bias + (c.word_bias_max - c.word_bias) * progress
        line_open = checks.open_quote(self.text[self.text.rfind("\n") + 1:])
        if self.quotes and not line_open:  # not while speech is open: a quote token there closes it
            logits[self.quotes] += bias
        grow = None  # a required word just written: the tokens that may still inflect it
        if self.missing:
            for i in self.missing:
                for j, seq in enumerate(self.forms[i]):
                    k = _partial(self.generated, seq)
                    if k:  # the word is half written: finish it
                        logits[seq[k]] += c.word_bias_max + 4.0
                    else:
                        logits[seq[0]] += bias
                        if self.grow and self.generated[-len(seq):] == seq:
                            grow = self.grow[i][j]
        if grow is not None:  # end the word here: no "cornshed" (it would not count)
            keep = logits[grow]
            logits[self.pieces.glue] = -np.inf
            logits[grow] = keep
        if c.end:
            if (self.n_words < c.min_words or ((self.missing or self.quotes) and self.n_words < 1.5 * c.target_words)
                    or line_open
                    or (c.finish and not checks.finished(self.text))):
                # Too short, a word still to come, speech still open, or mid-sentence: not yet
                # (past 1.5x the target a missing word ends it: cut_missing or the words check).
                logits[self.eog] = -np.inf
            elif self.n_words >= c.target_words and _SENTENCE_END.search(self.text):
                over = (self.n_words - c.target_words) / max(1, c.target_words)
                logits[self.eog] += c.end_bias_max * min(1.0, 0.25 + 2 * over)
            if (c.end_at_newline and c.hold_line and self.pieces is not None and self.missing
                    and self.n_words < 1.5 * c.target_words):
                # A one-line answer's line break is its end: not while a word is still to come.
                logits[self.pieces.newlines] = -np.inf
            elif c.finish and line_open and self.pieces is not None:
                # Speech left open at a line break stays open for good (finished() counts the
                # quotes of the whole text), and then the story can never end: 3 of 59 retries
                # ran to max_tokens that way. A line break that closes the quote first may come.
                logits[self.pieces.open_newlines] = -np.inf
        if self.talk is not None:
            banned = self.talk.banned(self.generated, self.text)
            if banned is not None:
                logits[banned] = -np.inf

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
            self._saw_quote(piece)
            if self.missing and not piece[:1].isalnum():  # a word boundary: did a missing word land?
                # Only the text's tail can hold a word that just ended (a scan of the whole
                # story per token per sequence would grow with its square), and only before
                # this piece: the word this piece starts may still grow ("corn" -> "cornshed").
                tail = self.text[-80 - len(piece):len(self.text) - len(piece)]
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
            # The sentence may carry a required word (or open speech): after() only scans the
            # text's tail at a word boundary, which a long sentence runs past.
            tail = self.text[-(len(text) + 80):]
            self.missing = [i for i in self.missing if not checks.mentions(*self.spec.words[i], tail)]
            self._saw_quote(text)
            return tokens
        return None

    def _cut(self, is_eog: bool) -> str | None:
        c = self.spec.config
        if not c.cut or is_eog:
            return None
        on = self.spec.cut_checks
        if self.n_words > c.max_words and "length" in on:
            return f"length: over {c.max_words} words (cut while writing)"
        if "task_talk" in on and len(self.text) > self.talk_checked and _SENTENCE_END.search(self.text):
            # At every sentence end, not only the first: a match never goes away as the text
            # grows, so the attempt is doomed from here (12 of 14 story-stage task-talk retries
            # in a 128-story build came after the first sentence, 130 tokens each on average).
            self.talk_checked = len(self.text)
            if reason := checks.task_talk(self.text):
                return reason
        if c.cut_missing and self.n_words >= 1.5 * c.target_words and (reason := self._still_missing()):
            return reason
        self.since_cut_check += 1
        if self.since_cut_check >= CUT_EVERY:
            self.since_cut_check = 0
            # Only whole words for unfit: "gun" may still become "gunny".
            done = self.text[: max(self.text.rfind(" "), 0)]
            return (("loop" in on and checks.find_loop(self.text))
                    or ("unfit" in on and checks.unfit(done, self.spec.unfit_words)) or None)
        return None

    def _still_missing(self) -> str | None:
        """The words (or dialogue) check's reason, where the story can no longer pass it: past
        1.5x the target the end-of-turn ban lifts, and in a 64-story SmolLM2 build no kept
        story's last required word came later than word 224 (target 150)."""
        on = self.spec.cut_checks
        if self.missing and "words" in on:
            # Confirm on the whole text once, as the check will read it (the running scan reads tails).
            self.missing = [i for i in self.missing if not checks.mentions(*self.spec.words[i], self.text)]
            if self.missing:
                return checks.missing_words(self.spec.words[i] for i in self.missing) + " (cut while writing)"
        if self.need_quote and "dialogue" in on and not checks.has_dialogue(self.text):
            return checks.NO_DIALOGUE + " (cut while writing)"
        return None

    def _saw_quote(self, text: str) -> None:
        """Speech is written once the story holds what the dialogue check accepts (quoted
        speech of two words or more): then its bias and its wait end. `text` is what was just
        added; only a quote mark in it can change the answer."""
        if self.need_quote and any(q in text for q in '"“”') and checks.has_dialogue(self.text):
            self.quotes, self.need_quote = [], False

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


@dataclass(frozen=True, slots=True)
class Pieces:
    """What steering needs to know of one model's vocabulary: the tokens that continue a word
    (their text starts with a letter or digit), those by text ("boundary" masks them after a
    required word), and the tokens holding a line break ("hold_line" bans them; "finish" bans
    those that would leave speech open)."""

    glue: np.ndarray
    by_text: dict[str, list[int]]
    newlines: np.ndarray
    open_newlines: np.ndarray  # those with no quote mark before their line break (they leave speech open)

    @classmethod
    def of(cls, pieces) -> Pieces:
        """From (token id, text) pairs of a whole vocabulary."""
        by_text: dict[str, list[int]] = {}
        newlines, open_newlines = [], []
        for token, text in pieces:
            if text[:1].isalnum():
                by_text.setdefault(text, []).append(token)
            if "\n" in text:
                newlines.append(token)
                if not any(q in text[: text.index("\n")] for q in '"”'):
                    open_newlines.append(token)
        return cls(np.array(sorted(t for ts in by_text.values() for t in ts), dtype=np.int64), by_text,
                   np.array(sorted(newlines), dtype=np.int64), np.array(sorted(open_newlines), dtype=np.int64))

    def growing(self, text: str, spellings) -> np.ndarray:
        """Tokens that, written right after `text`, still lead to one of `spellings` (" jog" ->
        "s", "ged", "ging", "g", ...): the inflections the boundary must not forbid."""
        grow = set()
        for other in spellings:
            if len(other) > len(text) and other.startswith(text):
                rest = other[len(text):]
                for k in range(1, len(rest) + 1):
                    grow.update(self.by_text.get(rest[:k], ()))
        return np.array(sorted(grow), dtype=np.int64)


@dataclass(frozen=True, slots=True)
class Talk:
    """The tokens of task talk (checks.TALK_WORDS, checks.TALK_NEXT) in one model's vocabulary.

    A word may take several tokens ("Adjective" -> "Ad", "ject", "ive"): its last token is
    banned where the text already ends in the others, a one-token word always. A next word's
    first token is banned where the text ends as its rule says."""

    always: np.ndarray
    after: tuple[tuple[tuple[int, ...], int], ...]  # (the tokens before, the token banned)
    next: tuple[tuple[re.Pattern, np.ndarray], ...]

    @classmethod
    def of(cls, tokenize) -> Talk:
        always, after = set(), set()
        for word in checks.TALK_WORDS:
            for spelling in {" " + word, " " + word.capitalize(), word, word.capitalize()}:
                seq = tuple(tokenize(spelling, add_special=False))
                if len(seq) == 1:
                    always.add(seq[0])
                elif seq:
                    after.add((seq[:-1], seq[-1]))
        nxt = []
        for rule, words in checks.TALK_NEXT:
            firsts = {t[0] for t in (tokenize(" " + w, add_special=False) for w in words) if t}
            nxt.append((rule, np.array(sorted(firsts), dtype=np.int64)))
        return cls(np.array(sorted(always), dtype=np.int64), tuple(sorted(after)), tuple(nxt))

    def banned(self, generated: list[int], text: str) -> np.ndarray | None:
        """The tokens that may not come next."""
        out = [self.always]
        out += [np.array([t]) for before, t in self.after if tuple(generated[-len(before):]) == before]
        if text[-1:].isalpha():  # every rule ends on a word
            tail = text[-40:].lower()
            out += [tokens for rule, tokens in self.next if rule.search(tail)]
        return np.concatenate(out) if len(out) > 1 else self.always
