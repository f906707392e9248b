"""OCR: images and PDF pages without a usable text layer, read by Tesseract.

Each page is rendered (PDF pages with pypdfium2 at `ocr_dpi`; image frames as they are) and read by the
`tesseract` program (Debian `tesseract-ocr` plus one `tesseract-ocr-<lang>` package per language) as TSV: words
with boxes and confidences. Pages are read in a thread pool (each Tesseract runs single-threaded: several pages at
once use the cores better than one page on many OpenMP threads). The text keeps its pages (`page_starts`) and
every line is an `Anchor` with its box on the page, so a chunk knows the region it came from.
"""

from __future__ import annotations

import csv
import functools
import io
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragworks.documents import COUNTS_KEY, OCR_PAGES, Anchor, ContentKind, Document, Span, SpanKind
from ragworks.errors import CorruptFile, EmptyDocument, MissingDependency
from ragworks.ingest.base import LoadOptions, LoadReport

if TYPE_CHECKING:
    from PIL.Image import Image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp")
PAGE_UNIT = "OCR pages"
_TESSERACT_TIMEOUT_S = 300


# --- Tesseract ---------------------------------------------------------------------------------------------------


def tesseract_path() -> str:
    """The `tesseract` program, or MissingDependency naming the Debian package."""
    found = shutil.which("tesseract")
    if found is None:
        raise MissingDependency(
            "tesseract not found: images and scanned PDFs need OCR "
            "(Debian/Ubuntu: apt-get install tesseract-ocr tesseract-ocr-eng)"
        )
    return found


def tesseract_version() -> str:
    out = subprocess.run([tesseract_path(), "--version"], capture_output=True, text=True, timeout=60, check=False)
    first = (out.stdout or out.stderr).split("\n", 1)[0]
    return first.removeprefix("tesseract ").strip()


@functools.lru_cache(maxsize=8)
def _installed_languages(binary: str) -> frozenset[str]:
    out = subprocess.run([binary, "--list-langs"], capture_output=True, text=True, timeout=60, check=False)
    return frozenset(ln.strip() for ln in out.stdout.splitlines()[1:] if ln.strip())


def check_languages(languages: str) -> str:
    """`languages` ("eng+vie") if Tesseract has all of them, else MissingDependency naming the packages."""
    binary = tesseract_path()
    wanted = [lang for lang in languages.split("+") if lang]
    missing = [lang for lang in wanted if lang not in _installed_languages(binary)]
    if missing:
        packages = " ".join(f"tesseract-ocr-{lang.lower().replace('_', '-')}" for lang in missing)
        raise MissingDependency(
            f"Tesseract has no data for {', '.join(missing)} (ocr_languages = {languages!r}); "
            f"install it: apt-get install {packages}"
        )
    return "+".join(wanted) or "eng"


@dataclass(slots=True)
class OcrLine:
    text: str
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 as fractions of the page


@dataclass(slots=True)
class OcrPage:
    """What Tesseract read on one page: paragraphs of lines, and the mean word confidence (0-100)."""

    paragraphs: list[list[OcrLine]] = field(default_factory=list)
    confidence: float = 0.0
    words: int = 0


def parse_tsv(tsv: str, width: int, height: int) -> OcrPage:
    """Tesseract's TSV (one row per word, with block/paragraph/line numbers and a box) → lines and paragraphs."""
    lines: dict[tuple[int, int, int], list[tuple[str, int, int, int, int, float]]] = {}
    for row in csv.DictReader(io.StringIO(tsv), delimiter="\t", quoting=csv.QUOTE_NONE):
        if row.get("level") != "5":
            continue
        word = (row.get("text") or "").strip()
        if not word:
            continue
        left, top = int(row["left"]), int(row["top"])
        key = (int(row["block_num"]), int(row["par_num"]), int(row["line_num"]))
        lines.setdefault(key, []).append(
            (word, left, top, left + int(row["width"]), top + int(row["height"]), float(row["conf"]))
        )
    page = OcrPage()
    weighted = chars = 0.0
    last_par: tuple[int, int] | None = None
    for (block, par, _), words in lines.items():
        text = " ".join(w[0] for w in words)
        box = (min(w[1] for w in words) / width, min(w[2] for w in words) / height,
               max(w[3] for w in words) / width, max(w[4] for w in words) / height)
        if (block, par) != last_par:
            page.paragraphs.append([])
            last_par = (block, par)
        page.paragraphs[-1].append(OcrLine(text, box))
        for w in words:
            if w[5] >= 0:  # -1: no confidence for this box
                weighted += w[5] * len(w[0])
                chars += len(w[0])
        page.words += len(words)
    page.confidence = weighted / chars if chars else 0.0
    return page


