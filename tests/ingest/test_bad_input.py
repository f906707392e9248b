"""Bad input through the real pipeline: every broken file is reported with its reason, the rest is ingested.

Also incremental ingest: unchanged files cost nothing, one changed paragraph re-embeds one chunk, a file gone bad
keeps its documents, prune removes the documents of deleted files.
"""

from __future__ import annotations

import os
import random
import shutil
import zipfile
from pathlib import Path

import pytest

from ragworks.collection import Collection
from ragworks.config import Settings

RNG_BYTES = random.Random(1234).randbytes

GOOD_MD = """# Lighthouse Lenses

The Fresnel lens concentrates the lamp's light into a narrow horizontal beam.

## Orders

A first-order lens stands taller than a keeper and weighs several tonnes.
"""
GOOD_TXT = "The marine chronometer let navigators find longitude at sea.\n\nJohn Harrison built it.\n"
GOOD_HTML = ("<html><head><title>Radar Beacons</title></head><body><nav>NAVMARKER</nav><main><h1>Racons</h1>"
             "<p>A racon answers a ship's radar pulse with a Morse letter on the screen.</p></main></body></html>")


def names(report, status: str | None = None) -> dict[str, str]:
    """{file name: reason} of failed files (or {file name: status} of files with `status`)."""
    if status is None:
        return {Path(f.path).name: f.reason for f in report.failed}
    return {Path(f.path).name: f.status for f in report.files if f.status == status}


def sources(hits) -> list[str]:
    return [Path(h.source.split("#")[0]).name + ("#" + h.source.split("#")[1] if "#" in h.source else "")
            for h in hits]


def write_good_files(root: Path, make_pdf, make_docx, make_jsonl) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "lenses.md").write_text(GOOD_MD)
    (root / "chronometer.txt").write_text(GOOD_TXT)
    (root / "racons.html").write_text(GOOD_HTML)
    make_pdf(root / "semaphore.pdf", [("Semaphore Towers", ["Chappe telegraph towers relayed messages by arms."]),
                                      ("Later Years", ["Electric telegraphy made the semaphore obsolete."])])
    make_docx(root / "darling.docx", [("h1", "Grace Darling"), ("p", "Grace Darling rowed to the Forfarshire.")])
    make_jsonl(
        root / "records.jsonl",
        [
            {"_id": "kelp", "title": "Kelp", "text": "Kelp forests shelter fish along rocky coasts."},
            "{this line is not json",
            {"_id": "no-text", "title": "missing text field"},
            {"_id": "gull", "title": "Gulls", "text": "Herring gulls nest on lighthouse ledges."},
        ],
    )


def write_bad_files(root: Path, make_pdf) -> dict[str, str]:
    """Broken files of every kind; returns {file name: expected failure reason}."""
    (root / "corrupt.pdf").write_bytes(RNG_BYTES(4096).replace(b"%PDF", b"XXXX"))
    make_pdf(root / "locked.pdf", [("Secret Plans", ["Only with the password."])], user_password="secret")
    blank_pdf = root / "scanned.pdf"  # a page with a drawing and no text layer
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.rect(20, 20, 100, 60)
    pdf.output(str(blank_pdf))
    (root / "empty.txt").write_bytes(b"")
    (root / "whitespace.md").write_text("   \n\n\t\n  \n")
    (root / "binary.txt").write_bytes(b"ELF\x00\x01\x02 some bytes \x00\x00 more" * 20)
    (root / "garbled.txt").write_bytes(bytes(range(0x80, 0x100)) * 4)
    (root / "data.xyz").write_text("a perfectly readable file of an unknown kind")
    (root / "broken.docx").write_bytes(b"PK\x03\x04" + RNG_BYTES(2000))
    with zipfile.ZipFile(root / "notword.docx", "w") as z:  # a valid zip that is not a Word document
        z.writestr("hello.txt", "hi")
    (root / "broken.json").write_text('{"text": "unterminated')
    (root / "allbad.jsonl").write_text("{nope\n[1, 2]\n")
    (root / "notgzip.jsonl.gz").write_text('{"_id": "a", "text": "not actually gzipped"}\n')
    return {
        "corrupt.pdf": "corrupt", "locked.pdf": "encrypted", "scanned.pdf": "empty", "empty.txt": "empty",
        "whitespace.md": "empty", "binary.txt": "binary", "garbled.txt": "undecodable",
        "data.xyz": "unsupported-format", "broken.docx": "corrupt", "notword.docx": "corrupt",
        "broken.json": "corrupt", "allbad.jsonl": "corrupt", "notgzip.jsonl.gz": "corrupt",
    }


