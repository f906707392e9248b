"""Read-only views of an embedded collection's SQLite file for offline tools (embedding tuning, evaluation).

They run beside a live collection without opening its store (no writer lock, no FAISS load), so they read the
file directly — here, next to the schema they depend on, and nowhere else outside `store/`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ragworks.store.embedded import DB_NAME


class CorpusRow(NamedTuple):
    """One chunk with its document's source and title."""

    chunk_id: int
    source: str
    title: str
    text: str
    context: str
    heading_path: tuple[str, ...]
    ordinal: int


@contextmanager
def _read_only(collection_path: Path) -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(f"file:{Path(collection_path) / DB_NAME}?mode=ro", uri=True)
    try:
        yield db
    finally:
        db.close()


def corpus_rows(collection_path: Path) -> list[CorpusRow]:
    """Every chunk of the collection, by chunk id."""
    with _read_only(collection_path) as db:
        rows = db.execute(
            "SELECT c.id, d.source, d.title, c.text, c.context, c.heading_path, c.ordinal FROM chunks c "
            "JOIN documents d ON d.id = c.doc_id ORDER BY c.id").fetchall()
    return [CorpusRow(int(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]),
                      tuple(json.loads(r[5])) if r[5] else (), int(r[6])) for r in rows]


def model_vectors(collection_path: Path, model_name: str) -> dict[int, np.ndarray]:
    """{chunk id: stored vector} of model `model_name` (empty if the collection has none of it)."""
    with _read_only(collection_path) as db:
        rows = db.execute(
            "SELECT c.id, e.vector FROM chunks c JOIN embeddings e ON e.text_hash = c.text_hash "
            "JOIN models m ON m.id = e.model WHERE m.name = ?", (model_name,)).fetchall()
    return {int(r[0]): np.frombuffer(r[1], dtype=np.float32) for r in rows}


def indexed_bodies(collection_path: Path) -> list[tuple[int, str]]:
    """(chunk id, keyword-indexed text) of every chunk: exactly what FTS5 indexes (the `chunk_bodies` view)."""
    with _read_only(collection_path) as db:
        return [(int(r[0]), str(r[1])) for r in db.execute("SELECT id, body FROM chunk_bodies ORDER BY id")]
