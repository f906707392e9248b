"""`Collection` on the PostgreSQL backend (Settings.store_backend = "postgres"): the public API, per tenant.

Skipped until Settings has `store_backend` (the Collection wiring is a separate change).
"""

from __future__ import annotations

import uuid

import pytest

from ragworks.config import Settings

pytestmark = pytest.mark.skipif("store_backend" not in Settings.model_fields,
                                reason="Settings has no store_backend yet")


def _settings(pg_dsn: str, tmp_path, tenant: str, collection: str) -> Settings:
    return Settings(data_dir=tmp_path, collection=collection, llm="extractive", store_backend="postgres",
                    postgres_dsn=pg_dsn, tenant=tenant)  # type: ignore[call-arg]


def test_collection_api_on_postgres_is_scoped_to_its_tenant(pg_dsn, tmp_path, embedder):
    from ragworks.collection import Collection
    from ragworks.errors import CollectionNotFound, DocumentNotFound

    name = f"col-{uuid.uuid4().hex[:8]}"
    sa, sb = _settings(pg_dsn, tmp_path, "acme", name), _settings(pg_dsn, tmp_path, "globex", name)
    with pytest.raises(CollectionNotFound):
        Collection.open(settings=sa, create=False, embedder=embedder, llm=None)
    a = Collection.open(settings=sa, embedder=embedder, llm=None)
    b = Collection.open(name, settings=sa, tenant="globex", embedder=embedder, llm=None)  # a server's way
    assert (a.tenant, b.tenant) == ("acme", "globex")
    try:
        assert not a.exists
        a.add_text("# Keys\n\nRotate the signing keys every ninety days.", source="keys.md")
        b.add_text("# Keys\n\nGlobex never rotates its keys.", source="keys.md")
        assert a.exists and a.stats()["documents"] == 1 and a.stats()["backend"] == "postgres"
        for mode in ("dense", "bm25", "hybrid"):
            hits = a.search("How often are the keys rotated?", mode=mode, k=3)
            assert [h.source for h in hits] == ["keys.md"] and "ninety" in hits[0].chunk.text, mode
        top = a.search("rotate signing keys", mode="hybrid", k=1)[0]
        assert top.dense_rank == 1 and top.lexical_rank == 1
        answer = a.ask("How often are the signing keys rotated?")
        assert "ninety" in answer.text and answer.citations
        assert [d.source for d in a.documents()] == ["keys.md"]
        assert a.delete("keys.md") == 1
        with pytest.raises(DocumentNotFound):
            a.delete("keys.md")
        assert b.document("keys.md")[1].startswith("# Keys\n\nGlobex")
        reopened = Collection.open(settings=sb, create=False, embedder=embedder, llm=None)
        assert reopened.search("rotate keys", mode="bm25")[0].source == "keys.md"
    finally:
        for col in (a, b):
            if col.exists:
                col.store.drop()  # type: ignore[attr-defined]
            col.close()
