"""One loader per format. Each keeps the document's structure as spans (headings, paragraphs) over its text."""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ragworks.access import READERS_KEY, normalize_readers
from ragworks.documents import ContentKind, Document, Span, SpanKind
from ragworks.errors import BinaryFile, CorruptFile, EmptyDocument, EncryptedFile, InvalidReaders, UnsupportedFormat
from ragworks.guard.base import HIDDEN_KEY
from ragworks.guard.hidden import HIDDEN_SELECTORS, docx_paragraph_text, html_node_hidden
from ragworks.ingest import ocr, speech
from ragworks.ingest.base import Loader, LoadOptions, LoadReport
from ragworks.ingest.decoding import SNIFF_BYTES as _SNIFF_BYTES
from ragworks.ingest.decoding import decode_text
from ragworks.ingest.spans import markdown_spans, normalize_newlines, paragraph_spans
from ragworks.ingest.tables import PdfTables, Table, continued_table, docx_table, html_table

__all__ = ["LOADERS", "TextBuilder", "decode_text", "loader_for", "markdown_spans", "paragraph_spans"]


def _require_text(text: str, name: str) -> None:
    if not text.strip():
        raise EmptyDocument(f"{name}: no text to index")


# --- plain text and Markdown ------------------------------------------------------------------------------------


def _first_heading(text: str, spans: list[Span]) -> str:
    for sp in spans:
        if sp.kind is SpanKind.HEADING:
            return text[sp.start : sp.end].strip()
    return ""


def load_text(path: Path, source: str, options: LoadOptions, report: LoadReport) -> Iterator[Document]:
    text = normalize_newlines(decode_text(path.read_bytes(), path.name, report.warnings))
    _require_text(text, path.name)
    yield Document(source=source, text=text, title=path.stem, spans=paragraph_spans(text))


def load_markdown(path: Path, source: str, options: LoadOptions, report: LoadReport) -> Iterator[Document]:
    text = normalize_newlines(decode_text(path.read_bytes(), path.name, report.warnings))
    _require_text(text, path.name)
    spans = markdown_spans(text)
    yield Document(source=source, text=text, title=_first_heading(text, spans) or path.stem, spans=spans)


# --- building text from blocks (HTML, PDF, DOCX) ----------------------------------------------------------------


