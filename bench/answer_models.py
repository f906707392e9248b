"""Which local answerer for the demo? Extractive vs SmolLM2-135M vs Qwen2.5-Coder-1.5B on SQuAD v1.1 dev questions.

    .venv/bin/python bench/answer_models.py --sample 30          # ~the run recorded in bench/results/
    .venv/bin/python bench/answer_models.py --sample 5 --answerers extractive smollm2-135m   # smoke test

Every question is asked through `Collection.ask` (retrieval, prompt packing, streaming, repetition guard,
citation resolution: what the CLI does) against one collection holding the paragraphs of the sampled questions'
articles. Per answerer: token F1 and exact match (SQuAD's normalisation, best over the gold answers), whether the
answer contains a gold answer, the share of answers with a [n] marker written by the answerer, citation precision
(cited passages that contain a gold answer), and seconds per answer: wall-clock and this process's CPU seconds
(the latter is what a busy shared machine distorts least; the load average is recorded beside them).
A smaller, simpler stand-in for `ragworks eval qa` (issue 13), which supersedes it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import string
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = (REPO / ".." / "shared" / "data" / "squad-dev" / "dev-v1.1.json").resolve()
DEFAULT_OUT = REPO / "bench" / "results" / "answer-models.json"
_MARKER = re.compile(r"\[\d+(?:\s*[,;-]\s*\d+)*\]")


def normalize(text: str) -> str:
    """SQuAD v1.1's official answer normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def token_f1(prediction: str, gold: str) -> float:
    pred, ref = normalize(prediction).split(), normalize(gold).split()
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def sample_questions(data_path: Path, n: int, seed: int, per_article: int
                     ) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """`n` random questions; the collection: their gold paragraphs plus up to `per_article` same-article decoys."""
    articles = json.loads(data_path.read_text())["data"]
    questions = [
        {"id": qa["id"], "question": qa["question"], "answers": [a["text"] for a in qa["answers"]], "article": ai,
         "paragraph": pi}
        for ai, art in enumerate(articles) for pi, para in enumerate(art["paragraphs"]) for qa in para["qas"]
    ]
    chosen = random.Random(seed).sample(questions, n)
    keep = {(q["article"], q["paragraph"]) for q in chosen}
    for ai in {q["article"] for q in chosen}:  # decoys: the article's first paragraphs (same topic, same names)
        keep |= {(ai, pi) for pi in range(min(per_article, len(articles[ai]["paragraphs"])))}
    paragraphs = [
        {"_id": f"{ai}-{pi}", "title": articles[ai]["title"].replace("_", " "),
         "text": articles[ai]["paragraphs"][pi]["context"]}
        for ai, pi in sorted(keep)
    ]
    return chosen, paragraphs


