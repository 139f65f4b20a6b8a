"""Independent audit of kept stories, for the quality benchmark.

The rules here are written apart from the project's own checks (corpusforge/checks.py) on
purpose: they re-examine stories the project kept, so a bug or blind spot in those checks shows
up as a failure share here instead of being copied. Every rule is simple, deterministic and
documented below; the only dependency beyond the standard library is lemminflect, and it is
optional (when importable its inflections are added to this file's own suffix rules and
irregular tables; the tables alone cover the common words).

As a module (put scripts/ on sys.path):

    from audit import audit, audit_all, RULES
    audit(story, ["kite", "run", "windy"])      # -> {"words": True, "no_task_talk": True, ...}
    audit_all(rows)                             # -> {"n": .., "pass_share": {..}, "all": .., "failures": {..}}

As a script (columns `story` and `words`, the latter a list of noun, verb, adjective):

    python scripts/audit.py FILE.parquet|FILE.jsonl [--min-words 40] [--max-words 600] [--examples 3] [--json]

Rules (True = the story passes):

words           all required words appear in some inflection, as whole words, ignoring case.
                Noun (words[0]): singular or plural (regular -s/-es/-ies/-ves and a table of
                irregular plurals). Verb (words[1]): -s, -ed, -ing with the usual spelling
                changes (e-drop, y->i, doubled final consonant) and a table of irregular
                past forms. Adjective (words[2]): -er/-est with the same spelling changes and
                a few irregular comparatives. A possessive ('s) counts, and so does any part of
                a hyphenated compound ("sun-hat" contains "hat"). When `words` is not three
                entries long, every entry may take any of these inflections.
no_task_talk    the text never talks about the prompt or the writing task: the reader's age
                or audience ("for a 3-year-old child", "toddlers would understand"), "simple
                words", "the story should/must/will", "this story", the grammar terms verb /
                noun / adjective, "key sentence", "summary", "feature", "Step 1",
                "Here is a story", a "Sure!"/"Certainly!" opener, "I hope you" (outside quoted
                speech), "Title:"/"Q:"/"A:"-style labels at a line start, "the end of the
                story", "as an AI", square-bracket placeholders and meta-comments in parentheses.
                Story text is left alone: "Tom was three years old", "took a step",
                "a simple plan", a last line "The end.", "I hope you feel better" said by a
                character.
no_loop         no degenerate repetition: no word 5-gram occurs 3 or more times, no sentence of
                3+ words occurs 3 or more times, no word is repeated 5 times in a row, and in a
                text of 40+ words no single non-stop word makes up more than 15% of all words.
                A refrain used twice passes.
complete_ending the last sentence ends in . ! or ? (optionally followed by closing quotes or
                brackets), not in an ellipsis, its last word is not a function word that cannot
                end an English sentence (the, a, and, because, my, Mr, ...), and the last
                paragraph has no unclosed double quote. Stranded prepositions ("a friend to
                play with.") are normal English and pass.
child_safe      no term unfit for a small child from this file's own list (violence, gore,
                weapons, drugs and alcohol, sex, swearing), as whole words in any inflection,
                plus a few context rules: a knife/blade used to cut or stab a person, "shoot"
                or "shot" aimed at a person, a dead body. Toy guns ("water gun"), shooting
                stars and mild things (sad, cry, scared, a hurt knee, falling down, monsters,
                getting lost) pass.
length          min_words <= word count <= max_words; a word is a run of letters/digits, with
                inner apostrophes and hyphens kept inside one word.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

try:  # optional: extra inflections; the rules below do not need it
    from lemminflect import getAllInflections, getAllInflectionsOOV  # type: ignore
except Exception:  # pragma: no cover - depends on the environment
    getAllInflections = getAllInflectionsOOV = None

RULES = ("words", "no_task_talk", "no_loop", "complete_ending", "child_safe", "length")

# ---------------------------------------------------------------------------------------------
# Tokens

_APOS = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u2010": "-", "\u2011": "-"})
_WORD = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")


def _norm(text: str) -> str:
    return text.translate(_APOS)


def tokens(text: str) -> list[str]:
    """Lower-cased words: letters/digits with inner apostrophes and hyphens ("sun-hat", "don't")."""
    return _WORD.findall(_norm(text).lower())


def word_count(text: str) -> int:
    return len(tokens(text))


def _word_forms(text: str) -> set[str]:
    """Every token, each hyphen part, and each with a possessive 's stripped."""
    out: set[str] = set()
    for tok in tokens(text):
        for piece in [tok, *tok.split("-")]:
            if not piece:
                continue
            out.add(piece)
            if piece.endswith("'s"):
                out.add(piece[:-2])
            if "'" in piece:
                out.add(piece.split("'")[0])
    return out


