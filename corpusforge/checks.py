"""Extract a stage's text from chat-model output, then check a story against its labels.
A check is a named callable returning None or a reason "<code>: <detail>"; the chain runs a
list of them in order (dedup and the judge are entries too) and the build counts the codes.
The detectors of a small model's failures (task talk, loops, an unfinished end, unfit words)
are plain functions on text too, for the engine to cut a doomed attempt mid-stream.
"""
from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator
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


# --- detectors of a small model's failures: plain functions on text -----------------------
# The engine calls these mid-stream, every few tokens, to cut a doomed attempt early, and the
# checks below call them on the finished story, so both give the same reason. They are
# precompiled regexes, sets and counters (no lemminflect). Mid-stream, pass the text up to its
# last whitespace: a word still being written can grow ("gun" -> "gunny"); and unfinished()
# says something only about a text the model has stopped writing.

def _detail(text: str, max_words: int = 8, tail: bool = False) -> str:
    """text lowercased, whitespace collapsed, cut to its first (or last) max_words words."""
    words = text.lower().split()
    return " ".join(words[-max_words:] if tail else words[:max_words])


@dataclass(frozen=True, slots=True)
class _Talk:
    """One family of task talk: a regex on the lowercased text.

    Speed, since the engine calls task_talk() every few tokens: a regex is searched only if
    every group of `keys` has a member in the text (each match contains one, so nothing is
    skipped), and a leading \\b before a letter is checked by hand, because Python's regex
    engine skips ahead fast only to a pattern's literal start (90 µs -> 4 µs on 600 words)."""
    keys: tuple[tuple[str, ...], ...]
    regex: re.Pattern
    word_start: bool

    def search(self, low: str) -> Iterator[re.Match]:
        if not all(any(k in low for k in group) for group in self.keys):
            return
        pos = 0
        while m := self.regex.search(low, pos):
            before = low[m.start() - 1] if m.start() else " "
            if not (self.word_start and (before.isalnum() or before == "_")):
                yield m
            pos = m.start() + 1


def _talk(keys: str, pattern: str) -> _Talk:
    """A family from keys ("a|b & c|d": a or b, and c or d) and a pattern; see _Talk."""
    groups = tuple(tuple(k.strip() for k in group.split("|")) for group in keys.split("&"))
    start = pattern.startswith(r"\b") and pattern[2].isalpha()  # every alternative opens on \b
    return _Talk(groups, re.compile(pattern[2:] if start else pattern, re.M), start)


_NUM = r"(?:\d{1,2}|one|two|three|four|five|six|seven|eight|nine|ten)"
_AGE = rf"{_NUM}[\s-]+(?:years?|yrs?)[\s-]+olds?"
_READERS = r"for (?:young\s+|little\s+|small\s+)?(?:children|kids|toddlers|preschoolers|readers|a\s+(?:young\s+|little\s+)?child)"
_FOR_READERS = "for young|for little|for small|for children|for kids|for toddlers|for preschoolers|for readers|for a"
_KIDS = "child|kid|toddler|reader|listener"

