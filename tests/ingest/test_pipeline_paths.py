"""The one ingest path: files, uploads and documents go through IngestPipeline, which a `check` hook can stop."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragworks.documents import Document
from ragworks.ingest.chunker import Chunker
from ragworks.ingest.pipeline import IngestPipeline, Progress
from ragworks.ingest.source import Upload
from ragworks.jobs.base import JobProgress


class Stop(Exception):
    pass


def _texts(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"log-{i}.txt"
        path.write_text(f"Harbour log {i}: the ferry number {i} arrived at dawn with {i * 7} passengers aboard.\n")
        paths.append(path)
    return paths


def _stopping_after(files: int) -> tuple[list[Progress], object]:
    """A progress log, and a check that raises once `files` files are reported done."""
    seen: list[Progress] = []

    def check() -> None:
        if seen and seen[-1].files_done >= files:
            raise Stop

    return seen, check


def test_a_check_that_raises_stops_the_run_and_a_rerun_skips_what_was_committed(collection, tmp_path):
    _texts(tmp_path / "docs", 5)
    seen, check = _stopping_after(2)
    emb = collection.embedder
    pipeline = IngestPipeline(collection.store, emb,
                              lambda: Chunker.from_settings(collection.settings, emb.count_tokens, emb.max_tokens),
                              progress=seen.append, check=check, files_per_commit=1)
    with pytest.raises(Stop):
        pipeline.run([tmp_path / "docs"])
    assert collection.stats()["documents"] == 2, "each file reported done was committed before the stop"

    again = collection.ingest(tmp_path / "docs")
    assert (again.count("unchanged"), again.count("new")) == (2, 3)
    assert again.chunks_embedded == 3 and collection.stats()["documents"] == 5


def test_uploads_are_compared_by_content_and_keep_no_file_record(collection, tmp_path):
    a, b = _texts(tmp_path / "uploads", 2)
    uploads = [Upload("notes/a.txt", a, "sha-a", {"team": "port"}), Upload("notes/b.txt", b, "sha-b"),
               Upload("notes/gone.txt", tmp_path / "missing.txt", "sha-c")]
    seen: list[Progress] = []
    first = collection.add_uploads(uploads, progress=seen.append)
    assert [(f.path, f.status) for f in first.files] == [
        ("notes/a.txt", "new"), ("notes/b.txt", "new"), ("notes/gone.txt", "failed")]
    assert first.failed[0].reason == "missing"
    assert first.failed[0].error == "notes/gone.txt: the uploaded file is gone from the server"
    assert seen[-1].files_done == seen[-1].files_total == 3 and seen[-1].documents == 2
    docs = {d.source: d for d in collection.documents()}
    assert docs["notes/a.txt"].metadata["team"] == "port" and "upload_sha256" not in docs["notes/a.txt"].metadata
    # the client's name is not a path here: nothing a CLI `--prune` or a folder sync could mistake for its file
    assert collection.store.file_records() == []

    b.write_text("Harbour log 1: the ferry was late.\n")
    second = collection.add_uploads(uploads[:2])
    assert [f.status for f in second.files] == ["unchanged", "updated"] and second.chunks_embedded == 1


def test_documents_stop_between_commits_and_count_as_one_progress(collection):
    def docs() -> list[Document]:
        return [Document(source=f"doc-{i}", text=f"Lighthouse keeper note {i}: the lamp was lit at {i} pm.")
                for i in range(5)]

    seen, check = _stopping_after(2)
    with pytest.raises(Stop):
        collection.add_documents(docs(), progress=seen.append, check=check, per_commit=2)
    assert collection.stats()["documents"] == 2
    assert isinstance(seen[-1], JobProgress) and seen[-1].to_dict() == {
        "files_total": 5, "files_done": 2, "documents": 2, "chunks_written": 2, "chunks_embedded": 2, "current": ""}

    report = collection.add_documents(docs())
    assert [f.status for f in report.files] == ["unchanged"] * 2 + ["new"] * 3 and report.chunks_embedded == 3