# ---------------------------------------------------------------------------------------------
# Inflections (own rules + small irregular tables, optionally lemminflect)

_VOWELS = set("aeiou")

_IRREGULAR_PLURALS = {
    "child": ["children"], "man": ["men"], "woman": ["women"], "person": ["people", "persons"],
    "mouse": ["mice"], "goose": ["geese"], "foot": ["feet"], "tooth": ["teeth"], "ox": ["oxen"],
    "louse": ["lice"], "die": ["dice"], "sheep": ["sheep"], "fish": ["fish", "fishes"],
    "deer": ["deer"], "moose": ["moose"], "cactus": ["cacti", "cactuses"],
    "fungus": ["fungi"], "octopus": ["octopuses", "octopi"], "potato": ["potatoes"],
    "tomato": ["tomatoes"], "hero": ["heroes"], "echo": ["echoes"], "photo": ["photos"],
    "piano": ["pianos"], "zoo": ["zoos"], "roof": ["roofs"], "chief": ["chiefs"],
    "belief": ["beliefs"], "chef": ["chefs"], "giraffe": ["giraffes"], "cliff": ["cliffs"],
}

_IRREGULAR_VERBS = {  # base: past forms (simple past and participle)
    "arise": "arose arisen", "awake": "awoke awoken", "be": "was were been am is are being",
    "bear": "bore borne born", "beat": "beat beaten", "become": "became become",
    "begin": "began begun", "bend": "bent", "bite": "bit bitten", "bleed": "bled",
    "blow": "blew blown", "break": "broke broken", "bring": "brought", "build": "built",
    "burn": "burnt burned", "burst": "burst", "buy": "bought", "catch": "caught",
    "choose": "chose chosen", "cling": "clung", "come": "came come", "cost": "cost",
    "creep": "crept", "cut": "cut", "deal": "dealt", "dig": "dug", "dive": "dove dived",
    "do": "did done does", "draw": "drew drawn", "dream": "dreamt dreamed",
    "drink": "drank drunk", "drive": "drove driven", "eat": "ate eaten", "fall": "fell fallen",
    "feed": "fed", "feel": "felt", "fight": "fought", "find": "found", "flee": "fled",
    "fling": "flung", "fly": "flew flown flies", "forbid": "forbade forbidden",
    "forget": "forgot forgotten", "forgive": "forgave forgiven", "freeze": "froze frozen",
    "get": "got gotten", "give": "gave given", "go": "went gone goes", "grind": "ground",
    "grow": "grew grown", "hang": "hung hanged", "have": "had has", "hear": "heard",
    "hide": "hid hidden", "hit": "hit", "hold": "held", "hurt": "hurt", "keep": "kept",
    "kneel": "knelt kneeled", "know": "knew known", "lay": "laid", "lead": "led",
    "lean": "leant leaned", "leap": "leapt leaped", "learn": "learnt learned", "leave": "left",
    "lend": "lent", "let": "let", "lie": "lay lain lied lying", "light": "lit lighted",
    "lose": "lost", "make": "made", "mean": "meant", "meet": "met", "pay": "paid",
    "put": "put", "quit": "quit", "read": "read", "ride": "rode ridden", "ring": "rang rung",
    "rise": "rose risen", "run": "ran run", "say": "said", "see": "saw seen", "seek": "sought",
    "sell": "sold", "send": "sent", "set": "set", "shake": "shook shaken", "shine": "shone shined",
    "shoot": "shot", "show": "showed shown", "shrink": "shrank shrunk", "shut": "shut",
    "sing": "sang sung", "sink": "sank sunk", "sit": "sat", "sleep": "slept", "slide": "slid",
    "sling": "slung", "smell": "smelt smelled", "speak": "spoke spoken", "speed": "sped",
    "spell": "spelt spelled", "spend": "spent", "spill": "spilt spilled", "spin": "spun",
    "spit": "spat spit", "split": "split", "spread": "spread", "spring": "sprang sprung",
    "stand": "stood", "steal": "stole stolen", "stick": "stuck", "sting": "stung",
    "stink": "stank stunk", "strike": "struck", "string": "strung", "swear": "swore sworn",
    "sweep": "swept", "swim": "swam swum", "swing": "swung", "take": "took taken",
    "teach": "taught", "tear": "tore torn", "tell": "told", "think": "thought",
    "throw": "threw thrown", "understand": "understood", "wake": "woke woken",
    "wear": "wore worn", "weave": "wove woven", "weep": "wept", "win": "won", "wind": "wound",
    "write": "wrote written",
}