@pytest.fixture
def mixed_dir(tmp_path, make_pdf, make_docx, make_jsonl) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "corpus"
    write_good_files(root, make_pdf, make_docx, make_jsonl)
    return root, write_bad_files(root, make_pdf)


GOOD_QUERIES = {
    "Fresnel lens narrow horizontal beam": "lenses.md",
    "marine chronometer longitude Harrison": "chronometer.txt",
    "racon Morse letter radar screen": "racons.html",
    "Chappe semaphore telegraph towers": "semaphore.pdf",
    "Grace Darling rowed to the Forfarshire": "darling.docx",
    "herring gulls nest on ledges": "records.jsonl#gull",
    "kelp forests shelter fish": "records.jsonl#kelp",
}


def test_each_broken_file_is_reported_with_its_reason_and_the_good_files_are_searchable(collection, mixed_dir):
    root, expected = mixed_dir
    report = collection.ingest(root)

    assert names(report) == expected
    for f in report.failed:
        assert f.error.startswith(Path(f.path).name), f.error  # the message names the file
        assert "Traceback" not in f.error
    assert report.ok is False
    assert names(report, "new") == {n: "new" for n in ("lenses.md", "chronometer.txt", "racons.html",
                                                       "semaphore.pdf", "darling.docx", "records.jsonl")}
    assert report.to_dict()["failed"] == len(expected)
    assert {d["reason"] for d in report.to_dict()["failures"]} == set(expected.values())

    for i, (query, source) in enumerate(GOOD_QUERIES.items()):
        # hybrid (the default, real embeddings) for two queries; keyword-only for the rest keeps the test fast
        hits = collection.search(query, k=3, mode=None if i < 2 else "bm25")
        assert sources(hits)[0] == source, (query, sources(hits))
    assert sources(collection.search("telegraph messages by arms", k=1, mode="dense")) == ["semaphore.pdf"]
    assert collection.search("secret plans password", mode="bm25") == []
    stats = collection.stats()
    assert stats["documents"] == 7
    assert stats["failed_files"] == len(expected)


def test_jsonl_with_invalid_lines_succeeds_and_reports_the_skipped_lines(collection, mixed_dir):
    root, _ = mixed_dir
    report = collection.ingest(root)
    [jsonl] = [f for f in report.files if f.path.endswith("records.jsonl")]
    assert jsonl.status == "new" and jsonl.documents == 2
    assert jsonl.warnings[0] == "2 record(s) skipped"
    assert any("records.jsonl:2: invalid JSON" in w for w in jsonl.warnings)
    assert any("records.jsonl:3: no 'text' text" in w for w in jsonl.warnings)


def test_the_encrypted_pdf_error_says_a_password_is_needed(collection, mixed_dir):
    root, _ = mixed_dir
    report = collection.ingest(root)
    [locked] = [f for f in report.failed if f.path.endswith("locked.pdf")]
    assert "password" in locked.error


