"""`ragworks pii scan` as a user runs it: a real subprocess over files and over a collection."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ragworks.collection import Collection
from ragworks.config import Settings

pytestmark = pytest.mark.slow

NOTE = "Call Ann Lee on +1 415-555-0199 or write to ann.lee@example.com.\nThe office is closed on Mondays.\n"


def run(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RAGWORKS_DATA_DIR": str(data_dir), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "ragworks.cli", "pii", "scan", *args], capture_output=True,
                          text=True, env=env, timeout=300)


def test_scan_reports_files_findings_without_values_and_names_a_broken_file(tmp_path):
    files = tmp_path / "in"
    files.mkdir()
    (files / "note.txt").write_text(NOTE)
    (files / "clean.md").write_text("# Hours\n\nThe office opens at nine.\n")
    (files / "broken.docx").write_bytes(b"PK\x03\x04 not really a docx")
    table = run(str(files), data_dir=tmp_path / "data")
    assert table.returncode == 0, table.stderr
    assert "3 document(s) scanned" not in table.stdout  # the broken file is reported, not counted as scanned
    assert "2 document(s) scanned, 1 with PII" in table.stdout and "EMAIL 1" in table.stdout
    assert "broken.docx" in table.stderr
    assert "ann.lee@example.com" not in table.stdout + table.stderr and "555-0199" not in table.stdout
    report = json.loads(run(str(files), "--json", data_dir=tmp_path / "data").stdout)
    note = next(d for d in report["documents"] if d["source"].endswith("note.txt"))
    assert {f["type"] for f in note["findings"]} == {"PERSON", "PHONE", "EMAIL"}
    assert all(f["line"] == 1 for f in note["findings"])
    assert [f["source"].endswith("broken.docx") for f in report["failed"]] == [True]


def test_scan_a_collection_and_the_usage_errors(tmp_path, embedder):
    settings = Settings(data_dir=tmp_path / "data", collection="notes", pii="off")
    with Collection.open(settings=settings, embedder=embedder, llm=None) as col:
        col.add_text(NOTE, source="note.txt")
    report = json.loads(run("-c", "notes", "--json", data_dir=tmp_path / "data").stdout)
    assert report["totals"] == {"EMAIL": 1, "PERSON": 1, "PHONE": 1}
    missing = run("-c", "nope", data_dir=tmp_path / "data")
    assert missing.returncode != 0 and "nope" in missing.stderr
    neither = run(data_dir=tmp_path / "data")
    assert neither.returncode != 0 and "PATH" in neither.stderr