_IRREGULAR_ADJECTIVES = {
    "good": ["better", "best"], "well": ["better", "best"], "bad": ["worse", "worst"],
    "ill": ["worse", "worst"], "far": ["farther", "farthest", "further", "furthest"],
    "little": ["littler", "littlest", "less", "least"], "many": ["more", "most"],
    "much": ["more", "most"], "old": ["older", "oldest", "elder", "eldest"],
}


def _cvc(word: str) -> bool:
    """Ends consonant-vowel-consonant (not w/x/y): candidates for a doubled final consonant."""
    return (len(word) >= 3 and word[-1] not in _VOWELS and word[-1] not in "wxy"
            and word[-2] in _VOWELS and word[-3] not in _VOWELS)


def _suffixed(word: str, suffix: str) -> set[str]:
    """word + suffix ('ed', 'ing', 'er', 'est') with the usual spelling changes; lenient: where the
    doubling of a final consonant depends on stress, both spellings are returned."""
    out = set()
    if suffix == "ing":
        if word.endswith("ie"):
            out.add(word[:-2] + "ying")
        if word.endswith("e") and not word.endswith(("ee", "ye", "oe")):
            out.add(word[:-1] + "ing")
        out.add(word + "ing")
    else:  # ed, er, est: all start with e
        if word.endswith("e"):
            out.add(word + suffix[1:])
        elif word.endswith("y") and len(word) > 1 and word[-2] not in _VOWELS:
            out.add(word[:-1] + "i" + suffix)
        else:
            out.add(word + suffix)
    if _cvc(word) or (len(word) >= 3 and word[-1] in "lp" and word[-2] in _VOWELS):
        out.add(word + word[-1] + suffix)
    return out


def _plural(word: str) -> set[str]:
    out = set(_IRREGULAR_PLURALS.get(word, []))
    if word.endswith(("s", "x", "z", "ch", "sh")):
        out.add(word + "es")
    elif word.endswith("y") and len(word) > 1 and word[-2] not in _VOWELS:
        out.add(word[:-1] + "ies")
    elif word.endswith("o"):
        out.update({word + "s", word + "es"})
    elif word.endswith("fe"):
        out.update({word[:-2] + "ves", word + "s"})
    elif word.endswith("f"):
        out.update({word[:-1] + "ves", word + "s"})
    else:
        out.add(word + "s")
    if word.endswith("z") and not word.endswith("zz"):
        out.add(word + "zes")  # quiz -> quizzes
    if word.endswith("s") and not word.endswith("ss"):
        out.add(word + "ses")  # bus -> busses
    return out


def _lemminflect(word: str, upos: str) -> set[str]:
    if getAllInflections is None:
        return set()
    try:
        got = getAllInflections(word, upos=upos) or getAllInflectionsOOV(word, upos=upos)
    except Exception:  # pragma: no cover - defensive: an odd word must not stop the audit
        return set()
    return {form.lower() for forms in got.values() for form in forms}


