"""Writes squad.jsonl: two-fact questions made mechanically from SQuAD v1.1 dev (the dev third of its articles,
`ragworks.evaluate.qa.article_split`).

    python bench/data/twohop/make_twohop.py [--squad ../shared/data/squad-dev/dev-v1.1.json] [--n 30]

Each line joins two SQuAD questions about two different articles into one ("Q1, and q2?"), so no single passage
answers it: `answers` holds each part's gold answers, `supporting` the two gold paragraphs (source `Title#i`, as
`ragworks eval qa` ingests SQuAD). Only short answers (≤ 4 words) and questions of ≤ 14 words are used; pairs are
drawn with a fixed seed, so the file is the same on every machine.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from ragworks.evaluate.qa import load_squad

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
# ../shared/data beside the repository (a worktree sits one level deeper)
SHARED = next((p / "shared" / "data" for p in (REPO.parent, REPO.parent.parent) if (p / "shared" / "data").is_dir()),
              REPO.parent / "shared" / "data")
LOWER_OK = {"what", "who", "whom", "whose", "when", "where", "which", "why", "how", "in", "on", "at", "by",
            "during", "after", "before", "the", "a", "an", "for", "from", "to", "of", "with", "about", "is", "was",
            "are", "were", "did", "does", "do", "can", "has", "had"}


def join(q1: str, q2: str) -> str:
    first, _, rest = q2.partition(" ")
    lead = first.lower() if first.lower() in LOWER_OK else first
    return f"{q1.strip().rstrip('?').rstrip()}, and {lead} {rest.strip().rstrip('?').rstrip()}?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--squad", type=Path, default=SHARED / "squad-dev" / "dev-v1.1.json")
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--seed", type=int, default=15)
    args = ap.parse_args()
    ds = load_squad(args.squad, articles="dev")
    usable = [it for it in ds.items if it.answers and max(len(a.split()) for a in it.answers) <= 4
              and len(it.question.split()) <= 14]
    rng = random.Random(args.seed)
    rng.shuffle(usable)
    out: list[dict[str, object]] = []
    taken: set[str] = set()
    for a in usable:
        if len(out) >= args.n:
            break
        if a.id in taken:
            continue
        b = next((x for x in usable if x.id not in taken and x.id != a.id and x.article != a.article), None)
        if b is None:
            break
        taken |= {a.id, b.id}
        out.append({"id": f"squad-{a.id[:8]}-{b.id[:8]}", "question": join(a.question, b.question),
                    "answers": [a.answers, b.answers], "supporting": [a.gold_sources[0], b.gold_sources[0]],
                    "parts": [a.question, b.question], "corpus": "squad-dev", "kind": "conjunction"})
    path = HERE / "squad.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out), encoding="utf-8")
    print(f"{len(out)} questions → {path}")


if __name__ == "__main__":
    main()
