"""PII detection quality and what the guard costs ingest and queries.

    .venv/bin/python bench/pii.py                    # detection on bench/data/pii + costs on 200 SQuAD paragraphs
    .venv/bin/python bench/pii.py --docs 50          # smoke test

1. detection  precision / recall per type on bench/data/pii/pii.jsonl (400 generated sentences with planted
              identifiers and names, a quarter with look-alike numbers and no PII; `bench/data/pii/make.py`). A gold
              span is found when a finding of the same type overlaps it; a finding is correct when it overlaps a
              gold span of its type. "any type" counts a gold span found by a finding of any type (what redaction
              needs: the value is masked whatever it was called).
2. costs      model load time; detection ms per 1,000 characters; CPU time (process time: on a shared machine
              wall time mostly measures the neighbours) of screening a paragraph, of ingesting `--docs` SQuAD dev
              paragraphs (real embedder, SQLite/FAISS) with the guard off (pii off, injection off), at the defaults
              (redact-answers + fence) and with redact-ingest, and of `ask` (extractive, median of 40) for a
              pii:read caller and one without the grant.

Results go to --out (JSON) and a table on stdout; nothing here is asserted by the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ragworks.guard.pii import NAMES, STRUCTURED, PiiDetector  # noqa: E402

DATA = REPO / "bench" / "data" / "pii" / "pii.jsonl"
SQUAD = Path(os.environ.get("RAGWORKS_SHARED_DATA", REPO.parent / "shared" / "data")) / "squad-dev" / "dev-v1.1.json"


def detection(detector: PiiDetector, rows: list[dict[str, Any]]) -> dict[str, Any]:
    types = list(STRUCTURED) + list(NAMES)
    tp_gold = dict.fromkeys(types, 0)
    any_gold = dict.fromkeys(types, 0)
    n_gold = dict.fromkeys(types, 0)
    tp_pred = dict.fromkeys(types, 0)
    n_pred = dict.fromkeys(types, 0)
    started = time.process_time()  # CPU: wall time on this shared machine mostly measures the neighbours
    chars = 0
    misses: list[str] = []
    for row in rows:
        text = row["text"]
        chars += len(text)
        found = detector.find(text)
        for g in row["entities"]:
            n_gold[g["type"]] += 1
            over = [f for f in found if f.start < g["end"] and f.end > g["start"]]
            any_gold[g["type"]] += bool(over)
            if any(f.type == g["type"] for f in over):
                tp_gold[g["type"]] += 1
            elif len(misses) < 15:
                misses.append(f"{g['type']}: {g['value']!r} → {[(f.type, text[f.start:f.end]) for f in over]}")
        for f in found:
            n_pred[f.type] = n_pred.get(f.type, 0) + 1
            if any(g["type"] == f.type and g["start"] < f.end and g["end"] > f.start for g in row["entities"]):
                tp_pred[f.type] = tp_pred.get(f.type, 0) + 1
    seconds = time.process_time() - started
    per_type = {t: {"gold": n_gold[t], "found": n_pred[t],
                    "recall": tp_gold[t] / n_gold[t] if n_gold[t] else None,
                    "recall_any_type": any_gold[t] / n_gold[t] if n_gold[t] else None,
                    "precision": tp_pred[t] / n_pred[t] if n_pred[t] else None} for t in types}

    def pooled(group: tuple[str, ...]) -> dict[str, float]:
        g = sum(n_gold[t] for t in group)
        p = sum(n_pred[t] for t in group)
        return {"recall": sum(tp_gold[t] for t in group) / g, "recall_any_type": sum(any_gold[t] for t in group) / g,
                "precision": sum(tp_pred[t] for t in group) / p if p else 0.0}

    return {"per_type": per_type, "structured": pooled(STRUCTURED), "names": pooled(NAMES),
            "ms_per_1k_chars": 1000 * seconds / (chars / 1000), "misses": misses}


def squad_paragraphs(n: int) -> list[tuple[str, str, list[str]]]:
    data = json.loads(SQUAD.read_text())["data"]
    out = []
    for art in data:
        for i, p in enumerate(art["paragraphs"]):
            out.append((f"{art['title']}-{i}", p["context"], [q["question"] for q in p["qas"][:1]]))
    return out[:n]


def costs(n_docs: int) -> dict[str, Any]:
    """CPU seconds (process time: this shared machine's load inflates wall time several-fold) of ingest and ask
    with the guard off, at its defaults and with redact-ingest, after one unmeasured warm-up ingest."""
    from ragworks.collection import Collection
    from ragworks.config import Settings
    from ragworks.documents import Document
    from ragworks.embed.local import SentenceTransformerEmbedder
    from ragworks.guard.screen import DocumentGuard

    embedder = SentenceTransformerEmbedder("all-MiniLM-L6-v2")
    paragraphs = squad_paragraphs(n_docs)
    questions = [q for _, _, qs in paragraphs for q in qs][:40]
    out: dict[str, Any] = {"docs": len(paragraphs), "chars": sum(len(t) for _, t, _ in paragraphs),
                           "clock": "process CPU time"}
    guard = DocumentGuard(pii="redact-answers", injection="fence")
    t0 = time.process_time()
    for s, t, _ in paragraphs:
        guard.screen(Document(source=s, text=t))
    out["screen_ms_per_doc"] = round(1000 * (time.process_time() - t0) / len(paragraphs), 1)
    configs = (("warm-up", {"pii": "off", "injection": "off"}), ("off", {"pii": "off", "injection": "off"}),
               ("defaults", {}), ("redact-ingest", {"pii": "redact-ingest"}))
    for name, kw in configs:
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(data_dir=Path(tmp), collection="c", **kw)
            with Collection.open(settings=settings, embedder=embedder, llm=None) as col:
                docs = [Document(source=s, text=t) for s, t, _ in paragraphs]
                started = time.process_time()
                col.add_documents(docs)
                ingest_s = time.process_time() - started
                row: dict[str, Any] = {"ingest_cpu_s": round(ingest_s, 2),
                                       "cpu_ms_per_doc": round(1000 * ingest_s / len(docs), 1)}
                for label, pii_read in (("ask_cpu_ms_pii_read", True), ("ask_cpu_ms_masked", False)):
                    col.ask(questions[0], pii_read=pii_read)  # warm
                    times = []
                    for q in questions:
                        t0 = time.process_time()
                        col.ask(q, pii_read=pii_read)
                        times.append(1000 * (time.process_time() - t0))
                    row[label] = round(statistics.median(times), 1)
                if name != "warm-up":
                    out[name] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--docs", type=int, default=200, help="SQuAD paragraphs ingested for the cost rows (0: skip)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "pii.json")
    args = ap.parse_args()
    rows = [json.loads(line) for line in args.data.read_text().splitlines() if line.strip()]
    detector = PiiDetector()
    started = time.perf_counter()
    detector.find("warm up: Ann Lee lives in Oslo.")
    load_s = time.perf_counter() - started
    det = detection(detector, rows)
    result: dict[str, Any] = {"machine": f"{platform.machine()} {os.cpu_count()} cpu", "sentences": len(rows),
                              "load_s": round(load_s, 2), "detection": det}
    print(f"PII detection on {len(rows)} generated sentences (Presidio + en_core_web_sm), model load {load_s:.1f} s,"
          f" {det['ms_per_1k_chars']:.1f} CPU ms per 1,000 characters")
    print(f"{'type':<12} {'gold':>5} {'found':>6} {'precision':>10} {'recall':>7} {'recall(any type)':>17}")
    fmt = lambda v: "   —" if v is None else f"{v:.3f}"  # noqa: E731
    for t, m in det["per_type"].items():
        print(f"{t:<12} {m['gold']:>5} {m['found']:>6} {fmt(m['precision']):>10} {fmt(m['recall']):>7} "
              f"{fmt(m['recall_any_type']):>17}")
    for group in ("structured", "names"):
        m = det[group]
        print(f"{group:<12} {'':>5} {'':>6} {fmt(m['precision']):>10} {fmt(m['recall']):>7} "
              f"{fmt(m['recall_any_type']):>17}")
    if det["misses"]:
        print("some misses:", *det["misses"][:8], sep="\n  ")
    if args.docs:
        c = costs(args.docs)
        result["costs"] = c
        print(f"\nIngest and ask, {c['docs']} SQuAD dev paragraphs ({c['chars']:,} chars), extractive answers, "
              f"process CPU time; screening alone (defaults) {c['screen_ms_per_doc']} ms per paragraph")
        print(f"{'guard':<14} {'ingest CPU s':>12} {'ms/doc':>7} {'ask CPU ms (pii:read)':>22} "
              f"{'ask CPU ms (masked)':>20}")
        for name in ("off", "defaults", "redact-ingest"):
            r = c[name]
            print(f"{name:<14} {r['ingest_cpu_s']:>12} {r['cpu_ms_per_doc']:>7} {r['ask_cpu_ms_pii_read']:>22} "
                  f"{r['ask_cpu_ms_masked']:>20}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