@lru_cache(maxsize=None)
def inflections(word: str, pos: str) -> frozenset[str]:
    """All accepted forms of `word` (lower-cased) for pos in 'noun', 'verb', 'adj', 'any'."""
    word = word.lower().strip()
    if pos == "any":
        return frozenset().union(*(inflections(word, p) for p in ("noun", "verb", "adj")))
    out = {word}
    if pos == "noun":
        out |= _plural(word) | _lemminflect(word, "NOUN")
    elif pos == "verb":
        out |= _plural(word)  # third person: same spelling rules as a plural (-s, -es, -ies)
        out |= _suffixed(word, "ed") | _suffixed(word, "ing")
        out |= set(_IRREGULAR_VERBS.get(word, "").split()) | _lemminflect(word, "VERB")
    elif pos == "adj":
        out |= _suffixed(word, "er") | _suffixed(word, "est")
        out |= set(_IRREGULAR_ADJECTIVES.get(word, [])) | _lemminflect(word, "ADJ")
    else:
        raise ValueError(f"unknown part of speech {pos!r}")
    return frozenset(out)


def _has_word(text: str, forms_in_text: set[str], word: str, pos: str) -> bool:
    word = _norm(word).lower().strip()
    if not word:
        return True
    parts = word.split()
    if len(parts) == 1:
        return bool(inflections(word, pos) & forms_in_text)
    # a multi-word entry ("ice cream"): the last word inflects, the words may be joined by a hyphen
    last = "|".join(sorted(map(re.escape, inflections(parts[-1], pos)), key=len, reverse=True))
    head = r"[\s-]+".join(map(re.escape, parts[:-1]))
    return re.search(rf"(?<![a-z0-9]){head}[\s-]+(?:{last})(?![a-z0-9])", _norm(text).lower()) is not None


def rule_words(story: str, words: list[str]) -> bool:
    forms = _word_forms(story)
    pos_order = ("noun", "verb", "adj") if len(words) == 3 else ("any",) * len(words)
    return all(_has_word(story, forms, w, p) for w, p in zip(words, pos_order))


# ---------------------------------------------------------------------------------------------
# no_task_talk

_NUM = r"(?:\d+|one|two|three|four|five|six|seven|eight|nine|ten)"
_AUDIENCE = r"(?:child|children|kids?|readers?|audiences?|toddlers?|preschoolers?|listeners?)"

# Patterns applied to the whole text (lower-cased).
_TASK_ANYWHERE = [
    # the reader's age or the audience
    rf"\b{_NUM}[- ]years?[- ]olds\b",
    rf"\b{_NUM}[- ]years?[- ]old {_AUDIENCE}\b",
    rf"\b(?:for|to) an? {_NUM}[- ]years?[- ]old\b",
    rf"\b(?:for|to|by) (?:very )?(?:young|small|little) (?:children|kids|readers|ones|minds|audiences?|listeners)\b",
    rf"\b(?:toddlers?|preschoolers?|young (?:children|kids|readers))\b[^.!?\n]{{0,40}}\b(?:understand|grasp|follow|enjoy|relate)",
    rf"\b(?:child|children|kids?)\b (?:can|could|would|will|should|might|to) (?:easily )?(?:understand|grasp)\b",
    r"\beasy (?:for (?:a |young |small |little )?(?:child|children|kids)|to understand)\b",
    r"\bages? \d+\s*(?:-|to|\u2013)\s*\d+\b", r"\baged \d+\b",
    rf"\bstory (?:for|that) (?:an? )?(?:young |small |little )?(?:{_AUDIENCE}|{_NUM}[- ]years?[- ]olds?)\b",
    # the writing task
    r"\b(?:simple|easy|basic|short) (?:words|language|vocabulary|sentences)\b",
    r"\bthe story (?:should|must|will|needs to|has to|includes|contains|uses|features)\b",
    r"\bthis (?:story|tale)\b", r"\b(?:above|following|previous) story\b",
    r"\b(?:verbs?|nouns?|adjectives?|adverbs?)\b",
    r"\b(?:uses?|using|used|includes?|including|included|contains?|containing) the words?\b",
    r"\b(?:required|given|target|chosen) words?\b",
    r"\bkey sentence\b", r"\b(?:this|the (?:first|last|next|following|previous)) sentence\b",
    r"\bsummar(?:y|ies|ize|ized|izes|ise|ised)\b", r"\bfeatures?\b",
    r"\bstep\s*\d+\b", r"\bword count\b", rf"\b(?:in|under|about|around|less than|fewer than|at most|exactly) {_NUM} words\b",
    r"\bthe end of (?:the|this|my|our) story\b",
    r"\bas an? (?:ai|a\.i\.|artificial intelligence|language model|assistant)\b",
    r"\blanguage model\b", r"\bai (?:assistant|model)\b",
    r"\b(?:plot twist|foreshadowing|bad ending|moral value|the prompt|this prompt)\b",
    r"\b(?:rewritten|revised|shortened|simplified) (?:version|story)\b",
    # brackets: placeholders and meta-comments
    r"\[[^\]\n]*[a-z][^\]\n]*\]",
    r"\((?:note|n\.b\.|word|words|verb|noun|adjective|feature|summary|moral|end|the end|dialogue|twist|i|sentence)\b[^()\n]*\)",
    r"\([^()\n]*\b(?:story|stories|word|words|sentence|sentences|prompt|features?|dialogue|twist|foreshadowing|summary|requested)\b[^()\n]*\)",
    # labels at a line start: Title:, Q:, A:, Story:, Note:, a markdown header
    r"(?m)^[ \t>*_#]*(?:q|a|question|answer|user|assistant|input|output|instruction|instructions|response|prompt|story|title|summary|words|features?|moral|note|characters?|setting|plot|theme|ending|vocabulary)(?: ?\d+)?[ \t*_]*:",
    r"(?m)^[ \t]*#{1,6}[ \t]",
]