class TextBuilder:
    """Appends blocks of text separated by blank lines, recording a span for each."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.spans: list[Span] = []
        self.length = 0

    def add(self, block: str, kind: SpanKind = SpanKind.PARAGRAPH, level: int = 0) -> None:
        block = re.sub(r"[ \t\u00a0]+", " ", block).strip()
        if not block:
            return
        if self.parts:
            self.parts.append("\n\n")
            self.length += 2
        self.spans.append(Span(self.length, self.length + len(block), kind, level))
        self.parts.append(block)
        self.length += len(block)

    def add_table(self, table: Table) -> None:
        self.add(table.to_markdown(), SpanKind.TABLE)

    def mark(self) -> int:
        """Offset where the next block will start (used for page boundaries)."""
        return self.length + (2 if self.parts else 0)

    @property
    def text(self) -> str:
        return "".join(self.parts)


# --- HTML ------------------------------------------------------------------------------------------------------

_HTML_DROP = {"script", "style", "nav", "footer", "header", "aside", "noscript", "form", "iframe", "svg",
              "template", "button", "select", "input", "textarea", "head", "menu", "dialog"}
_HTML_BLOCKS = {"p", "div", "section", "article", "main", "blockquote", "pre", "li", "dt", "dd", "tr",
                "table", "ul", "ol", "dl", "figure", "figcaption", "address", "body", "br", "hr", "td", "th"}
_HEADING_TAGS = {f"h{i}": i for i in range(1, 7)}


def html_to_blocks(html: str) -> tuple[str, TextBuilder]:
    """Main text of an HTML page as blocks: navigation, scripts, styles, headers and footers dropped."""
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(html)
    title_node = tree.css_first("title")
    title = title_node.text(strip=True) if title_node else ""
    root = tree.css_first("main") or tree.css_first("article") or tree.body or tree.root
    builder = TextBuilder()
    if root is None:
        return title, builder
    for tag in _HTML_DROP:
        for node in root.css(tag):
            node.decompose()
    for node in root.css('[role="navigation"]'):
        node.decompose()
    for node in root.css(HIDDEN_SELECTORS):  # text a reader never sees: where injected instructions hide
        if html_node_hidden(node):
            node.decompose()

    buf: list[str] = []

    def flush(kind: SpanKind = SpanKind.PARAGRAPH, level: int = 0) -> None:
        if buf:
            builder.add("".join(buf), kind, level)
            buf.clear()

    # An explicit stack, not recursion: pages nest thousands of unclosed <div>s deep. Each entry is a node's
    # children still to visit and what to do once they are done.
    stack: list[tuple[Iterator[Any], Callable[[], None] | None]] = [(root.iter(include_text=True), None)]
    while stack:
        children, when_done = stack[-1]
        child = next(children, None)
        if child is None:
            stack.pop()
            if when_done is not None:
                when_done()
            continue
        tag = child.tag
        if tag == "-text":
            buf.append(child.text_content or "")
        elif tag in _HEADING_TAGS:
            flush()
            buf.append(child.text(separator=" "))
            flush(SpanKind.HEADING, _HEADING_TAGS[tag])
        elif tag == "pre":
            flush()
            builder.add(child.text(), SpanKind.CODE)
        elif tag == "table" and (table := html_table(child)) is not None:
            flush()
            caption = next((c for c in child.iter() if c.tag == "caption"), None)
            if caption is not None:
                builder.add(caption.text(separator=" "))
            builder.add_table(table)
        elif tag in ("td", "th"):
            stack.append((child.iter(include_text=True), lambda: buf.append(" | ")))
        elif tag in _HTML_BLOCKS:
            flush()
            kind = SpanKind.LIST_ITEM if tag == "li" else SpanKind.PARAGRAPH
            stack.append((child.iter(include_text=True), lambda kind=kind: flush(kind)))  # type: ignore[misc]
        elif tag != "-comment":
            stack.append((child.iter(include_text=True), None))
    flush()
    return title, builder


def load_html(path: Path, source: str, options: LoadOptions, report: LoadReport) -> Iterator[Document]:
    html = decode_text(path.read_bytes(), path.name, report.warnings)
    title, builder = html_to_blocks(html)
    text = builder.text
    _require_text(text, path.name)
    title = title or _first_heading(text, builder.spans) or path.stem
    yield Document(source=source, text=text, title=title, spans=builder.spans)


# --- PDF -------------------------------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"[.!?:;\"')\]]$")


def _looks_like_heading(line: str) -> bool:
    words = line.split()
    return (
        0 < len(words) <= 12
        and len(line) <= 80
        and not _SENTENCE_END.search(line)
        and (line[0].isupper() or line[0].isdigit())
        and sum(w[0].isupper() for w in words if w[0].isalpha()) >= max(1, len(words) // 2)
    )


def pdf_page_blocks(page_text: str) -> list[tuple[str, SpanKind]]:
    """Reflow a PDF page's lines into paragraphs; short title-case lines become headings."""
    lines = [ln.strip() for ln in normalize_newlines(page_text).split("\n")]
    blocks: list[tuple[str, SpanKind]] = []
    para: list[str] = []
    typical = sorted((len(ln) for ln in lines if ln), reverse=True)
    full = typical[len(typical) // 4] if typical else 80

    def flush() -> None:
        if para:
            joined = ""
            for ln in para:  # join lines, undoing end-of-line hyphenation
                if joined.endswith("-") and ln[:1].islower():
                    joined = joined[:-1] + ln
                else:
                    joined = f"{joined} {ln}" if joined else ln
            blocks.append((joined, SpanKind.PARAGRAPH))
            para.clear()

    for ln in lines:
        if not ln:
            flush()
            continue
        if _looks_like_heading(ln) and not para:
            blocks.append((ln, SpanKind.HEADING))
            continue
        if _looks_like_heading(ln) and para and _SENTENCE_END.search(para[-1]):
            flush()
            blocks.append((ln, SpanKind.HEADING))
            continue
        para.append(ln)
        if _SENTENCE_END.search(ln) and len(ln) < 0.7 * full:
            flush()
    flush()
    return blocks


def load_pdf(path: Path, source: str, options: LoadOptions, report: LoadReport) -> Iterator[Document]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted and not reader.decrypt(""):
            raise EncryptedFile(f"{path.name}: encrypted PDF (a password is needed)")
        pages = list(reader.pages)
    except EncryptedFile:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError, AssertionError) as exc:
        raise CorruptFile(f"{path.name}: not a readable PDF ({exc.__class__.__name__}: {exc})") from exc
    except Exception as exc:
        if "encrypt" in str(exc).lower() or "crypt" in exc.__class__.__name__.lower():
            raise EncryptedFile(f"{path.name}: encrypted PDF ({exc})") from exc
        raise CorruptFile(f"{path.name}: not a readable PDF ({exc.__class__.__name__}: {exc})") from exc

    builder = TextBuilder()
    page_starts: list[int] = []
    tables = PdfTables(path, report.warnings) if options.pdf_tables else None
    last_table: Table | None = None  # the previous page ended with it: a table at the top may continue it
    table_count = 0
    try:
        for index, page in enumerate(pages):
            page_starts.append(builder.mark())
            try:
                items = tables.page_items(index, page) if tables is not None else None
                if items is None:
                    items = [page.extract_text() or ""]
            except Exception as exc:  # one damaged page must not lose the others
                report.warnings.append(f"{path.name}: page {len(page_starts)} unreadable ({exc})")
                continue
            for pos, item in enumerate(items):
                if isinstance(item, Table):
                    continues = pos == 0 and last_table is not None and len(last_table.header) == len(item.header)
                    last_table = continued_table(last_table, item) if continues else item
                    builder.add_table(last_table)
                    table_count += 0 if continues else 1
                    continue
                last_table = None
                for block, kind in pdf_page_blocks(item):
                    builder.add(block, kind, 2 if kind is SpanKind.HEADING else 0)
    finally:
        if tables is not None:
            tables.close()
    text = builder.text
    if not text.strip():
        raise EmptyDocument(f"{path.name}: no text on any page (no text layer, no scanned image to read)")
    try:
        meta_title = str(reader.metadata.get("/Title") or "") if reader.metadata else ""
    except Exception:  # damaged metadata must not lose the text
        meta_title = ""
    title = meta_title.strip() or _first_heading(text, builder.spans) or path.stem
    doc = Document(source=source, text=text, title=title, spans=builder.spans, page_starts=page_starts,
                   metadata={"pages": len(pages)})
    if table_count:
        doc.count(ContentKind.TABLES, table_count)  # a table over two pages is two spans, one table
    yield doc


