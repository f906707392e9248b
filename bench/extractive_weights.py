"""The extractive answerer's scoring weights, chosen by a grid on SQuAD v1.1 dev.

For the answerable questions of one article split (`dev` tunes, `test` checks), the collection's hits and every
candidate sentence's cosine to the question are computed once (cached in --work); then each weighting of rank
penalty (pen), sentence word overlap (lam), passage word overlap (mu) and the passage's min-max retrieval score
(rs) picks one sentence, scored by citation precision (its passage holds a gold answer) and answer-contains-gold.
Writes bench/results/extractive-weights.json.

    python bench/extractive_weights.py --split dev --questions 900
    python bench/extractive_weights.py --split test --questions 400
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import pickle
import platform
import random
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SQUAD = Path(os.environ.get("RAGWORKS_SHARED_DATA", REPO.parent / "shared" / "data")) / "squad-dev" / "dev-v1.1.json"


def gather(data: Path, split: str, n: int, work: Path) -> list[dict[str, Any]]:
    """Per question: its hits' gold flags and texts, and every candidate sentence with its cosine."""
    from ragworks.collection import Collection
    from ragworks.config import Settings
    from ragworks.evaluate.qa import load_squad
    from ragworks.generate import extractive
    from ragworks.ingest.chunker import split_sentences

    cache = work / f"cands-{split}-{n}.pkl"
    if cache.exists():
        return list(pickle.loads(cache.read_bytes()))
    ds = load_squad(data, articles=split)
    items = [i for i in ds.items if not i.unanswerable]
    random.Random(0).shuffle(items)
    settings = Settings(data_dir=work / "data", collection=f"squad-{split}", llm="extractive", pii="off")
    out = []
    with Collection.open(settings=settings) as col:
        col.add_documents([d for docs in ds.documents.values() for d in docs])
        for it in items[:n]:
            hits = col.search(it.question)
            cands = []
            for rank, h in enumerate(hits, 1):
                text = h.chunk.text
                for block in extractive._BLOCK.finditer(text):
                    if not extractive._TERMINAL.search(block.group().rstrip()) and len(block.group().split()) < 12:
                        continue
                    for s, e in split_sentences(block.group(), block.start()):
                        if len(text[s:e].strip()) >= 20:
                            cands.append((rank, text[s:e].strip()))
            q = col.embedder.embed_queries([it.question])[0]
            sims = (col.embedder.embed_documents([c[1] for c in cands]) @ q).tolist() if cands else []
            out.append({"q": it.question, "answers": it.answers, "cands": cands, "sims": sims,
                        "scores": [h.score for h in hits],
                        "gold_p": [any(a in h.chunk.text for a in it.answers) for h in hits],
                        "texts": [f"{h.title} {h.chunk.text}" for h in hits]})
    work.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(pickle.dumps(out))
    return out


def features(r: dict[str, Any], analyze: Any) -> np.ndarray:
    """Per candidate: cosine, rank, sentence overlap, passage overlap, min-max retrieval score of its passage."""
    from ragworks.generate.extractive import retrieval_scores

    qt = set(analyze(r["q"]))

    def overlap(text: str) -> float:
        return len(qt & set(analyze(text))) / len(qt) if qt else 0.0

    passage = [overlap(t) for t in r["texts"]]
    scaled = retrieval_scores(r["scores"])
    return np.asarray([(sim, rank, overlap(s), passage[rank - 1], scaled[rank - 1])
                       for (rank, s), sim in zip(r["cands"], r["sims"], strict=True)], dtype=np.float64)


def pick(f: np.ndarray, pen: float, lam: float, mu: float, rs: float) -> int:
    """The candidate a weighting chooses (its index)."""
    return int(np.argmax(f[:, 0] - pen * f[:, 1] + lam * f[:, 2] + mu * f[:, 3] + rs * f[:, 4]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=SQUAD)
    ap.add_argument("--split", choices=["dev", "test"], default="dev")
    ap.add_argument("--questions", type=int, default=200)
    ap.add_argument("--work", type=Path, default=Path("/tmp/ragworks-bench-extractive"))
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "extractive-weights.json")
    args = ap.parse_args()
    from ragworks.lexical.analysis import Analyzer

    analyze = Analyzer(min_chars=1)
    rows = [r for r in gather(args.data, args.split, args.questions, args.work) if r["cands"]]
    feats = [features(r, analyze) for r in rows]
    grid = []
    print("| pen | lam | mu | rs | citation precision | contains gold |\n|---|---|---|---|---|---|")
    for pen, lam, mu, rs in itertools.product((0.0, 0.01, 0.03, 0.1), (0.0, 0.1, 0.3, 0.5), (0.0, 0.1, 0.2, 0.3),
                                              (0.0, 0.2, 0.4, 0.6, 0.8)):
        picks = [r["cands"][pick(f, pen, lam, mu, rs)] for r, f in zip(rows, feats, strict=True)]
        prec = float(np.mean([r["gold_p"][rank - 1] for r, (rank, _) in zip(rows, picks, strict=True)]))
        gold = float(np.mean([any(a in s for a in r["answers"]) for r, (_, s) in zip(rows, picks, strict=True)]))
        grid.append({"pen": pen, "lam": lam, "mu": mu, "rs": rs, "citation_precision": round(prec, 4),
                     "contains_gold": round(gold, 4)})
    best = max(grid, key=lambda g: (g["citation_precision"], g["contains_gold"]))
    for g in grid:
        if g is best or (g["pen"], g["lam"], g["mu"]) in ((0.01, 0.3, 0.2), (0.0, 0.0, 0.0)):
            print(f"| {g['pen']} | {g['lam']} | {g['mu']} | {g['rs']} | {g['citation_precision']:.3f} | "
                  f"{g['contains_gold']:.3f} |")
    print(f"best on {args.split}: {best}")
    report = json.loads(args.out.read_text()) if args.out.exists() else {}
    report[args.split] = {"questions": len(rows), "generated": time.strftime("%Y-%m-%d"),
                          "machine": platform.platform(),
                          "gold_passage_given": round(float(np.mean([any(r["gold_p"]) for r in rows])), 3),
                          "rank1_holds_gold": round(float(np.mean([r["gold_p"][0] for r in rows])), 3),
                          "grid": grid}
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