# Patterns applied to the narration only (quoted speech removed), so a character may say them.
_TASK_NARRATION = [
    r"\A[\s*_]*(?:sure|certainly|absolutely|of course|okay|ok|alright|great question)\b[ \t]*[!,.:]",
    r"(?m)^[ \t*_]*(?:sure|certainly|absolutely)[ \t]*[!:]",
    r"\bhere(?:'s| is| are)\s+(?:a|an|the|my|your|one)\s+(?:[a-z'-]+\s+){0,3}(?:story|stories|tale|version|attempt)\b",
    r"\bi hope (?:you|this|that|it)\b",
    r"\b(?:let me know|feel free|happy to help|i can help|would you like (?:me|another|a different))\b",
    r"\bi (?:have |will |can |'ll |'ve )?(?:wrote|write|written|created|made|used|included|tried)\b[^.!?\n]{0,40}\b(?:story|words?|sentences?)\b",
]

_TASK_ANYWHERE_RE = [re.compile(p) for p in _TASK_ANYWHERE]
_TASK_NARRATION_RE = [re.compile(p) for p in _TASK_NARRATION]
_QUOTED = re.compile(r'"[^"\n]*"|\u201c[^\u201d\n]*\u201d')


def narration(text: str) -> str:
    """The text with quoted speech ("..." and \u201c...\u201d, within one line) removed."""
    return _QUOTED.sub(" ", text)


def task_talk_hits(story: str) -> list[str]:
    """The task-talk snippets found (empty when the rule passes)."""
    text = _norm(story).lower()
    hits = [m.group(0) for rx in _TASK_ANYWHERE_RE for m in [rx.search(text)] if m]
    spoken_free = narration(text)
    hits += [m.group(0) for rx in _TASK_NARRATION_RE for m in [rx.search(spoken_free)] if m]
    return hits


def rule_no_task_talk(story: str) -> bool:
    return not task_talk_hits(story)


# ---------------------------------------------------------------------------------------------
# no_loop

STOP_WORDS = frozenset("""
a an the and or but nor so yet for of to in on at by with from into onto up down out over under
about after before again then than too very just not no yes all any some each every this that these
those there here is am are was were be been being have has had do does did will would can could
shall should may might must i me my mine we us our ours you your yours he him his she her hers it
its they them their theirs what who whom which when where why how said says say if as because while
""".split())

_SENT_SPLIT = re.compile(r"(?<=[.!?])[\"'\u201d\u2019)\]]*\s+|\n+")


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENT_SPLIT.split(_norm(text)) if s.strip()]


