"""The chunker with the real all-MiniLM-L6-v2 tokenizer: exact slices, token budget, headings, overlap, pages."""

from __future__ import annotations

import base64
import itertools
import random
from pathlib import Path

import pytest

from ragworks.documents import Chunk, Document, Span, SpanKind
from ragworks.ingest.base import LoadOptions, LoadReport
from ragworks.ingest.chunker import Chunker, split_sentences
from ragworks.ingest.loaders import loader_for, markdown_spans

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sample-corpus"
needs_sample = pytest.mark.skipif(not SAMPLE.is_dir(), reason="examples/sample-corpus is not in this checkout")
WORDS = ["lighthouse", "keeper", "lamp", "ship", "rock", "storm", "night", "beam", "harbour", "signal", "tide",
         "reef", "lantern", "channel", "pilot", "buoy"]


@pytest.fixture(scope="module")
def chunker(embedder) -> Chunker:
    return Chunker(embedder.count_tokens, model_max_tokens=embedder.max_tokens)


def md_doc(text: str, title: str = "Doc", source: str = "doc.md") -> Document:
    return Document(source=source, text=text, title=title, spans=markdown_spans(text))


def sentences(n: int, seed: int = 0, words: int = 12) -> str:
    rng = random.Random(seed)
    return " ".join(
        " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + f" number {seed}-{i}." for i in range(n)
    )


def assert_chunk_invariants(doc: Document, chunks: list[Chunk], embedder) -> None:
    """Exact slices, ordinals in order, within the model's window (counted again on what gets embedded)."""
    assert chunks, "no chunks"
    limit = embedder.max_tokens - 2  # [CLS] and [SEP]
    recount = embedder.count_tokens([c.index_text for c in chunks])
    for i, (c, n) in enumerate(zip(chunks, recount, strict=True)):
        assert c.ordinal == i
        assert c.doc_id == doc.id
        assert 0 <= c.start < c.end <= len(doc.text)
        assert c.text == doc.text[c.start : c.end]
        assert c.text.strip() == c.text
        assert c.token_count <= limit, (i, c.token_count)
        assert n <= limit, (i, n, c.index_text[:200])
        assert len(c.text) <= 10 * limit  # no monster chunk, whatever the tokenizer says


# --- sentences ------------------------------------------------------------------------------------------------


def test_split_sentences_does_not_break_after_abbreviations_or_initials():
    text = ("Dr. Smith went to Washington. He met Mr. Jones, e.g. at the U.S. Capitol on Jan. 5. It was cold! "
            "Was it? Yes. See Fig. 3 for details, i.e. the chart. J. R. R. Tolkien wrote books.")
    got = [text[a:b] for a, b in split_sentences(text)]
    assert got == [
        "Dr. Smith went to Washington.",
        "He met Mr. Jones, e.g. at the U.S. Capitol on Jan. 5.",
        "It was cold!",
        "Was it?",
        "Yes.",
        "See Fig. 3 for details, i.e. the chart.",
        "J. R. R. Tolkien wrote books.",
    ]


def test_split_sentences_offsets_are_shifted_by_base_and_trimmed():
    text = "  First one.   Second one.\n"
    assert split_sentences(text, base=100) == [(102, 112), (115, 126)]
    assert split_sentences("   ") == []
    assert split_sentences("no final punctuation") == [(0, 20)]


def test_split_sentences_keeps_closing_quotes_with_their_sentence():
    text = 'He shouted "Light ahead!" Then the lamp went out.'
    assert [text[a:b] for a, b in split_sentences(text)] == ['He shouted "Light ahead!"', "Then the lamp went out."]


# --- slices and budget ----------------------------------------------------------------------------------------


@needs_sample
@pytest.mark.parametrize("name", ["tides.md", "fog-signals.html", "grace-darling.docx",
                                  "longitude-and-the-marine-chronometer.pdf", "the-chip-log-and-the-knot.txt"])
def test_sample_documents_chunk_into_exact_slices_within_the_token_budget(name, chunker, embedder):
    path = SAMPLE / name
    [doc] = list(loader_for(path)(path, name, LoadOptions(), LoadReport()))
    chunks = chunker.chunk(doc)
    assert_chunk_invariants(doc, chunks, embedder)
    covered = "".join(doc.text[c.start : c.end] for c in chunks)
    for word in ("the", "and"):
        assert word in covered


def test_every_sentence_of_the_document_is_in_some_chunk(chunker, embedder):
    text = "# Title\n\n" + "\n\n".join(sentences(6, seed=s) for s in range(8))
    doc = md_doc(text)
    chunks = chunker.chunk(doc)
    assert_chunk_invariants(doc, chunks, embedder)
    for sp in doc.spans:
        for a, b in split_sentences(text[sp.start : sp.end], sp.start):
            assert any(c.start <= a and b <= c.end for c in chunks), text[a:b]


