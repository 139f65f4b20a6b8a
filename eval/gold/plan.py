"""Write eval/gold/plan.jsonl: what each gold story must be, before anyone writes it.

The gold set measures the judge and scores classifiers trained on a corpus, so its labels must
vary independently of each other: the six shipped features form a full 2^6 factorial design,
written twice (128 stories). Replicate 0 is the dev part (prompts, thresholds, tuning) and
replicate 1 the test part (scores only), so each part is itself a full design with 32 positives
and 32 negatives per feature. Axis values (opening, setting, theme) and the three words are
drawn with a fixed seed from the shipped vocab; an opening that would contradict a feature is
not drawn (a "dialogue" opening needs Dialogue, a "problem" opening needs Conflict).

    python eval/gold/plan.py      # rewrites plan.jsonl; the same every time
"""
from __future__ import annotations

import itertools
import json
import random
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
VOCAB = HERE.parents[1] / "corpusforge" / "vocab"
FEATURES = ["Dialogue", "BadEnding", "MoralValue", "Twist", "Foreshadowing", "Conflict"]
SEED = 20261202


def words(name: str) -> list[str]:
    lines = (VOCAB / name).read_text(encoding="utf-8").splitlines()
    return [w.strip() for w in lines if w.strip() and not w.lstrip().startswith("#")]


def main() -> None:
    rng = random.Random(SEED)
    axes = {a["name"]: [v["label"] for v in a["value"]]
            for a in tomllib.loads((VOCAB / "axes.toml").read_text(encoding="utf-8"))["axis"]}
    nouns, verbs, adjectives = words("nouns.txt"), words("verbs.txt"), words("adjectives.txt")
    rows = []
    for replicate, split in enumerate(("dev", "test")):
        cells = list(itertools.product((0, 1), repeat=len(FEATURES)))
        rng.shuffle(cells)
        for cell in cells:
            has = dict(zip(FEATURES, cell))
            openings = [o for o in axes["opening"]
                        if not (o == "dialogue" and not has["Dialogue"]) and not (o == "problem" and not has["Conflict"])]
            rows.append({
                "id": len(rows),
                "split": split,
                "features": [f for f in FEATURES if has[f]],
                "opening": rng.choice(openings),
                "setting": rng.choice(axes["setting"]),
                "theme": rng.choice(axes["theme"]),
                "words": {"noun": rng.choice(nouns), "verb": rng.choice(verbs), "adjective": rng.choice(adjectives)},
            })
    with (HERE / "plan.jsonl").open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    print(f"wrote {len(rows)} plans to {HERE / 'plan.jsonl'}")


if __name__ == "__main__":
    main()
