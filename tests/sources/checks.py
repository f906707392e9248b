"""Helpers for source tests: what a collection holds, and checks that it follows its source exactly."""

from __future__ import annotations

from typing import Any

from ragworks.collection import Collection


def held(col: Collection) -> dict[str, str]:
    """source key → stored text of every document in the collection."""
    out: dict[str, str] = {}
    if not col.exists:
        return out
    for d in col.documents(limit=10_000):
        _, text, _ = col.document(d.id)
        out[d.source] = text
    return out


def assert_no_stale_chunks(col: Collection, gone_word: str) -> None:
    """Chunk rows match the documents' counts, and a word only deleted content had is found nowhere."""
    docs = col.documents(limit=10_000)
    assert col.stats()["chunks"] == sum(d.chunks for d in docs)
    hits = col.search(gone_word, mode="bm25", k=20)
    assert all(gone_word not in h.chunk.text.lower() for h in hits), [h.source for h in hits]


def by_status(report: Any) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for f in report.files:
        out.setdefault(f.status, set()).add(f.path)
    return out