# Task talk wherever it stands, inside quotes too: words a story for a 3-year-old never uses.
_TASK_TALK: list[_Talk] = [
    # The reader's age as an audience: a range ("3-4 years old", "ages 3 to 5"), the plural
    # ("for 3-year-olds"), or an age that would understand or is written for. A character's
    # age is a story ("Tom was three years old", "a happy four-year-old"), so an age alone is not.
    _talk("year|yr", rf"\b{_NUM}\s*(?:-|–|to)\s*{_AGE}"),
    _talk("age", rf"\bage[sd]?\s+{_NUM}\s*(?:-|–|to|and)\s*{_NUM}\b"),
    _talk("year", rf"\b{_NUM}[\s-]+years?[\s-]+olds\b"),
    _talk(f"year|yr & {_KIDS}|audience", rf"\b{_AGE}\s+(?:child|children|kids?|readers?|listeners?|audiences?|toddlers?)\s+"
                                         r"(?:would|could|can|will|might|may|should)\b"),
    _talk("year|yr & suitable|appropriate|understandable|written|designed|easy",
          rf"\b(?:suitable|appropriate|understandable|written|designed|easy)\s+(?:\w+\s+){{0,2}}?"
          rf"(?:for|to|by)\s+(?:an?\s+)?(?:young\s+|little\s+)?{_AGE}"),
    # Children as the audience: "young readers", "a story for children", "suitable for kids".
    # "The toys were for children" is a story, so "for children" needs a word about the text.
    _talk("reader|audience|listener|learner", r"\byoung\s+(?:readers?|audiences?|listeners?|learners?)\b"),
    _talk(f"{_FOR_READERS} & story|stories|tale|text|words|language|vocabulary|content",
          rf"\b(?:story|stories|tale|text|words|language|vocabulary|content)\s+(?:(?:is|are)\s+)?"
          rf"(?:suitable\s+|appropriate\s+|designed\s+|written\s+|meant\s+)?{_READERS}\b"),
    _talk("suitable|appropriate|understandable", rf"\b(?:suitable|appropriate|understandable)\s+{_READERS}\b"),
    _talk(f"understand|grasp|follow|relate & {_KIDS}",
          r"\b(?:child|children|kids?|toddlers?|readers?|listeners?)\s+(?:would|will|can|could|might|should)\s+"
          r"(?:\w+\s+)?(?:understand|grasp|follow|relate\s+to)\s+(?:this|it|the\s+story)\b"),
    # Grammar terms from the prompt ("the verb 'decorate'"): no story for a 3-year-old says "noun".
    _talk("verb|noun|adjective", r"\b(?:the\s+)?(?:verb|noun|adjective|adverb)s?\b"),
    # The prompt's parts and stages. "summary", "paragraph" and "dialogue" never occur in such
    # a story; "the first sentence" is the model pointing at its own text.
    _talk("sentence", r"\b(?:key|random)\s+sentences?\b"),
    _talk("sentence|paragraph",
          r"\b(?:first|second|third|fourth|fifth|last|final|next|opening|closing|following|previous|given|each|every)"
          r"\s+(?:sentence|paragraph)s?\b"),
    _talk("paragraph", r"\bparagraphs?\b"),
    _talk("summar", r"\bsummar(?:y|ies|i[sz](?:e|es|ed|ing))\b"),
    _talk("dialog", r"\bdialog(?:ue)?s?\b"),
    _talk("prompt", r"\bthe\s+(?:given\s+|original\s+|above\s+)?prompt\b"),
    _talk("word count|words used", r"\bword(?: count|s used)\b"),
    # The prompt's features by name. "The moral of the story" is a story's ending and passes.
    _talk("feature", r"\bfeatures?\s*[:(]|\b(?:required|requested|following|given|listed|these|story|all\s+the)\s+features?\b"),
    _talk("foreshadow|moral value|bad ending|plot twist|setup and payoff|narrative",
          r"\b(?:foreshadow\w*|moral value|bad ending|plot twist|setup and payoff|narrative)\b"),
    # The story described instead of told: "the story must contain", "this story uses".
    _talk("story|stories|tale|text|summary|sentence & should|must|need|has to|have to|will include|will contain"
          "|will use|will have",
          r"\b(?:the|this|your|my|our|each)\s+(?:short\s+|little\s+)?(?:story|stories|tale|text|summary|sentence)\s+"
          r"(?:should|must|needs?\s+to|has to|have to|will (?:include|contain|use|have))\b"),
    _talk("story|tale|text|sentence & uses|contains|includes|features|incorporates|meets|follows|suitable|appropriate"
          "|written|designed",
          r"\b(?:the|this)\s+(?:short\s+|little\s+)?(?:story|tale|text|sentence)\s+(?:uses|contains|includes|features"
          r"|incorporates|meets|follows|is\s+suitable|is\s+appropriate|is\s+written|is\s+designed)\b"),
    _talk("simple|easy|short|basic|familiar & words|vocabulary|language|sentences",
          r"\b(?:simple|easy|short|basic|familiar)\s+(?:words|vocabulary|language|sentences)\b"),
    _talk("incorporat", r"\bincorporat\w*"),
    # Numbered steps ("Step 2: ..."); "she took a step" and "step by step" are stories.
    _talk("step", r"^[ \t]*step\s+(?:\d+|one|two|three|four|five)\b"),
    _talk("step", r"\bstep\s+\d+\s*[:.)]"),
    # Labels at a line start: answer labels ("A:", "Q:") and the prompt's section names.
    _talk(":", r"^[ \t]*(?:[aq]|answer|question|response|output|input|explanation|note|title|summary|story|words"
               r"|features|moral|instructions?|sentence)[ \t]*:"),
    _talk("answer", r"\bthe\s+answer\s+(?:is|was)\s*:"),
]
# Task talk only outside double quotes: a character may well say "Here is your ball" or
# "I hope you like it", and a robot "I am an AI"; the narrator of a story never does.
_TASK_TALK_NARRATION: list[_Talk] = [
    # Announcing an output: "Here is a summary", "here's the story about ...".
    _talk("here's|here’s|here is|here are",
          r"\bhere(?:'s|’s| is| are)\s+(?:a|an|the|your|my|another|one)\s+(?:[\w-]+\s+){0,4}?"
          r"(?:story|stories|summary|sentence|tale|version|rewrite|example|answer|response|paragraph|attempt)\b"),
    # Chat openers on a line of their own or before "here"/"I"; "Sure enough, ..." is a story.
    _talk("sure|certainly", r"^[ \t]*(?:sure|certainly)\b[!.,]?[ \t]*(?:$|here\b|i\b|i'd\b|i'll\b|i'm\b|let\s+me\b|let's\b)"),
    # Chat closers: "I hope you enjoyed the story", "I hope this helps".
    _talk("hope", r"\bi\s+hope\s+(?:you\s+(?:enjoy|enjoyed|like|liked|love|loved|found)\s+(?:the|this|my|our)\s+"
                  r"(?:[\w-]+\s+){0,2}?(?:story|tale)|this\s+(?:story\s+|tale\s+)?(?:helps|meets|works|fits|is\s+what"
                  r"|is\s+helpful|is\s+suitable)|it\s+helps|that\s+helps)"),
    # The model planning its output: "We can create a short story ...". "Let me tell you a
    # story" is a storyteller's opening, so "tell" is not among the verbs.
    _talk("create|write|craft|compose|generate & story|stories|summary|sentence|tale|version",
          r"\b(?:let's|let\s+us|let\s+me|we\s+can|we\s+will|we'll|i\s+will|i'll|i\s+can|i\s+would|i'd|i'm\s+going\s+to"
          r"|we're\s+going\s+to|we\s+are\s+going\s+to)\s+(?:now\s+)?(?:create|write|craft|compose|generate|rewrite)\s+"
          r"(?:a|an|the|this|another|your|one|some)\s+(?:[\w-]+\s+){0,3}?(?:story|stories|summary|sentence|tale|version)\b"),
    _talk("in this", r"\bin this\s+(?:short\s+)?(?:story|tale)\b"),
    # The narrator summing up the story it tells ("The story is about helping someone", "This
    # is a story of being brave", "The story ended with a little girl"). A storyteller inside
    # the story says such things in quotes, and "The story was about a bear" (a story read in
    # the story) is narration, so only the present "is about" counts.
    _talk("story", r"\b(?:the|this)\s+(?:short\s+|little\s+)?story\s+is\s+(?:all\s+)?about\b"
                   r"|\bthis\s+is\s+a\s+(?:short\s+|little\s+)?story\s+(?:of|about)\b"
                   r"|\bthe\s+story\s+(?:ends|ended|starts|started|begins|began)\s+(?:with|when)\b"
                   r"|\bthe\s+(?:last|first|next)\s+part\s+of\s+the\s+story\b"),
    # The narrator pointing at the story it is telling ("This story happened when ...", "not
    # just a simple story about being careful"): 3 of the 6 audit failures of the first 138
    # kept SmolLM2 stories. A story read inside the story is "the story", never "this story".
    _talk("this story|this tale|simple story|simple tale|just a story",
          r"\bthis\s+(?:short\s+|little\s+|simple\s+)?(?:story|tale)\b"
          r"|\b(?:a|the)\s+simple\s+(?:story|tale)\b|\bjust\s+a\s+(?:simple\s+)?(?:story|tale)\s+(?:about|of)\b"),
    # The assistant speaking as itself.
    _talk("an ai|an artificial|a language model",
          r"\b(?:as|i am|i'm|i’m) (?:an ai|an artificial intelligence|a language model)\b"),
]
_DOUBLE_QUOTES = re.compile(r"[\"“”]")