def test_a_file_over_the_size_limit_is_reported_too_large(tmp_path, embedder):
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "small.txt").write_text("A short note about buoys.")
    (root / "big.txt").write_text("Lighthouse keeping is a lonely trade. " * 200)  # ~7.6 KB
    big_jsonl = "".join(f'{{"_id": "{i}", "text": "Streamed record {i} about tides."}}\n' for i in range(60))
    (root / "big.jsonl").write_text(big_jsonl)  # over the limit too, but JSONL streams
    assert len(big_jsonl) > 1100
    settings = Settings(data_dir=tmp_path / "data", collection="small", llm="extractive", max_file_mb=0.001)
    with Collection.open(settings=settings, embedder=embedder, llm=None) as col:
        report = col.ingest(root)
        assert names(report) == {"big.txt": "too-large"}
        [big] = report.failed
        assert "max_file_mb" in big.error
        assert names(report, "new") == {"small.txt": "new", "big.jsonl": "new"}
        assert col.stats()["documents"] == 61
        assert report.ok is False


def test_reingesting_an_unchanged_directory_embeds_nothing(collection, mixed_dir):
    root, expected = mixed_dir
    first = collection.ingest(root)
    assert first.chunks_embedded > 0
    before = collection.stats()

    again = collection.ingest(root)
    assert again.chunks_embedded == 0
    assert again.chunks_written == 0
    good = {Path(f.path).name: f.status for f in again.files if Path(f.path).name not in expected}
    assert set(good.values()) == {"unchanged"} and len(good) == 6
    assert names(again) == expected  # broken files are retried and fail the same way
    assert collection.stats()["documents"] == before["documents"]
    assert collection.stats()["chunks"] == before["chunks"]


def test_touching_a_file_without_changing_it_embeds_nothing(collection, tmp_path):
    root = tmp_path / "corpus"
    root.mkdir()
    f = root / "lenses.md"
    f.write_text(GOOD_MD)
    collection.ingest(root)
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    report = collection.ingest(root)
    assert [r.status for r in report.files] == ["unchanged"]
    assert report.chunks_embedded == 0


def _sectioned(n: int, changed: int | None = None) -> str:
    parts = ["# Keepers' Log\n"]
    for i in range(n):
        body = " ".join(f"Entry {i}.{j}: the lamp at station {i} was trimmed and the log was written up."
                        for j in range(12))
        if i == changed:
            body = body.replace(f"Entry {i}.5: the lamp", f"Entry {i}.5: a gannet struck the lamp")
        parts.append(f"## Station {i}\n\n{body}\n")
    return "\n".join(parts)


def test_changing_one_paragraph_reembeds_only_that_files_changed_chunks(collection, tmp_path):
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "log.md").write_text(_sectioned(6))
    (root / "other.md").write_text(GOOD_MD)
    (root / "notes.txt").write_text(GOOD_TXT)
    first = collection.ingest(root)
    log_chunks = next(f.chunks for f in first.files if f.path.endswith("log.md"))
    assert log_chunks >= 6
    assert collection.search("gannet", mode="bm25") == []

    (root / "log.md").write_text(_sectioned(6, changed=3))
    report = collection.ingest(root)
    statuses = {Path(f.path).name: f.status for f in report.files}
    assert statuses == {"log.md": "updated", "other.md": "unchanged", "notes.txt": "unchanged"}
    assert 0 < report.chunks_embedded <= 2 < log_chunks
    [log] = [f for f in report.files if f.path.endswith("log.md")]
    assert log.embedded == report.chunks_embedded
    hits = collection.search("gannet struck the lamp", mode="bm25")
    assert hits and hits[0].chunk.heading_path == ("Keepers' Log", "Station 3")
    assert collection.stats()["documents"] == 3
    assert collection.stats()["chunks"] == first.chunks_written


