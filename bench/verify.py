"""The citation verifier itself, claim by claim, on SQuAD v1.1 dev (table + bench/results/verify.{json,md,png}).

`bench/answers.py` measures whole answers; this measures the judge: given the passages an answerer saw, does
`verify_answer` call a true sentence supported and a false one unsupported? Claims are built from SQuAD's answer
spans, so their truth is known without annotation (how the set is made):

- for a question, its paragraph (the cited source) and up to three other paragraphs of the same article (the
  passages beside it, in a seeded order) are the sources;
- `sentence`: the paragraph's sentence that holds the answer, as written (true);
- `question + answer`: the question restated with its answer, "When was X built: 1823." (true) — how small models
  write;
- `sentence, wrong answer`: that sentence with the answer span replaced by the answer of another question on the
  same article (of the same kind, a figure for a figure, when there is one; false);
- `question + wrong answer`: the question restated with that wrong answer (false): the commonest small-model error,
  copying the question and inventing the figure or the name;
- `other article`: the answer sentence of a question on another article (false).

Every claim carries the marker of the answer's paragraph. A claim counts as judged supported when the verifier
does not mark it unsupported. Reported per kind and overall (precision, recall and F1 of "supported", ROC AUC of
the support score), for the shipped verifier (given the question, as `ask` calls it, and without it) and for its
two halves alone (lexical evidence only; embedding cosine only). Sampled on SQuAD's *dev* articles (where choices
are made) or *test* articles (the report).

    python bench/verify.py                       # 300 questions of the test articles
    python bench/verify.py --split dev --questions 300
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from answers import SQUAD  # noqa: E402  (../shared/data, or RAGWORKS_SHARED_DATA)

TRUE_KINDS = ("sentence", "question + answer")
FALSE_KINDS = ("sentence, wrong answer", "question + wrong answer", "other article")
_DIGIT = re.compile(r"\d")


def build_claims(data_path: Path, *, split: str, n: int, seed: int) -> list[dict[str, Any]]:
    """`n` questions' claims (see the module docstring), each with its sources and the cited source's number."""
    from ragworks.evaluate.qa import article_split
    from ragworks.ingest.chunker import split_sentences

    articles = [a for a in json.loads(data_path.read_text(encoding="utf-8"))["data"]
                if split == "all" or article_split(a["title"]) == split]
    rng = random.Random(seed)
    candidates = []
    for ai, article in enumerate(articles):
        answers = [(qa["answers"][0]["text"], pi) for pi, p in enumerate(article["paragraphs"]) for qa in p["qas"]]
        for pi, para in enumerate(article["paragraphs"]):
            for qa in para["qas"]:
                candidates.append((ai, pi, qa, answers))
    rng.shuffle(candidates)
    questions: list[dict[str, Any]] = []
    for ai, pi, qa, answers in candidates:
        if len(questions) >= n:
            break
        context = articles[ai]["paragraphs"][pi]["context"]
        gold = qa["answers"][0]
        a0, a1 = gold["answer_start"], gold["answer_start"] + len(gold["text"])
        sentence = next(((s, e) for s, e in split_sentences(context) if s <= a0 and a1 <= e), None)
        if sentence is None or len(articles[ai]["paragraphs"]) < 2:
            continue  # the answer crosses a sentence boundary
        s, e = sentence
        text = context[s:e]
        figure = bool(_DIGIT.search(gold["text"]))
        wrong = [a for a, _ in answers if a.lower() not in text.lower() and gold["text"].lower() not in a.lower()]
        same_kind = [a for a in wrong if bool(_DIGIT.search(a)) == figure]
        if not wrong:
            continue
        wrong_answer = rng.choice(same_kind or wrong)
        others = [i for i in range(len(articles[ai]["paragraphs"])) if i != pi]
        decoys = rng.sample(others, min(3, len(others)))
        order = [pi, *decoys]
        rng.shuffle(order)
        question = qa["question"].strip().rstrip("?").strip()
        questions.append({
            "id": qa["id"], "article": articles[ai]["title"], "question": qa["question"],
            "sources": [(f"{articles[ai]['title']}#{i}", articles[ai]["paragraphs"][i]["context"]) for i in order],
            "cited": order.index(pi) + 1,
            "claims": {
                "sentence": text,
                "question + answer": f"{question}: {gold['text']}.",
                "sentence, wrong answer": text[: a0 - s] + wrong_answer + text[a1 - s:],
                "question + wrong answer": f"{question}: {wrong_answer}.",
            },
        })
    for i, q in enumerate(questions):  # another article's answer sentence (the next question's, if it differs)
        other = next((o for o in questions[i + 1:] + questions[:i] if o["article"] != q["article"]), None)
        if other is not None:
            q["claims"]["other article"] = other["claims"]["sentence"]
    return questions


def hits(sources: list[tuple[str, str]]) -> list[Any]:
    from ragworks.documents import Chunk, SearchHit

    return [SearchHit(Chunk(doc_id=f"d{i}", ordinal=0, text=text, start=0, end=len(text)), 1.0 / (i + 1), source,
                      title=source.split("#")[0].replace("_", " ")) for i, (source, text) in enumerate(sources)]


@contextmanager
def variant(name: str):
    """The shipped verifier, or one half of its evidence alone (module constants patched for the run)."""
    from ragworks.generate import verify as v

    saved = (v.LEXICAL_WEIGHT, v.LEXICAL_ALONE_ABOVE, v.LEXICAL_ALONE_BELOW)
    if name.startswith("lexical only"):
        v.LEXICAL_WEIGHT, v.LEXICAL_ALONE_ABOVE, v.LEXICAL_ALONE_BELOW = 1.0, 0.0, 0.0
    elif name.startswith("embedding only"):
        v.LEXICAL_WEIGHT, v.LEXICAL_ALONE_ABOVE, v.LEXICAL_ALONE_BELOW = 0.0, 2.0, -1.0
    try:
        yield
    finally:
        v.LEXICAL_WEIGHT, v.LEXICAL_ALONE_ABOVE, v.LEXICAL_ALONE_BELOW = saved


def judge(questions: list[dict[str, Any]], embedder: Any, name: str) -> list[dict[str, Any]]:
    from tqdm import tqdm

    from ragworks.generate.verify import verify_answer

    rows = []
    with variant(name):
        for q in tqdm(questions, desc=name, unit="q", file=sys.stderr):
            sources = hits(q["sources"])
            for kind, claim in q["claims"].items():
                v = verify_answer(f"{claim} [{q['cited']}]", sources, embedder,
                                  **({} if name.endswith("no question") else {"question": q["question"]}))
                s = v.sentences[0]
                rows.append({"id": q["id"], "kind": kind, "label": kind in TRUE_KINDS, "status": s.status,
                             "score": round(s.score, 4), "source": s.source,
                             "supported": s.status != "unsupported"})
    return rows


def auc(scores: list[float], labels: list[bool]) -> float | None:
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not pos or not neg:
        return None
    wins = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    tp = sum(r["supported"] and r["label"] for r in rows)
    fp = sum(r["supported"] and not r["label"] for r in rows)
    fn = sum(not r["supported"] and r["label"] for r in rows)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    by_kind = {}
    for kind in TRUE_KINDS + FALSE_KINDS:
        mine = [r for r in rows if r["kind"] == kind]
        if mine:
            by_kind[kind] = {"claims": len(mine), "judged supported": round(sum(r["supported"] for r in mine)
                                                                             / len(mine), 3)}
    return {"claims": len(rows), "precision": round(precision, 3), "recall": round(recall, 3),
            "f1": round(2 * precision * recall / (precision + recall), 3) if precision + recall else 0.0,
            "accuracy": round(sum(r["supported"] == r["label"] for r in rows) / len(rows), 3),
            "auc": round(auc([r["score"] for r in rows], [r["label"] for r in rows]) or 0.0, 3),
            "by_kind": by_kind}


def write(report: dict[str, Any], out: Path, stem: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    kinds = TRUE_KINDS + FALSE_KINDS
    lines = [f"Citation verifier on SQuAD v1.1 dev, {report['split']} articles, {report['questions']} questions "
             f"(`{report['command']}`, {report['machine']}).", "",
             "Share of claims judged supported (true claims: higher is better; false claims: lower is better):", "",
             "| verifier | " + " | ".join(f"{k} ({'true' if k in TRUE_KINDS else 'false'})" for k in kinds)
             + " | precision | recall | F1 | AUC | ms/claim |",
             "|---" * (len(kinds) + 6) + "|"]
    for v in report["variants"]:
        m = v["metrics"]
        lines.append(f"| {v['name']} | " + " | ".join(f"{m['by_kind'].get(k, {}).get('judged supported', '—')}"
                                                     for k in kinds)
                     + f" | {m['precision']} | {m['recall']} | {m['f1']} | {m['auc']} | {v['ms_per_claim']} |")
    paths = [out / f"{stem}.json", out / f"{stem}.md"]
    paths[0].write_text(json.dumps(report, indent=1) + "\n")
    paths[1].write_text("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np

        fig, ax = plt.subplots(figsize=(9, 4))
        width = 0.8 / len(report["variants"])
        for i, v in enumerate(report["variants"]):
            ys = [v["metrics"]["by_kind"].get(k, {}).get("judged supported", 0) for k in kinds]
            ax.bar(np.arange(len(kinds)) + i * width, ys, width, label=v["name"])
        ax.set_xticks(np.arange(len(kinds)) + width * (len(report["variants"]) - 1) / 2)
        ax.set_xticklabels([f"{k}\n({'true' if k in TRUE_KINDS else 'false'})" for k in kinds], fontsize=8)
        ax.set_ylabel("judged supported")
        ax.set_ylim(0, 1)
        ax.set_title(f"Citation verifier, SQuAD dev {report['split']} articles ({report['questions']} questions)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        paths.append(out / f"{stem}.png")
        fig.savefig(paths[-1], dpi=110)
    except ImportError:
        pass
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=SQUAD)
    ap.add_argument("--split", choices=["dev", "test", "all"], default="test")
    ap.add_argument("--questions", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", nargs="+",
                    default=["shipped", "shipped, no question", "lexical only", "embedding only"])
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    ap.add_argument("--stem", default="verify")
    ap.add_argument("--before", type=Path, help="a report of this script from an earlier commit: its variants are "
                                                "shown beside these, named 'before: …'")
    args = ap.parse_args()

    import platform

    from ragworks.embed.local import SentenceTransformerEmbedder
    from ragworks.evaluate.retrieval import set_threads

    set_threads(1)
    embedder = SentenceTransformerEmbedder("all-MiniLM-L6-v2")
    questions = build_claims(args.data, split=args.split, n=args.questions, seed=args.seed)
    report: dict[str, Any] = {"split": args.split, "questions": len(questions), "seed": args.seed,
                              "command": "python bench/verify.py " + " ".join(sys.argv[1:]),
                              "machine": f"{os.cpu_count()} vCPUs, {platform.processor() or platform.machine()}",
                              "embedder": "all-MiniLM-L6-v2", "variants": []}
    for name in args.variants:
        started = time.perf_counter()
        rows = judge(questions, embedder, name)
        ms = 1000 * (time.perf_counter() - started) / max(1, len(rows))
        report["variants"].append({"name": name, "metrics": summarize(rows), "ms_per_claim": round(ms, 1),
                                   "rows": rows})
        m = report["variants"][-1]["metrics"]
        print(f"{name:16s} P {m['precision']:.3f} R {m['recall']:.3f} F1 {m['f1']:.3f} AUC {m['auc']:.3f} "
              f"{ms:.1f} ms/claim  " + "  ".join(f"{k}: {v['judged supported']}" for k, v in m["by_kind"].items()))
    for i, v in enumerate(report["variants"]):
        if i:
            v.pop("rows")  # per-claim verdicts kept for the first variant only (the file stays small)
    if args.before:
        earlier = json.loads(args.before.read_text())
        report["variants"] += [{**v, "name": f"before: {v['name']}", "rows": None} for v in earlier["variants"]]
    report["examples"] = [{"question": q["question"], "cited": q["cited"], "claims": q["claims"]}
                          for q in questions[:5]]
    paths = write(report, args.out, args.stem)
    print(paths[1].read_text())
    print("wrote", ", ".join(str(p) for p in paths))


if __name__ == "__main__":
    main()
