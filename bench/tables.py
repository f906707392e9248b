"""Tables: what finding them costs the PDF loader, and what they buy a question about one cell.

    .venv/bin/python bench/tables.py                 # 40 rows per register: 640 searches, a few minutes
    .venv/bin/python bench/tables.py --rows 10       # smoke test

1. loader   pages/s of `load_pdf` with `pdf_tables` on and off, on three kinds of PDF: prose only (the content
            stream draws no lines, so pdfplumber is never opened), ruled tables on every page, and the sample
            corpus's PDFs.
2. retrieval one register of `--rows` lighthouses per format (Markdown, HTML, DOCX, PDF), each a long table split
            over several chunks, all in one collection (real model, SQLite/FAISS, hybrid search); two questions per
            row ("When was X first lit?", "Who was the last keeper of X?"). row@1: the top hit's indexed text
            (context + passage) holds the row's name and year; row@3: one of the top 3 does; table@1: the top hit
            is the right file. Run with PDF tables on, then off (the PDF's cells then arrive as loose lines of
            text, as before tables were extracted).

Results go to --out (JSON) and a table on stdout; nothing here is asserted by the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from ragworks.collection import Collection  # noqa: E402
from ragworks.config import Settings  # noqa: E402
from ragworks.ingest.base import LoadOptions, LoadReport  # noqa: E402
from ragworks.ingest.loaders import load_pdf  # noqa: E402

HEADER = ["Lighthouse", "Coast", "Tower height (m)", "First lit", "Last keeper"]
SYLLABLES = ["ar", "bel", "cor", "dun", "el", "fin", "gar", "hol", "ish", "kel", "lor", "mor", "nav", "or", "pen",
             "quin", "ros", "skel", "tor", "ul", "var", "wick"]
KEEPERS = ["Abernethy", "Balfour", "Craig", "Dunbar", "Erskine", "Forbes", "Gordon", "Hamilton", "Innes", "Jardine"]
PROSE = ("The keeper trimmed the wick at dusk and wound the clockwork that turned the lens. Each night the log "
         "recorded the weather, the ships that passed and the hours the light was shown. ")


def registers(rows: int) -> dict[str, list[list[str]]]:
    rng = random.Random(0)
    names: dict[str, None] = {}
    while len(names) < 4 * rows:
        names["".join(rng.choice(SYLLABLES) for _ in range(3)).capitalize()] = None
    ordered = list(names)
    return {fmt: [[ordered[k * rows + i], rng.choice(["north", "south", "east", "west"]), str(rng.randint(12, 70)),
                   str(rng.randint(1790, 1930)), rng.choice(KEEPERS)] for i in range(rows)]
            for k, fmt in enumerate(["md", "html", "docx", "pdf"])}


def write_pdf(path: Path, pages_of_prose: int = 0, table: list[list[str]] | None = None) -> Path:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=10)
    for _ in range(pages_of_prose):
        pdf.add_page()
        pdf.multi_cell(w=0, h=5, text=PROSE * 12)
    if table:
        pdf.add_page()
        pdf.multi_cell(w=0, h=5, text="The register of stations.")
        with pdf.table() as t:
            for r in [HEADER, *table]:
                row = t.row()
                for cell in r:
                    row.cell(cell)
    pdf.output(str(path))
    return path


def time_loader(path: Path, tables: bool, repeat: int = 3) -> tuple[float, int]:
    best, pages = float("inf"), 0
    for _ in range(repeat):
        started = time.perf_counter()
        [doc] = list(load_pdf(path, path.name, LoadOptions(pdf_tables=tables), LoadReport()))
        best = min(best, time.perf_counter() - started)
        pages = len(doc.page_starts)
    return best, pages


def bench_loader(tmp: Path, rows: int) -> list[dict[str, Any]]:
    cases = {"prose, 20 pages": [write_pdf(tmp / "prose.pdf", pages_of_prose=20)],
             f"ruled table, {rows * 4} rows": [write_pdf(tmp / "table.pdf", table=registers(rows)["pdf"] * 4)],
             "sample corpus PDFs": sorted((REPO / "examples" / "sample-corpus").glob("*.pdf"))}
    out = []
    for name, paths in cases.items():
        for tables in (False, True):
            seconds = pages = 0
            for p in paths:
                s, n = time_loader(p, tables)
                seconds += s
                pages += n
            out.append({"pdf": name, "pdf_tables": tables, "pages": pages, "seconds": round(seconds, 4),
                        "pages_per_s": round(pages / seconds, 1)})
    return out


def build_corpus(root: Path, regs: dict[str, list[list[str]]]) -> dict[str, str]:
    import docx

    def md_table(rows: list[list[str]]) -> str:
        return "\n".join(["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
                         + ["| " + " | ".join(r) + " |" for r in rows])

    root.mkdir(parents=True, exist_ok=True)
    (root / "north.md").write_text(f"# Northern register\n\nStations.\n\n{md_table(regs['md'])}\n")
    cells = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in regs["html"])
    head = "".join(f"<th>{h}</th>" for h in HEADER)
    (root / "south.html").write_text(f"<html><body><h1>Southern register</h1><p>Stations.</p><table><thead><tr>"
                                     f"{head}</tr></thead><tbody>{cells}</tbody></table></body></html>")
    d = docx.Document()
    d.add_heading("Eastern register", level=1)
    t = d.add_table(rows=len(regs["docx"]) + 1, cols=len(HEADER))
    for r, row in enumerate([HEADER, *regs["docx"]]):
        for c, cell in enumerate(row):
            t.cell(r, c).text = cell
    d.save(str(root / "east.docx"))
    write_pdf(root / "west.pdf", table=regs["pdf"])
    return {"md": "north.md", "html": "south.html", "docx": "east.docx", "pdf": "west.pdf"}


def bench_retrieval(tmp: Path, rows: int, pdf_tables: bool, embedder: Any) -> list[dict[str, Any]]:
    regs = registers(rows)
    root = tmp / f"corpus-{pdf_tables}"
    files = build_corpus(root, regs)
    settings = Settings(data_dir=tmp / f"data-{pdf_tables}", collection="tables", llm="extractive",
                        pdf_tables=pdf_tables)
    out = []
    with Collection.open(settings=settings, embedder=embedder, llm=None) as col:
        col.ingest(root)
        for fmt, table in regs.items():
            row1 = row3 = table1 = 0
            latencies = []
            questions = [(q, r) for r in table for q in (f"When was the {r[0]} lighthouse first lit?",
                                                         f"Who was the last keeper of {r[0]}?")]
            for question, r in questions:
                started = time.perf_counter()
                hits = col.search(question, k=3)
                latencies.append(time.perf_counter() - started)
                # index_text: the row counts as found even when it only sits in a chunk's heading context
                holds = [r[0] in h.chunk.index_text and r[3] in h.chunk.index_text for h in hits]
                row1 += bool(holds and holds[0])
                row3 += any(holds)
                table1 += bool(hits) and Path(hits[0].source).name == files[fmt]
            n = len(questions)
            out.append({"format": fmt, "pdf_tables": pdf_tables, "questions": n, "row@1": round(row1 / n, 4),
                        "row@3": round(row3 / n, 4), "table@1": round(table1 / n, 4),
                        "search_p50_ms": round(1000 * statistics.median(latencies), 1)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=40, help="rows per register (at most ~2,500)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "tables.json")
    args = ap.parse_args()
    from ragworks.embed.local import SentenceTransformerEmbedder

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        loader = bench_loader(tmp, args.rows)
        embedder = SentenceTransformerEmbedder("all-MiniLM-L6-v2")
        retrieval = [*bench_retrieval(tmp, args.rows, True, embedder),
                     *bench_retrieval(tmp, args.rows, False, embedder)]
    print("\nPDF loader")
    print(f"{'pdf':<26} {'tables':>6} {'pages':>5} {'seconds':>8} {'pages/s':>8}")
    for r in loader:
        print(f"{r['pdf']:<26} {'on' if r['pdf_tables'] else 'off':>6} {r['pages']:>5} {r['seconds']:>8.3f} "
              f"{r['pages_per_s']:>8.1f}")
    print("\nA question about one cell (hybrid search, k=3)")
    print(f"{'format':<6} {'pdf tables':>10} {'questions':>9} {'row@1':>6} {'row@3':>6} {'table@1':>7} {'p50 ms':>7}")
    for r in retrieval:
        print(f"{r['format']:<6} {'on' if r['pdf_tables'] else 'off':>10} {r['questions']:>9} {r['row@1']:>6.3f} "
              f"{r['row@3']:>6.3f} {r['table@1']:>7.3f} {r['search_p50_ms']:>7.1f}")
    result = {"loader": loader, "retrieval": retrieval, "rows": args.rows,
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                          "load_average": os.getloadavg()}, "when": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten {args.out}")


if __name__ == "__main__":
    main()
