"""The in-memory BM25 leg: same scores as a from-scratch index, kept in step with writes, deletes and compaction."""

from __future__ import annotations

import random
import sqlite3
import threading

import numpy as np
import pytest

from ragworks.collection import Collection
from ragworks.config import Settings
from ragworks.lexical import bm25 as memory_bm25
from ragworks.lexical.analysis import fts5_like_analyzer
from ragworks.lexical.bm25 import BM25Index, SegmentedBM25
from ragworks.store.base import Filter
from ragworks.store.embedded import DB_NAME, EmbeddedStore

WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau "
         "upsilon phi chi psi omega vitamin d t cells type 2 diabetes insulin").split()


def _texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 30))) for _ in range(n)]


def _reference(ids: list[int], texts: list[str]) -> BM25Index:
    ref = BM25Index(analyzer=fts5_like_analyzer())
    ref.add(ids, texts)
    return ref


def _same(a: list[tuple[int, float]], b: list[tuple[int, float]]) -> None:
    assert [i for i, _ in a] == [i for i, _ in b]
    np.testing.assert_allclose([s for _, s in a], [s for _, s in b], rtol=1e-5)


def test_base_plus_delta_scores_exactly_as_one_index_built_from_scratch():
    texts = _texts(300)
    ids = list(range(1, 301))
    seg = SegmentedBM25()
    seg.build(ids[:250], texts[:250])
    seg.add(ids[250:], texts[250:])  # stays in the delta: far below the merge threshold
    assert "delta=50" in repr(seg)
    ref = _reference(ids, texts)
    for q in ("vitamin d insulin", "t cells", "omega omega psi", "type 2 diabetes", "nothing-matches"):
        _same(seg.search(q, 20), ref.search(q, 20))


def test_deleted_rows_never_come_back_and_a_merge_restores_exact_scores(monkeypatch):
    monkeypatch.setattr(memory_bm25, "MERGE_MIN_ROWS", 10**9)  # keep the delta: merge only when told below
    texts = _texts(200, seed=1)
    ids = list(range(1, 201))
    seg = SegmentedBM25()
    seg.build(ids, texts)
    gone = set(range(1, 201, 3))
    seg.remove(gone)
    for q in ("alpha beta", "insulin", "cells"):
        assert not gone & {i for i, _ in seg.search(q, 200)}
    seg._merge()  # what crossing the deleted-fraction threshold does
    keep = [i for i in ids if i not in gone]
    ref = _reference(keep, [texts[i - 1] for i in keep])
    for q in ("alpha beta", "insulin", "cells", "type 2"):
        _same(seg.search(q, 50), ref.search(q, 50))


def test_replacing_a_row_and_the_allowed_filter():
    seg = SegmentedBM25()
    seg.build([1, 2], ["quartz crystals", "granite quarries"])
    seg.add([1], ["basalt columns"])  # replaces row 1 of the base
    assert seg.search("quartz", 5) == []
    assert [i for i, _ in seg.search("basalt granite", 5)] == [1, 2]  # equal scores: smaller id first
    assert [i for i, _ in seg.search("basalt granite", 5, allowed=np.array([2]))] == [2]
    assert len(seg) == 2


def _open(tmp_path, embedder, **kw) -> Collection:
    return Collection.open("c", settings=Settings(data_dir=tmp_path, llm="extractive", **kw), embedder=embedder,
                           llm=None)


def test_collection_bm25_in_memory_matches_fts5_on_top_hits_and_follows_writes(tmp_path, embedder):
    col = _open(tmp_path, embedder, lexical_backend="memory")
    col.add_text("# Lighthouse\n\nThe lighthouse keeper trimmed the wick every night.", source="a.md")
    col.add_text("# Spice\n\nZanzibar clove plantations export spice worldwide.", source="b.md")
    assert col.search("zanzibar cloves", mode="bm25")[0].source == "b.md"
    store = col.store
    assert isinstance(store, EmbeddedStore) and store._bm25 is not None
    col.add_text("# Spice 2\n\nCloves from Zanzibar and Pemba dominate the clove market.", source="c.md")
    assert {h.source for h in col.search("zanzibar cloves", mode="bm25")} == {"b.md", "c.md"}
    col.delete("b.md")
    assert [h.source for h in col.search("zanzibar cloves", mode="bm25")] == ["c.md"]
    fts = _open(tmp_path, embedder, lexical_backend="fts5")
    assert [h.source for h in fts.search("zanzibar cloves", mode="bm25")] == ["c.md"]
    assert fts.store._bm25 is None


