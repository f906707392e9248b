"""FolderSource and `watch`: a folder followed exactly, kept current within seconds by filesystem events or polling."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.sources.checks import assert_no_stale_chunks, by_status, held

from ragworks.errors import SourceUnavailable
from ragworks.sources.config import SourceList, SourceSpec
from ragworks.sources.folder import FolderSource
from ragworks.sources.git import GitSource
from ragworks.sources.sync import SyncOutcome, sync_collection
from ragworks.sources.watch import Watcher

PICKUP_BOUND_S = 20.0  # generous: the shared 2-core machine; bench/watch_latency.py measures the real figure


def wait_until(check: Callable[[], bool], what: str, timeout_s: float = PICKUP_BOUND_S) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if check():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"{what} not picked up within {timeout_s} s")


def test_folder_sync_follows_and_outage_deletes_nothing(collection, tmp_path: Path) -> None:
    root = tmp_path / "share"
    (root / "team").mkdir(parents=True)
    (root / "team" / "oncall.md").write_text("# On call\n\nThe pager rotates every Tuesday at noon.\n")
    (root / "old.txt").write_text("The walrus printer on floor two is retired.\n")
    (root / "keep.md").write_text("# Keep\n\nThe canteen opens at eight.\n")
    (root / "skip.log").write_text("not a document\n")
    source = FolderSource(root, exclude=["*.log"])
    path = lambda rel: str(root / rel)  # noqa: E731
    assert by_status(collection.sync(source)) == {"new": {path("team/oncall.md"), path("old.txt"), path("keep.md")}}

    (root / "team" / "oncall.md").write_text("# On call\n\nThe pager rotates every Friday at noon.\n")
    (root / "old.txt").unlink()
    (root / "new.md").write_text("# New\n\nThe bicycle shed moved behind the library.\n")
    second = collection.sync(source)
    assert by_status(second) == {"updated": {path("team/oncall.md")}, "new": {path("new.md")},
                                 "unchanged": {path("keep.md")}, "removed": {path("old.txt")}}
    assert {f.path: f.embedded for f in second.files}[path("keep.md")] == 0
    assert set(held(collection)) == {path("team/oncall.md"), path("keep.md"), path("new.md")}
    assert_no_stale_chunks(collection, "walrus")
    assert_no_stale_chunks(collection, "tuesday")

    before = held(collection)
    root.rename(tmp_path / "unmounted")  # a drive that is not mounted must not read as "everything deleted"
    with pytest.raises(SourceUnavailable):
        collection.sync(source)
    assert held(collection) == before
    root.mkdir()  # its empty mount point is back, the drive is not: an empty listing deletes nothing either
    with pytest.raises(SourceUnavailable, match="lists nothing"):
        collection.sync(source)
    assert held(collection) == before


def test_ingest_prune_leaves_source_documents_alone(collection, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "a.md").write_text("# A\n\nThe gondola runs hourly.\n")
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["-c", "user.name=t", "-c", "user.email=t@e", "commit",
                                                              "-qm", "x"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)
    collection.sync(GitSource(str(repo)))
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "n.md").write_text("# N\n\nA note.\n")
    collection.ingest(folder)
    (folder / "n.md").unlink()
    report = collection.ingest(folder, prune=True)
    assert report.count("removed") == 1  # the vanished file; not the Git document, whose key is no path
    assert list(held(collection)) == [GitSource(str(repo)).key_for("a.md")]


@pytest.mark.parametrize("events", [True, False], ids=["events", "polling"])
def test_watch_picks_up_new_changed_deleted(collection, tmp_path: Path, events: bool) -> None:
    root = tmp_path / "watched"
    root.mkdir()
    (root / "first.md").write_text("# First\n\nThe first note is about herons.\n")
    SourceList(collection.path).add(SourceSpec(name="notes", kind="folder", location=str(root), interval_s=3600))
    outcomes: list[SyncOutcome] = []
    stop = threading.Event()
    watcher = Watcher(collection, SourceList(collection.path).load(), outcomes.append, events=events, poll_s=0.5)
    thread = threading.Thread(target=watcher.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_until(lambda: str(root / "first.md") in held(collection), "the initial sync")
        (root / "second.md").write_text("# Second\n\nOtters build no dams.\n")
        wait_until(lambda: str(root / "second.md") in held(collection), "a new file")
        (root / "first.md").write_text("# First\n\nThe first note is now about cranes.\n")
        wait_until(lambda: "cranes" in held(collection).get(str(root / "first.md"), ""), "a changed file")
        os.remove(root / "second.md")
        wait_until(lambda: str(root / "second.md") not in held(collection), "a deleted file")
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert all(o.ok for o in outcomes)
    assert set(held(collection)) == {str(root / "first.md")}
    assert_no_stale_chunks(collection, "herons")


def test_sync_collection_runs_every_configured_source(collection, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x.md").write_text("# X\n\nThe x file.\n")
    (b / "y.md").write_text("# Y\n\nThe y file.\n")
    sources = SourceList(collection.path)
    sources.add(SourceSpec(name="a", kind="folder", location=str(a)))
    sources.add(SourceSpec(name="b", kind="folder", location=str(b)))
    sources.add(SourceSpec(name="gone", kind="folder", location=str(tmp_path / "missing")))
    outcomes = sync_collection(collection, retries=0)
    assert [(o.name, o.ok) for o in outcomes] == [("a", True), ("b", True), ("gone", False)]
    assert outcomes[0].counts()["changed"] == 1 and "not a directory" in outcomes[2].error
    assert set(held(collection)) == {str(a / "x.md"), str(b / "y.md")}


def test_watch_outage_deletes_nothing_and_recovers(collection, tmp_path: Path) -> None:
    root = tmp_path / "mounted"
    root.mkdir()
    (root / "a.md").write_text("# A\n\nThe cormorant dries its wings on the pier.\n")
    # a vanished root sends no event: the interval sync (every second here) is what notices it
    spec = SourceSpec(name="drive", kind="folder", location=str(root), interval_s=1)
    outcomes: list[SyncOutcome] = []
    stop = threading.Event()
    thread = threading.Thread(target=Watcher(collection, [spec], outcomes.append).run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_until(lambda: str(root / "a.md") in held(collection), "the initial sync")
        root.rename(tmp_path / "away")  # the drive is unmounted: events fire, the sync fails, nothing is deleted
        wait_until(lambda: any(not o.ok for o in outcomes), "the outage")
        assert set(held(collection)) == {str(root / "a.md")}
        root.mkdir()  # remounted: a new directory (inode) with the same file; the retry syncs and watches it afresh
        shutil.copy2(tmp_path / "away" / "a.md", root / "a.md")
        wait_until(lambda: outcomes[-1].ok, "the recovery")
        spec.interval_s = 3600  # from the next sync on, only events can bring b.md in: the folder is watched anew
        time.sleep(1.5)
        (root / "b.md").write_text("# B\n\nThe pelican sleeps on the buoy.\n")
        wait_until(lambda: str(root / "b.md") in held(collection), "a new file after the outage")
    finally:
        stop.set()
        thread.join(timeout=10)
    assert set(held(collection)) == {str(root / "a.md"), str(root / "b.md")}
