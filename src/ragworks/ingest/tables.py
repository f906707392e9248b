"""Tables of every format as Markdown, so BM25, the embedder and the LLM read each cell beside its column name.

A table becomes one TABLE span of the document text: its header row, the `| --- |` separator, then one line per
row. The chunker keeps tables in chunks of their own and, when a long table is split, repeats the header rows on
every later chunk (on the chunk's context, since a chunk's text must stay an exact slice of the document).

Sources: GFM pipe tables in Markdown (kept as written), `<table>` in HTML (colspan/rowspan filled in), DOCX tables,
and ruled tables in PDFs, found by pdfplumber (the `tables` extra) on pages whose content stream draws lines.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SEPARATOR = re.compile(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")
_MAX_SPAN = 64  # colspan/rowspan beyond this are typos or attacks, not tables
# A cell this long is prose laid out with a table (an old-style page layout), not data.
_MAX_CELL_CHARS = 1500


@dataclass(slots=True)
class Table:
    """A table with one header row (several header rows are merged per column) and its body rows."""

    header: list[str]
    rows: list[list[str]]

    def to_markdown(self) -> str:
        lines = [_row(self.header), "| " + " | ".join("---" for _ in self.header) + " |"]
        lines.extend(_row(r) for r in self.rows)
        return "\n".join(lines)


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def clean_cell(text: str | None) -> str:
    """One line of cell text with its pipes escaped."""
    return " ".join((text or "").split()).replace("|", "\\|")


def table_from_rows(rows: Sequence[Sequence[str | None]], header_rows: int = 1) -> Table | None:
    """A Table from raw rows (the first `header_rows` are its header), or None when it is not a data table:
    fewer than two non-empty columns, no body row, or prose laid out in cells."""
    cleaned = [[clean_cell(c) for c in r] for r in rows]
    width = max((len(r) for r in cleaned), default=0)
    padded = [r + [""] * (width - len(r)) for r in cleaned]
    head = [r for r in padded[:header_rows] if any(r)]
    body = [r for r in padded[header_rows:] if any(r)]
    if not body and len(head) > 1:  # every row marked as a header: the first one is
        head, body = head[:1], head[1:]
    if not head and body:
        head = [body.pop(0)]
    keep = [j for j in range(width) if any(r[j] for r in head + body)]
    if len(keep) < 2 or not body or any(len(c) > _MAX_CELL_CHARS for r in head + body for c in r):
        return None
    header = [" / ".join(dict.fromkeys(r[j] for r in head if r[j])) for j in keep]
    return Table(header, [[r[j] for j in keep] for r in body])


# --- Markdown ----------------------------------------------------------------------------------------------------


def markdown_table_end(lines: Sequence[str], i: int) -> int | None:
    """If a GFM pipe table starts at line `i` (a row, then a `| --- |` separator), the index of the line after it."""
    if i + 1 >= len(lines) or "|" not in lines[i] or not _is_separator(lines[i + 1]):
        return None
    j = i + 2
    while j < len(lines) and lines[j].strip() and "|" in lines[j]:
        j += 1
    return j


def header_line_count(table_text: str) -> int:
    """How many leading lines of a TABLE span are its header: the row and the separator (0 when none)."""
    lines = table_text.split("\n", 2)
    return 2 if len(lines) >= 2 and _is_separator(lines[1]) else 0


def _is_separator(line: str) -> bool:
    """`| --- | :-: |`; a line of dashes alone is a rule or a setext underline, not a table's separator."""
    return "|" in line and "-" in line and _SEPARATOR.match(line) is not None


# --- HTML --------------------------------------------------------------------------------------------------------


def html_table(node: Any) -> Table | None:
    """A selectolax `<table>` node as a Table (nested tables flattened into their cell), or None for a layout table."""
    if (node.attributes.get("role") or "") in ("presentation", "none"):
        return None
    rows: list[tuple[Any, bool]] = []  # (tr, in thead)
    for child in node.iter():
        if child.tag == "tr":
            rows.append((child, False))
        elif child.tag in ("thead", "tbody", "tfoot"):
            rows.extend((tr, child.tag == "thead") for tr in child.iter() if tr.tag == "tr")
    grid: list[list[str]] = []
    header_rows = 0
    pending: dict[int, tuple[str, int]] = {}  # column → (text, rows still spanned) from a rowspan above
    for r, (tr, in_head) in enumerate(rows):
        cells = [c for c in tr.iter() if c.tag in ("td", "th")]
        if in_head or (r == header_rows and cells and all(c.tag == "th" for c in cells)):
            header_rows = r + 1 if header_rows == r else header_rows
        out: list[str] = []
        queue = iter(cells)
        col = 0
        while True:
            if col in pending:
                text, left = pending.pop(col)
                out.append(text)
                if left > 1:
                    pending[col] = (text, left - 1)
                col += 1
                continue
            cell = next(queue, None)
            if cell is None:
                if any(c > col for c in pending):
                    out.append("")
                    col += 1
                    continue
                break
            text = cell.text(separator=" ")
            colspan, rowspan = _span(cell, "colspan"), _span(cell, "rowspan")
            for k in range(colspan):
                out.append(text)
                if rowspan > 1:
                    pending[col + k] = (text, rowspan - 1)
            col += colspan
        grid.append(out)
    return table_from_rows(grid, header_rows or 1)


