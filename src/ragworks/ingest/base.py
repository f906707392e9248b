"""The Loader protocol: bytes of one file → the documents in it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ragworks.documents import Document


@dataclass(slots=True)
class LoadOptions:
    """What loaders may be told by settings."""

    id_field: str = "_id"
    title_field: str = "title"
    text_field: str = "text"
    metadata_fields: tuple[str, ...] = ()  # JSONL: extra record fields kept as metadata (default: all scalars)
    pdf_tables: bool = True  # find ruled tables in PDFs with pdfplumber (slower on pages that draw lines)


@dataclass(slots=True)
class LoadReport:
    """Problems inside a file that did not stop it loading (skipped JSONL records, bytes replaced, say)."""

    warnings: list[str] = field(default_factory=list)
    skipped: int = 0


class Loader(Protocol):
    """Turns one file into documents; raises a `ragworks.errors.LoadError` subclass when it can't."""

    def __call__(
        self, path: Path, source: str, options: LoadOptions, report: LoadReport
    ) -> Iterator[Document]: ...