# What the steering's "talk" lever keeps the model from writing (engine/steer.py): the words
# and next words of task talk above, so an attempt is not spent on a story this check then
# rejects (19 of 59 retries and 2,000 of 39,700 generated tokens in a 128-story SmolLM2 build,
# mostly "The story is about", "The story ends with", "this story" and "paragraph").
# tests/test_checks.py asserts every one of them fails task_talk().
TALK_WORDS = ("paragraph", "paragraphs", "summary", "summaries", "dialogue", "dialogues", "dialog", "narrative",
              "foreshadowing", "foreshadow", "noun", "nouns", "verb", "verbs", "adjective", "adjectives", "incorporate")
# (the text so far ends with this, the next words it may not go on with)
TALK_NEXT = (
    (re.compile(r"\b(?:the|this)\s+(?:short\s+|little\s+)?story$"), ("ends", "ended", "starts", "started", "begins", "began")),
    (re.compile(r"\b(?:the|this)\s+(?:short\s+|little\s+)?story\s+is$"), ("about",)),
    (re.compile(r"\bthis\s+is\s+a\s+(?:short\s+|little\s+)?story$"), ("about", "of")),
    (re.compile(r"\b(?:this|in\s+this)(?:\s+short|\s+little|\s+simple)?$"), ("story", "tale")),
    (re.compile(r"\b(?:a|the)\s+simple$"), ("story", "tale")),
    (re.compile(r"\bbad$"), ("ending",)),
    (re.compile(r"\bmoral$"), ("value",)),
    (re.compile(r"\bplot$"), ("twist",)),
)