def loop_reasons(story: str, ngram: int = 5, max_repeats: int = 2, max_share: float = 0.15,
                 min_share_words: int = 40, max_run: int = 4) -> list[str]:
    """Why the text counts as looping (empty when the rule passes)."""
    toks = tokens(story)
    reasons = []
    grams = Counter(tuple(toks[i:i + ngram]) for i in range(len(toks) - ngram + 1))
    if grams:
        gram, n = grams.most_common(1)[0]
        if n > max_repeats:
            reasons.append(f"{ngram}-gram x{n}: {' '.join(gram)}")
    sents = Counter(" ".join(tokens(s)) for s in sentences(story))
    for sent, n in sents.most_common():
        if n <= max_repeats:
            break
        if len(sent.split()) >= 3:
            reasons.append(f"sentence x{n}: {sent}")
            break
    run = 1
    for prev, cur in zip(toks, toks[1:]):
        run = run + 1 if cur == prev else 1
        if run > max_run:
            reasons.append(f"run of {cur!r}")
            break
    if len(toks) >= min_share_words:
        content = Counter(t for t in toks if t not in STOP_WORDS)
        if content:
            word, n = content.most_common(1)[0]
            if n / len(toks) > max_share:
                reasons.append(f"{word!r} is {n}/{len(toks)} words")
    return reasons


def rule_no_loop(story: str) -> bool:
    return not loop_reasons(story)


# ---------------------------------------------------------------------------------------------
# complete_ending

DANGLING = frozenset("""
the a an and or but nor because than my your their our its whose very although whereas mr mrs ms dr
""".split())
_CLOSERS = "\"'\u201d\u2019)]}\u00bb*_ \t\r\n"


def rule_complete_ending(story: str) -> bool:
    text = _norm(story).rstrip(_CLOSERS)
    if not text or text[-1] not in ".!?":
        return False
    if text.endswith(".."):  # an ellipsis trails off; "\u2026" already failed above
        return False
    last_sentence = sentences(text)[-1]
    toks = tokens(last_sentence)
    if not toks or toks[-1] in DANGLING:
        return False
    paragraphs = [p for p in re.split(r"\n\s*\n", _norm(story).strip()) if p.strip()]
    last_par = paragraphs[-1] if paragraphs else ""
    if last_par.count('"') % 2 or last_par.count("\u201c") > last_par.count("\u201d"):
        return False
    return True


# ---------------------------------------------------------------------------------------------
# child_safe

# Single words: each listed with the part of speech whose inflections count.
_UNFIT_WORDS = {
    # violence and gore
    "kill": "verb", "killer": "noun", "murder": "verb", "murderer": "noun", "stab": "verb",
    "slaughter": "verb", "massacre": "verb", "behead": "verb", "decapitate": "verb",
    "strangle": "verb", "torture": "verb", "assassinate": "verb", "mutilate": "verb",
    "dismember": "verb", "kidnap": "verb", "rape": "verb", "assault": "verb", "suicide": "noun",
    "blood": "noun", "bloody": "adj", "bloodied": "adj", "gore": "noun", "gory": "adj",
    "corpse": "noun", "carcass": "noun", "hostage": "noun", "terrorist": "noun", "homicide": "noun",
    # weapons (a "water gun" and other toys are allowed below)
    "gun": "noun", "rifle": "noun", "pistol": "noun", "shotgun": "noun", "revolver": "noun",
    "bullet": "noun", "grenade": "noun", "bomb": "verb", "ammo": "noun", "ammunition": "noun",
    "machete": "noun", "dagger": "noun",
    # drugs, alcohol, tobacco
    "beer": "noun", "wine": "noun", "vodka": "noun", "whiskey": "noun", "whisky": "noun",
    "liquor": "noun", "booze": "noun", "alcohol": "noun", "drunk": "adj", "drunken": "adj",
    "tipsy": "adj", "hangover": "noun", "cocaine": "noun", "heroin": "noun", "meth": "noun",
    "marijuana": "noun", "cannabis": "noun", "drug": "verb", "cigarette": "noun", "cigar": "noun",
    "tobacco": "noun", "vape": "verb", "overdose": "noun",
    # sex
    "sex": "noun", "sexy": "adj", "sexual": "adj", "naked": "adj", "nude": "adj", "porn": "noun",
    "porno": "noun", "pornography": "noun", "erotic": "adj", "condom": "noun", "prostitute": "noun",
    "horny": "adj", "orgasm": "noun", "penis": "noun", "vagina": "noun",
    # swearing
    "fuck": "verb", "fucking": "adj", "shit": "noun", "shitty": "adj", "bitch": "noun",
    "bastard": "noun", "damn": "verb", "dammit": "noun", "goddamn": "adj", "hell": "noun",
    "ass": "noun", "asshole": "noun", "crap": "noun", "crappy": "adj", "piss": "verb",
    "slut": "noun", "whore": "noun", "cunt": "noun", "wtf": "noun",
}

