"""Uploaded files, kept content-addressed under their collection: `<collection>/uploads/<sha256>/<filename>`.

The same bytes uploaded twice are stored once. The document's source is the name the client gave (a relative
path is kept, so `docs/a.md` and `notes/a.md` stay two documents); the file on disk uses only its base name.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from ragworks.ingest.loaders import loader_for
from ragworks.server.errors import ApiError
from ragworks.server.jobs.ingest import upload_path

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
