"""The CLI: `ragworks source add|list|remove` and `ragworks sync`, with clear errors for what is missing."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from ragworks.cli import app

runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_source_add_sync_list_remove(tmp_path: Path) -> None:
    data, folder = str(tmp_path / "data"), tmp_path / "share"
    folder.mkdir()
    (folder / "a.md").write_text("# A\n\nThe ferry leaves at seven.\n")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 not really")

    code, out = run("sync", "notes", "--data-dir", data)
    assert code != 0
    code, out = run("source", "add", "notes", str(folder), "--data-dir", data)
    assert code == 0, out
    code, out = run("source", "add", "notes", str(folder), "--data-dir", data)
    assert code != 0  # the same name twice
    code, out = run("source", "list", "notes", "--data-dir", data, "--json")
    assert [(s["name"], s["kind"]) for s in json.loads(out)] == [("share", "folder")]

    code, out = run("sync", "notes", "--data-dir", data, "--json")
    assert code == 1, out  # like `ragworks ingest`: an item failed
    (outcome,) = json.loads(out)
    assert outcome["ok"] and (outcome["seen"], outcome["changed"], outcome["failed"]) == (2, 1, 1)
    assert outcome["report"]["failures"][0]["path"].endswith("broken.pdf")  # one bad file, the rest goes on

    code, out = run("sync", "notes", "--data-dir", data, "--json")
    assert json.loads(out)[0]["unchanged"] == 1 and json.loads(out)[0]["embedded"] == 0

    code, out = run("source", "remove", "notes", "share", "--data-dir", data)
    assert code == 0
    code, out = run("source", "list", "notes", "--data-dir", data, "--json")
    assert json.loads(out) == []


def test_source_kinds_are_guessed_from_locations() -> None:
    from ragworks.sources.config import guess_kind

    assert guess_kind("s3://bucket/prefix") == "s3"
    assert guess_kind("https://docs.example.org/start") == "web"
    assert guess_kind("https://git.example.org/team/docs.git") == "git"
    assert guess_kind("git+https://git.example.org/team/docs") == "git"
    assert guess_kind("/srv/shared") == "folder"
