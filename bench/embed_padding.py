"""A/B: sentence-transformers' own length sort (by characters) vs batches sorted by token count.

sentence-transformers sorts an `encode` call's texts by *character* length and pads each batch to its longest
member. On SciFact chunks the characters-per-token ratio varies enough that this pads ~19% extra tokens; sorting
by token count first (and calling `encode` once per batch, so it cannot re-sort) pads ~3%.

    .venv/bin/python bench/embed_padding.py --limit 512 --rounds 2

Takes the first `--limit` passages' chunk texts as the pipeline builds them (context line + chunk), runs A and B
alternately (ABBA...) in one process, and prints wall and CPU seconds for each, plus the padded token counts.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import DEFAULT_DATA, FreeEmbedder, write_subset


def cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def chunk_texts(data: Path, passages: int) -> list[str]:
    """The unique index texts the pipeline would embed for the first `passages` records."""
    import ragworks
    from ingest import embedded_texts

    work = Path(tempfile.mkdtemp(prefix="ragworks-bench-pad-"))
    write_subset(data / "corpus.jsonl" if data.is_dir() else data, work / "corpus.jsonl", passages)
    settings = ragworks.Settings(data_dir=work / "data", collection="pad", llm="extractive")
    try:
        with ragworks.Collection.open(settings=settings, embedder=FreeEmbedder(settings)) as col:
            col.ingest(work / "corpus.jsonl")
        return embedded_texts(settings.collection_path() / "ragworks.sqlite3")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--limit", type=int, default=256, help="passages (their chunks are the texts embedded)")
    p.add_argument("--rounds", type=int, default=1, help="ABBA rounds")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "embed_padding.json"))
    args = p.parse_args()

    texts = chunk_texts(Path(args.data), args.limit)
    from ragworks.embed.local import SentenceTransformerEmbedder

    emb = SentenceTransformerEmbedder()
    model, bs = emb._model, emb.batch_size
    emb.embed_documents(["warm up"])
    enc = model.tokenizer(texts, add_special_tokens=True, truncation=True, max_length=emb.max_tokens)
    lengths = np.array([len(x) for x in enc["input_ids"]])

    def padded(order: np.ndarray) -> int:
        return int(sum(len(order[k : k + bs]) * lengths[order[k : k + bs]].max() for k in range(0, len(order), bs)))

    char_order = np.argsort([-len(t) for t in texts], kind="stable")
    tok_order = np.argsort(-lengths, kind="stable")

    def run_a() -> np.ndarray:  # what ragworks does today: one encode call, ST sorts by characters
        return emb.embed_documents(texts)

    def run_b() -> np.ndarray:  # token-sorted batches, one encode call each (ST cannot re-sort across them)
        out = np.empty((len(texts), emb.dimension), dtype=np.float32)
        for k in range(0, len(texts), bs):
            idx = tok_order[k : k + bs]
            out[idx] = emb.embed_documents([texts[i] for i in idx])
        return out

    results: dict[str, list[dict[str, float]]] = {"A_char_sort": [], "B_token_sort": []}
    ref = None
    seq = []
    for _ in range(args.rounds):
        seq += [("A_char_sort", run_a), ("B_token_sort", run_b), ("B_token_sort", run_b), ("A_char_sort", run_a)]
    for name, fn in seq:
        c0, t0 = cpu_s(), time.perf_counter()
        vecs = fn()
        wall, cpu = time.perf_counter() - t0, cpu_s() - c0
        if ref is None:
            ref = vecs
        max_diff = float(np.abs(vecs - ref).max())
        results[name].append({"wall_s": wall, "cpu_s": cpu, "load1": os.getloadavg()[0], "max_abs_diff": max_diff})
        print(
            f"{name:13} {len(texts)} texts  wall {wall:7.2f}s  cpu {cpu:7.2f}s  load {os.getloadavg()[0]:.1f}"
            f"  max|Δvec| {max_diff:.1e}",
            file=sys.stderr,
        )

    summary = {
        "texts": len(texts),
        "batch_size": bs,
        "real_tokens": int(lengths.sum()),
        "padded_tokens_char_sort": padded(char_order),
        "padded_tokens_token_sort": padded(tok_order),
        "best_wall_s": {k: min(r["wall_s"] for r in v) for k, v in results.items()},
        "median_cpu_s": {k: float(np.median([r["cpu_s"] for r in v])) for k, v in results.items()},
        "runs": results,
    }
    a, b = summary["best_wall_s"]["A_char_sort"], summary["best_wall_s"]["B_token_sort"]
    ca, cb = summary["median_cpu_s"]["A_char_sort"], summary["median_cpu_s"]["B_token_sort"]
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=2))
    print(
        f"token-sorted batches: {100 * (1 - b / a):+.1f}% wall (best of each), {100 * (1 - cb / ca):+.1f}% CPU "
        "(median) vs sentence-transformers' char sort"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
