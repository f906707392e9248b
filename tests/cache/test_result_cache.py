"""The result cache with the real model and real stores: repeated searches are served from it, any write
invalidates it (embedded, PostgreSQL, Qdrant), tenants and principals never share entries, and the Redis backend
(a real redis-server) is shared by separate cache instances as it is by processes."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.realservers import postgres_server, redis_server

from ragworks.cache import MemoryBackend, RedisBackend, ResultCache, lookups
from ragworks.cache.codec import dumps, loads
from ragworks.collection import Collection
from ragworks.config import Settings
from ragworks.store.base import Filter

TIDES = ("Tides are the rise and fall of sea levels caused by the gravitational pull of the Moon and the Sun. "
         "Spring tides happen at new and full moon.")
LENS = "Augustin Fresnel designed a compound lens of concentric prisms so that lighthouse beams reach far out to sea."


@pytest.fixture(scope="module")
def pg_dsn() -> Iterator[str]:
    with postgres_server() as dsn:
        yield dsn


def open_collection(tmp_path: Path, embedder, backend: str = "embedded", *, tenant: str = "tenant-a",
                    name: str | None = None, dsn: str | None = None, **overrides) -> Collection:
    extra: dict = {"store_backend": backend}
    if backend == "postgres":
        extra["postgres_dsn"] = dsn
    if backend == "qdrant":
        extra["qdrant_path"] = tmp_path / "qdrant"
    settings = Settings(data_dir=tmp_path / "data" / tenant, llm="extractive", **extra, **overrides)
    return Collection.open(name or f"c-{uuid.uuid4().hex[:8]}", settings=settings, embedder=embedder, llm=None,
                           tenant=tenant)


def delta(before: dict[str, int]) -> dict[str, int]:
    now = lookups()
    return {k: now[k] - before[k] for k in now}


def test_repeated_search_is_served_from_the_cache_without_retrieving(tmp_path, embedder):
    col = open_collection(tmp_path, embedder)
    col.add_text(TIDES, source="tides.md")
    col.add_text(LENS, source="lens.md")
    first = col.search("what makes the sea rise and fall", k=2)
    calls = []
    store = col.store
    original = store.dense_search
    store.dense_search = lambda *a, **kw: calls.append(1) or original(*a, **kw)  # type: ignore[method-assign]
    before = lookups()
    again = col.search("what makes the sea rise and fall", k=2)
    assert delta(before) == {"hit": 1, "miss": 0} and calls == []
    assert [h.to_dict() for h in again] == [h.to_dict() for h in first]
    assert again[0].source == "tides.md"
    before = lookups()
    col.search("what makes the sea rise and fall", k=1)  # another k is another entry
    col.search("what makes the sea rise and fall", k=2, mode="bm25")
    assert delta(before) == {"hit": 0, "miss": 2} and len(calls) == 1
    col.close()


@pytest.mark.parametrize("backend", ["embedded", "postgres", "qdrant"])
def test_a_write_invalidates_cached_searches(tmp_path, embedder, backend, request):
    dsn = request.getfixturevalue("pg_dsn") if backend == "postgres" else None
    col = open_collection(tmp_path, embedder, backend, dsn=dsn)
    try:
        col.add_text(LENS, source="lens.md")
        assert [h.source for h in col.search("sea level tides moon", k=3)] == ["lens.md"]
        col.add_text(TIDES, source="tides.md")  # a write: the next identical search must not be served stale
        before = lookups()
        hits = col.search("sea level tides moon", k=3)
        assert delta(before)["miss"] == 1 and hits[0].source == "tides.md"
        col.delete("tides.md")
        before = lookups()
        assert [h.source for h in col.search("sea level tides moon", k=3)] == ["lens.md"]
        assert delta(before)["miss"] == 1
    finally:
        if backend != "embedded":
            col.store.drop()  # type: ignore[attr-defined]
        col.close()


def test_cached_answer_is_never_served_after_the_cited_document_changed(tmp_path, embedder):
    col = open_collection(tmp_path, embedder)
    col.add_text(TIDES, source="tides.md")
    col.add_text(LENS, source="lens.md")
    question = "What causes tides?"
    first = col.ask(question)
    assert first.citations and first.citations[0].source == "tides.md"
    before = lookups()
    replay = col.ask(question)
    assert delta(before)["hit"] == 1
    assert replay.to_dict() == first.to_dict()  # the whole answer round-trips: citations, sentences, sources
    changed = "Tides are caused by the wind pushing water against the coast, say the harbour masters."
    col.add_text(changed, source="tides.md")
    before = lookups()
    after = col.ask(question)
    assert delta(before)["miss"] >= 1
    assert "wind" in after.text and all("Moon" not in c.quote for c in after.citations)
    col.close()


def test_streamed_answer_is_cached_once_complete_and_replayed(tmp_path, embedder):
    col = open_collection(tmp_path, embedder)
    col.add_text(TIDES, source="tides.md")
    stream = col.ask_stream("What causes tides?")
    text = "".join(stream)
    before = lookups()
    replay = col.ask_stream("What causes tides?")
    assert delta(before)["hit"] == 1
    assert "".join(replay) == stream.answer.text == replay.answer.text and text  # type: ignore[union-attr]
    assert [h.source for h in replay.sources] == [h.source for h in stream.sources]
    col.close()


def test_two_tenants_with_the_same_collection_name_never_share_entries(tmp_path, embedder, pg_dsn):
    a = open_collection(tmp_path, embedder, "postgres", tenant="tenant-a", name="docs", dsn=pg_dsn)
    b = open_collection(tmp_path, embedder, "postgres", tenant="tenant-b", name="docs", dsn=pg_dsn)
    try:
        a.add_text(TIDES, source="notes.md")
        b.add_text(LENS, source="notes.md")
        hits_a = a.search("tell me about the notes", k=1)
        before = lookups()
        hits_b = b.search("tell me about the notes", k=1)
        assert delta(before) == {"hit": 0, "miss": 1}
        assert hits_a[0].chunk.text == TIDES and hits_b[0].chunk.text == LENS
    finally:
        a.store.drop()  # type: ignore[attr-defined]
        b.store.drop()  # type: ignore[attr-defined]
        a.close()
        b.close()


def test_two_principals_never_share_entries(tmp_path, embedder):
    col = open_collection(tmp_path, embedder, "qdrant")
    try:
        col.add_text("The finance bonus pool for 2027 is four million euros.", source="bonus.md",
                     metadata={"readers": ["group:finance"]})
        col.add_text("The canteen opens at eight and serves lunch until two.", source="canteen.md")
        ann = Filter(readers=("user:ann", "group:finance"))
        bob = Filter(readers=("user:bob", "group:sales"))
        assert "bonus.md" in {h.source for h in col.search("bonus pool 2027", k=5, filters=ann)}
        before = lookups()
        seen_by_bob = {h.source for h in col.search("bonus pool 2027", k=5, filters=bob)}
        assert delta(before) == {"hit": 0, "miss": 1} and seen_by_bob == {"canteen.md"}
        assert {h.source for h in col.search("bonus pool 2027", k=5, filters=Filter(readers=()))} == {"canteen.md"}
    finally:
        col.store.drop()  # type: ignore[attr-defined]
        col.close()


def test_semantic_cache_serves_a_near_identical_query_only_when_on(tmp_path, embedder):
    col = open_collection(tmp_path, embedder, cache_semantic=True, cache_max_entries=100)
    col.add_text(TIDES, source="tides.md")
    col.add_text(LENS, source="lens.md")
    col.search("What causes the tides?", k=2)
    before = lookups()
    col.search("what causes the tides?", k=2)  # other characters, same embedding (the model is uncased)
    col.search("Who designed the lighthouse lens?", k=2)
    assert delta(before) == {"hit": 1, "miss": 1}
    plain = open_collection(tmp_path, embedder, name=col.path.name)  # semantic off (the default)
    before = lookups()
    plain.search("what causes the tides?", k=2)
    assert delta(before) == {"hit": 0, "miss": 1}
    col.close()
    plain.close()


def test_memory_backend_bounds_entries_bytes_and_age():
    lru = MemoryBackend(max_entries=2, max_bytes=10_000, ttl_s=None)
    lru.set("a", "1")
    lru.set("b", "2")
    assert lru.get("a") == "1"  # a is now the most recent
    lru.set("c", "3")
    assert (lru.get("b"), lru.get("a"), lru.get("c"), len(lru)) == (None, "1", "3", 2)
    small = MemoryBackend(max_entries=100, max_bytes=25)
    small.set("x", "é" * 10)  # 20 bytes
    small.set("y", "z" * 10)
    assert small.get("x") is None and small.get("y") == "z" * 10 and small.bytes == 10
    small.set("huge", "z" * 26)
    assert small.get("huge") is None and small.get("y") == "z" * 10
    aging = MemoryBackend(ttl_s=0.05)
    aging.set("k", "v")
    assert aging.get("k") == "v"
    time.sleep(0.08)
    assert aging.get("k") is None and len(aging) == 0


def test_redis_backend_is_shared_between_cache_instances(tmp_path, embedder):
    with redis_server(tmp_path / "redis") as url:
        col = open_collection(tmp_path, embedder, cache_backend="redis", cache_redis_url=url)
        col.add_text(TIDES, source="tides.md")
        hits = col.search("moon and tides", k=1)
        # another process: its own ResultCache over the same Redis, with the same key
        other = ResultCache(RedisBackend(url))
        scope = col._cache_scope("search", Filter(), k=1, mode=col.settings.search_mode, rerank=True)
        before = lookups()
        shared = other.get(scope, "moon and tides")
        assert delta(before)["hit"] == 1 and [h.to_dict() for h in shared] == [h.to_dict() for h in hits]
        col.add_text(LENS, source="lens.md")  # a write moves the version: the other instance's key misses
        scope = col._cache_scope("search", Filter(), k=1, mode=col.settings.search_mode, rerank=True)
        assert other.get(scope, "moon and tides") is None
        stored = RedisBackend(url, ttl_s=60)
        stored.set("probe", dumps(hits))
        assert [h.to_dict() for h in loads(stored.get("probe") or "")] == [h.to_dict() for h in hits]
        assert 0 < stored._redis.pttl(stored.prefix + "probe") <= 60_000
        col.close()


def test_unreachable_redis_degrades_to_no_cache(tmp_path, embedder):
    from tests.realservers import free_port

    col = open_collection(tmp_path, embedder, cache_backend="redis",
                          cache_redis_url=f"redis://127.0.0.1:{free_port()}/0")
    col.add_text(TIDES, source="tides.md")
    before = lookups()
    assert col.search("moon and tides", k=1)[0].source == "tides.md"
    assert delta(before) == {"hit": 0, "miss": 1}
    col.close()
