"""The `ragworks` command on bad input, run as a real subprocess: exit codes, a readable report, no traceback."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

RAGWORKS = Path(sys.executable).with_name("ragworks")

pytestmark = pytest.mark.slow


def run_cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGWORKS_") and k not in ("COLUMNS", "LINES")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", NO_COLOR="1")
    return subprocess.run([str(RAGWORKS), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def assert_no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    for stream in (proc.stdout, proc.stderr):
        assert "Traceback" not in stream, stream
        assert 'File "' not in stream, stream


@pytest.fixture
def one_good_one_corrupt(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    root.mkdir()
    (root / "good.md").write_text("# Fog Bells\n\nFog bells were rung by clockwork when the light was hidden.\n")
    (root / "bad.pdf").write_bytes(random.Random(5).randbytes(3000).replace(b"%PDF", b"XXXX"))
    return root


def test_cli_ingest_with_a_corrupt_file_exits_1_and_names_it_without_a_traceback(tmp_path, one_good_one_corrupt):
    proc = run_cli("ingest", "in", "--data-dir", "data", cwd=tmp_path)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert_no_traceback(proc)
    out = proc.stdout
    assert "ingest summary" in out
    header = next(line for line in out.splitlines() if "files" in line and "new" in line)
    row = out.splitlines()[out.splitlines().index(header) + 2]  # header, rule, values
    cells = [c.strip() for c in row.replace("│", "|").split("|")]
    assert cells[:5] == ["2", "1", "0", "0", "1"]  # files, new, updated, unchanged, failed
    assert "ingested: 1 text document\n" in out  # what went in, per kind
    assert "failed files" in out
    failed_row = next(line for line in out.splitlines() if "bad.pdf" in line)
    assert "corrupt" in failed_row
    assert "good.md" not in out  # only failures are listed by name
    assert (tmp_path / "data" / "default").is_dir()

    # the same run again as JSON: the good file is unchanged, the broken one fails again, still exit 1
    proc = run_cli("ingest", "in", "--data-dir", "data", "--json", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert_no_traceback(proc)
    summary = json.loads(proc.stdout)
    assert (summary["unchanged"], summary["failed"], summary["chunks_embedded"]) == (1, 1, 0)
    assert [(Path(f["path"]).name, f["reason"]) for f in summary["failures"]] == [("bad.pdf", "corrupt")]


def test_cli_search_on_a_missing_collection_is_one_clear_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_cli("search", "x", "--data-dir", str(empty), cwd=tmp_path)
    assert proc.returncode != 0
    assert_no_traceback(proc)
    assert proc.stdout == ""
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines[0].startswith("error: ")
    assert sum(ln.startswith("error:") for ln in lines) == 1
    message = " ".join(" ".join(lines).split())
    assert "no collection 'default'" in message and "ragworks ingest" in message
    assert not (empty / "default" / "ragworks.sqlite3").exists()  # searching creates no collection


def test_cli_error_message_is_a_single_line_even_when_long(tmp_path):
    empty = tmp_path / ("a-rather-long-directory-name-for-the-data" * 2)
    empty.mkdir()
    proc = run_cli("search", "x", "--data-dir", str(empty), cwd=tmp_path)
    assert proc.returncode != 0
    assert len([ln for ln in proc.stderr.splitlines() if ln.strip()]) == 1, proc.stderr
