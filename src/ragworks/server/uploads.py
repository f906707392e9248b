"""Uploaded files, kept content-addressed under their collection: `<collection>/uploads/<sha256>/<filename>`.

The same bytes uploaded twice are stored once. The document's source is the name the client gave (a relative
path is kept, so `docs/a.md` and `notes/a.md` stay two documents); the file on disk uses only its base name.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from ragworks.ingest.loaders import loader_for
from ragworks.jobs.ingest import upload_path
from ragworks.server.errors import ApiError

_COPY_BLOCK = 1 << 20


def upload_source(filename: str | None) -> str:
    """The client's file name as a document source: a clean relative path, or 422."""
    raw = (filename or "").replace("\\", "/").strip()
    parts = [p for p in PurePosixPath(raw).parts if p not in ("/", ".", "")]
    if not parts or ".." in parts or any(p.startswith(".") for p in parts) or len(raw) > 1024:
        raise ApiError(f"invalid upload file name {filename!r}", status=422)
    loader_for(Path(parts[-1]))  # UnsupportedFormat (422) before anything is stored
    return "/".join(parts)


def store_upload(collection_dir: Path, source: str, data: BinaryIO) -> dict[str, Any]:
    """Copy an upload into the collection's content-addressed store; returns the job's file entry."""
    tmp_dir = collection_dir / "uploads" / ".incoming"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / uuid.uuid4().hex
    h, size = hashlib.sha256(), 0
    try:
        with tmp.open("wb") as out:
            while block := data.read(_COPY_BLOCK):
                h.update(block)
                size += len(block)
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        filename = PurePosixPath(source).name
        final = upload_path(collection_dir, h.hexdigest(), filename)
        if final.exists():
            tmp.unlink()
        else:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return {"sha256": h.hexdigest(), "filename": filename, "source": source, "size": size}


def _file_part(source: str) -> str:
    """The uploaded file a document came from: `docs/a.jsonl#17` → `a.jsonl`."""
    return PurePosixPath(source.split("#", 1)[0]).name


def prune_uploads(collection_dir: Path, remaining_sources: Iterable[str], pending: Iterable[dict[str, Any]]) -> int:
    """Delete stored uploads no document comes from any more (after documents were deleted); returns how many.

    Kept: files named like a remaining document's file, and files of jobs not finished yet (`pending` entries).
    """
    root = collection_dir / "uploads"
    if not root.is_dir():
        return 0
    keep_names = {_file_part(s) for s in remaining_sources}
    keep_paths = {upload_path(collection_dir, f["sha256"], f["filename"]) for f in pending}
    removed = 0
    for path in root.glob("*/*"):
        if path.parent.name == ".incoming" or path in keep_paths or path.name in keep_names:
            continue
        path.unlink(missing_ok=True)
        removed += 1
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # only when empty
    return removed
