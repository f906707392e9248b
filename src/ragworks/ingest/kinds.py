"""Content counted by kind: documents read as text, pages read by OCR, minutes of speech, tables.

Loaders record the counts in document metadata (`OCR_PAGES`, `AUDIO_SECONDS`, `TABLES`); the ingest summary adds
them up per run and `stats` per collection, so a user sees what the OCR and speech paths did.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ragworks.documents import AUDIO_SECONDS, OCR_PAGES, TABLES, Document

KIND_KEYS = ("text_documents", OCR_PAGES, "audio_minutes", TABLES)


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def document_kinds(doc: Document) -> dict[str, float]:
    """What one document adds to the counts."""
    meta = doc.metadata
    ocr, audio = _number(meta.get(OCR_PAGES)), _number(meta.get(AUDIO_SECONDS))
    all_pages_read_by_ocr = ocr > 0 and ocr >= _number(meta.get("pages", ocr))
    return {
        "text_documents": 0.0 if audio or all_pages_read_by_ocr else 1.0,
        OCR_PAGES: ocr,
        "audio_minutes": audio / 60.0,
        TABLES: _number(meta.get(TABLES)),
    }


def add_kinds(total: dict[str, float], part: Mapping[str, float]) -> None:
    for key, value in part.items():
        total[key] = total.get(key, 0.0) + value


def rounded_kinds(counts: Mapping[str, float]) -> dict[str, float | int]:
    """Counts for display: whole numbers as ints, minutes to a tenth."""
    out: dict[str, float | int] = {}
    for key in KIND_KEYS:
        value = counts.get(key, 0.0)
        out[key] = round(value, 1) if key == "audio_minutes" else round(value)
    return out


def sum_kinds(parts: Iterable[Mapping[str, float]]) -> dict[str, float | int]:
    total: dict[str, float] = {}
    for part in parts:
        add_kinds(total, part)
    return rounded_kinds(total)
