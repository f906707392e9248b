"""Multi-step retrieval (`retrieval_steps`) against one-shot retrieval, on the two-hop set in bench/data/twohop/.

    python bench/multistep.py [--data ../shared/data] [--llm extractive --llm local] [--limit N]

For each question, `Collection.ask` with `retrieval_steps` 1 (one-shot) and 2 (a follow-up after the first
retrieval), k = 8 hits:
  - support given: share of the two supporting passages among the sources handed to the answerer (the qrels);
    both given: both were;
  - support cited: share of the supporting passages the answer cites;
  - parts answered: share of the two facts whose gold answer the answer text contains; both answered: both did;
  - steps: retrievals made (the follow-up is skipped when the first hits hold every word of the question);
  - s/question: wall time of the whole ask.
SQuAD questions run on the SQuAD dev-split collection bench/hierarchical.py builds (paragraph-sized chunks; built
here if missing), sample questions on the shipped sample corpus. Answerers: extractive (follow-ups from the hits'
terms) and, with `--llm local`, SmolLM2-135M through llama.cpp (follow-ups written by the model).
Prints a table, writes JSON and Markdown; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from ragworks.collection import Collection
from ragworks.config import Settings
from ragworks.embed import make_embedder
from ragworks.embed.base import Embedder
from ragworks.evaluate import qa
from ragworks.evaluate.report import write_json
from ragworks.generate import make_llm

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RAGWORKS_SHARED_DATA") or next(
    (p / "shared" / "data" for p in (REPO.parent, REPO.parent.parent) if (p / "shared" / "data").is_dir()),
    REPO.parent / "shared" / "data"))
TWOHOP = REPO / "bench" / "data" / "twohop"
K = 8


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w%]+", " ", text.lower()).split())


def is_support(source: str, supporting: str) -> bool:
    return source == supporting or source.endswith("/" + supporting)


def collection(corpus: str, data: Path, data_dir: Path, embedder: Embedder) -> tuple[str, Settings]:
    """The collection a corpus' questions run on (ingested if new; unchanged content embeds nothing)."""
    if corpus == "squad-dev":
        settings = Settings(data_dir=data_dir, llm="extractive", chunk_tokens=256, chunk_overlap=0)
        col = Collection.open("squad-dev-c256", settings=settings, embedder=embedder, llm=None)
        _, docs, _ = qa.select(qa.load_squad(data / "squad-dev" / "dev-v1.1.json", articles="dev"), sample=None,
                               seed=0)
        col.add_documents(docs)
        col.close()
        return "squad-dev-c256", settings
    settings = Settings(data_dir=data_dir, llm="extractive")
    col = Collection.open("two-hop-sample", settings=settings, embedder=embedder, llm=None)
    assert col.ingest(REPO / "examples" / "sample-corpus").ok
    col.close()
    return "two-hop-sample", settings


def single_questions(data: Path, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """`n` ordinary (one-fact) SQuAD questions of the same articles, in the two-hop format."""
    items, _, _ = qa.select(qa.load_squad(data / "squad-dev" / "dev-v1.1.json", articles="dev"), sample=n,
                            seed=seed)
    return [{"id": it.id, "question": it.question, "answers": [it.answers], "supporting": it.gold_sources}
            for it in items if not it.unanswerable]


def run(items: list[dict[str, Any]], name: str, settings: Settings, embedder: Embedder, llm: Any, steps: int
        ) -> list[dict[str, Any]]:
    cfg = settings.model_copy(update={"retrieval_steps": steps})
    col = Collection.open(name, settings=cfg, embedder=embedder, llm=llm)
    out = []
    for item in items:
        started = time.perf_counter()
        answer = col.ask(item["question"], k=K)
        seconds = time.perf_counter() - started
        given = [h.source for h in answer.sources]
        cited = {answer.sources[c.number - 1].source for c in answer.citations if 1 <= c.number <= len(given)}
        text = _norm(answer.text)
        parts = [any(_norm(a) in text for a in alts) for alts in item["answers"]]
        support = [any(is_support(g, s) for g in given) for s in item["supporting"]]
        out.append({"id": item["id"], "support_given": sum(support) / len(support), "both_given": all(support),
                    "support_cited": sum(any(is_support(c, s) for c in cited) for s in item["supporting"])
                    / len(item["supporting"]),
                    "parts": sum(parts) / len(parts), "both_parts": all(parts), "steps": len(answer.steps) or 1,
                    "follow_up": answer.steps[1]["query"] if len(answer.steps) > 1 else None,
                    "answer": answer.text, "seconds": seconds})
    col.close()
    return out


def summary(rows: list[dict[str, Any]]) -> dict[str, float]:
    n = len(rows)
    return {"questions": n, **{key: round(sum(float(r[key]) for r in rows) / n, 4) for key in
            ("support_given", "both_given", "support_cited", "parts", "both_parts", "steps", "seconds")}}


def render(report: dict[str, Any]) -> str:
    lines = ["| corpus | answerer | retrieval | questions | support given | both given | support cited | "
             "parts answered | both answered | steps | s/question |", "|" + "---|" * 11]
    for r in report["results"]:
        m = r["summary"]
        lines.append(f"| {r['corpus']} | {r['answerer']} | {r['retrieval']} | {m['questions']} | "
                     f"{m['support_given']:.3f} | {m['both_given']:.3f} | {m['support_cited']:.3f} | "
                     f"{m['parts']:.3f} | {m['both_parts']:.3f} | {m['steps']:.2f} | {m['seconds']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument("--data-dir", type=Path, default=Path.home() / ".cache" / "ragworks" / "bench-hier")
    ap.add_argument("--llm", action="append", choices=["extractive", "local"])
    ap.add_argument("--limit", type=int, default=None, help="questions per corpus")
    ap.add_argument("--single", type=int, default=0,
                    help="also ask this many one-fact SQuAD questions (does a second step hurt them?)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "multistep.json")
    args = ap.parse_args()
    embedder = make_embedder(Settings())
    report: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared), Python {platform.python_version()}",
        "command": "python " + " ".join(sys.argv), "k": K, "results": []}
    sets: list[tuple[str, list[dict[str, Any]]]] = []
    for corpus, path in (("squad-dev", TWOHOP / "squad.jsonl"), ("sample", TWOHOP / "sample.jsonl")):
        items = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        sets.append((corpus, items[: args.limit] if args.limit else items))
    if args.single:
        sets.append(("squad-dev one-fact", single_questions(args.data, args.single)))
    for corpus, items in sets:
        name, settings = collection(corpus.split()[0], args.data, args.data_dir, embedder)
        for answerer in args.llm or ["extractive"]:
            llm = None if answerer == "extractive" else make_llm(settings.model_copy(update={"llm": "local"}))
            for label, steps in (("one-shot", 1), ("multi-step (2)", 2)):
                rows = run(items, name, settings, embedder, llm, steps)
                report["results"].append({"corpus": corpus, "answerer": answerer, "retrieval": label,
                                          "summary": summary(rows), "rows": rows})
                log(f"{corpus} {answerer} {label}: {summary(rows)}")
    write_json(report, args.out)
    table = render(report)
    args.out.with_suffix(".md").write_text(f"# Multi-step retrieval\n\n`{report['command']}` on {report['machine']}"
                                           f"\n\n{table}", encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