def test_another_process_writing_and_compacting_the_log_triggers_a_rebuild_not_stale_results(tmp_path, embedder):
    reader = _open(tmp_path, embedder, lexical_backend="memory")
    reader.add_text("Basalt columns form when lava cools slowly.", source="a.md")
    assert [h.source for h in reader.search("basalt lava", mode="bm25")] == ["a.md"]
    writer = _open(tmp_path, embedder, lexical_backend="memory")  # another store on the same directory
    writer.add_text("Obsidian is volcanic glass from lava that cooled fast.", source="b.md")
    writer.delete("a.md")  # delete flushes: the log entries the reader has not replayed are compacted away
    db = sqlite3.connect(tmp_path / "c" / DB_NAME)
    assert db.execute("SELECT count(*) FROM vector_log").fetchone()[0] == 0
    db.close()
    assert [h.source for h in reader.search("basalt obsidian lava", mode="bm25")] == ["b.md"]


def test_auto_uses_fts5_beyond_the_memory_limit_and_filters_work_in_memory(tmp_path, embedder):
    col = _open(tmp_path, embedder, lexical_memory_max_chunks=1)
    col.add_text("Granite quarries in Vermont.", source="g.md", metadata={"state": "VT"})
    col.add_text("Granite domes in Yosemite.", source="y.md", metadata={"state": "CA"})
    assert len(col.search("granite", mode="bm25")) == 2
    assert col.store._bm25 is None  # 2 chunks > 1: FTS5 answered
    mem = _open(tmp_path, embedder)
    hits = mem.search("granite", mode="bm25", filters=Filter(metadata={"state": "CA"}))
    assert [h.source for h in hits] == ["y.md"] and mem.store._bm25 is not None


def test_searches_in_parallel_with_writes_see_only_committed_chunks(tmp_path, embedder):
    col = _open(tmp_path, embedder, lexical_backend="memory")
    col.add_text("seed passage about turbines", source="seed.md")
    errors: list[BaseException] = []
    stop = threading.Event()

    def search() -> None:
        try:
            while not stop.is_set():
                for h in col.search("turbines wind", mode="hybrid", k=5):
                    assert "turbines" in h.chunk.text
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=search) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for i in range(8):
            col.add_text(f"wind turbines number {i} spin", source=f"t{i}.md")
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors
    assert len(col.search("turbines spin", mode="bm25", k=20)) == 9  # the seed matches "turbines"


@pytest.mark.parametrize("backend", ["memory", "fts5"])
def test_closing_the_store_closes_pooled_readers(tmp_path, embedder, backend):
    col = _open(tmp_path, embedder, lexical_backend=backend)
    col.add_text("a passage about tides", source="t.md")
    col.search("tides")
    store = col.store
    assert isinstance(store, EmbeddedStore) and store._readers
    idle = list(store._readers)
    col.close()
    for conn in idle:
        with pytest.raises(sqlite3.ProgrammingError):
            conn.execute("SELECT 1")
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        store.lexical_search("tides", 5)


def test_a_burst_of_readers_leaves_at_most_the_idle_pool_open(tmp_path, embedder):
    from ragworks.store.embedded import READ_POOL_IDLE

    col = _open(tmp_path, embedder)
    col.add_text("a passage about estuaries", source="e.md")
    store = col.store
    assert isinstance(store, EmbeddedStore)
    n = READ_POOL_IDLE + 4
    barrier = threading.Barrier(n)
    opened: list[sqlite3.Connection] = []

    def hold() -> None:
        with store._reader() as conn:
            opened.append(conn)
            barrier.wait(10)  # all n readers are out of the pool at once

    threads = [threading.Thread(target=hold) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len({id(c) for c in opened}) == n
    assert len(store._readers) == READ_POOL_IDLE
    closed = [c for c in opened if c not in store._readers]
    with pytest.raises(sqlite3.ProgrammingError):
        closed[0].execute("SELECT 1")
