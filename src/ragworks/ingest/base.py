"""The Loader protocol: bytes of one file → the documents in it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ragworks.documents import Document

if TYPE_CHECKING:
    from ragworks.config import Settings


@dataclass(slots=True)
class LoadOptions:
    """What loaders may be told by settings."""

    id_field: str = "_id"
    title_field: str = "title"
    text_field: str = "text"
    metadata_fields: tuple[str, ...] = ()  # JSONL: extra record fields kept as metadata (default: all scalars)
    # OCR (images, scanned PDF pages): Tesseract language codes joined by "+", render resolution, the mean word
    # confidence (0-100) below which a page is reported, pages read at once (0: one per CPU core)
    ocr_languages: str = "eng"
    ocr_dpi: int = 300
    ocr_min_confidence: float = 60.0
    ocr_workers: int = 0
    # speech (audio, video): a CTranslate2 whisper directory (None: the packaged faster-whisper-base), the spoken
    # language (None: detected), CPU threads (0: all cores), beam width
    speech_model_dir: Path | None = None
    speech_language: str | None = None
    speech_threads: int = 0
    speech_beam_size: int = 5
    model_cache_dir: Path | None = None  # where packaged model parts are assembled (default ~/.cache/ragworks)

    pdf_tables: bool = True  # find ruled tables in PDFs with pdfplumber (slower on pages that draw lines)

    @classmethod
    def from_settings(cls, settings: Settings) -> LoadOptions:
        """The loader options `settings` asks for (one place, for the CLI, the API's jobs and the workers)."""
        s = settings
        return cls(
            id_field=s.jsonl_id_field, title_field=s.jsonl_title_field, text_field=s.jsonl_text_field,
            ocr_languages=s.ocr_languages, ocr_dpi=s.ocr_dpi, ocr_min_confidence=s.ocr_min_confidence,
            ocr_workers=s.ocr_workers, speech_model_dir=s.speech_model_dir, speech_language=s.speech_language,
            speech_threads=s.speech_threads, speech_beam_size=s.speech_beam_size, model_cache_dir=s.model_cache_dir,
            pdf_tables=s.pdf_tables,
        )


@dataclass(slots=True)
class LoadReport:
    """Problems inside a file that did not stop it loading (skipped JSONL records, bytes replaced, say)."""

    warnings: list[str] = field(default_factory=list)
    skipped: int = 0
    low_confidence_pages: list[tuple[int, float]] = field(default_factory=list)  # OCR: (page, mean confidence)
    # told how much work is done as it happens: (unit, amount), e.g. ("OCR pages", 1) or ("audio s", 12.5)
    on_progress: Callable[[str, float], None] | None = None

    def advance(self, unit: str, amount: float) -> None:
        if self.on_progress is not None:
            self.on_progress(unit, amount)


class Loader(Protocol):
    """Turns one file into documents; raises a `ragworks.errors.LoadError` subclass when it can't."""

    def __call__(
        self, path: Path, source: str, options: LoadOptions, report: LoadReport
    ) -> Iterator[Document]: ...
