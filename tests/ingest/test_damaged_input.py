"""Damaged input loses as little as possible: a few hundred malformed files through the real pipeline (real model,
real SQLite/FAISS), each ingested or reported with a reason, and the one good fact among them still answerable.

Also the single cases: damaged UTF-8 read with replacements, HTML nested thousands deep, dangling links, FIFOs,
paths that are missing or cannot be listed or read (the last as a real permission failure, even as root).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.ingest.malformed_corpus import CANARY_FACT, CANARY_FILE, CANARY_QUESTION, write_malformed_corpus

from ragworks.errors import BinaryFile, DecodeError
from ragworks.ingest.decoding import decode_text

REASONS = {"unsupported-format", "empty", "corrupt", "encrypted", "binary", "undecodable", "too-large", "missing",
           "unreadable", "not-a-file"}
# What must come through whatever the seed: text that is still text, and entries that lead to good files.
MUST_INGEST = {"good", "bit-flipped utf-8", "mixed encodings", "legacy encoding", "stray NUL", "huge line",
               "deeply nested html", "nested tables", "link to a good file", "jsonl with a bad line",
               "ragged markdown table"}


def relative(report, root: Path) -> dict[str, object]:
    return {os.path.relpath(f.path, root.resolve()): f for f in report.files}


def test_a_malformed_corpus_is_ingested_or_reported_file_by_file_and_the_canary_still_answers(collection, tmp_path):
    corpus = write_malformed_corpus(tmp_path / "corpus", seed=17)
    assert len(corpus.entries) > 250

    report = collection.ingest(corpus.root)  # must not raise

    files = relative(report, corpus.root)
    assert sorted(files) == sorted(corpus.entries)  # every entry once: nothing silently skipped
    assert len(report.files) == len(corpus.entries)
    for rel, f in files.items():
        category = corpus.entries[rel]
        if f.status == "failed":
            assert f.reason in REASONS, (rel, f.reason, f.error)
            assert f.error and "Traceback" not in f.error, (rel, f.error)
            assert category not in MUST_INGEST, (rel, category, f.error)
        else:
            assert f.status == "new" and f.documents >= 1, (rel, f.status)
    for rel, reason in corpus.specials.items():
        assert files[rel].reason == reason, (rel, files[rel].error)
    assert "dangling symbolic link" in files["links/dangling-0.md"].error

    flipped = [f for rel, f in files.items() if corpus.entries[rel] == "bit-flipped utf-8"]
    assert len(flipped) == 50 and all(f.status == "new" for f in flipped)
    assert sum(any("replaced with U+FFFD" in w for w in f.warnings) for f in flipped) >= 15  # others: ASCII into ASCII

    failed = len(report.failed)
    assert 60 < failed < len(corpus.entries) - 80, failed  # the broken ones fail, the readable rest does not
    assert collection.stats()["failed_files"] == failed

    hits = collection.search(CANARY_QUESTION, k=3)
    assert CANARY_FACT in hits[0].chunk.text
    assert Path(hits[0].source).name in (CANARY_FILE, "to-canary.md")
    answer = collection.ask(CANARY_QUESTION, k=3)
    assert "HALCYON-SEVEN" in answer.text and answer.citations

    again = collection.ingest(corpus.root)  # the second pass retries the failures, and they fail the same way
    assert again.chunks_embedded == 0
    assert {r: f.reason for r, f in relative(again, corpus.root).items() if f.status == "failed"} == \
           {r: f.reason for r, f in files.items() if f.status == "failed"}


# --- single cases --------------------------------------------------------------------------------------------------


def test_damaged_utf8_is_read_with_its_bad_bytes_replaced_and_a_warning():
    text = "# Fog signals\n\nThe diaphone — a “groaning” horn — sounded every 90 seconds.\n" * 20
    data = bytearray(text.encode())
    data[100] ^= 0x80
    data[900] = 0xFF
    warnings: list[str] = []
    decoded = decode_text(bytes(data), "fog.md", warnings)
    assert decoded.count("\ufffd") >= 2 and "“groaning”" in decoded
    assert len(decoded) >= len(text) - 4
    assert warnings and warnings[0].startswith("fog.md: ") and "replaced with U+FFFD" in warnings[0]


def test_legacy_text_and_binaries_are_still_told_apart_from_damaged_utf8():
    warnings: list[str] = []
    french = "Le café de la gare était fermé; les élèves ont mangé une crème brûlée à côté du théâtre. " * 3
    assert decode_text(french.encode("cp1252"), "a.txt", warnings) == french  # 6% bad bytes: another encoding
    assert warnings == []
    assert decode_text(b"plain ascii with one stray\x00byte" + b" more text" * 200, "n.txt", warnings).count(
        "\ufffd") == 1
    assert "NUL" in warnings[0]
    with pytest.raises(BinaryFile):
        decode_text(b"ELF\x00\x01\x02" * 100, "bin.txt")
    with pytest.raises(DecodeError):
        decode_text(bytes(range(0x80, 0x100)) * 4, "garbled.txt")


def test_html_nested_thousands_deep_is_read_without_recursion(load, tmp_path):
    path = tmp_path / "deep.html"
    path.write_text("<html><body>" + "<div><span>" * 5000 + "The deepest paragraph survives.</body></html>")
    [doc], _ = load(path)
    assert doc.text.strip() == "The deepest paragraph survives."


def test_a_dangling_link_and_a_fifo_are_reported_and_the_rest_ingested(collection, tmp_path):
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "good.md").write_text("# Buoys\n\nA can buoy marks the port side of a channel.\n")
    (root / "dangling-link.md").symlink_to(tmp_path / "gone.md")
    os.mkfifo(root / "pipe.txt")  # reading it would block forever
    report = collection.ingest(root)
    reasons = {Path(f.path).name: (f.reason, f.error) for f in report.failed}
    assert reasons == {
        "dangling-link.md": ("missing", f"dangling-link.md: dangling symbolic link (to {tmp_path / 'gone.md'})"),
        "pipe.txt": ("not-a-file", "pipe.txt: a FIFO, not a regular file"),
    }
    assert [Path(f.path).name for f in report.files if f.status == "new"] == ["good.md"]
    assert collection.search("can buoy port side", k=1)[0].source.endswith("good.md")

    named = collection.ingest(root / "dangling-link.md")  # named on the command line: reported the same way
    assert [(Path(f.path).name, f.reason) for f in named.files] == [("dangling-link.md", "missing")]


def test_a_path_that_does_not_exist_is_reported_by_the_pipeline(collection, tmp_path):
    from ragworks.ingest.pipeline import discover

    (tmp_path / "good.md").write_text("Fine.")
    found = discover([tmp_path / "good.md", tmp_path / "typo"])
    assert found.files == [(tmp_path / "good.md").resolve()]
    assert [(p.name, e.reason, str(e)) for p, e in found.problems] == [
        ("typo", "missing", f"{tmp_path / 'typo'}: no such file or directory")]


def test_a_file_that_vanishes_after_listing_is_reported_missing(collection, tmp_path, monkeypatch):
    from ragworks.ingest import pipeline

    root = tmp_path / "corpus"
    root.mkdir()
    (root / "a.md").write_text("# A\n\nThe first note is about tides.\n")
    (root / "b.md").write_text("# B\n\nThe second note is about gales.\n")
    real_discover = pipeline.discover

    def discover_then_delete(*args, **kwargs):  # b.md is listed, then deleted before it is read
        found = real_discover(*args, **kwargs)
        (root / "b.md").unlink()
        return found

    monkeypatch.setattr(pipeline, "discover", discover_then_delete)
    report = collection.ingest(root)
    results = {Path(f.path).name: f for f in report.files}
    assert (results["b.md"].reason, results["b.md"].error) == ("missing", "b.md: gone before it could be read")
    assert results["a.md"].status == "new"


def _without_root_privileges() -> list[str] | None:
    """A command prefix under which root obeys file permissions (no DAC override), or [] when not root."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search"] if setpriv else None


