"""Extract a stage's text from chat-model output, then check a story against its labels.
A check is a named callable returning None or a reason "<code>: <detail>"; the chain runs a
list of them in order (dedup and the judge are entries too) and the build counts the codes.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from functools import lru_cache

from lemminflect import getAllInflections, getAllInflectionsOOV, getAllLemmas


@dataclass(slots=True)
class Draft:
    """One generated story and the labels it was asked to carry."""
    story: str  # already passed through extract()
    noun: str
    verb: str
    adjective: str
    features: tuple[str, ...]
    key_sentence: str | None = None
    truncated: bool = False
    id: int = -1
    judged: dict[str, str] | None = None  # the judge's answer ("yes"/"no") per asked feature, once it has run


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds a story's word count must fall within."""
    min_words: int = 40
    max_words: int = 600


# Text after an end-of-turn token is the model starting a new turn, never part of the output.
_END_TOKEN = re.compile(r"<\|(?:im_end|endoftext|eot_id|end)\|>|</s>|<end_of_turn>")
_START_TOKEN = re.compile(r"<\|im_start\|>(?:assistant)?|<\|[a-z_]+\|>|<s>|<start_of_turn>(?:model)?")
_FENCE = re.compile(r"^\s*```\w*\s*$")
_RULE = re.compile(r"^(?:-{3,}|\*{3,}|_{3,})$")
_BULLET = re.compile(r"^(?:[-*+•]|\d{1,2}[.)])\s+")
_BOLD_LINE = re.compile(r"^(\*\*|__)([^*_]+)\1$")
_HEADING = re.compile(r"^#{1,6}\s*")
_BOLD = re.compile(r"\*+|__")
_ITALIC = re.compile(r"(?<!\w)_(\S(?:[^_\n]*\S)?)_(?!\w)")
_LABEL = re.compile(
    r"^(?:the\s+)?(?:summary|story|key sentence|sentence|random sentence|answer|output)\s*:\s*", re.I)
_META_LINE = re.compile(r"^(?:title|words|features)\s*:", re.I)
_AFFIRM = r"(?:sure(?: thing)?|certainly|of course|okay|ok|absolutely|alright|great)"
# "Sure!" or "Certainly, I'd love to help." alone on a line; "Sure enough, ..." is a story.
_AFFIRM_LINE = re.compile(
    rf"^{_AFFIRM}\b[!.,]*(?:\s+(?:i|i'd|i'll|i'm|here|let me|no problem|happy to)\b[^:]*)?$", re.I)
_AFFIRM_LEAD = re.compile(rf"^{_AFFIRM}[!.]\s+", re.I)
# "Here is a story:" style announcements. Requiring an output noun keeps a story that opens
# "Here is what Tom saw: a big dog." intact.
_PREAMBLE = re.compile(
    rf"^(?:{_AFFIRM}\b[^:\n]{{0,40}}?[!.,]\s*)?(?:here|below)\b[^:\n]{{0,150}}?"
    r"\b(?:story|summary|sentence|tale|version|it|one|you go)\b[^:\n]{0,150}?:\s*", re.I)
_ANNOUNCE_LINE = re.compile(r"\b(?:story|summary|sentence|tale)\b[^\n]*:$", re.I)
_CLOSER = re.compile(
    r"^\(?(?:i hope|hope you|let me know|feel free|enjoy(?:!|\s+(?:the|your|this) story)|would you like"
    r"|do you want|is there anything|if you(?:'d| would)? (?:like|want|need)|note:|explanation:|words used"
    r"|word count|th(?:is|e) (?:story|sentence|summary) (?:uses|includes|contains|has)\b"
    r"|i(?:'ve| have)? (?:used|included)\b.*\b(?:words|verb|noun|adjective|features)\b)", re.I)
_APOSTROPHE = re.compile(r"(?<=\w)['’](?=\w)|(?<=s)['’](?=\s)")


def _unquote(text: str) -> str:
    """Drop quotes around the whole text, unless inner quotes make it dialogue."""
    for left, right in (('"', '"'), ("“", "”"), ("'", "'"), ("‘", "’")):
        if len(text) > 1 and text[0] == left and text[-1] == right:
            inner = text[1:-1]
            marks, bare = ("\"“”", inner) if left in "\"“" else ("'‘’", _APOSTROPHE.sub("", inner))
            if not any(q in bare for q in marks):
                return inner.strip()
    return text


def _line(raw: str) -> str:
    """One line with whitespace collapsed, bullets and emphasis removed; bold titles become headings."""
    line = _BULLET.sub("", " ".join(raw.split()))
    if _RULE.match(line):
        return ""
    if (m := _BOLD_LINE.match(line)) and len(m[2].split()) <= 10 and m[2][-1] not in ".!?\"”":
        line = "# " + m[2]
    return _ITALIC.sub(r"\1", _BOLD.sub("", line)).strip()