def test_a_file_that_becomes_corrupt_keeps_its_previous_documents(collection, tmp_path, make_pdf):
    root = tmp_path / "corpus"
    root.mkdir()
    pdf = make_pdf(root / "semaphore.pdf", [("Semaphore Towers", ["Chappe telegraph towers relayed messages."])])
    good_bytes = pdf.read_bytes()
    (root / "notes.txt").write_text(GOOD_TXT)
    collection.ingest(root)
    assert sources(collection.search("Chappe telegraph towers", k=1)) == ["semaphore.pdf"]

    pdf.write_bytes(good_bytes[: len(good_bytes) // 3])  # truncated: no longer a readable PDF
    report = collection.ingest(root)
    assert names(report) == {"semaphore.pdf": "corrupt"}
    assert sources(collection.search("Chappe telegraph towers", k=1)) == ["semaphore.pdf"]
    assert collection.stats()["documents"] == 2
    assert collection.stats()["failed_files"] == 1

    pdf.write_bytes(good_bytes)  # repaired: back to ok, nothing re-embedded
    report = collection.ingest(root)
    assert report.ok
    assert report.chunks_embedded == 0
    assert collection.stats()["failed_files"] == 0


def test_prune_removes_the_documents_of_deleted_files(collection, tmp_path, make_jsonl):
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    (root / "lenses.md").write_text(GOOD_MD)
    (root / "sub" / "chronometer.txt").write_text(GOOD_TXT)
    make_jsonl(root / "records.jsonl", [{"_id": "kelp", "text": "Kelp forests shelter fish."},
                                        {"_id": "gull", "text": "Herring gulls nest on ledges."}])
    collection.ingest(root)
    assert collection.stats()["documents"] == 4

    (root / "sub" / "chronometer.txt").unlink()
    (root / "records.jsonl").unlink()
    kept = collection.ingest(root)  # without prune, documents of deleted files stay
    assert kept.documents_removed == 0
    assert collection.stats()["documents"] == 4

    report = collection.ingest(root, prune=True)
    assert report.documents_removed == 3
    assert names(report, "removed") == {"chronometer.txt": "removed", "records.jsonl": "removed"}
    stats = collection.stats()
    assert stats["documents"] == 1 and stats["files"] == 1
    assert all(h.source.endswith("lenses.md") for h in collection.search("marine chronometer longitude", k=5))
    for query in ("kelp forests", "herring gulls"):
        assert collection.search(query, mode="bm25") == [], query
    assert collection.search("Harrison chronometer", mode="bm25") == []


def test_a_record_removed_from_a_jsonl_file_is_removed_from_the_collection(collection, tmp_path, make_jsonl):
    root = tmp_path / "corpus"
    root.mkdir()
    path = root / "records.jsonl"
    make_jsonl(path, [{"_id": "kelp", "text": "Kelp forests shelter fish."},
                      {"_id": "gull", "text": "Herring gulls nest on ledges."}])
    collection.ingest(root)
    make_jsonl(path, [{"_id": "kelp", "text": "Kelp forests shelter fish."}])
    report = collection.ingest(root)
    assert report.documents_removed == 1
    assert report.chunks_embedded == 0  # the kept record did not change
    assert collection.stats()["documents"] == 1
    assert collection.search("herring gulls", mode="bm25") == []


def test_identical_files_at_two_paths_are_two_documents_embedded_once(collection, tmp_path):
    root = tmp_path / "corpus"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    (root / "a" / "lenses.md").write_text(GOOD_MD)
    shutil.copy(root / "a" / "lenses.md", root / "b" / "lenses.md")
    report = collection.ingest(root)
    assert report.ok and report.count("new") == 2
    assert report.chunks_written == 2 * report.chunks_embedded > 0  # same passage text, one vector
    assert collection.stats()["documents"] == 2
    hits = collection.search("Fresnel lens narrow beam", k=5)
    assert len({h.chunk.text for h in hits}) == len(hits)  # duplicates collapsed in results
    assert hits[0].source.endswith("lenses.md")
    # deleting one copy leaves the other searchable
    assert collection.delete(str(root / "a" / "lenses.md")) == 1
    hits = collection.search("Fresnel lens narrow beam", k=1)
    assert hits and hits[0].source == str((root / "b" / "lenses.md").resolve())