def test_a_2000_word_sentence_without_punctuation_is_split_into_word_aligned_chunks(chunker, embedder):
    rng = random.Random(7)
    text = " ".join(rng.choice(WORDS) for _ in range(2000))
    doc = Document(source="long.txt", text=text, title="Long")
    chunks = chunker.chunk(doc)
    assert len(chunks) >= 8
    assert_chunk_invariants(doc, chunks, embedder)
    for c in chunks:  # cut between words, never inside one
        assert c.start == 0 or text[c.start - 1] == " "
        assert c.end == len(text) or text[c.end] == " "
    assert chunks[0].start == 0 and chunks[-1].end == len(text)


@pytest.mark.parametrize(
    "blob",
    [
        base64.b64encode(random.Random(0).randbytes(15000)).decode(),  # 20,000 chars, with + and /
        random.Random(1).randbytes(10000).hex(),  # 20,000 chars the tokenizer calls one [UNK]
    ],
    ids=["base64", "hex"],
)
def test_a_giant_single_token_is_split(blob, chunker, embedder):
    assert len(blob) == 20000
    text = f"# Attachment\n\nThe payload follows.\n\n{blob}\n\nEnd of the payload."
    doc = md_doc(text, title="Payload")
    chunks = chunker.chunk(doc)
    assert_chunk_invariants(doc, chunks, embedder)
    blob_start = text.index(blob)
    blob_chunks = [c for c in chunks if c.start < blob_start + len(blob) and c.end > blob_start]
    assert len(blob_chunks) >= 3
    assert max(len(c.text) for c in blob_chunks) < len(blob) // 2
    joined = text[blob_chunks[0].start : blob_chunks[-1].end]
    assert blob in joined


def test_an_over_long_heading_does_not_overflow_the_model_window(chunker, embedder):
    heading = " ".join(["lighthouse keeper"] * 300)
    doc = md_doc(f"# {heading}\n\nBody text under the heading.")
    chunks = chunker.chunk(doc)
    assert_chunk_invariants(doc, chunks, embedder)
    assert len(chunks) >= 2


def test_small_chunk_tokens_setting_is_respected(embedder):
    small = Chunker(embedder.count_tokens, chunk_tokens=64, overlap=8, model_max_tokens=embedder.max_tokens)
    doc = md_doc("# Title\n\n" + sentences(30, seed=3))
    chunks = small.chunk(doc)
    assert len(chunks) > 5
    assert max(c.token_count for c in chunks) <= 64
    assert max(embedder.count_tokens([c.index_text for c in chunks])) <= 64


def test_chunk_tokens_above_the_model_window_is_capped_by_it(embedder):
    big = Chunker(embedder.count_tokens, chunk_tokens=4096, model_max_tokens=embedder.max_tokens)
    doc = md_doc("# Title\n\n" + sentences(80, seed=4))
    chunks = big.chunk(doc)
    assert_chunk_invariants(doc, chunks, embedder)
    assert len(chunks) > 1


# --- headings -------------------------------------------------------------------------------------------------


def test_heading_paths_follow_nested_markdown_headings(chunker, embedder):
    text = (
        "# Lighthouses\n\nIntro about lighthouses.\n\n"
        "## Optics\n\nAbout optics in general.\n\n"
        "### Fresnel lens\n\nRings of glass prisms.\n\n"
        "#### Panels\n\nBullseye panels rotate.\n\n"
        "### Catoptric\n\nMirrors instead of lenses.\n\n"
        "## Power\n\nOil, then gas, then electricity.\n\n"
        "# Appendix\n\nMiscellaneous notes.\n"
    )
    doc = md_doc(text, title="Lighthouses")
    chunks = chunker.chunk(doc)
    assert_chunk_invariants(doc, chunks, embedder)
    by_text = {c.text.split("\n\n", 1)[-1]: c for c in chunks}
    expected = {
        "Intro about lighthouses.": ("Lighthouses",),
        "About optics in general.": ("Lighthouses", "Optics"),
        "Rings of glass prisms.": ("Lighthouses", "Optics", "Fresnel lens"),
        "Bullseye panels rotate.": ("Lighthouses", "Optics", "Fresnel lens", "Panels"),
        "Mirrors instead of lenses.": ("Lighthouses", "Optics", "Catoptric"),
        "Oil, then gas, then electricity.": ("Lighthouses", "Power"),
        "Miscellaneous notes.": ("Appendix",),
    }
    assert {k: by_text[k].heading_path for k in expected} == expected
    # every heading starts a chunk and is part of its text
    assert [c.text.split("\n\n", 1)[0] for c in chunks] == [
        "Lighthouses", "Optics", "Fresnel lens", "Panels", "Catoptric", "Power", "Appendix"]
    # context: title and heading path, the title not repeated when it equals the top heading
    assert by_text["Bullseye panels rotate."].context == "Lighthouses › Optics › Fresnel lens › Panels"
    assert by_text["Miscellaneous notes."].context == "Lighthouses › Appendix"
    assert by_text["Rings of glass prisms."].index_text.startswith("Lighthouses › Optics › Fresnel lens\n")


