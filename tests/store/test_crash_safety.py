"""`kill -9` in the middle of an ingest: the collection stays consistent and the next ingest completes it."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ragworks.collection import Collection
from ragworks.config import Settings
from ragworks.store.embedded import DB_NAME

pytestmark = pytest.mark.slow

N_FILES = 60
INGEST = textwrap.dedent(
    """
    import sys
    from ragworks import Collection, Settings
    s = Settings(data_dir=sys.argv[1], collection="crash", llm="extractive", ingest_batch_chunks=6)
    with Collection.open(settings=s) as col:
        col.ingest(sys.argv[2])
    """
)


def _corpus(root: Path) -> Path:
    docs = root / "docs"
    docs.mkdir()
    for i in range(N_FILES):
        body = "\n\n".join(
            f"Paragraph {j} of file {i}: the keeper logged wind force {i % 12} and visibility {j} miles."
            for j in range(6)
        )
        (docs / f"f{i:03d}.md").write_text(f"# File {i}\n\n{body}\n")
    return docs


def _chunk_count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(db, timeout=1)
        try:
            return int(con.execute("SELECT count(*) FROM chunks").fetchone()[0])
        finally:
            con.close()
    except sqlite3.OperationalError:
        return 0


def _assert_consistent(path: Path) -> tuple[int, int]:
    con = sqlite3.connect(path / DB_NAME)
    try:
        docs = con.execute("SELECT count(*) FROM documents").fetchone()[0]
        chunks = con.execute("SELECT count(*) FROM chunks").fetchone()[0]
        declared = con.execute("SELECT coalesce(sum(chunks), 0) FROM documents").fetchone()[0]
        orphan_chunks = con.execute(
            "SELECT count(*) FROM chunks WHERE doc_id NOT IN (SELECT id FROM documents)").fetchone()[0]
        missing_vectors = con.execute(
            "SELECT count(*) FROM chunks c "
            "WHERE NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.text_hash = c.text_hash)"
        ).fetchone()[0]
        dupes = con.execute(
            "SELECT count(*) FROM (SELECT doc_id, ordinal FROM chunks GROUP BY doc_id, ordinal HAVING count(*) > 1)"
        ).fetchone()[0]
        fts = con.execute("SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH 'keeper'").fetchone()[0]
        files_ok = con.execute("SELECT count(*) FROM files WHERE status = 'ok'").fetchone()[0]
    finally:
        con.close()
    assert chunks == declared, "every committed document has all its chunks"
    assert orphan_chunks == 0 and missing_vectors == 0 and dupes == 0
    assert fts == chunks, "the BM25 index holds exactly the committed chunks"
    assert files_ok <= docs, "a file is marked done only with its documents"
    return docs, chunks


def test_kill_9_mid_ingest_keeps_a_consistent_collection_and_the_next_ingest_completes(tmp_path, embedder):
    docs_dir = _corpus(tmp_path)
    data = tmp_path / "data"
    db = data / "crash" / DB_NAME
    proc = subprocess.Popen([sys.executable, "-c", INGEST, str(data), str(docs_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while _chunk_count(db) < 12:  # at least two batches committed
        assert proc.poll() is None, "the ingest finished before it could be killed: make the corpus bigger"
        assert time.monotonic() < deadline, "the ingest never got going"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL

    docs_after_kill, chunks_after_kill = _assert_consistent(db.parent)
    assert 0 < docs_after_kill < N_FILES

    settings = Settings(data_dir=data, collection="crash", llm="extractive", ingest_batch_chunks=6)
    with Collection.open(settings=settings, embedder=embedder) as col:
        # What was committed before the kill is searchable at once (the index replays the log).
        assert col.stats()["vectors"] == chunks_after_kill
        report = col.ingest(docs_dir)
        assert report.ok
        assert report.count("unchanged") + report.count("new") == N_FILES
        assert report.chunks_embedded <= report.chunks_written
        stats = col.stats()
        hits = col.search("wind force 7 file 55", mode="hybrid", k=3)
    docs, chunks = _assert_consistent(db.parent)
    assert docs == N_FILES == stats["documents"]
    assert stats["vectors"] == chunks == stats["chunks"]
    assert any("file 55" in h.chunk.text for h in hits)

    # A clean ingest of the same corpus elsewhere gives exactly the same number of chunks: nothing duplicated.
    clean = Settings(data_dir=tmp_path / "clean", collection="c", llm="extractive")
    with Collection.open(settings=clean, embedder=embedder) as col:
        col.ingest(docs_dir)
        assert col.stats()["chunks"] == chunks