def task_talk(text: str) -> str | None:
    """'task_talk: "<what>"' if text talks about the prompt or the task instead of telling a story."""
    low = text.lower()
    found = [m for talk in _TASK_TALK for m in itertools.islice(talk.search(low), 1)]
    for talk in _TASK_TALK_NARRATION:
        # A match is inside a quote when an odd number of double quotes come before it.
        found += itertools.islice((m for m in talk.search(low)
                                   if len(_DOUBLE_QUOTES.findall(low, 0, m.start())) % 2 == 0), 1)
    if not found:
        return None
    return f'task_talk: "{_detail(min(found, key=lambda m: (m.start(), -m.end()))[0])}"'


# A loop is a run of words said again and again. The thresholds let ordinary repetition
# through: "Tom ran and ran", a refrain said twice, "She was happy. He was happy."
LOOP_NGRAMS: tuple[tuple[int, int], ...] = ((6, 3), (4, 4))  # (n words, times), repeats that do not overlap
LOOP_SENTENCE_REPEATS = 3  # the same sentence, normalised, this many times
LOOP_SENTENCE_MIN_WORDS = 5  # shorter sentences ("Where is my ball?") may be a rule-of-three refrain
_FINISHED = re.compile(r"[.!?…][\"'”’)\]»]*$")
_RUN = re.compile(r"[^\W_]+")


def _often(words: list[str], n: int, times: int) -> bool:
    """True if some n-gram occurs `times` times, overlaps counted: the cheap test before an exact pass."""
    if len(words) < n + times - 1:
        return False
    return Counter(zip(*(words[i:] for i in range(n)))).most_common(1)[0][1] >= times


def _first_repeat(words: list[str], n: int, times: int) -> tuple[int, tuple[str, ...], int] | None:
    """(end, n-gram, count) where an n-gram is first said `times` times without overlapping itself."""
    grams = list(zip(*(words[i:] for i in range(n))))
    hot = {g for g, c in Counter(grams).items() if c >= times}  # overlaps counted: a superset
    seen: dict[tuple[str, ...], tuple[int, int]] = {}  # n-gram -> (count, start of the last one counted)
    for start, gram in enumerate(grams) if hot else ():
        if gram in hot:
            count, last = seen.get(gram, (0, -n))
            if start >= last + n:  # "and ran and ran and ran" does not count its overlaps
                seen[gram] = (count + 1, start)
                if count + 1 >= times:
                    return start + n, gram, count + 1
    return None


