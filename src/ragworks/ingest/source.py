"""The Source protocol: where documents live (a folder, a bucket, a website, a Git repository).

A source lists its items — each with a stable `key` and a `version` that changes whenever its content does — and
fetches one item's bytes. The ingest pipeline (`IngestPipeline.run_source`) skips items whose version it has
already stored without fetching them, loads the rest with the loader their `filename` picks, and deletes the
documents of keys that are no longer listed. A listing that fails raises `SourceUnavailable` before anything is
written, so an outage never deletes a document.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class SourceItem:
    """One listed item. `key` is what its documents are known by (their `source`); `version` an ETag, a Git blob
    id, a page's content hash; `filename` ends with the extension that chooses the loader."""

    key: str
    version: str
    filename: str
    size: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)  # copied onto its documents (commit, path, url)
    local_path: Path | None = None  # a file on this machine: read in place (size + mtime + SHA-256 decide)


@dataclass(frozen=True, slots=True)
class Upload:
    """A file a client sent, kept on this machine (`IngestPipeline.run_uploads`). Its documents are known by `source`
    (the client's name for it, not a path here), so they are compared with the stored ones by content hash, like
    documents given directly, and no file record is kept for it. `metadata` is copied onto its documents; a
    recording's documents also carry `upload_sha256`, for the web page to play the cited clip from the upload."""

    source: str
    path: Path
    sha256: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FetchedItem:
    data: bytes
    filename: str  # may differ from the listed one (a web page's type is known once fetched)


@runtime_checkable
class Source(Protocol):
    """A place documents come from. Implementations: FolderSource, S3Source, WebSource, GitSource."""

    @property
    def uri(self) -> str:
        """Where it is, as a user wrote it (`s3://bucket/prefix`, `https://…`, a path)."""
        ...

    def list_items(self) -> list[SourceItem]:
        """Every item the source holds now. Complete or an exception (SourceUnavailable): a partial listing
        would delete the documents of the items it missed."""
        ...

    def fetch(self, item: SourceItem) -> FetchedItem:
        """One item's content; raises SourceItemError (that item fails, the others go on) or SourceUnavailable."""
        ...

    def owns(self, key: str) -> bool:
        """Whether a stored key came from this source (so that its absence from a listing means deletion)."""
        ...

    def close(self) -> None: ...
