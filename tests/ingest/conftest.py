"""Builders for real fixture files (PDF via fpdf2, DOCX via python-docx), written at test time into tmp_path."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

# One page of a PDF: a heading and its paragraphs.
PdfPage = tuple[str, Sequence[str]]


def write_pdf(
    path: Path,
    pages: Sequence[PdfPage],
    *,
    title: str | None = None,
    user_password: str | None = None,
) -> Path:
    """A real PDF, one page per (heading, paragraphs) entry; encrypted when `user_password` is given."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_auto_page_break(auto=False)
    if title:
        pdf.set_title(title)
    for heading, paragraphs in pages:
        pdf.add_page()
        pdf.set_font("helvetica", "B", 16)
        pdf.cell(text=heading)
        pdf.ln(12)
        pdf.set_font("helvetica", size=11)
        for para in paragraphs:
            pdf.multi_cell(w=0, h=6, text=para)
            pdf.ln(6)
    if user_password is not None:
        pdf.set_encryption(owner_password="o", user_password=user_password)
    pdf.output(str(path))
    return path


def write_docx(path: Path, blocks: Iterable[tuple[str, Any]], *, title: str | None = None) -> Path:
    """A real DOCX. Blocks: ("h1".."h3", text), ("p", text), ("li", text), ("table", [[cell, ...], ...])."""
    import docx

    d = docx.Document()
    if title:
        d.core_properties.title = title
    for kind, value in blocks:
        if kind.startswith("h"):
            d.add_heading(value, level=int(kind[1:]))
        elif kind == "li":
            d.add_paragraph(value, style="List Bullet")
        elif kind == "table":
            table = d.add_table(rows=len(value), cols=len(value[0]))
            for r, row in enumerate(value):
                for c, cell in enumerate(row):
                    table.cell(r, c).text = cell
        else:
            d.add_paragraph(value)
    d.save(str(path))
    return path


def write_jsonl(path: Path, records: Iterable[dict[str, Any] | str]) -> Path:
    """JSON lines; a str record is written verbatim (to plant invalid lines). `.gz` paths are gzipped."""
    lines = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records).encode()
    path.write_bytes(gzip.compress(lines) if path.name.endswith(".gz") else lines)
    return path


@pytest.fixture
def make_pdf() -> Callable[..., Path]:
    return write_pdf


@pytest.fixture
def make_docx() -> Callable[..., Path]:
    return write_docx


@pytest.fixture
def make_jsonl() -> Callable[..., Path]:
    return write_jsonl


@pytest.fixture
def load() -> Callable[..., tuple[list[Any], Any]]:
    """Load one file with the loader its extension picks: (documents, LoadReport)."""
    from ragworks.ingest.base import LoadOptions, LoadReport
    from ragworks.ingest.loaders import loader_for

    def _load(path: Path, options: LoadOptions | None = None) -> tuple[list[Any], LoadReport]:
        report = LoadReport()
        docs = list(loader_for(path)(path, path.name, options or LoadOptions(), report))
        return docs, report

    return _load
