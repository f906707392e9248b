"""GitSource against a real repository made with the git CLI: a branch, file globs, commit + path on documents."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from tests.sources.checks import assert_no_stale_chunks, by_status, held

from ragworks.errors import SourceUnavailable
from ragworks.sources.git import GitSource
from ragworks.sources.sync import sync_source


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                          check=True, capture_output=True, text=True)
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    r = tmp_path / "docs-repo"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    (r / "guide").mkdir()
    (r / "guide" / "install.md").write_text("# Install\n\nRun the installer with the quartz flag to set up.\n")
    (r / "guide" / "backup.md").write_text("# Backups\n\nBackups run nightly and are kept for thirty days.\n")
    (r / "notes.txt").write_text("The marmalade pipeline is deprecated and will be removed.\n")
    (r / "build.py").write_text("print('not documentation')\n")
    git(r, "add", ".")
    git(r, "commit", "-qm", "first")
    # a branch the source must ignore
    git(r, "checkout", "-qb", "draft")
    (r / "guide" / "draft.md").write_text("# Draft\n\nUnreleased zeppelin feature.\n")
    git(r, "add", ".")
    git(r, "commit", "-qm", "draft")
    git(r, "checkout", "-q", "main")
    return r


def test_sync_follows_branch_adds_changes_deletes(collection, repo: Path) -> None:
    source = GitSource(repo.as_uri(), branch="main", include=["*.md", "*.txt"],
                       cache_dir=collection.path / "source-cache")  # file:// URL: cloned like a remote
    first = collection.sync(source)
    key = source.key_for
    assert by_status(first) == {"new": {key("guide/install.md"), key("guide/backup.md"), key("notes.txt")}}
    commit1 = git(repo, "rev-parse", "main")
    docs = {d.source: d for d in collection.documents()}
    assert docs[key("guide/install.md")].metadata["commit"] == commit1
    assert docs[key("guide/install.md")].metadata["path"] == "guide/install.md"
    assert not any("draft" in k or "build.py" in k for k in docs)  # other branch, excluded glob

    (repo / "guide" / "install.md").write_text("# Install\n\nRun the installer with the obsidian flag instead.\n")
    git(repo, "rm", "-q", "notes.txt")
    (repo / "faq.md").write_text("# FAQ\n\nThe tangerine server answers on port 9.\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "second")
    fetched: list[str] = []
    real_fetch = source.fetch
    source.fetch = lambda item: (fetched.append(item.key), real_fetch(item))[1]  # type: ignore[method-assign]

    second = collection.sync(source)
    assert by_status(second) == {"new": {key("faq.md")}, "updated": {key("guide/install.md")},
                                 "unchanged": {key("guide/backup.md")}, "removed": {key("notes.txt")}}
    assert sorted(fetched) == sorted([key("faq.md"), key("guide/install.md")])  # unchanged blob never read
    per_file = {f.path: f.embedded for f in second.files}
    assert per_file[key("guide/backup.md")] == 0
    assert second.chunks_embedded == per_file[key("faq.md")] + per_file[key("guide/install.md")] > 0

    texts = held(collection)
    assert set(texts) == {key("guide/install.md"), key("guide/backup.md"), key("faq.md")}
    assert "obsidian" in texts[key("guide/install.md")] and "quartz" not in texts[key("guide/install.md")]
    assert_no_stale_chunks(collection, "marmalade")
    assert_no_stale_chunks(collection, "quartz")
    hit = collection.search("which flag does the installer take", k=1)[0]
    assert hit.source == key("guide/install.md")
    assert hit.metadata["commit"] == git(repo, "rev-parse", "main") and hit.metadata["path"] == "guide/install.md"
    answer = collection.ask("Which port does the tangerine server answer on?")
    assert answer.citations and answer.citations[0].source == key("faq.md")

    third = collection.sync(source)
    assert third.chunks_embedded == 0 and by_status(third) == {"unchanged": set(texts)}


def test_unreachable_repository_deletes_nothing(collection, repo: Path, tmp_path: Path) -> None:
    source = GitSource(str(repo), branch="main", include=["*.md"])  # a path: read in place
    collection.sync(source)
    before = held(collection)
    assert len(before) == 2
    moved = tmp_path / "elsewhere"
    repo.rename(moved)  # the repository vanished (unmounted disk, moved)
    with pytest.raises(SourceUnavailable):
        collection.sync(source)
    slept: list[float] = []
    outcome = sync_source(collection, source, retries=2, backoff_s=0.5, sleep=slept.append)
    assert not outcome.ok and outcome.attempts == 3 and slept == [0.5, 1.0]
    assert held(collection) == before
    missing_branch = GitSource(str(moved), branch="no-such-branch")
    with pytest.raises(SourceUnavailable):
        collection.sync(missing_branch)
    assert held(collection) == before
