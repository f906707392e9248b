"""Versioned, atomic model switch: re-embed beside the active model, flip in one transaction, roll back, survive
`kill -9` mid re-embed."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from ragworks.collection import Collection
from ragworks.config import Settings
from ragworks.embed import versions
from ragworks.errors import ConfigError, TuneUnsupported
from ragworks.store.embedded import DB_NAME, EmbeddedStore
from ragworks.tune.run import check_supported
from ragworks.tune.switch import rollback, switch_to

from .conftest import install

pytestmark = pytest.mark.slow
BASE = "st:all-MiniLM-L6-v2"


def _vector_counts(path: Path) -> dict[str, int]:
    con = sqlite3.connect(path / DB_NAME, timeout=5)
    try:
        rows = con.execute("SELECT m.name, count(e.text_hash) FROM models m LEFT JOIN embeddings e ON e.model = m.id "
                           "GROUP BY m.id").fetchall()
    finally:
        con.close()
    return {str(r[0]): int(r[1]) for r in rows}


def _active(path: Path) -> str:
    con = sqlite3.connect(path / DB_NAME, timeout=5)
    try:
        return str(con.execute("SELECT name FROM models WHERE active = 1").fetchone()[0])
    finally:
        con.close()


def _search_with_defaults(settings: Settings, query: str) -> tuple[str, list[str]]:
    """(embedder name, sources of the dense top 5) as `ragworks search` would see them with default settings."""
    with Collection.open(settings=settings, create=False, llm=None) as col:
        hits = col.search(query, k=5, mode="dense")
        return col.embedder.name, [h.source for h in hits]


def test_switch_reembeds_beside_the_old_model_then_searches_use_the_new_one(
        make_collection: Callable[[], tuple[Path, Settings]], tuned_model: Path) -> None:
    path, settings = make_collection()
    model_dir = install(tuned_model, path)
    tuned_name = versions.model_name(settings, model_dir)
    chunks = _vector_counts(path)[BASE]

    report = switch_to(path, settings, model_dir)

    assert report.activated and report.embedded == chunks
    assert _active(path) == tuned_name
    assert _vector_counts(path) == {BASE: chunks, tuned_name: chunks}  # the old model's vectors stay for rollback
    name, sources = _search_with_defaults(settings, "who invented the rotating lens")
    assert name == tuned_name and len(sources) == 5
    store = EmbeddedStore(path, create=False)
    try:  # the dense index holds every chunk, with the tuned model's vectors
        store.sync_index()
        assert len(store.index) == chunks
        _, vecs = store._vectors_for([1, 2])
        base_view = EmbeddedStore(path, create=False)
        base_view.select_model(store.model_history()[0])
        _, base_vecs = base_view._vectors_for([1, 2])
        base_view.close()
        assert not np.allclose(vecs, base_vecs)
    finally:
        store.close()


def test_a_shared_base_model_embedder_still_opens_a_tuned_collection_with_its_tuned_model(
        make_collection: Callable[[], tuple[Path, Settings]], tuned_model: Path, embedder) -> None:
    # the server hands every collection one shared base-model embedder: a tuned collection must not refuse it
    path, settings = make_collection()
    switch_to(path, settings, install(tuned_model, path))
    with Collection.open(settings=settings, create=False, embedder=embedder, llm=None) as col:
        hits = col.search("who invented the rotating lens", k=3, mode="dense")
        assert col.embedder.name == _active(path) != embedder.name
        assert len(hits) == 3


def test_rollback_returns_to_the_previous_model_including_chunks_ingested_since(
        make_collection: Callable[[], tuple[Path, Settings]], tuned_model: Path, tmp_path: Path) -> None:
    path, settings = make_collection()
    model_dir = install(tuned_model, path)
    switch_to(path, settings, model_dir)
    extra = tmp_path / "extra.md"
    extra.write_text("# Tide tables\n\nHarbour masters print tide tables for every port along the coast.\n")
    with Collection.open(settings=settings, llm=None) as col:  # ingests with the tuned (active) model
        col.ingest(extra)

    report = rollback(path, settings)

    assert _active(path) == BASE and report.model_name == BASE
    assert report.embedded >= 1  # the chunk ingested under the tuned model got a base-model vector
    name, sources = _search_with_defaults(settings, "tide tables for every port")
    assert name == BASE and sources[0].endswith("extra.md")
    with pytest.raises(ConfigError, match="no previous model"):
        rollback(path, settings)


def test_an_incomplete_model_cannot_be_activated(make_collection: Callable[[], tuple[Path, Settings]]) -> None:
    path, _ = make_collection()
    store = EmbeddedStore(path, create=False)
    try:
        model_id = store.add_model("st:half-done", 384)
        rows = store.missing_model_vectors(model_id, limit=3)
        store.write_model_vectors(model_id, {h: np.ones(384, dtype=np.float32) for _, h, _ in rows})
        with pytest.raises(ValueError, match="lacks vectors"):
            store.build_model_index(model_id)
    finally:
        store.close()
    assert _active(path) == BASE


SWITCH = "import sys; from ragworks.tune.switch import main; sys.exit(main(sys.argv[1:]))"


def test_sigkill_mid_reembed_leaves_the_old_model_searchable_and_a_rerun_switches(
        make_collection: Callable[[], tuple[Path, Settings]], tuned_model: Path) -> None:
    path, settings = make_collection()
    model_dir = install(tuned_model, path)
    tuned_name = versions.model_name(settings, model_dir)
    chunks = _vector_counts(path)[BASE]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen([sys.executable, "-c", SWITCH, str(path), str(model_dir), "2"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            done = _vector_counts(path).get(tuned_name, 0)
        except sqlite3.OperationalError:
            done = 0
        if done >= 4:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the re-embed finished before it could be killed: make the collection bigger"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    partial = _vector_counts(path)[tuned_name]
    assert 0 < partial < chunks  # killed mid re-embed
    assert _active(path) == BASE
    name, sources = _search_with_defaults(settings, "fog signals in thick weather")
    assert name == BASE and len(sources) == 5  # still searchable, with the one complete model

    rerun = subprocess.run([sys.executable, "-c", SWITCH, str(path), str(model_dir)], env=env,
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"embedded {chunks - partial} " in rerun.stdout  # resumed: only what the killed run had not stored
    assert _active(path) == tuned_name
    name, sources = _search_with_defaults(settings, "fog signals in thick weather")
    assert name == tuned_name and len(sources) == 5


def test_remote_embedder_and_postgres_collections_are_refused_clearly(tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    EmbeddedStore(remote, model_name="openai:https://api.example/v1:text-embedding-3-small", dimension=8).close()
    with pytest.raises(TuneUnsupported, match="remote OpenAI-compatible embedder is out of scope"):
        check_supported(remote, Settings(data_dir=tmp_path))
    with pytest.raises(TuneUnsupported, match="embedded collections only"):
        check_supported(remote, Settings(data_dir=tmp_path, store_backend="postgres"))
