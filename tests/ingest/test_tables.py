"""Tables in Markdown, HTML, DOCX and PDF become Markdown table chunks; a long table's header rides on every chunk.

Loaders and chunker with the real tokenizer; retrieval with the real embedding model and real SQLite/FAISS.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from ragworks.documents import Chunk, ContentKind, Document, SearchHit, SpanKind
from ragworks.generate.prompt import build_messages
from ragworks.ingest.chunker import Chunker
from ragworks.ingest.loaders import markdown_spans
from ragworks.ingest.tables import Table, continued_table, table_from_rows

HEADER = ["Lighthouse", "Coast", "Tower height (m)", "First lit", "Last keeper"]
_SYLLABLES = ["ar", "bel", "cor", "dun", "el", "fin", "gar", "hol", "ish", "kel", "lor", "mor", "nav", "or", "pen",
              "quin", "ros", "skel", "tor", "ul", "var", "wick"]
_COASTS = ["north", "south", "east", "west"]
_KEEPERS = ["Abernethy", "Balfour", "Craig", "Dunbar", "Erskine", "Forbes", "Gordon", "Hamilton", "Innes", "Jardine"]


def station_names(n: int) -> list[str]:
    """Invented one-word station names ("Kelmorwick"), distinct, like the proper nouns a register is asked about."""
    rng = random.Random(0)
    names: dict[str, None] = {}
    while len(names) < n:
        names["".join(rng.choice(_SYLLABLES) for _ in range(3)).capitalize()] = None
    return list(names)


def register_rows(part: int, n: int = 60) -> list[list[str]]:
    """Part `part` of a long lighthouse register (up to 4 × 60 rows; names differ across parts)."""
    names = station_names(4 * n)
    rng = random.Random(part)
    return [[names[part * n + i], rng.choice(_COASTS), str(rng.randint(12, 70)), str(rng.randint(1790, 1930)),
             rng.choice(_KEEPERS)] for i in range(n)]


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                     + ["| " + " | ".join(r) + " |" for r in rows])


def html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_pdf_table(path: Path, intro: str, header: list[str], rows: list[list[str]], outro: str) -> Path:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=10)
    pdf.multi_cell(w=0, h=6, text=intro)
    pdf.ln(4)
    with pdf.table(repeat_headings=0) as table:  # page 2 does not repeat the header: the loader must
        for r in [header, *rows]:
            row = table.row()
            for cell in r:
                row.cell(cell)
    pdf.ln(4)
    pdf.multi_cell(w=0, h=6, text=outro)
    pdf.output(str(path))
    return path


@pytest.fixture(scope="module")
def chunker(embedder) -> Chunker:
    return Chunker(embedder.count_tokens, chunk_tokens=128, overlap=16, model_max_tokens=embedder.max_tokens)


def table_spans(doc: Document) -> list[str]:
    return [doc.text[s.start : s.end] for s in doc.spans if s.kind is SpanKind.TABLE]


# --- table shapes ----------------------------------------------------------------------------------------------


def test_rows_become_markdown_with_pipes_escaped_and_empty_columns_dropped():
    table = table_from_rows([["Name", "", "Note"], ["a|b", "", "x\n y"], ["", "", ""], ["c", "", "d"]])
    assert table is not None
    assert table.to_markdown() == "| Name | Note |\n| --- | --- |\n| a\\|b | x y |\n| c | d |"


@pytest.mark.parametrize("rows", [[["only one column"], ["second row"]], [["A", "B"]], [["A", "x" * 2000], ["c", "d"]]],
                         ids=["one-column", "no-body-row", "prose-in-cells"])
def test_layouts_that_are_not_data_tables_are_refused(rows):
    assert table_from_rows(rows) is None


def test_a_pdf_table_continued_on_the_next_page_gets_its_header_back():
    first = Table(["Light", "Year"], [["A", "1800"]])
    headless = Table(["B", "1801"], [["C", "1802"]])  # its first row was taken for a header
    assert continued_table(first, headless) == Table(["Light", "Year"], [["B", "1801"], ["C", "1802"]])
    assert continued_table(first, first) == first  # repeated header: nothing to fix
    assert continued_table(None, headless) == headless


# --- loaders ---------------------------------------------------------------------------------------------------


def test_markdown_pipe_table_is_a_table_span_even_right_after_a_paragraph(load, tmp_path):
    path = tmp_path / "fleet.md"
    path.write_text("# Fleet\n\nThe tenders, by year:\n| Ship | Year |\n|:---|---:|\n| Pharos | 1874 |\n"
                    "| Hesperus | 1896 |\n\nAfter the table.\n\nA | B\n---\n")
    [doc], _ = load(path)
    assert table_spans(doc) == ["| Ship | Year |\n|:---|---:|\n| Pharos | 1874 |\n| Hesperus | 1896 |"]
    paragraphs = [doc.text[s.start : s.end] for s in doc.spans if s.kind is SpanKind.PARAGRAPH]
    assert paragraphs[:2] == ["The tenders, by year:", "After the table."]
    assert [doc.text[s.start : s.end] for s in doc.spans if s.kind is SpanKind.HEADING][-1] == "A | B"  # setext


def test_html_table_keeps_header_spans_caption_and_flattens_nested_tables(load, tmp_path):
    path = tmp_path / "keepers.html"
    path.write_text(
        "<html><body><main><h1>Keepers</h1><p>Before.</p>"
        "<table><caption>Keepers by station</caption>"
        "<thead><tr><th rowspan=2>Name</th><th colspan=2>Service</th></tr><tr><th>From</th><th>To</th></tr></thead>"
        "<tbody><tr><td rowspan=2>Ann Lee</td><td>1900</td><td>1910</td></tr><tr><td>1912</td><td>1920</td></tr>"
        "<tr><td>Bo <table><tr><td>inner</td><td>cell</td></tr></table></td><td>1921</td><td>1930</td></tr>"
        "</tbody></table>"
        "<table role=presentation><tr><td>Layout cell one.</td><td>Layout cell two.</td></tr></table>"
        "<p>After.</p></main></body></html>")
    [doc], _ = load(path)
    assert table_spans(doc) == [
        "| Name | Service / From | Service / To |\n| --- | --- | --- |\n| Ann Lee | 1900 | 1910 |\n"
        "| Ann Lee | 1912 | 1920 |\n| Bo inner cell | 1921 | 1930 |"]
    assert "Keepers by station" in doc.text and "Layout cell one." in doc.text
    assert doc.text.index("Keepers by station") < doc.text.index("| Name")
    assert doc.text.rstrip().endswith("After.")


def test_docx_and_pdf_tables_are_markdown_tables(load, tmp_path, make_docx):
    rows = register_rows(1, 40)
    docx_path = make_docx(tmp_path / "register.docx", [("h1", "Register"), ("p", "All stations."),
                                                       ("table", [HEADER, *rows]), ("p", "End of register.")])
    [doc], _ = load(docx_path)
    assert table_spans(doc) == [markdown_table(HEADER, rows).replace("|---|---|---|---|---|",
                                                                     "| --- | --- | --- | --- | --- |")]

    pdf_path = write_pdf_table(tmp_path / "register.pdf", "All stations of the register.", HEADER, rows,
                               "End of the register.")
    [doc], report = load(pdf_path)
    assert report.warnings == []
    spans = table_spans(doc)
    assert len(doc.page_starts) == 2 and len(spans) == 2  # one table per page
    assert all(s.startswith("| Lighthouse | Coast | Tower height (m) | First lit | Last keeper |\n| --- |")
               for s in spans)  # page 2 repeated no header: the loader carried it over
    body = [line for s in spans for line in s.split("\n")[2:]]
    assert body == ["| " + " | ".join(r) + " |" for r in rows]
    assert doc.text.startswith("All stations of the register.") and doc.text.rstrip().endswith("register.")
    assert "Kestrel" not in doc.text.split("| Lighthouse")[0]  # cells are not also loose lines


def test_pdf_tables_can_be_switched_off(load, tmp_path):
    from ragworks.ingest.base import LoadOptions

    rows = register_rows(2, 5)
    path = write_pdf_table(tmp_path / "r.pdf", "Intro.", HEADER, rows, "Outro.")
    [doc], _ = load(path, LoadOptions(pdf_tables=False))
    assert table_spans(doc) == [] and rows[0][0] in doc.text


# --- chunking --------------------------------------------------------------------------------------------------


def test_a_long_table_is_split_between_rows_with_its_header_on_every_chunk(chunker):
    rows = register_rows(3)
    text = ("# Register\n\nThe stations of the service, with their towers and keepers, in the order they were "
            f"built.\n\n{markdown_table(HEADER, rows)}\n\nEvery station was automated by 1998.\n")
    doc = Document(source="register.md", text=text, title="Northern Lights", spans=markdown_spans(text))
    chunks = chunker.chunk(doc)
    header = "| " + " | ".join(HEADER) + " |\n|" + "---|" * len(HEADER)
    table_chunks = [c for c in chunks if "| Kestrel" in c.text or c.text.startswith("|")]
    assert len(table_chunks) >= 3
    for c in chunks:
        assert doc.text[c.start : c.end] == c.text  # citations keep exact offsets
        assert c.token_count <= 128
    first, *rest = table_chunks
    assert first.text.startswith(header) and "\n" not in first.context  # a table's own header: nothing added
    for c in rest:
        assert c.text.startswith("| ") and not c.text.startswith(header)
        assert c.context == "Northern Lights › Register\n" + header
        assert c.index_text.startswith("Northern Lights › Register\n" + header + "\n| ")
        assert c.readable_text == header + "\n" + c.text
    # every row is in exactly one chunk (no overlap inside a table) and no chunk mixes prose and rows
    row_lines = [line for c in table_chunks for line in c.text.split("\n")[2 if c is first else 0 :]]
    assert row_lines == ["| " + " | ".join(r) + " |" for r in rows]
    assert chunks[0].text.startswith("Register") and "|" not in chunks[0].text
    assert chunks[-1].text == "Every station was automated by 1998."


def test_the_llm_prompt_shows_a_continued_tables_header(chunker):
    rows = register_rows(3)
    text = markdown_table(HEADER, rows)
    doc = Document(source="r.md", text=text, title="Register", spans=markdown_spans(text))
    last = chunker.chunk(doc)[-1]
    hit = SearchHit(chunk=last, score=1.0, source="r.md", title="Register")
    prompt = build_messages("Who was the last keeper?", [hit])[1]["content"]
    assert "| Lighthouse | Coast | Tower height (m) | First lit | Last keeper |\n|---|" in prompt
    assert rows[-1][0] in prompt


def test_context_lines_beyond_the_first_are_only_for_tables():
    plain = Chunk(doc_id="d", ordinal=0, text="Body.", start=0, end=5, context="Title › Section")
    assert plain.readable_text == "Body."


# --- end to end: real model, real SQLite/FAISS --------------------------------------------------------------------


@pytest.fixture(scope="module")
def table_corpus(tmp_path_factory) -> tuple[Path, dict[str, list[list[str]]]]:
    from tests.ingest.conftest import write_docx

    root = tmp_path_factory.mktemp("tables")
    tables = {name: register_rows(part) for part, name in enumerate(["md", "html", "docx", "pdf"])}
    (root / "north.md").write_text("# Northern register\n\nStations of the northern service.\n\n"
                                   + markdown_table(HEADER, tables["md"]) + "\n\nAll automated by 1998.\n")
    (root / "south.html").write_text(
        "<html><head><title>Southern register</title></head><body><main><h1>Southern register</h1>"
        f"<p>Stations of the southern service.</p>{html_table(HEADER, tables['html'])}<p>Closed in 1990.</p>"
        "</main></body></html>")
    write_docx(root / "east.docx", [("h1", "Eastern register"), ("p", "Stations of the eastern service."),
                                    ("table", [HEADER, *tables["docx"]])])
    write_pdf_table(root / "west.pdf", "Western register. Stations of the western service.", HEADER, tables["pdf"],
                    "The western service closed last.")
    (root / "prose.md").write_text("# Lamps\n\nParaffin lamps replaced colza oil in most towers by 1870.\n")
    return root, tables


def test_a_question_about_one_cell_retrieves_its_table_row(collection, table_corpus):
    root, tables = table_corpus
    report = collection.ingest(root)
    assert report.ok, report.to_dict()["failures"]
    assert report.kinds[ContentKind.TABLES] == 4 and report.kinds[ContentKind.TEXT] == 5
    assert report.to_dict()["kinds"] == {"tables": 4, "text": 5}
    assert collection.stats()["kinds"] == {"tables": 4, "text": 5}

    files = {"md": "north.md", "html": "south.html", "docx": "east.docx", "pdf": "west.pdf"}
    ranks: list[int] = []
    for kind, rows in tables.items():
        name, coast, height, year, keeper = rows[-7]  # late in the table: a chunk that continues it
        for question, mode in ((f"When was the {name} lighthouse first lit?", None),
                               (f"{name} last keeper", "bm25")):
            hits = collection.search(question, k=3, mode=mode)
            assert Path(hits[0].source).name == files[kind], (question, [h.source for h in hits])
            row = f"| {name} | {coast} | {height} | {year} | {keeper} |"
            [found] = [h for h in hits if row in h.chunk.text]  # the row's chunk is among what the LLM reads
            assert "| Lighthouse | Coast | Tower height (m) | First lit | Last keeper |" in found.chunk.index_text
            _, text, _ = collection.document(found.chunk.doc_id)
            assert text[found.chunk.start : found.chunk.end] == found.chunk.text  # the citation's offsets hold
            ranks.append(hits.index(found))

    assert ranks == [0] * 8, ranks  # the row's own chunk first
    for kind, rows in tables.items():  # the extractive answer quotes the row, each cell with its column name
        name, coast, height, year, keeper = rows[-7]
        answer = collection.ask(f"When was the {name} lighthouse first lit?", k=3)
        assert answer.text == (f"Lighthouse: {name}; Coast: {coast}; Tower height (m): {height}; First lit: {year}; "
                               f"Last keeper: {keeper} [1]")
        [citation] = answer.citations
        assert Path(citation.source).name == files[kind]
        _, text, _ = collection.document(citation.doc_id)
        row = f"| {name} | {coast} | {height} | {year} | {keeper} |"
        assert text[citation.start : citation.end] == citation.quote == row
