"""What a build on the random-weight tiny model switches off so that every story is kept, whatever it writes.

The tiny model writes gibberish, and which gibberish depends on the CPU's float kernels (on an
AMX Xeon it draws other tokens than here). No assertion may depend on that text, so a test
that needs kept stories turns off everything that judges the text: then each story is kept by
construction, on any CPU. A test that needs rejects makes them certain by construction too.
"""
from __future__ import annotations

from corpusforge.checks import CHECKS

# Every story check random text can fail: all but "empty" and "length", which a story passes
# with one word and --min-words 1 (the recipe's steering forbids end-of-turn before its
# min_words). Derived from CHECKS, so a check added later is skipped here too.
SKIP_CHECKS = tuple(name for name in CHECKS if name not in ("empty", "length"))
MIN_WORDS = 1
# The steering's mid-stream cut is those checks applied while the text is written (loops, task
# talk, unfit words, too many words, a word still missing late). --skip-check reaches it too;
# --no-steer cut also turns off the length cut, which "length" (kept on here) would otherwise
# allow. finish and hold_line read the text as well (end-of-turn only after a finished
# sentence, a summary's line held while a word is missing): random text would run every
# summary to its budget, which is a retry whatever --skip-check says.
STEER_OFF = ("cut", "finish", "hold_line")
# A summary or key sentence that hits its budget is retried, then rejected ("truncated:
# key_sentence hit max_tokens"), whatever --skip-check says. The recipe's budgets (96, 48) are
# overrun by random text on some CPUs (ids 0 and 4 on an AMX Xeon): give them room.
STAGE_TOKENS = {"summary": 400, "key_sentence": 400}


def skip_args() -> list[str]:
    """--skip-check for each of SKIP_CHECKS, and --min-words 1: enough for a recipe of one unsteered stage."""
    return [a for name in SKIP_CHECKS for a in ("--skip-check", name)] + ["--min-words", str(MIN_WORDS)]


def lenient_args() -> list[str]:
    """The CLI flags of a lenient build of the default recipe (add --max-tokens story=N as needed)."""
    return [*skip_args(), *(a for lever in STEER_OFF for a in ("--no-steer", lever)),
            *(a for stage, n in STAGE_TOKENS.items() for a in ("--max-tokens", f"{stage}={n}"))]


def lenient_config(story_tokens: int) -> dict:
    """The BuildConfig fields of a lenient build with `story_tokens` for the story."""
    return {"skip_checks": SKIP_CHECKS, "min_words": MIN_WORDS, "steer_off": STEER_OFF,
            "max_tokens": {**STAGE_TOKENS, "story": story_tokens}}
