"""The `ragworks` command as a user runs it: a real subprocess, real model, no server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
RAGWORKS = [sys.executable, "-m", "ragworks.cli"]


def run(*args: str, data_dir: Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RAGWORKS_DATA_DIR": str(data_dir), "COLUMNS": "200"}
    return subprocess.run([*RAGWORKS, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def test_ingest_search_ask_stats_list_delete_round_trip(tmp_path, sample_corpus):
    corpus = tmp_path / "corpus"
    shutil.copytree(sample_corpus, corpus)
    data = tmp_path / "data"

    first = run("ingest", str(corpus), "-c", "demo", data_dir=data)
    assert first.returncode == 0, first.stderr
    assert "ingest summary" in first.stdout and "30" in first.stdout
    assert "chunks/s" in first.stderr, "the progress bar shows the rate"

    again = run("ingest", str(corpus), "-c", "demo", "--json", data_dir=data)
    summary = json.loads(again.stdout)
    assert summary["unchanged"] == 30 and summary["chunks_embedded"] == 0

    found = json.loads(run("search", "Harrison H4 Jamaica", "-c", "demo", "--json", "-k", "3", data_dir=data).stdout)
    assert found[0]["source"].endswith("longitude-and-the-marine-chronometer.pdf") and found[0]["page"] == 2

    asked = run("ask", "Who invented the Fresnel lens?", "-c", "demo", "--llm", "extractive", data_dir=data)
    assert asked.returncode == 0, asked.stderr
    assert "Augustin-Jean Fresnel" in asked.stdout and "[1]" in asked.stdout
    assert "Sources" in asked.stdout and "fresnel-lens.md" in asked.stdout and "cited" in asked.stdout
    answer = json.loads(run("ask", "Who invented the Fresnel lens?", "-c", "demo", "--llm", "extractive", "--json",
                            data_dir=data).stdout)
    assert answer["citations"] and answer["citations"][0]["source"].endswith("fresnel-lens.md")

    stats = json.loads(run("stats", "-c", "demo", "--json", data_dir=data).stdout)
    assert stats["documents"] == 30 and stats["vectors"] == stats["chunks"] > 30

    listed = json.loads(run("list", "-c", "demo", "--json", data_dir=data).stdout)
    assert len(listed) == 30

    deleted = run("delete", str(corpus / "fresnel-lens.md"), "-c", "demo", data_dir=data)
    assert deleted.returncode == 0 and "deleted 1" in deleted.stdout
    after = json.loads(run("search", "Fresnel lens inventor", "-c", "demo", "--json", data_dir=data).stdout)
    assert all(not h["source"].endswith("fresnel-lens.md") for h in after)

    (corpus / "tides.md").unlink()
    pruned = json.loads(run("ingest", str(corpus), "-c", "demo", "--prune", "--json", data_dir=data).stdout)
    assert pruned["removed"] == 1 and pruned["new"] == 1  # tides.md pruned; fresnel-lens.md comes back


def test_errors_are_one_line_without_traceback(tmp_path):
    missing = run("search", "anything", "-c", "nope", data_dir=tmp_path)
    assert missing.returncode != 0
    assert "error:" in missing.stderr and "Traceback" not in missing.stderr + missing.stdout
    bad_path = run("ingest", str(tmp_path / "does-not-exist"), data_dir=tmp_path)
    assert bad_path.returncode != 0 and "error:" in bad_path.stderr and "Traceback" not in bad_path.stderr
    bad_mode = run("search", "x", "--mode", "fuzzy", data_dir=tmp_path)
    assert bad_mode.returncode != 0 and "Traceback" not in bad_mode.stderr