def test_without_context_the_index_text_is_the_passage(embedder):
    plain = Chunker(embedder.count_tokens, model_max_tokens=embedder.max_tokens, with_context=False)
    [c] = plain.chunk(md_doc("# Head\n\nBody.", title="T"))
    assert c.context == "" and c.index_text == c.text == "# Head\n\nBody."[2:]


def test_a_trailing_heading_with_nothing_under_it_is_not_a_chunk_of_its_own(chunker):
    chunks = chunker.chunk(md_doc("# A\n\nText under A.\n\n## Empty at the end\n"))
    assert len(chunks) == 1
    assert chunks[0].text == "A\n\nText under A."


# --- overlap --------------------------------------------------------------------------------------------------


def test_a_continuing_section_repeats_the_tail_of_the_previous_chunk(embedder):
    ch = Chunker(embedder.count_tokens, chunk_tokens=96, overlap=32, model_max_tokens=embedder.max_tokens)
    text = "# Section\n\n" + sentences(25, seed=11, words=8)
    doc = md_doc(text)
    chunks = ch.chunk(doc)
    assert len(chunks) >= 4
    sent_bounds = split_sentences(text)
    starts = {a for a, _ in sent_bounds}
    ends = {b for _, b in sent_bounds}
    for prev, cur in itertools.pairwise(chunks):
        assert cur.start < prev.end, "no overlap"
        assert cur.start > prev.start
        shared = text[cur.start : prev.end]
        assert prev.text.endswith(shared) and cur.text.startswith(shared)
        assert cur.start in starts and prev.end in ends  # whole sentences are repeated
        assert embedder.count_tokens([shared])[0] <= 32 + 2
        assert cur.heading_path == ("Section",)


def test_a_new_heading_starts_a_fresh_chunk_without_overlap(embedder):
    ch = Chunker(embedder.count_tokens, chunk_tokens=96, overlap=32, model_max_tokens=embedder.max_tokens)
    text = "# One\n\n" + sentences(12, seed=1, words=8) + "\n\n# Two\n\n" + sentences(3, seed=2, words=8)
    chunks = ch.chunk(md_doc(text))
    two = [c for c in chunks if c.heading_path == ("Two",)]
    assert len(two) == 1
    assert two[0].text.startswith("Two\n\n")
    before = [c for c in chunks if c.heading_path == ("One",)]
    assert before[-1].end < two[0].start


def test_zero_overlap_gives_disjoint_chunks(embedder):
    ch = Chunker(embedder.count_tokens, chunk_tokens=64, overlap=0, model_max_tokens=embedder.max_tokens)
    chunks = ch.chunk(md_doc("# S\n\n" + sentences(20, seed=5)))
    assert len(chunks) > 3
    for prev, cur in itertools.pairwise(chunks):
        assert cur.start >= prev.end


# --- pages ----------------------------------------------------------------------------------------------------


def test_pdf_chunks_carry_their_page_range(tmp_path, chunker, embedder, make_pdf):
    pages = [(f"Chapter Number {p}", [sentences(6, seed=p, words=10)]) for p in range(1, 5)]
    path = make_pdf(tmp_path / "book.pdf", pages)
    [doc] = list(loader_for(path)(path, "book.pdf", LoadOptions(), LoadReport()))
    assert len(doc.page_starts) == 4
    chunks = chunker.chunk(doc)
    assert_chunk_invariants(doc, chunks, embedder)
    for c in chunks:
        assert c.page_start == doc.page_at(c.start)
        assert c.page_end == doc.page_at(c.end - 1)
        assert 1 <= c.page_start <= c.page_end <= 4
    for p in range(1, 5):
        marker = f"number {p}-3."
        holding = [c for c in chunks if marker in c.text]
        assert holding and all(c.page_start <= p <= c.page_end for c in holding)
    assert chunks[0].page_start == 1 and chunks[-1].page_end == 4


def test_a_chunk_spanning_a_page_break_reports_both_pages(embedder):
    text = "First page sentence.\n\nSecond page sentence."
    doc = Document(source="p.pdf", text=text, title="P",
                   spans=[Span(0, 20), Span(22, 43)], page_starts=[0, 22])
    [c] = Chunker(embedder.count_tokens, model_max_tokens=embedder.max_tokens).chunk(doc)
    assert (c.page_start, c.page_end) == (1, 2)


def test_documents_without_pages_have_no_page_numbers(chunker):
    [c] = chunker.chunk(md_doc("Just text."))
    assert c.page_start is None and c.page_end is None


def test_code_and_table_spans_are_split_by_lines_not_sentences(chunker, embedder):
    code = "\n".join(f"x{i} = compute({i}). Next(value)" for i in range(200))
    text = f"# Code\n\n```\n{code}\n```\n"
    doc = md_doc(text)
    assert any(s.kind is SpanKind.CODE for s in doc.spans)
    chunks = chunker.chunk(doc)
    assert_chunk_invariants(doc, chunks, embedder)
    assert len(chunks) > 1
    for c in chunks[1:]:  # chunk boundaries fall on line boundaries
        assert text[c.start - 1] == "\n"