def find_loop(text: str) -> str | None:
    """'loop: "<words>" xN' if a run of words, or a whole sentence, repeats too often."""
    words = _RUN.findall(_APOSTROPHES.sub("", text.lower()))  # _normalise(text).split(), faster
    rules = [*LOOP_NGRAMS, (LOOP_SENTENCE_MIN_WORDS, LOOP_SENTENCE_REPEATS)]
    # Any rule's repeat holds an m-gram said t times (m, t the smallest n and count): one Counter
    # rules out the ordinary story, which is most calls.
    if not _often(words, min(n for n, _ in rules), min(t for _, t in rules)):
        return None
    # The repeat completed first in the text wins (then the earlier rule), as it would mid-stream.
    hits = [(hit, i) for i, (n, times) in enumerate(LOOP_NGRAMS) if (hit := _first_repeat(words, n, times))]
    if hits:
        (_, gram, count), _ = min(hits, key=lambda h: (h[0][0], h[1]))
        return f'loop: "{" ".join(gram)}" x{count}'
    # Normalised sentences are runs of the normalised words, so a repeated sentence needs a repeated n-gram.
    if not _often(words, LOOP_SENTENCE_MIN_WORDS, LOOP_SENTENCE_REPEATS):
        return None
    counts: Counter[str] = Counter()
    for sentence in _sentences(text):
        norm = _normalise(sentence)
        # A last sentence still being written is not yet the sentence it will be.
        if _FINISHED.search(sentence) and len(norm.split()) >= LOOP_SENTENCE_MIN_WORDS:
            counts[norm] += 1
            if counts[norm] >= LOOP_SENTENCE_REPEATS:
                return f'loop: sentence "{_detail(norm)}" x{counts[norm]}'
    return None


# A finished sentence may end on "to" ("I want to!") or "with" ("Can I come with?"), never on these.
_DANGLING = frozenset({"a", "an", "the", "and", "but", "or", "nor", "of", "my", "your", "our", "their", "because"})
_THE_END = re.compile(r"\bthe\s+end$", re.I)
_TRAILING_OFF = re.compile(r"(?:\.\.|…)[\"'”’)\]»]*$")
_TAIL_CHARS = 300  # the end of a sentence is all unfinished() reads; sentence-splitting a whole story is slow


def finished(text: str) -> bool:
    """True if the text ends a sentence: a final . ! ? (closing quotes and brackets may
    follow) after a word a sentence may end on, or a closing "The End"; no trailing
    ellipsis; no speech left open anywhere. Empty text is finished (nothing is cut off).
    The steering's end-of-turn rule reads this too, so an answer ends only where this passes."""
    tail = text.rstrip()[-_TAIL_CHARS:]
    words = _WORD.findall(tail.lower())
    if not words:
        return True
    # Speech left open anywhere (an odd number of quotes) is a sentence never finished, and a
    # story that trails off in an ellipsis has no last sentence: both were among the audit's
    # failures of kept SmolLM2 stories when only the last paragraph's quotes were counted.
    return not open_quote(text) and not _TRAILING_OFF.search(tail) and bool(
        (_FINISHED.search(tail) and words[-1] not in _DANGLING) or _THE_END.search(tail))


def unfinished(text: str) -> str | None:
    """'unfinished: last sentence "<its end>"' if the text stops mid-sentence (not finished())."""
    if finished(text):
        return None
    tail = text.rstrip()[-_TAIL_CHARS:]
    return f'unfinished: last sentence "{_detail(_sentences(tail)[-1], 6, tail=True)}"'


def open_quote(text: str) -> bool:
    """True if speech is left open: an odd number of straight double quotes, or more “ than ”."""
    return text.count('"') % 2 == 1 or text.count("“") > text.count("”")


def _plain_forms(word: str) -> frozenset[str]:
    """word and its plain inflections: -s/-es, -ed, -ing, with a doubled last consonant or a dropped e."""
    if word.endswith("e"):
        return frozenset({word, word + "s", word + "d", word[:-1] + "ing"})
    if len(word) > 2 and word[-1] == "y" and word[-2] not in "aeiou":
        return frozenset({word, word[:-1] + "ies", word[:-1] + "ied", word + "ing"})
    forms = {word, word + "s", word + "ed", word + "ing"}
    if word.endswith(("s", "x", "z", "ch", "sh")):
        forms.add(word + "es")
    if word[-1] not in "aeiouwy":
        forms |= {word + word[-1] + "ed", word + word[-1] + "ing"}
    return frozenset(forms)


_LETTERS = re.compile(r"[a-z]+")


@lru_cache(maxsize=16)
def _unfit_index(words: tuple[str, ...]) -> dict[str, list[tuple[tuple[str, ...], str]]]:
    """Each form of an entry's last word -> the words that must come before it, and the entry."""
    index: dict[str, list[tuple[tuple[str, ...], str]]] = {}
    for entry in words:
        *head, last = entry.lower().split()
        for form in _plain_forms(last):
            index.setdefault(form, []).append((tuple(head), entry))
    return index


