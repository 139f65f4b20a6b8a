"""Join plan.jsonl (the labels, fixed before any story was written) with the written stories
(stories_*.jsonl: {"id", "story"}) into gold.jsonl, and check what a rule can check.

    python eval/gold/merge.py

Checked for every row: the story exists, the three words are in it (corpusforge's own words
check, lemma-aware), quoted speech is there exactly when Dialogue is labelled, and the length is
within 40-600 words. Any failure stops the merge with the rows that fail, so gold.jsonl only
ever holds rows whose rule-checkable labels are true. The other labels are the author's.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from corpusforge import checks  # noqa: E402

FEATURES = ["Dialogue", "BadEnding", "MoralValue", "Twist", "Foreshadowing", "Conflict"]


def main() -> int:
    plans = {p["id"]: p for p in map(json.loads, (HERE / "plan.jsonl").read_text().splitlines())}
    stories = {}
    for f in sorted(HERE.glob("stories_*.jsonl")):
        for line in f.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                stories[row["id"]] = row["story"].strip()
    problems = []
    rows = []
    for i, p in sorted(plans.items()):
        story = stories.get(i)
        if not story:
            problems.append(f"{i}: no story")
            continue
        w = p["words"]
        missing = [pos for pos in ("noun", "verb", "adjective") if not checks.mentions(w[pos], pos, story)]
        if missing:
            problems.append(f"{i}: words missing {missing}")
        if checks.has_dialogue(story) != ("Dialogue" in p["features"]):
            problems.append(f"{i}: Dialogue label {('Dialogue' in p['features'])} but quoted speech {checks.has_dialogue(story)}")
        n = len(story.split())
        if not 40 <= n <= 600:
            problems.append(f"{i}: {n} words")
        rows.append({**p, "story": story})
    if problems:
        print("\n".join(problems))
        print(f"{len(problems)} problems; gold.jsonl not written")
        return 1
    with (HERE / "gold.jsonl").open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    (HERE / "labels.json").write_text(json.dumps({"features": FEATURES}, indent=2) + "\n")
    print(f"wrote {len(rows)} rows to {HERE / 'gold.jsonl'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