# Forms that look like a listed word but are fine.
_SAFE_FORMS = frozenset({"drugstore", "hello", "shell", "bloodhound"})
_TOY_GUN = re.compile(r"\b(?:water|toy|squirt|nerf|bubble|glue|paint|pop|cap|spud|snow|foam|pretend|play)[ -]guns?\b")
_BLOOD_OK = re.compile(r"\b(?:blood orange|hot-blooded|cold-blooded|warm-blooded)\b")

_PERSON = (r"(?:him|her|them|me|you|us|himself|herself|themselves|myself|people|persons?|man|men|woman|women|"
           r"boy|girl|kid|child|children|baby|mom|dad|mother|father|brother|sister|friend|neighbou?r|teacher|"
           r"king|queen|prince|princess|[a-z]+'s (?:arm|leg|neck|throat|face|hand|chest|back|belly|tummy))")
_CUT = r"(?:stab\w*|cut|cuts|cutting|slash\w*|slit\w*)"
_BLADE = r"(?:knife|knives|blade|blades|razor|razors|sword|swords|dagger|daggers)"
_DET = r"(?:(?:the|a|an|his|her|their|my|your|its|our|that|this|poor|little|old|young|big)\s+)"
# "cut her hair", "cut him a slice" are not attacks
_NOT_ATTACK = r"(?!\s+(?:a|an|some|one|two|hair|hairs|nails?|fingernails?|toenails?|food|bread|meat|cake|pie|pizza|sandwich|sandwiches|apple|apples|fruit|paper|toast|steak|slice|slices|piece|pieces|string|rope|ribbon|bangs|fringe|cheese)\b)"
_CONTEXT_UNFIT = [
    # a knife or blade used on a person (cutting bread is fine)
    re.compile(rf"\b{_BLADE}\b[^.!?\n]{{0,60}}\b{_CUT}\s+{_DET}{{0,2}}{_PERSON}\b{_NOT_ATTACK}"),
    re.compile(rf"\b{_CUT}\s+{_DET}{{0,2}}{_PERSON}\b{_NOT_ATTACK}[^.!?\n]{{0,40}}\b{_BLADE}\b"),
    re.compile(r"\b(?:cut|slit|slash\w*)\s+(?:his|her|their|my|your|its)\s+(?:throat|neck|wrists?)\b"),
    # shooting at a person (a shooting star or shooting a ball is fine)
    re.compile(rf"\b(?:shoot|shoots|shooting|shot)\s+(?:at\s+)?(?:the\s+|a\s+)?{_PERSON}\b"),
    re.compile(r"\bshot (?:dead|to death|and killed)\b"),
    # death spelled out
    re.compile(r"\bdead (?:body|bodies|man|men|woman|women|person|people|child|children)\b"),
    re.compile(r"\b(?:bled|bleeding|bleed) to death\b|\bbeat(?:en)? (?:him|her|them) (?:up|to death)\b"),
    re.compile(r"\b(?:make|made|making|makes) love\b|\bsmok(?:e|ed|es|ing) (?:a )?(?:joint|weed|pot|crack)\b"),
]


@lru_cache(maxsize=1)
def _unfit_forms() -> dict[str, str]:
    forms: dict[str, str] = {}
    for word, pos in _UNFIT_WORDS.items():
        for form in inflections(word, pos):
            forms.setdefault(form, word)
    for form in _SAFE_FORMS:
        forms.pop(form, None)
    return forms


def unsafe_hits(story: str) -> list[str]:
    """The unfit terms found (empty when the rule passes)."""
    text = _norm(story).lower()
    text = _TOY_GUN.sub(" ", text)
    text = _BLOOD_OK.sub(" ", text)
    unfit = _unfit_forms()
    hits = sorted({tok for tok in _word_forms(text) if tok in unfit})
    hits += [m.group(0) for rx in _CONTEXT_UNFIT for m in [rx.search(text)] if m]
    return hits