def run_answerer(name: str, col: Any, questions: list[dict[str, Any]], partial: Path) -> dict[str, Any]:
    """Ask every question; `partial` holds the rows so far (a run stopped early keeps its answers)."""
    from ragworks.generate.prompt import NO_ANSWER

    rows = []
    for i, q in enumerate(questions, 1):
        wall, cpu = time.perf_counter(), time.process_time()
        answer = col.ask(q["question"])
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        text = _MARKER.sub(" ", answer.text)
        cited = [answer.sources[c.number - 1].chunk.text for c in answer.citations if c.number <= len(answer.sources)]
        rows.append({
            "id": q["id"], "answer": answer.text, "notice": answer.notice,
            "f1": max(token_f1(text, g) for g in q["answers"]),
            "em": float(any(normalize(text) == normalize(g) for g in q["answers"])),
            "contains_gold": float(any(normalize(g) in normalize(text) for g in q["answers"])),
            "wrote_marker": float(bool(_MARKER.search(answer.text)) and "similarity" not in answer.notice),
            "abstained": float(NO_ANSWER.lower() in answer.text.lower()),
            "cited_with_gold": [any(normalize(g) in normalize(t) for g in q["answers"]) for t in cited],
            "wall_s": wall, "cpu_s": cpu,
        })
        partial.write_text(json.dumps({"answerer": name, "rows": rows}, indent=1))
        print(f"  {name} {i}/{len(questions)} {wall:5.1f}s F1 {rows[-1]['f1']:.2f} | {answer.text[:90]!r}",
              file=sys.stderr, flush=True)
    cites = [c for r in rows for c in r["cited_with_gold"]]
    mean = lambda key: sum(r[key] for r in rows) / len(rows)  # noqa: E731
    return {
        "answerer": name, "questions": len(rows), "f1": mean("f1"), "em": mean("em"),
        "contains_gold": mean("contains_gold"), "wrote_marker": mean("wrote_marker"),
        "abstained": mean("abstained"),
        "citation_precision": sum(cites) / len(cites) if cites else None,
        "wall_s_per_answer": mean("wall_s"), "cpu_s_per_answer": mean("cpu_s"),
        "wall_s_median": sorted(r["wall_s"] for r in rows)[len(rows) // 2],
        "rows": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--sample", type=int, default=30)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--decoys-per-article", type=int, default=8, help="same-article paragraphs beside the gold ones")
    ap.add_argument("--answerers", nargs="+", default=["extractive", "smollm2-135m", "qwen2.5-1.5b"])
    ap.add_argument("--threads", type=int, default=2, help="llama.cpp threads (the machine has 2 cores)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()

    from ragworks.collection import Collection
    from ragworks.config import Settings
    from ragworks.embed import make_embedder
    from ragworks.generate import make_llm

    args.out.parent.mkdir(parents=True, exist_ok=True)
    questions, paragraphs = sample_questions(args.data, args.sample, args.seed, args.decoys_per_article)
    results, loads = [], []
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "squad-paragraphs.jsonl"
        corpus.write_text("".join(json.dumps(p) + "\n" for p in paragraphs))
        base = Settings(data_dir=Path(tmp) / "data", collection="squad", llm_threads=args.threads, temperature=0.0)
        embedder = make_embedder(base)
        with Collection.open(settings=base, embedder=embedder, llm=None) as col:
            col.ingest(corpus)
        print(f"{len(questions)} questions, {len(paragraphs)} paragraphs ingested", file=sys.stderr)
        for name in args.answerers:
            settings = base.model_copy(update={"llm": "extractive"} if name == "extractive"
                                       else {"llm": "local", "llm_gguf": name})
            started = time.perf_counter()
            llm = make_llm(settings)
            load_s = time.perf_counter() - started
            with Collection.open(settings=settings, embedder=embedder, llm=llm) as col:
                loads.append(os.getloadavg()[0])
                result = run_answerer(name, col, questions, args.out.with_suffix(f".{name}.partial.json"))
                loads.append(os.getloadavg()[0])
            result["model_load_s"] = load_s
            result["runtime"] = getattr(llm, "runtime", None)
            results.append(result)
            if llm is not None and hasattr(llm, "close"):
                llm.close()
            write_report(args, results, loads)  # after each answerer: a long run keeps what it measured


def write_report(args: argparse.Namespace, results: list[dict[str, Any]], loads: list[float]) -> None:
    report = {
        "benchmark": "answer-models", "data": str(args.data), "sample": args.sample, "seed": args.seed,
        "threads": args.threads, "cpus": os.cpu_count(), "python": platform.python_version(),
        "load_average_during": [round(x, 1) for x in loads],
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    lines = [
        f"SQuAD v1.1 dev, {args.sample} questions (seed {args.seed}), {args.threads} llama.cpp threads, "
        f"load average {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cores",
        "",
        "| answerer | F1 | EM | contains gold | writes [n] | citation precision | abstained | s/answer (wall) "
        "| CPU s/answer | model load s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        cp = "–" if r["citation_precision"] is None else f"{r['citation_precision']:.2f}"
        lines.append(f"| {r['answerer']} | {r['f1']:.3f} | {r['em']:.3f} | {r['contains_gold']:.2f} | "
                     f"{r['wrote_marker']:.2f} | {cp} | {r['abstained']:.2f} | {r['wall_s_per_answer']:.1f} "
                     f"(median {r['wall_s_median']:.1f}) | {r['cpu_s_per_answer']:.1f} | {r['model_load_s']:.1f} |")
    table = "\n".join(lines)
    args.out.with_suffix(".md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