def _span(cell: Any, name: str) -> int:
    try:
        return max(1, min(_MAX_SPAN, int(str(cell.attributes.get(name) or "1").strip())))
    except ValueError:
        return 1


# --- DOCX --------------------------------------------------------------------------------------------------------


def docx_table(table: Any) -> Table | None:
    """A python-docx Table (merged cells repeat their text, as Word shows them)."""
    return table_from_rows([[cell.text for cell in row.cells] for row in table.rows])


# --- PDF ---------------------------------------------------------------------------------------------------------

_PATH_OPERATOR = re.compile(rb"[\d.]\s+(?:re|l)\s")
_MIN_PATH_OPERATORS = 4  # a ruled table of 2×2 cells draws at least this many lines or rectangles


class PdfTables:
    """Ruled tables on a PDF's pages, found by pdfplumber. Pages without any keep pypdf's text (faster, and what
    every other page reads like); a page pdfplumber cannot read is reported and falls back the same way."""

    def __init__(self, path: Path, warnings: list[str]) -> None:
        self.path = path
        self.warnings = warnings
        self._pdf: Any = None
        self._opened = False

    def _open(self) -> Any:
        if not self._opened:
            self._opened = True
            try:
                import pdfplumber
            except ImportError:
                self.warnings.append(f"{self.path.name}: tables read as text (pip install 'ragworks[tables]')")
                return None
            try:
                self._pdf = pdfplumber.open(self.path)
            except Exception as exc:  # pdfminer is stricter than pypdf on some damaged files
                self.warnings.append(f"{self.path.name}: tables not extracted ({exc.__class__.__name__}: {exc})")
        return self._pdf

    def page_items(self, index: int, pypdf_page: Any) -> list[str | Table] | None:
        """The page as text and tables in reading order, or None when it has no ruled table."""
        if not _draws_lines(pypdf_page):
            return None
        pdf = self._open()
        if pdf is None:
            return None
        try:
            page = pdf.pages[index]  # pdfminer parses lazily: a damaged file fails here, not at open
        except Exception as exc:
            self.warnings.append(f"{self.path.name}: tables not extracted ({exc.__class__.__name__}: {exc})")
            self._pdf = None  # pypdf reads the rest
            pdf.close()
            return None
        try:
            return _page_items(page)
        except Exception as exc:
            self.warnings.append(f"{self.path.name}: page {index + 1}: tables not extracted ({exc})")
            return None
        finally:
            page.close()

    def close(self) -> None:
        if self._pdf is not None:
            self._pdf.close()


def continued_table(previous: Table | None, table: Table) -> Table:
    """A table at the top of a page that continues `previous` (the last thing on the page before, as wide) without
    repeating its header: its first row was taken for a header, so it gets the real one back."""
    if previous is None or len(previous.header) != len(table.header) or previous.header == table.header:
        return table
    return Table(previous.header, [table.header, *table.rows])


def _draws_lines(pypdf_page: Any) -> bool:
    try:
        contents = pypdf_page.get_contents()
        data = contents.get_data() if contents is not None else b""
    except Exception:
        return True  # can't tell cheaply: let pdfplumber look
    return len(_PATH_OPERATOR.findall(data)) >= _MIN_PATH_OPERATORS


def _page_items(page: Any) -> list[str | Table] | None:
    found = []
    for t in page.find_tables():
        table = table_from_rows(t.extract())
        if table is not None:
            found.append((t.bbox, table))
    if not found:
        return None
    found.sort(key=lambda f: (f[0][1], f[0][0]))
    boxes = [bbox for bbox, _ in found]

    def outside_tables(obj: dict[str, Any]) -> bool:
        if obj.get("object_type") != "char":
            return True
        cx, cy = (obj["x0"] + obj["x1"]) / 2, (obj["top"] + obj["bottom"]) / 2
        return not any(x0 <= cx <= x1 and top <= cy <= bottom for x0, top, x1, bottom in boxes)

    text_only = page.filter(outside_tables)
    x0, top0, x1, bottom0 = page.bbox
    # Bands of the page: [top of page, first table), then from each table's top to the next one's. A table comes
    # before the text beside or below it in its band.
    edges = [top0, *(max(top0, min(bottom0, b[1])) for b in boxes), bottom0]
    items: list[str | Table] = []
    for k in range(len(edges) - 1):
        if k > 0:
            items.append(found[k - 1][1])
        if edges[k + 1] > edges[k]:
            text = text_only.crop((x0, edges[k], x1, edges[k + 1])).extract_text() or ""
            if text.strip():
                items.append(text)
    return items