def _clean_head(lines: list[str]) -> bool:
    """Remove one preamble, label, title or blank from the first line; True if anything went."""
    first = lines[0]
    if (not first or _META_LINE.match(first) or _AFFIRM_LINE.match(first) or _HEADING.match(first)
            or (_ANNOUNCE_LINE.search(first) and len(first.split()) <= 25)):
        del lines[0]
        return True
    for pattern in (_PREAMBLE, _LABEL, _AFFIRM_LEAD):
        if m := pattern.match(first):
            lines[0] = first[m.end():]
            return True
    return False


def extract(text: str) -> str:
    """Strip a chat model's wrapping from a stage output and return the text itself."""
    text = _END_TOKEN.split(text.replace("\r\n", "\n"), maxsplit=1)[0]
    lines = [_line(raw) for raw in _START_TOKEN.sub("", text).split("\n") if not _FENCE.match(raw)]
    while lines and _clean_head(lines):
        pass
    while lines and (not lines[-1] or _CLOSER.match(lines[-1])):
        lines.pop()
    text = "\n".join(_HEADING.sub("", line) for line in lines)
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    inner = _unquote(text)
    return extract(inner) if inner != text else text


def extract_sentence(text: str) -> str:
    """extract(), then keep the first sentence (for the key-sentence stage)."""
    sentences = _sentences(extract(text))
    return _unquote(sentences[0]) if sentences else ""


# Hyphens split words: models write "ice-cream" and "ice cream" interchangeably.
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)*")
_UPOS = {"noun": "NOUN", "verb": "VERB", "adjective": "ADJ"}


def _tokens(text: str) -> list[str]:
    """Lowercase word tokens with possessive 's dropped ("dog's" -> "dog")."""
    words = _TOKEN.findall(text.lower().replace("’", "'"))
    return [w[:-2] if w.endswith("'s") else w for w in words]


@lru_cache(maxsize=4096)
def _forms(word: str, upos: str) -> frozenset[str]:
    """The word and every inflection lemminflect knows for it as this part of speech."""
    table = getAllInflections(word, upos=upos) or getAllInflectionsOOV(word, upos=upos)
    return frozenset({word, *(form.lower() for forms in table.values() for form in forms)})


@lru_cache(maxsize=65536)
def _lemmas(token: str) -> frozenset[str]:
    """Every dictionary lemma of a token under any part of speech ("fished" -> "fish")."""
    return frozenset(lemma.lower() for lemmas in getAllLemmas(token).values() for lemma in lemmas)


def mentions(word: str, pos: str, text: str) -> bool:
    """True if text uses word (any inflection, whole words, case-insensitive)."""
    if pos not in _UPOS:
        raise ValueError(f"pos must be one of {', '.join(_UPOS)}, not {pos!r}")
    parts = _tokens(word)
    if not parts:
        return False
    # A multi-word entry ("ice cream") inflects its last word and needs the others just before.
    *head, last = parts
    forms, tokens, n = _forms(last, _UPOS[pos]), _tokens(text), len(head)
    return any((tokens[i] in forms or last in _lemmas(tokens[i])) and tokens[i - n:i] == head
               for i in range(n, len(tokens)))


_APOSTROPHES = re.compile(r"['’‘`]")
_PUNCT = re.compile(r"[^\w\s]|_")


def _normalise(text: str) -> str:
    """Lowercase, apostrophes dropped, other punctuation as spaces, whitespace collapsed."""
    text = _APOSTROPHES.sub("", text.lower())
    return " ".join(_PUNCT.sub(" ", text).split())


def contains_sentence(sentence: str, story: str) -> bool:
    """True if story contains sentence, ignoring case, punctuation, quotes and spacing."""
    needle = _normalise(sentence)
    return bool(needle) and f" {needle} " in f" {_normalise(story)} "


_DOUBLE_QUOTED = re.compile(r"[\"“”]([^\"“”\n]+)[\"“”]")
# Single-quoted speech must close with punctuation inside ('Hi, Tom,' said Mom), which an
# apostrophe ("don't", "the dogs' bone") never does.
_SINGLE_QUOTED = re.compile(r"(?<![\w'’])['‘](?=\w)([^\n]+?[,.!?])['’](?!\w)")


def has_dialogue(text: str) -> bool:
    """True if text has quoted speech of at least two words."""
    quoted = _DOUBLE_QUOTED.findall(text) + _SINGLE_QUOTED.findall(text)
    return any(len(_TOKEN.findall(q.lower())) >= 2 for q in quoted)


_WORD = re.compile(r"\w+(?:['’-]\w+)*")
# A sentence ends at . ! ? (plus closing quotes) before a capital; "said Tom" after "Hi!" does not.
_SENTENCE_END = re.compile(
    r"(?<!\bMr\.)(?<!\bMrs\.)(?<!\bMs\.)(?<!\bDr\.)(?<!\bSt\.)"
    r"(?:(?<=[.!?])|(?<=[.!?][\"'”’)]))\s+(?=[\"'“‘(]?[A-Z0-9])")


