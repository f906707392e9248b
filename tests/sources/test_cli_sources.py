"""The CLI: `ragworks source add|list|remove` and `ragworks sync`, with clear errors for what is missing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ragworks.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def one_model_load(monkeypatch: pytest.MonkeyPatch, embedder: Any) -> None:
    """Each command would load the model again; the session's copy of the same packaged model is used instead."""
    monkeypatch.setattr("ragworks.embed.make_embedder", lambda settings: embedder)


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


def test_ingest_reads_a_source_location_once(tmp_path: Path) -> None:
    import subprocess

    data, repo, notes = str(tmp_path / "data"), tmp_path / "repo", tmp_path / "notes"
    repo.mkdir()
    notes.mkdir()
    (repo / "a.md").write_text("# A\n\nThe gondola runs hourly.\n")
    (repo / "b.md").write_text("# B\n\nThe funicular runs daily.\n")
    (notes / "n.md").write_text("# N\n\nA local note.\n")

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@e", *args], check=True,
                       capture_output=True)

    git("init", "-q", "-b", "main")
    git("add", ".")
    git("commit", "-qm", "one")
    location = "git+" + repo.as_uri()
    code, out = run("ingest", location, str(notes), "-c", "mixed", "--data-dir", data, "--json")
    assert code == 0, out
    assert json.loads(out)["new"] == 3
    git("rm", "-q", "b.md")
    git("commit", "-qm", "two")
    code, out = run("ingest", location, "-c", "mixed", "--data-dir", data, "--json")  # without --prune: kept
    assert json.loads(out)["removed"] == 0
    code, out = run("ingest", location, "-c", "mixed", "--data-dir", data, "--json", "--prune")
    report = json.loads(out)
    assert (report["removed"], report["unchanged"], report["chunks_embedded"]) == (1, 1, 0)


def test_every_kind_is_a_source(tmp_path: Path) -> None:
    import subprocess

    from ragworks.ingest.source import Source
    from ragworks.sources.config import SourceSpec, make_source

    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "-C", str(repo), "init", "-q"], check=True)
    for kind, location in (("folder", str(tmp_path)), ("s3", "s3://bucket/prefix/"),
                           ("web", "http://127.0.0.1:9/start/"), ("git", str(repo))):
        source = make_source(SourceSpec(name=kind, kind=kind, location=location), cache_dir=tmp_path / "cache")
        try:
            assert isinstance(source, Source), kind
        finally:
            source.close()