# --- DOCX ------------------------------------------------------------------------------------------------------


def load_docx(path: Path, source: str, options: LoadOptions, report: LoadReport) -> Iterator[Document]:
    import docx
    from docx.opc.exceptions import PackageNotFoundError
    from docx.table import Table as DocxTable
    from docx.text.paragraph import Paragraph

    try:
        d = docx.Document(str(path))
    except (zipfile.BadZipFile, PackageNotFoundError, KeyError, ValueError) as exc:
        if _is_ole_encrypted(path):
            raise EncryptedFile(f"{path.name}: encrypted Office document (a password is needed)") from exc
        raise CorruptFile(f"{path.name}: not a readable DOCX ({exc.__class__.__name__}: {exc})") from exc
    except Exception as exc:
        raise CorruptFile(f"{path.name}: not a readable DOCX ({exc.__class__.__name__}: {exc})") from exc

    builder = TextBuilder()
    hidden = 0
    body = d.element.body
    for child in body.iterchildren():
        tag = child.tag.rsplit("}", 1)[-1]
        if tag == "p":
            para = Paragraph(child, d)
            style = (para.style.name if para.style is not None else "") or ""
            m = re.match(r"Heading (\d)", style)
            text, dropped = docx_paragraph_text(para)  # hidden (vanish) and white runs left out
            hidden += dropped
            if style == "Title":
                builder.add(text, SpanKind.HEADING, 1)
            elif m:
                builder.add(text, SpanKind.HEADING, int(m.group(1)))
            elif style.startswith("List"):
                builder.add(text, SpanKind.LIST_ITEM)
            else:
                builder.add(text)
        elif tag == "tbl":
            table = DocxTable(child, d)
            parsed = docx_table(table)
            if parsed is not None:
                builder.add_table(parsed)
            else:  # one column or one row: its cells are paragraphs
                for row in table.rows:
                    builder.add(" ".join(cell.text for cell in row.cells))
    text = builder.text
    _require_text(text, path.name)
    title = (d.core_properties.title or "").strip() or _first_heading(text, builder.spans) or path.stem
    yield Document(source=source, text=text, title=title, spans=builder.spans,
                   metadata={HIDDEN_KEY: hidden} if hidden else {})