def rule_child_safe(story: str) -> bool:
    return not unsafe_hits(story)


# ---------------------------------------------------------------------------------------------
# Public API


def audit(story: str, words: list[str], min_words: int = 40, max_words: int = 600) -> dict[str, bool]:
    """One boolean per rule in RULES (True = passes)."""
    story = story or ""
    words = [str(w) for w in (words or [])]
    n = word_count(story)
    return {
        "words": rule_words(story, words),
        "no_task_talk": rule_no_task_talk(story),
        "no_loop": rule_no_loop(story),
        "complete_ending": rule_complete_ending(story),
        "child_safe": rule_child_safe(story),
        "length": min_words <= n <= max_words,
    }


def _row_fields(row: Any) -> tuple[str, list[str]]:
    if isinstance(row, Mapping):
        story, words = row.get("story"), row.get("words")
    else:
        story, words = row
    return str(story or ""), _as_word_list(words)


def _as_word_list(words: Any) -> list[str]:
    if words is None:
        return []
    if isinstance(words, str):
        try:
            parsed = json.loads(words)
            if isinstance(parsed, list):
                return [str(w) for w in parsed]
        except ValueError:
            pass
        return [w for w in re.split(r"[,\s]+", words) if w]
    return [str(w) for w in list(words)]


def audit_all(rows: Iterable[Any], min_words: int = 40, max_words: int = 600,
              examples: int = 3, snippet: int = 160) -> dict:
    """Audit every row (a mapping with `story` and `words`, or a (story, words) pair).

    Returns {"n": rows audited, "pass_share": {rule: share passing}, "all": share passing every
    rule, "failures": {rule: [up to `examples` failing rows as {"index", "words", "story"}
    (story cut to `snippet` characters)]}}. With no rows every share is 0.0.
    """
    passed = Counter()
    n = n_all = 0
    failures: dict[str, list[dict]] = {rule: [] for rule in RULES}
    for index, row in enumerate(rows):
        story, words = _row_fields(row)
        result = audit(story, words, min_words=min_words, max_words=max_words)
        n += 1
        n_all += all(result.values())
        for rule in RULES:
            if result[rule]:
                passed[rule] += 1
            elif len(failures[rule]) < examples:
                cut = story if len(story) <= snippet else story[:snippet].rstrip() + "..."
                failures[rule].append({"index": index, "words": words, "story": cut})
    share = (lambda k: k / n) if n else (lambda k: 0.0)
    return {
        "n": n,
        "pass_share": {rule: share(passed[rule]) for rule in RULES},
        "all": share(n_all),
        "failures": failures,
    }


def read_rows(path: str | Path) -> list[dict]:
    """Rows of `story` and `words` from a .parquet (needs pyarrow) or .jsonl file."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq  # a project dependency; only needed for parquet input

        table = pq.read_table(path, columns=["story", "words"])
        return table.to_pylist()
    rows = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                obj = json.loads(line)
                rows.append({"story": obj.get("story"), "words": obj.get("words")})
    return rows


def format_report(report: dict) -> str:
    lines = [f"rows: {report['n']}"]
    for rule in RULES:
        lines.append(f"{rule:<16} {report['pass_share'][rule]:7.2%}")
    lines.append(f"{'all':<16} {report['all']:7.2%}")
    for rule in RULES:
        for ex in report["failures"][rule]:
            story = ex["story"].replace("\n", " ")
            lines.append(f"  fail {rule} #{ex['index']} {ex['words']}: {story}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Independent audit of kept stories: pass share per rule.")
    ap.add_argument("path", help="a .parquet or .jsonl file with columns story and words")
    ap.add_argument("--min-words", type=int, default=40)
    ap.add_argument("--max-words", type=int, default=600)
    ap.add_argument("--examples", type=int, default=3, help="failing examples shown per rule")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    args = ap.parse_args(argv)
    report = audit_all(read_rows(args.path), min_words=args.min_words, max_words=args.max_words,
                       examples=args.examples)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