def _sentences(text: str) -> list[str]:
    """Sentences of text; a line break always ends one."""
    return [s.strip() for line in text.split("\n") for s in _SENTENCE_END.split(line) if _WORD.search(s)]


def measure(story: str) -> dict[str, int | float | bool]:
    """Measured labels stored on every row."""
    words = _WORD.findall(story)
    sentences = len(_sentences(story))
    opening = story.lstrip(" \"'“‘*#\n").lower()
    return {
        "has_dialogue": has_dialogue(story),
        "word_count": len(words),
        "sentence_count": sentences,
        # Story prose is never hard-wrapped, so every non-empty line is a paragraph.
        "paragraph_count": sum(1 for line in story.split("\n") if line.strip()),
        "once_upon_a_time": opening.startswith("once upon a time"),
        **readability(story),
    }


def readability(text: str) -> dict[str, float]:
    """The readability scores SimpleStories stores per row, from textstat (0.0 for empty text).

    textstat (pyphen syllables, the Dale-Chall familiar-word list) replaces a hand-written
    syllable counter, so the numbers mean what they mean everywhere else."""
    if not _WORD.search(text):
        return {"flesch_reading_ease": 0.0, "flesch_kincaid_grade": 0.0, "dale_chall": 0.0}
    import textstat

    return {
        "flesch_reading_ease": round(float(textstat.flesch_reading_ease(text)), 2),
        "flesch_kincaid_grade": round(float(textstat.flesch_kincaid_grade(text)), 2),
        "dale_chall": round(float(textstat.dale_chall_readability_score(text)), 2),
    }


# --- checks: each returns None or "<code>: <detail>" -------------------------------------

def _length(draft: Draft, limits: Limits) -> str | None:
    n = len(_WORD.findall(draft.story))
    ok = limits.min_words <= n <= limits.max_words
    return None if ok else f"length: {n} words, need {limits.min_words}-{limits.max_words}"


def _words(draft: Draft, limits: Limits) -> str | None:
    asked = (("noun", draft.noun), ("verb", draft.verb), ("adjective", draft.adjective))
    missing = [f"{pos} '{word}'" for pos, word in asked if not mentions(word, pos, draft.story)]
    return f"words: missing {', '.join(missing)}" if missing else None


def _key_sentence(draft: Draft, limits: Limits) -> str | None:
    key = draft.key_sentence  # None: the recipe has no key-sentence stage
    if key is None or contains_sentence(key, draft.story):
        return None
    return "key_sentence: not found in story" if key.strip() else "key_sentence: stage produced no sentence"


def _dialogue(draft: Draft, limits: Limits) -> str | None:
    if "Dialogue" in draft.features and not has_dialogue(draft.story):
        return "dialogue: requested but no quoted speech"
    return None


CHECKS: dict[str, Callable[[Draft, Limits], str | None]] = {
    "truncated": lambda draft, limits: "truncated: hit max_tokens" if draft.truncated else None,
    "empty": lambda draft, limits: None if draft.story.strip() else "empty: no story text after extraction",
    "length": _length,
    "words": _words,
    "key_sentence": _key_sentence,
    "dialogue": _dialogue,
}


@dataclass(frozen=True, slots=True)
class Check:
    """One named check. `final` checks run after the judge (the judge and dedup), the others
    on the story text as soon as it is written; `accept` is told of every kept story."""

    name: str
    fn: Callable[[Draft], str | None]
    final: bool = False
    accept: Callable[[Draft], None] | None = None

    def __call__(self, draft: Draft) -> str | None:
        return self.fn(draft)


def text_checks(limits: Limits = Limits(), skip: Collection[str] = ()) -> list[Check]:
    """The story-text checks in CHECKS order, minus the skipped ones."""
    unknown = set(skip) - CHECKS.keys()
    if unknown:
        raise ValueError(f"unknown check(s) {', '.join(sorted(unknown))}; valid: {', '.join(CHECKS)}")
    return [Check(name, lambda d, fn=fn: fn(d, limits)) for name, fn in CHECKS.items() if name not in skip]


def first_failure(draft: Draft, checks: Iterable[Check]) -> str | None:
    """The first failing check's reason, or None if the draft passes them all."""
    for check in checks:
        if reason := check(draft):
            return reason
    return None


def run_checks(draft: Draft, limits: Limits = Limits(), skip: Collection[str] = ()) -> str | None:
    """The first failing story-text check's reason, in CHECKS order, or None."""
    return first_failure(draft, text_checks(limits, skip))


def duplicate_check(index) -> Check:
    """Dedup against every story kept so far, earlier shards included (a `DedupIndex`).

    Final: it runs after the judge, so only a story that is really kept enters the index."""
    def find(draft: Draft) -> str | None:
        match = index.find(draft.story, exclude=draft.id)
        return f"duplicate:{match.other}" if match else None

    return Check("duplicate", find, final=True, accept=lambda draft: index.add(draft.id, draft.story))