def _is_ole_encrypted(path: Path) -> bool:
    """Password-protected Office files are OLE compound files, not ZIPs."""
    with path.open("rb") as f:
        return f.read(8) == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


# --- JSONL / JSON ----------------------------------------------------------------------------------------------


def record_document(fields: dict[str, Any]) -> Document:
    """A record's fields (`record_fields`: source, title, text, metadata) as a document: the records of JSON, JSONL
    and Parquet files and of dumps alike."""
    return Document(source=fields["source"], text=fields["text"], title=fields["title"], metadata=fields["metadata"],
                    spans=paragraph_spans(fields["text"]))


def _record_document(
    rec: Any, where: str, source_path: str, options: LoadOptions, report: LoadReport
) -> Document | None:
    fields = record_fields(rec, where, source_path, options, report)
    return None if fields is None else record_document(fields)


def record_fields(
    rec: Any, where: str, source_path: str, options: LoadOptions, report: LoadReport
) -> dict[str, Any] | None:
    """A JSON record's document fields (source, title, text, metadata), or None (reported) if it has no text."""
    if not isinstance(rec, dict):
        report.skipped += 1
        report.warnings.append(f"{where}: not a JSON object")
        return None
    text = rec.get(options.text_field)
    if not isinstance(text, str) or not text.strip():
        report.skipped += 1
        report.warnings.append(f"{where}: no {options.text_field!r} text")
        return None
    rid = rec.get(options.id_field)
    key = str(rid) if rid is not None and str(rid) != "" else where.rsplit(":", 1)[-1]
    title = rec.get(options.title_field)
    meta: dict[str, Any] = {}
    nested = rec.get("metadata")
    if isinstance(nested, dict):
        meta.update({k: v for k, v in nested.items() if isinstance(v, str | int | float | bool)})
    raw_readers = rec.get(READERS_KEY, rec.get("acl"))
    if raw_readers is not None:
        try:  # a malformed list skips the record: it is never ingested readable by everyone
            meta[READERS_KEY] = list(normalize_readers(raw_readers))
        except InvalidReaders as exc:
            report.skipped += 1
            report.warnings.append(f"{where}: {exc}")
            return None
    keep = options.metadata_fields
    for k, v in rec.items():
        if k in (options.text_field, options.title_field, "metadata", READERS_KEY, "acl"):
            continue
        if (not keep or k in keep) and isinstance(v, str | int | float | bool) and len(str(v)) < 512:
            meta[k] = v
    return {"source": f"{source_path}#{key}", "text": normalize_newlines(text),
            "title": title if isinstance(title, str) else "", "metadata": meta}


def load_jsonl(path: Path, source: str, options: LoadOptions, report: LoadReport) -> Iterator[Document]:
    """One document per line; bad lines are skipped and reported, the rest stream through."""
    for fields in jsonl_records(path, source, options, report):
        yield record_document(fields)