def unfit(text: str, words: Iterable[str]) -> str | None:
    """'unfit: "<entry>"' for the first use in text of a word or phrase of the unfit list.

    Whole words, any case, plain inflections (see _plain_forms); a phrase inflects its last word."""
    index = _unfit_index(words if isinstance(words, tuple) else tuple(words))
    if not index:
        return None
    tokens = _LETTERS.findall(text.lower())
    for i, token in enumerate(tokens):
        for head, entry in index.get(token, ()):
            if not head or tuple(tokens[max(0, i - len(head)):i]) == head:
                return f'unfit: "{entry}"'
    return None


# --- checks: each returns None or "<code>: <detail>" -------------------------------------

@dataclass(frozen=True, slots=True)
class Settings:
    """What the text checks are configured with: the word-count bounds and the unfit list."""
    limits: Limits = Limits()
    unfit_words: tuple[str, ...] = ()


def _length(draft: Draft, s: Settings) -> str | None:
    n, limits = len(_WORD.findall(draft.story)), s.limits
    ok = limits.min_words <= n <= limits.max_words
    return None if ok else f"length: {n} words, need {limits.min_words}-{limits.max_words}"


def missing_words(missing) -> str:
    """The words check's reason for (word, part of speech) pairs not written (the steering's cut says it too)."""
    return "words: missing " + ", ".join(f"{pos} '{word}'" for word, pos in missing)


NO_DIALOGUE = "dialogue: requested but no quoted speech"


def _words(draft: Draft, s: Settings) -> str | None:
    asked = ((draft.noun, "noun"), (draft.verb, "verb"), (draft.adjective, "adjective"))
    missing = [(word, pos) for word, pos in asked if not mentions(word, pos, draft.story)]
    return missing_words(missing) if missing else None


def _key_sentence(draft: Draft, s: Settings) -> str | None:
    key = draft.key_sentence  # None: the recipe has no key-sentence stage
    if key is None or contains_sentence(key, draft.story):
        return None
    return "key_sentence: not found in story" if key.strip() else "key_sentence: stage produced no sentence"


def _dialogue(draft: Draft, s: Settings) -> str | None:
    if "Dialogue" in draft.features and not has_dialogue(draft.story):
        return NO_DIALOGUE
    return None


CHECKS: dict[str, Callable[[Draft, Settings], str | None]] = {
    "truncated": lambda draft, s: "truncated: hit max_tokens" if draft.truncated else None,
    "empty": lambda draft, s: None if draft.story.strip() else "empty: no story text after extraction",
    "length": _length,
    "words": _words,
    "key_sentence": _key_sentence,
    "dialogue": _dialogue,
    "task_talk": lambda draft, s: task_talk(draft.story),
    "loop": lambda draft, s: find_loop(draft.story),
    "unfinished": lambda draft, s: unfinished(draft.story),
    "unfit": lambda draft, s: unfit(draft.story, s.unfit_words),
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


def text_checks(limits: Limits = Limits(), skip: Collection[str] = (), unfit_words: Iterable[str] = ()) -> list[Check]:
    """The story-text checks in CHECKS order, minus the skipped ones; no unfit words, no unfit check."""
    unknown = set(skip) - CHECKS.keys()
    if unknown:
        raise ValueError(f"unknown check(s) {', '.join(sorted(unknown))}; valid: {', '.join(CHECKS)}")
    settings = Settings(limits, tuple(unfit_words))
    return [Check(name, lambda d, fn=fn: fn(d, settings)) for name, fn in CHECKS.items() if name not in skip]


def first_failure(draft: Draft, checks: Iterable[Check]) -> str | None:
    """The first failing check's reason, or None if the draft passes them all."""
    for check in checks:
        if reason := check(draft):
            return reason
    return None


def run_checks(draft: Draft, limits: Limits = Limits(), skip: Collection[str] = (),
               unfit_words: Iterable[str] = ()) -> str | None:
    """The first failing story-text check's reason, in CHECKS order, or None."""
    return first_failure(draft, text_checks(limits, skip, unfit_words))


def duplicate_check(index) -> Check:
    """Dedup against every story kept so far, earlier shards included (a `DedupIndex`).

    Final: it runs after the judge, so only a story that is really kept enters the index."""
    def find(draft: Draft) -> str | None:
        match = index.find(draft.story, exclude=draft.id)
        return f"duplicate:{match.other}" if match else None

    return Check("duplicate", find, final=True, accept=lambda draft: index.add(draft.id, draft.story))