def ocr_image_file(image_file: Path, languages: str, width: int, height: int) -> OcrPage:
    """Run Tesseract on one image file (single-threaded: the caller reads several pages at once)."""
    binary = tesseract_path()
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    try:
        out = subprocess.run([binary, str(image_file), "stdout", "-l", languages, "--psm", "3", "tsv"],
                             capture_output=True, text=True, timeout=_TESSERACT_TIMEOUT_S, env=env, check=False)
    except subprocess.TimeoutExpired as exc:
        raise CorruptFile(f"{image_file.name}: Tesseract took over {_TESSERACT_TIMEOUT_S} s on one page") from exc
    if out.returncode != 0:
        detail = (out.stderr.strip().splitlines() or ["no message"])[-1]
        raise CorruptFile(f"Tesseract failed on a page ({detail})")
    return parse_tsv(out.stdout, width, height)


# --- building the document --------------------------------------------------------------------------------------


class PageText:
    """Accumulates pages of text with paragraph spans, page starts and per-line anchors."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.spans: list[Span] = []
        self.page_starts: list[int] = []
        self.anchors: list[Anchor] = []

    def _sep(self) -> None:
        if self.parts:
            self.parts.append("\n\n")
            self.length += 2

    def start_page(self) -> None:
        self.page_starts.append(self.length + (2 if self.parts else 0))

    def add_block(self, block: str, kind: SpanKind = SpanKind.PARAGRAPH) -> None:
        block = " ".join(block.split())
        if not block:
            return
        self._sep()
        level = 2 if kind is SpanKind.HEADING else 0
        self.spans.append(Span(self.length, self.length + len(block), kind, level))
        self.parts.append(block)
        self.length += len(block)

    def add_ocr_page(self, page: OcrPage, page_no: int) -> None:
        for para in page.paragraphs:
            pieces: list[str] = []
            at = 0  # offset inside the paragraph
            line_spans: list[tuple[int, int, OcrLine]] = []
            for line in para:
                text = line.text
                if pieces and pieces[-1].endswith("-") and text[:1].islower():  # undo end-of-line hyphenation
                    pieces[-1] = pieces[-1][:-1]
                    at -= 1
                elif pieces:
                    pieces.append(" ")
                    at += 1
                line_spans.append((at, at + len(text), line))
                pieces.append(text)
                at += len(text)
            block = "".join(pieces)
            if not block.strip():
                continue
            self._sep()
            base = self.length
            self.spans.append(Span(base, base + len(block)))
            self.parts.append(block)
            self.length += len(block)
            for s, e, line in line_spans:
                self.anchors.append(Anchor(base + s, base + e, page=page_no, box=line.box))

    @property
    def text(self) -> str:
        return "".join(self.parts)


def _workers(options: LoadOptions) -> int:
    return options.ocr_workers or max(1, os.cpu_count() or 1)


def _read_pages(
    images: Iterator[tuple[int, Image]], options: LoadOptions, report: LoadReport, name: str
) -> dict[int, OcrPage]:
    """OCR every (page number, image) in a thread pool; pages come back keyed by number."""
    languages = check_languages(options.ocr_languages)
    results: dict[int, OcrPage] = {}
    with tempfile.TemporaryDirectory(prefix="ragworks-ocr-") as tmp, ThreadPoolExecutor(_workers(options)) as pool:
        pending: dict[int, Future[OcrPage]] = {}

        def collect(block: bool) -> None:
            for page_no in [p for p, f in pending.items() if block or f.done()]:
                try:
                    results[page_no] = pending.pop(page_no).result()
                except CorruptFile as exc:  # one unreadable page must not lose the others
                    report.warnings.append(f"{name}: page {page_no} not read ({exc})")
                report.advance(PAGE_UNIT, 1)

        for page_no, image in images:
            # rendering stays in this thread (pdfium is not thread-safe), Tesseract runs in the pool; PGM: no time
            # spent compressing and decompressing a page that lives for a second
            image_file = Path(tmp) / f"page-{page_no}.pgm"
            (image if image.mode == "L" else image.convert("L")).save(image_file)
            pending[page_no] = pool.submit(_ocr_and_remove, image_file, languages, image.width, image.height)
            if len(pending) >= 2 * _workers(options):  # bound the rendered pages waiting on disk
                next(iter(pending.values())).exception()
            collect(block=False)
        collect(block=True)
    for page_no, page in sorted(results.items()):
        if page.words and page.confidence < options.ocr_min_confidence:
            report.low_confidence_pages.append((page_no, round(page.confidence, 1)))
    return results


def _ocr_and_remove(image_file: Path, languages: str, width: int, height: int) -> OcrPage:
    """OCR one rendered page, then delete it (a 300 dpi A4 page is ~9 MB: a long scan must not fill the disk)."""
    try:
        return ocr_image_file(image_file, languages, width, height)
    finally:
        image_file.unlink(missing_ok=True)


def _confidence_metadata(pages: dict[int, OcrPage], total_pages: int) -> dict[str, Any]:
    """OCR metadata, with the counts by kind: pages read by OCR, and one text document if other pages had text."""
    read = [p for p in pages.values() if p.words]
    mean = sum(p.confidence * p.words for p in read) / max(1, sum(p.words for p in read))
    counts: dict[str, float] = {ContentKind.OCR_PAGES: len(pages)}
    if len(pages) < total_pages:
        counts[ContentKind.TEXT] = 1
    return {OCR_PAGES: len(pages), "ocr_confidence": round(mean, 1), COUNTS_KEY: counts}


# --- images -----------------------------------------------------------------------------------------------------


def _image_frames(path: Path) -> Iterator[tuple[int, Image]]:
    from PIL import Image as PILImage
    from PIL import ImageOps, UnidentifiedImageError

    try:
        img = PILImage.open(path)
        frames = getattr(img, "n_frames", 1)
        for i in range(frames):  # a multi-page TIFF is a document of pages
            img.seek(i)
            frame = ImageOps.exif_transpose(img.copy()) or img.copy()
            yield i + 1, frame.convert("L")
    except (UnidentifiedImageError, OSError, ValueError, EOFError) as exc:
        raise CorruptFile(f"{path.name}: not a readable image ({exc.__class__.__name__}: {exc})") from exc


def load_image(path: Path, source: str, options: LoadOptions, report: LoadReport) -> Iterator[Document]:
    """An image (or each frame of a multi-page TIFF) read by OCR; one page per frame."""
    tesseract_path()  # before decoding anything: the clearest error first
    pages = _read_pages(_image_frames(path), options, report, path.name)
    built = PageText()
    for page_no in sorted(pages):
        built.start_page()
        built.add_ocr_page(pages[page_no], page_no)
    if not built.text.strip():
        raise EmptyDocument(f"{path.name}: OCR found no text in the image")
    first_line = next((ln.text for para in pages[min(pages)].paragraphs for ln in para), "") if pages else ""
    title = first_line[:80] if 0 < len(first_line.split()) <= 12 else path.stem
    yield Document(
        source=source, text=built.text, title=title, spans=built.spans, page_starts=built.page_starts,
        anchors=built.anchors, metadata={"pages": len(pages), **_confidence_metadata(pages, len(pages))},
    )


# --- PDF pages without a usable text layer ----------------------------------------------------------------------

_WORDLIKE = re.compile(r"[^\W\d_]{2,}")


def text_layer_usable(text: str) -> bool:
    """False for an empty or garbage text layer: replacement or private-use characters, few letters, no words.

    Scanners' "invisible OCR" layers and broken font encodings give text like "ÿþ\\x01\\x02" or "(cid:12)(cid:7)".
    """
    stripped = "".join(text.split())
    if len(stripped) < 20:
        return False
    if "(cid:" in text or text.count("\ufffd") > len(stripped) * 0.02:
        return False
    odd = sum(1 for ch in stripped if (0xE000 <= ord(ch) <= 0xF8FF) or ord(ch) < 32)
    letters = sum(ch.isalnum() for ch in stripped)
    words = _WORDLIKE.findall(text)
    return odd < len(stripped) * 0.05 and letters >= len(stripped) * 0.6 and len(words) >= 3


def load_pdf_with_ocr(path: Path, source: str, options: LoadOptions, report: LoadReport,
                      text_loader: Callable[[Path, str, LoadOptions, LoadReport], Iterator[Document]],
                      page_blocks: Callable[[str], Iterable[tuple[str, SpanKind]]]) -> Iterator[Document]:
    """A PDF through `text_loader` when every page has a usable text layer; otherwise the pages without one are
    rendered and read by OCR, and the others keep their text layer, split into blocks by `page_blocks`.
    (The text loaders pass both in: this module never imports them.)"""
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(str(path))
    except (pdfium.PdfiumError, OSError, ValueError):
        yield from text_loader(path, source, options, report)  # it reports encrypted / corrupt files precisely
        return
    try:
        page_texts: list[str] = []
        try:
            for i in range(len(pdf)):
                page = pdf[i]
                try:
                    page_texts.append(page.get_textpage().get_text_bounded())
                except pdfium.PdfiumError:
                    page_texts.append("")
            scanned = [i + 1 for i, t in enumerate(page_texts) if not text_layer_usable(t) and _has_image(pdf[i])]
        except pdfium.PdfiumError:  # a page pdfium cannot even load: the text loader says precisely what is wrong
            scanned = []
        pages = _read_pages(_rendered(pdf, scanned, options.ocr_dpi), options, report, path.name) if scanned else {}
        title = _pdf_title(pdf) if scanned else ""
    finally:
        pdf.close()
    if not scanned:  # every page has its text: the text loader as for any PDF
        yield from text_loader(path, source, options, report)
        return
    yield _mixed_document(path, source, page_texts, pages, title, page_blocks)


def _has_image(page: Any) -> bool:
    """Whether a page draws any image: a text-less page without one is blank, not scanned."""
    import pypdfium2.raw as pdfium_c

    return any(True for _ in page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE], max_depth=3))


def _rendered(pdf: Any, page_numbers: list[int], dpi: int) -> Iterator[tuple[int, Image]]:
    for page_no in page_numbers:
        bitmap = pdf[page_no - 1].render(scale=dpi / 72, grayscale=True)
        yield page_no, bitmap.to_pil()


def _pdf_title(pdf: Any) -> str:
    try:
        return str(pdf.get_metadata_dict().get("Title") or "").strip()
    except Exception:  # damaged metadata must not lose the text
        return ""


def _mixed_document(path: Path, source: str, page_texts: list[str], pages: dict[int, OcrPage], title: str,
                    pdf_page_blocks: Callable[[str], Iterable[tuple[str, SpanKind]]]) -> Document:
    built = PageText()
    for page_no, layer in enumerate(page_texts, 1):
        built.start_page()
        if page_no in pages:
            built.add_ocr_page(pages[page_no], page_no)
        else:
            for block, kind in pdf_page_blocks(layer):
                built.add_block(block, kind)
    if not built.text.strip():
        raise EmptyDocument(f"{path.name}: no text layer, and OCR found no text on its pages")
    if not title:
        first = next((built.text[s.start:s.end] for s in built.spans), "")
        title = first[:80] if 0 < len(first.split()) <= 12 else path.stem
    return Document(
        source=source, text=built.text, title=title, spans=built.spans, page_starts=built.page_starts,
        anchors=built.anchors, metadata={"pages": len(page_texts), **_confidence_metadata(pages, len(page_texts))},
    )