def jsonl_records(path: Path, source: str, options: LoadOptions, report: LoadReport) -> Iterator[dict[str, Any]]:
    """`load_jsonl`'s records as plain fields (no Document built: dumps chunk them in other processes)."""
    import gzip
    import zlib

    opener: Callable[..., Any] = gzip.open if path.name.lower().endswith(".gz") else open
    produced = 0
    try:
        with opener(path, "rb") as f:
            head = f.read(_SNIFF_BYTES)
            if b"\x00" in head:
                raise BinaryFile(f"{path.name}: binary content (NUL bytes), not JSON lines")
            f.seek(0)
            for lineno, raw in enumerate(f, 1):
                if not raw.strip():
                    continue
                try:
                    rec = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    report.skipped += 1
                    if len(report.warnings) < 20:
                        report.warnings.append(f"{path.name}:{lineno}: invalid JSON ({exc})")
                    continue
                fields = record_fields(rec, f"{path.name}:{lineno}", source, options, report)
                if fields is not None:
                    produced += 1
                    yield fields
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:  # not gzip, or a truncated / damaged stream
        raise CorruptFile(f"{path.name}: not a readable gzip file ({exc.__class__.__name__}: {exc})") from exc
    if produced == 0:
        if report.skipped:
            raise CorruptFile(f"{path.name}: none of {report.skipped} lines is a usable JSON record")
        raise EmptyDocument(f"{path.name}: no records")


def load_json(path: Path, source: str, options: LoadOptions, report: LoadReport) -> Iterator[Document]:
    try:
        data = json.loads(decode_text(path.read_bytes(), path.name, report.warnings))
    except (json.JSONDecodeError, RecursionError) as exc:
        raise CorruptFile(f"{path.name}: invalid JSON ({exc})") from exc
    records = data if isinstance(data, list) else [data]
    docs = [_record_document(r, f"{path.name}:{i}", source, options, report) for i, r in enumerate(records)]
    found = [d for d in docs if d is not None]
    if not found:
        raise EmptyDocument(f"{path.name}: no record with a {options.text_field!r} field")
    yield from found


def load_parquet(path: Path, source: str, options: LoadOptions, report: LoadReport) -> Iterator[Document]:
    """One document per row, read a record batch at a time (bounded memory for dumps of any size)."""
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError for anything that is not Parquet
        raise CorruptFile(f"{path.name}: not a readable Parquet file ({exc})") from exc
    produced = row = 0
    for batch in pf.iter_batches(batch_size=1024):
        for rec in batch.to_pylist():
            row += 1
            doc = _record_document(rec, f"{path.name}:{row}", source, options, report)
            if doc is not None:
                produced += 1
                yield doc
    if produced == 0:
        raise EmptyDocument(f"{path.name}: no row with a {options.text_field!r} column")


LOADERS: dict[str, Loader] = {
    ".txt": load_text,
    ".text": load_text,
    ".md": load_markdown,
    ".markdown": load_markdown,
    ".html": load_html,
    ".htm": load_html,
    ".xhtml": load_html,
    ".pdf": load_pdf,
    ".docx": load_docx,
    ".jsonl": load_jsonl,
    ".ndjson": load_jsonl,
    ".jsonl.gz": load_jsonl,
    ".json": load_json,
    ".parquet": load_parquet,
}


# Images and PDF pages without a text layer are read by OCR, recordings transcribed (ingest/ocr.py, speech.py).
def load_pdf_or_scan(path: Path, source: str, options: LoadOptions, report: LoadReport) -> Iterator[Document]:
    """The PDF loader: the text layer (`load_pdf`), with OCR for pages that have none (ingest/ocr.py)."""
    yield from ocr.load_pdf_with_ocr(path, source, options, report, text_loader=load_pdf,
                                     page_blocks=pdf_page_blocks)


LOADERS[".pdf"] = load_pdf_or_scan
LOADERS.update(dict.fromkeys(ocr.IMAGE_SUFFIXES, ocr.load_image))
LOADERS.update(dict.fromkeys(speech.AUDIO_SUFFIXES + speech.VIDEO_SUFFIXES, speech.load_recording))


def loader_for(path: Path) -> Loader:
    """The loader for a file's extension, or UnsupportedFormat naming the ones there are."""
    name = path.name.lower()
    for suffix in sorted(LOADERS, key=len, reverse=True):
        if name.endswith(suffix):
            return LOADERS[suffix]
    raise UnsupportedFormat(
        f"{path.name}: unsupported format {path.suffix or '(no extension)'!r} "
        f"(supported: {', '.join(sorted(LOADERS))})"
    )