@pytest.mark.slow
def test_cli_reports_unreadable_files_and_unlisted_directories_and_goes_on(tmp_path):
    prefix = _without_root_privileges()
    if prefix is None:
        pytest.skip("running as root without util-linux setpriv: chmod 000 cannot make a file unreadable to root")
    root = tmp_path / "in"
    (root / "locked-dir").mkdir(parents=True)
    (root / "good.md").write_text("# Fog Bells\n\nFog bells were rung by clockwork when the light was hidden.\n")
    (root / "locked.md").write_text("# Secret\n\nNot for reading.\n")
    (root / "locked-dir" / "inside.md").write_text("# Inside\n\nUnlisted.\n")
    (root / "dangling-link.md").symlink_to(tmp_path / "nowhere.md")
    (root / "locked.md").chmod(0)
    (root / "locked-dir").chmod(0)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAGWORKS_")}
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", NO_COLOR="1")
        ragworks = str(Path(sys.executable).with_name("ragworks"))
        proc = subprocess.run([*prefix, ragworks, "ingest", "in", "--data-dir", "data", "--json"], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=300, check=False)
    finally:
        (root / "locked.md").chmod(0o644)
        (root / "locked-dir").chmod(0o755)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    summary = json.loads(proc.stdout)
    failures = {Path(f["path"]).name: f["reason"] for f in summary["failures"]}
    assert failures == {"locked.md": "unreadable", "locked-dir": "unreadable", "dangling-link.md": "missing"}
    assert (summary["new"], summary["kinds"]) == (1, {"text": 1})
