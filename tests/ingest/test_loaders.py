"""Every loader on real files: text, title, structure spans, pages, metadata, encodings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragworks.documents import Document, SpanKind
from ragworks.errors import UnsupportedFormat
from ragworks.ingest import loaders
from ragworks.ingest.base import LoadOptions
from ragworks.ingest.loaders import decode_text, load_jsonl, loader_for

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sample-corpus"
needs_sample = pytest.mark.skipif(not SAMPLE.is_dir(), reason="examples/sample-corpus is not in this checkout")
HTML_MARKERS = ("NAVMARKER", "SCRIPTMARKER", "STYLEMARKER", "FOOTERMARKER", "HEADERMARKER", "ASIDEMARKER",
                "JSONLDMARKER")


def headings(doc: Document) -> list[tuple[int, str]]:
    return [(sp.level, doc.text[sp.start : sp.end]) for sp in doc.spans if sp.kind is SpanKind.HEADING]


def kinds(doc: Document, kind: SpanKind) -> list[str]:
    return [doc.text[sp.start : sp.end] for sp in doc.spans if sp.kind is kind]


def assert_spans_well_formed(doc: Document) -> None:
    """Spans are ordered, non-overlapping, inside the text and trimmed of surrounding whitespace."""
    prev_end = 0
    for sp in doc.spans:
        assert prev_end <= sp.start < sp.end <= len(doc.text), sp
        piece = doc.text[sp.start : sp.end]
        assert piece == piece.strip(), sp
        prev_end = sp.end


# --- plain text and Markdown ---------------------------------------------------------------------------------


def test_plain_text_loads_with_paragraph_spans_and_the_file_stem_as_title(tmp_path, load):
    path = tmp_path / "harbour-notes.txt"
    path.write_bytes(b"First paragraph line one.\r\nStill the first paragraph.\r\n\r\n  \r\nSecond paragraph.\r\n")
    [doc], report = load(path)
    assert doc.title == "harbour-notes"
    assert "\r" not in doc.text
    assert kinds(doc, SpanKind.PARAGRAPH) == ["First paragraph line one.\nStill the first paragraph.",
                                              "Second paragraph."]
    assert doc.source == "harbour-notes.txt"
    assert report.warnings == [] and report.skipped == 0
    assert_spans_well_formed(doc)


def test_markdown_headings_become_spans_with_their_levels(tmp_path, load):
    path = tmp_path / "guide.md"
    path.write_text(
        "# Lighthouse Guide\n\nIntro paragraph.\n\n"
        "## Optics ##\n\nAbout lenses.\n\n"
        "### Fresnel lens\n\nRings of prisms.\n\n"
        "Setext Section\n--------------\n\nUnder a setext heading.\n\n"
        "```\n# not a heading inside code\n```\n\n"
        "- first item\n  continued item line\n- second item\n"
    )
    [doc], _ = load(path)
    assert doc.title == "Lighthouse Guide"
    assert headings(doc) == [(1, "Lighthouse Guide"), (2, "Optics"), (3, "Fresnel lens"), (2, "Setext Section")]
    assert kinds(doc, SpanKind.CODE) == ["```\n# not a heading inside code\n```"]
    assert kinds(doc, SpanKind.LIST_ITEM) == ["- first item\n  continued item line", "- second item"]
    assert "Rings of prisms." in kinds(doc, SpanKind.PARAGRAPH)
    assert_spans_well_formed(doc)


def test_markdown_without_a_heading_is_titled_by_its_file_name(tmp_path, load):
    path = tmp_path / "no-heading.md"
    path.write_text("Just a paragraph of Markdown.\n")
    [doc], _ = load(path)
    assert doc.title == "no-heading"


# --- HTML ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.relative_to(SAMPLE).as_posix() for p in SAMPLE.rglob("*.html")))
def test_sample_html_keeps_the_article_and_drops_script_style_nav_header_footer_aside(name, load):
    raw = (SAMPLE / name).read_text()
    assert "NAVMARKER" in raw and "SCRIPTMARKER" in raw and "FOOTERMARKER" in raw  # the file plants them
    [doc], _ = load(SAMPLE / name)
    assert [m for m in HTML_MARKERS if m in doc.text] == []
    assert headings(doc)[0][0] == 1
    assert len(kinds(doc, SpanKind.PARAGRAPH)) >= 3
    assert doc.title and "MARKER" not in doc.title
    assert_spans_well_formed(doc)


def test_html_without_main_drops_boilerplate_and_keeps_headings_lists_tables_and_code(tmp_path, load):
    path = tmp_path / "page.html"
    path.write_text(
        "<html><head><title>Buoyage Page</title><style>.x{color:red} STYLEMARKER</style></head><body>"
        "<header>HEADERMARKER site header</header>"
        "<nav><a href='/'>NAVMARKER home</a></nav>"
        "<div role='navigation'>ROLEMARKER breadcrumbs</div>"
        "<h1>Buoyage Systems</h1>"
        "<p>Lateral marks show the <b>sides</b> of a channel.</p>"
        "<h2>Region A</h2><ul><li>Red to port</li><li>Green to starboard</li></ul>"
        "<h3>Cardinal marks</h3><table><tr><th>Mark</th><th>Topmark</th></tr>"
        "<tr><td>North</td><td>Two cones up</td></tr></table>"
        "<pre>light = 'Fl(3) 10s'</pre>"
        "<div hidden>HIDDENMARKER</div><aside>ASIDEMARKER</aside>"
        "<form><input value='x'>FORMMARKER</form>"
        "<script>var SCRIPTMARKER = 1;</script>"
        "<footer>FOOTERMARKER</footer></body></html>"
    )
    [doc], _ = load(path)
    assert doc.title == "Buoyage Page"
    assert "MARKER" not in doc.text
    assert headings(doc) == [(1, "Buoyage Systems"), (2, "Region A"), (3, "Cardinal marks")]
    assert kinds(doc, SpanKind.LIST_ITEM) == ["Red to port", "Green to starboard"]
    assert "Lateral marks show the sides of a channel." in kinds(doc, SpanKind.PARAGRAPH)
    assert kinds(doc, SpanKind.CODE) == ["light = 'Fl(3) 10s'"]
    assert "North | Two cones up" in doc.text
    assert_spans_well_formed(doc)


# --- PDF ------------------------------------------------------------------------------------------------------

PDF_PAGES = [
    ("Harbour Lights", ["The harbour light at Alnmouth burns every night of the year."]),
    ("Sextant Practice", ["Measuring the altitude of Polaris with a brass sextant gives the latitude."]),
    ("Tidal Streams", ["Spring tides carry the pilot cutter swiftly past the breakwater."]),
]


def test_pdf_pages_map_offsets_to_the_right_page(tmp_path, load, make_pdf):
    path = make_pdf(tmp_path / "three-pages.pdf", PDF_PAGES, title="Seamanship Notes")
    [doc], report = load(path)
    assert doc.title == "Seamanship Notes"
    assert doc.metadata["pages"] == 3
    assert len(doc.page_starts) == 3 and doc.page_starts[0] == 0
    assert doc.page_starts == sorted(doc.page_starts)
    assert doc.page_at(doc.text.index("Alnmouth")) == 1
    assert doc.page_at(doc.text.index("Polaris")) == 2
    assert doc.page_at(doc.text.index("Sextant Practice")) == 2
    assert doc.page_at(doc.text.index("breakwater")) == 3
    assert doc.page_at(len(doc.text) - 1) == 3
    assert headings(doc) == [(2, "Harbour Lights"), (2, "Sextant Practice"), (2, "Tidal Streams")]
    assert report.warnings == []
    assert_spans_well_formed(doc)


def test_pdf_without_title_metadata_is_titled_by_its_first_heading(tmp_path, load, make_pdf):
    path = make_pdf(tmp_path / "untitled.pdf", PDF_PAGES[:1])
    [doc], _ = load(path)
    assert doc.title == "Harbour Lights"
    assert doc.page_starts == [0]


def test_pdf_paragraph_wrapped_over_lines_is_reflowed_into_one_paragraph(tmp_path, load, make_pdf):
    long_para = " ".join(f"Sentence number {i} describes the lantern gallery in detail." for i in range(8))
    path = make_pdf(tmp_path / "wrapped.pdf", [("Lantern Gallery", [long_para])])
    [doc], _ = load(path)
    assert " ".join(long_para.split()) in kinds(doc, SpanKind.PARAGRAPH)


@pytest.mark.parametrize("name", sorted(p.name for p in SAMPLE.glob("*.pdf")))
def test_sample_pdfs_load_with_one_page_start_per_page(name, load):
    [doc], _ = load(SAMPLE / name)
    assert len(doc.page_starts) == doc.metadata["pages"] >= 1
    assert doc.page_at(len(doc.text) - 1) == doc.metadata["pages"]
    assert_spans_well_formed(doc)


# --- DOCX -----------------------------------------------------------------------------------------------------


def test_docx_keeps_headings_list_items_tables_and_core_title(tmp_path, load, make_docx):
    path = make_docx(
        tmp_path / "keepers.docx",
        [
            ("h1", "Lighthouse Keepers"),
            ("p", "Keepers trimmed the wicks every night."),
            ("h2", "Duties"),
            ("li", "Clean the lens"),
            ("li", "Wind the clockwork"),
            ("h3", "Rota"),
            ("table", [["Watch", "Keeper"], ["First", "Grace"]]),
            ("p", "   "),
        ],
        title="The Keepers' Handbook",
    )
    [doc], _ = load(path)
    assert doc.title == "The Keepers' Handbook"
    assert headings(doc) == [(1, "Lighthouse Keepers"), (2, "Duties"), (3, "Rota")]
    assert kinds(doc, SpanKind.LIST_ITEM) == ["Clean the lens", "Wind the clockwork"]
    assert kinds(doc, SpanKind.TABLE) == ["| Watch | Keeper |\n| --- | --- |\n| First | Grace |"]  # as Markdown
    assert kinds(doc, SpanKind.PARAGRAPH) == ["Keepers trimmed the wicks every night."]
    assert_spans_well_formed(doc)


def test_docx_without_core_title_is_titled_by_its_first_heading(tmp_path, load, make_docx):
    path = make_docx(tmp_path / "t.docx", [("p", "Preamble."), ("h2", "Second Level First"), ("p", "Body.")])
    [doc], _ = load(path)
    assert doc.title == "Second Level First"


@needs_sample
def test_sample_docx_loads_with_its_heading_structure(load):
    [doc], _ = load(SAMPLE / "grace-darling.docx")
    assert doc.title == "Grace Darling and the Wreck of the Forfarshire"
    hs = headings(doc)
    assert hs[0] == (1, "Grace Darling and the Wreck of the Forfarshire")
    assert (2, "The rescue") in hs
    assert_spans_well_formed(doc)


# --- JSONL / JSON ---------------------------------------------------------------------------------------------


def test_beir_jsonl_records_become_documents_with_extra_fields_as_metadata(tmp_path, load, make_jsonl):
    path = make_jsonl(
        tmp_path / "corpus.jsonl",
        [
            {"_id": "doc1", "title": "Bell Rock", "text": "The Bell Rock lighthouse.\n\nSecond paragraph.",
             "year": 1811, "open": True, "score": 0.5, "tags": ["a", "b"], "metadata": {"url": "http://x", "n": 3,
                                                                                        "deep": {"x": 1}},
             "blob": "z" * 600},
            {"_id": 42, "title": "Skerryvore", "text": "Skerryvore stands off Tiree."},
        ],
    )
    docs, report = load(path)
    assert [d.source for d in docs] == ["corpus.jsonl#doc1", "corpus.jsonl#42"]
    first = docs[0]
    assert first.title == "Bell Rock"
    assert first.text == "The Bell Rock lighthouse.\n\nSecond paragraph."
    assert first.metadata == {"_id": "doc1", "year": 1811, "open": True, "score": 0.5, "url": "http://x", "n": 3}
    assert [first.text[s.start : s.end] for s in first.spans] == ["The Bell Rock lighthouse.", "Second paragraph."]
    assert docs[1].metadata == {"_id": 42}
    assert report.skipped == 0 and report.warnings == []


def test_jsonl_custom_field_mapping_picks_id_text_and_title(tmp_path, load, make_jsonl):
    path = make_jsonl(
        tmp_path / "faq.jsonl",
        [{"qid": "q-7", "question": "What is a lightvessel?", "answer": "A ship that serves as a lighthouse.",
          "text": "ignored", "lang": "en"}],
    )
    options = LoadOptions(id_field="qid", text_field="answer", title_field="question")
    [doc], _ = load(path, options)
    assert doc.source == "faq.jsonl#q-7"
    assert doc.title == "What is a lightvessel?"
    assert doc.text == "A ship that serves as a lighthouse."
    assert doc.metadata == {"qid": "q-7", "text": "ignored", "lang": "en"}


def test_jsonl_metadata_fields_option_keeps_only_the_named_fields(tmp_path, load, make_jsonl):
    path = make_jsonl(tmp_path / "m.jsonl", [{"_id": "a", "text": "Some text.", "lang": "en", "year": 2000}])
    [doc], _ = load(path, LoadOptions(metadata_fields=("lang",)))
    assert doc.metadata == {"lang": "en"}


def test_jsonl_record_without_an_id_is_keyed_by_its_line_number(tmp_path, load, make_jsonl):
    path = make_jsonl(tmp_path / "noid.jsonl", [{"text": "first"}, {"_id": "", "text": "second"}])
    docs, _ = load(path)
    assert [d.source for d in docs] == ["noid.jsonl#1", "noid.jsonl#2"]


def test_gzipped_jsonl_streams_like_plain_jsonl(tmp_path, load, make_jsonl):
    records = [{"_id": f"r{i}", "title": f"Record {i}", "text": f"Body of record {i}."} for i in range(5)]
    path = make_jsonl(tmp_path / "corpus.jsonl.gz", records)
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    assert loader_for(path) is load_jsonl
    docs, _ = load(path)
    assert [d.source for d in docs] == [f"corpus.jsonl.gz#r{i}" for i in range(5)]
    assert docs[3].text == "Body of record 3."


def test_gzipped_jsonl_with_an_upper_case_extension_is_still_gunzipped(tmp_path, load, make_jsonl):
    path = make_jsonl(tmp_path / "c.jsonl.gz", [{"_id": "a", "text": "Upper case name."}])
    upper = path.rename(tmp_path / "C.JSONL.GZ")
    [doc], _ = load(upper)
    assert doc.text == "Upper case name."


def test_jsonl_with_invalid_lines_skips_them_and_reports_each(tmp_path, load, make_jsonl):
    path = make_jsonl(
        tmp_path / "mixed.jsonl",
        [{"_id": "ok1", "text": "Good one."}, "{not json", "[1, 2, 3]", {"_id": "nt", "title": "no text"},
         "", {"_id": "ok2", "text": "Good two."}],
    )
    docs, report = load(path)
    assert [d.source for d in docs] == ["mixed.jsonl#ok1", "mixed.jsonl#ok2"]
    assert report.skipped == 3
    assert [w.split(":")[1] for w in report.warnings] == ["2", "3", "4"]
    assert "invalid JSON" in report.warnings[0]


def test_json_file_with_a_list_or_a_single_object(tmp_path, load):
    many = tmp_path / "many.json"
    many.write_text(json.dumps([{"_id": "a", "text": "Alpha."}, {"_id": "b", "title": "B", "text": "Bravo."}]))
    docs, _ = load(many)
    assert [(d.source, d.title, d.text) for d in docs] == [("many.json#a", "", "Alpha."),
                                                           ("many.json#b", "B", "Bravo.")]
    one = tmp_path / "one.json"
    one.write_text(json.dumps({"text": "Just one."}))
    [doc], _ = load(one)
    assert doc.source == "one.json#0" and doc.text == "Just one."


# --- encodings ------------------------------------------------------------------------------------------------

FRENCH = ("Le café de la gare était fermé. Les élèves ont mangé une crème brûlée à côté du théâtre. "
          "La façade du bâtiment est très jolie, naïve et élégante. Où est le garçon? Voilà, déjà fini.\n")
ENGLISH_CP1252 = ("The café served crème brûlée and a jalapeño omelette; the naïve façade was “charming” — "
                  "said the critic… It cost 5 €.\n")
PORTUGUESE = "A educação é fundamental para o coração da nação. São Paulo é uma cidade incrível, não é?\n"
GERMAN = "Die Größe der Brücke über den Fluß ist überwältigend. Schöne Grüße aus München.\n"


@pytest.mark.parametrize(
    ("text", "encoding"),
    [(FRENCH * 3, "latin-1"), (FRENCH * 3, "cp1252"), (ENGLISH_CP1252 * 2, "cp1252"),
     (PORTUGUESE * 2, "latin-1"), (GERMAN * 2, "latin-1")],
    ids=["french-latin1", "french-cp1252", "english-cp1252-quotes-euro", "portuguese-latin1", "german-latin1"],
)
def test_legacy_western_encoded_text_decodes_correctly(tmp_path, load, text, encoding):
    path = tmp_path / "legacy.txt"
    path.write_bytes(text.encode(encoding))
    with pytest.raises(UnicodeDecodeError):
        path.read_bytes().decode("utf-8")
    [doc], _ = load(path)
    assert doc.text == text


@pytest.mark.parametrize(
    ("text", "encoding"),
    [("Съешь же ещё этих мягких французских булок, да выпей чаю. Москва является столицей России.\n" * 2,
      "cp1251"),
     ("Türkçe güzel bir dildir. İstanbul, Türkiye'nin en büyük şehridir ve çok güzel bir şehirdir.\n" * 2,
      "cp1254")],
    ids=["russian-cp1251", "turkish-cp1254"],
)
def test_non_western_legacy_encodings_are_not_forced_to_cp1252(text, encoding):
    assert decode_text(text.encode(encoding), "x.txt") == text


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_with_bom_decodes(tmp_path, load, encoding):
    text = "Unicode text: naïve café, Ελληνικά, 日本語.\n\nSecond paragraph.\n"
    data = text.encode(encoding)
    if encoding != "utf-16":  # the explicit-endian codecs write no BOM
        data = "\ufeff".encode(encoding) + data
    path = tmp_path / "wide.md"
    path.write_bytes(data)
    [doc], _ = load(path)
    assert doc.text == text
    assert kinds(doc, SpanKind.PARAGRAPH) == ["Unicode text: naïve café, Ελληνικά, 日本語.", "Second paragraph."]


def test_utf8_bom_is_stripped(tmp_path, load):
    path = tmp_path / "bom.md"
    path.write_bytes("\ufeff# Title With BOM\n\nBody.\n".encode())
    [doc], _ = load(path)
    assert doc.title == "Title With BOM"
    assert not doc.text.startswith("\ufeff")


# --- choosing a loader ------------------------------------------------------------------------------------------


def test_loader_is_chosen_by_extension_case_insensitively(tmp_path):
    assert loader_for(tmp_path / "REPORT.PDF") is loaders.load_pdf_or_scan  # the text layer, OCR for pages without one
    assert loader_for(tmp_path / "a.b.jsonl.gz") is load_jsonl
    with pytest.raises(UnsupportedFormat) as err:
        loader_for(tmp_path / "data.xyz")
    assert err.value.reason == "unsupported-format"
    assert "'.xyz'" in str(err.value) and ".pdf" in str(err.value)
    with pytest.raises(UnsupportedFormat, match="no extension"):
        loader_for(tmp_path / "Makefile")
