"""PostgresStore against a real PostgreSQL 18 + pgvector server, with the real embedding model."""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from ragworks.documents import Document, content_counts
from ragworks.errors import CollectionLocked, CollectionNotFound, DocumentNotFound, EmbedderMismatch
from ragworks.ingest.loaders import markdown_spans
from ragworks.ingest.pipeline import IngestPipeline
from ragworks.retrieve.fusion import reciprocal_rank_fusion
from ragworks.retrieve.hybrid import HybridRetriever
from ragworks.store.base import DocumentWrite, FileRecord, Filter, WriteBatch
from ragworks.store.postgres import PostgresStore, glob_to_regex, list_collections, tsquery_text

SAMPLE_FILES = [
    "fresnel-lens.md",
    "tides.md",
    "fog-signals.html",
    "flannan-isles-mystery.docx",
    "longitude-and-the-marine-chronometer.pdf",
    "guides/the-sextant.txt",
]


def add(store, embedder, chunker, source: str, text: str, **meta):
    doc = Document(source=source, text=text, title=source, metadata=meta, spans=markdown_spans(text))
    return IngestPipeline(store, embedder, chunker).add_documents([doc])


def search(store, embedder, query: str, mode: str = "hybrid", k: int = 5, flt: Filter | None = None):
    return HybridRetriever(store, embedder).search(query, k=k, mode=mode, flt=flt)  # type: ignore[arg-type]


WHERE = "tenant = %(tenant)s AND collection = %(collection)s"


def counts(store: PostgresStore) -> dict[str, int]:
    row = store._query(
        f"SELECT (SELECT count(*) FROM {{s}}.documents WHERE {WHERE}), "
        f"(SELECT coalesce(sum(chunks), 0) FROM {{s}}.documents WHERE {WHERE}), "
        f"(SELECT count(*) FROM {{s}}.chunks WHERE {WHERE}), "
        f"(SELECT count(*) FROM {{s}}.chunks WHERE {WHERE} AND embedding IS NOT NULL), "
        f"(SELECT count(*) FROM {{s}}.chunks WHERE {WHERE} AND tsv <> ''::tsvector), "
        f"(SELECT count(*) FROM {{s}}.embeddings WHERE {WHERE})")[0]
    return dict(zip(["documents", "doc_chunks", "chunks", "vectors", "lexical", "cached"], map(int, row),
                    strict=True))


def assert_bm25_stats_consistent(store: PostgresStore) -> None:
    """The maintained BM25 statistics equal a recount from the chunks."""
    kept = store._query(f"SELECT lexeme, df FROM {{s}}.lexicon WHERE {WHERE} AND df <> 0 ORDER BY lexeme")
    recount = store._query("SELECT u.lexeme, count(*) FROM {s}.chunks c, unnest(c.tsv) u WHERE "
                           "c.tenant = %(tenant)s AND c.collection = %(collection)s GROUP BY u.lexeme ORDER BY 1")
    assert kept == recount
    totals = store._query(f"SELECT n_chunks, total_len FROM {{s}}.collections WHERE {WHERE}")
    actual = store._query(f"SELECT count(*), coalesce(sum(length(tsv)), 0) FROM {{s}}.chunks WHERE {WHERE}")
    assert totals == actual


def snapshot(store: PostgresStore) -> dict[str, list]:
    """Every row of the collection except surrogate chunk ids and write timestamps."""
    q = store._query
    return {
        "documents": q(f"SELECT id, source, source_path, title, content_hash, metadata, page_starts, text, chunks "
                       f"FROM {{s}}.documents WHERE {WHERE} ORDER BY id"),
        "chunks": q(f"SELECT doc_id, ordinal, text, context, start_char, end_char, heading_path, page_start, "
                    f"page_end, tokens, text_hash, embedding::text, tsv::text FROM {{s}}.chunks WHERE {WHERE} "
                    "ORDER BY doc_id, ordinal"),
        "embeddings": q(f"SELECT model, text_hash, vector::text, created FROM {{s}}.embeddings WHERE {WHERE} "
                        "ORDER BY text_hash"),
        "files": q(f"SELECT path, size, mtime_ns, sha256, status, error, documents, chunks FROM {{s}}.files "
                   f"WHERE {WHERE} ORDER BY path"),
        "lexicon": q(f"SELECT lexeme, df FROM {{s}}.lexicon WHERE {WHERE} ORDER BY lexeme"),
        "stats": q(f"SELECT model_name, dimension, n_chunks, total_len FROM {{s}}.collections WHERE {WHERE}"),
    }


# --- pure helpers


def test_glob_to_regex_translates_wildcards_and_escapes_everything_else():
    import re

    cases = {
        "docs/*": ["docs/a.md", "docs/sub/b.pdf"],
        "docs/?.md": ["docs/a.md"],
        "a+b (1).md": ["a+b (1).md"],
        "[ab]*.txt": ["a.txt", "b1.txt"],
        "[!ab]*.txt": ["c.txt"],
        "x[": ["x["],
    }
    rejected = {
        "docs/*": ["doc/a.md", "xdocs/a"],
        "docs/?.md": ["docs/ab.md", "docs/a.mdx"],
        "a+b (1).md": ["aab (1).md", "a+b (1)xmd", "a+b 1.md"],
        "[ab]*.txt": ["c.txt"],
        "[!ab]*.txt": ["a.txt"],
        "x[": ["x"],
    }
    for glob, ok in cases.items():
        rx = glob_to_regex(glob)
        assert all(re.fullmatch(rx.strip("^$"), s) for s in ok), (glob, rx)
        assert not any(re.fullmatch(rx.strip("^$"), s) for s in rejected[glob]), (glob, rx)


def test_tsquery_text_is_an_or_of_bare_lexemes():
    assert tsquery_text('What is the "Fresnel" lens?') == "fresnel | lens"
    assert tsquery_text("a & b | !c (d) 'e':* <-> f\\g") == "b | c | d | e | f | g"  # operators never survive
    assert tsquery_text("the of") == "the | of"
    assert tsquery_text("  ?! ") == ""


def test_a_store_cannot_express_an_unscoped_or_other_tenant_query(make_store):
    store = make_store()
    with pytest.raises(ValueError, match="bound at construction"):
        store._params({"tenant": "tenant-b"})
    with pytest.raises(AssertionError, match="unscoped"):
        store._sql("SELECT id FROM {s}.chunks")
    with pytest.raises(AttributeError):
        store.tenant = "tenant-b"  # type: ignore[misc]


# --- write / search / delete / replace


def test_write_then_dense_lexical_and_hybrid_find_the_right_chunk(make_store, embedder, chunker):
    store = make_store()
    add(store, embedder, chunker, "lighthouse.md", "# Keeper\n\nThe lighthouse keeper trimmed the wick every night.")
    add(store, embedder, chunker, "spice.md", "# Spice\n\nZanzibar clove plantations export spice worldwide.")
    add(store, embedder, chunker, "bees.md", "# Bees\n\nBeekeepers harvest honey in late summer.")
    for mode in ("dense", "bm25", "hybrid"):
        hits = search(store, embedder, "Where do cloves grow?" if mode != "bm25" else "zanzibar cloves", mode)
        assert hits and hits[0].source == "spice.md", (mode, [h.source for h in hits])
        assert "Zanzibar" in hits[0].chunk.text
    qv = embedder.embed_queries(["honey harvest"])[0]
    fused = store.hybrid_search(qv, "honey harvest", 3)
    assert store.hits(fused[:1])[0].source == "bees.md"
    top = search(store, embedder, "honey harvest", "hybrid", k=1)[0]
    assert top.dense_rank == 1 and top.lexical_rank == 1 and top.dense_score == pytest.approx(
        float(embedder.embed_documents([top.chunk.index_text])[0] @ qv), abs=1e-5)
    c = counts(store)
    assert c["documents"] == 3 and c["chunks"] == c["doc_chunks"] == c["vectors"] == c["lexical"] == c["cached"] == 3


def test_deleting_a_document_removes_its_chunks_vectors_and_lexical_rows(make_store, embedder, chunker):
    store = make_store(cache_grace_s=0)
    add(store, embedder, chunker, "keep.md", "# Keep\n\nThe lighthouse keeper trimmed the wick every night.")
    add(store, embedder, chunker, "gone.md", "# Gone\n\nZanzibar clove plantations export spice worldwide.")
    assert search(store, embedder, "zanzibar cloves", "bm25")[0].source == "gone.md"
    assert store.delete_documents(store.resolve_documents("gone.md")) == 1
    assert store.delete_documents(["no-such-id"]) == 0
    assert search(store, embedder, "zanzibar cloves", "bm25") == []
    assert all(h.source == "keep.md" for h in search(store, embedder, "zanzibar cloves", "dense"))
    c = counts(store)
    assert (c["documents"], c["chunks"], c["vectors"], c["lexical"]) == (1, 1, 1, 1)
    assert c["cached"] == 2  # the cached vector outlives the chunk until flush
    store.flush()
    assert counts(store)["cached"] == 1
    with pytest.raises(DocumentNotFound):
        store.get_document("gone.md")
    assert_bm25_stats_consistent(store)
    add(store, embedder, chunker, "another.md", "# Another\n\nA second document to page past.")
    assert [d.source for d in store.list_documents(limit=1)] == ["another.md"]
    assert [d.source for d in store.list_documents(limit=5, after="another.md")] == ["keep.md"]


def test_replacing_a_document_leaves_no_stale_rows(make_store, embedder, chunker):
    store = make_store()
    long_text = "# A\n\n" + "\n\n".join(f"Paragraph {i} about quartz crystals and mineral {i}." * 6 for i in range(8))
    add(store, embedder, chunker, "a.md", long_text)
    before = counts(store)
    assert before["chunks"] > 2
    add(store, embedder, chunker, "a.md", "# A\n\nRevised statement about granite quarries.")
    c = counts(store)
    assert (c["documents"], c["chunks"], c["doc_chunks"], c["vectors"], c["lexical"]) == (1, 1, 1, 1, 1)
    assert search(store, embedder, "quartz crystals", "bm25") == []
    hits = search(store, embedder, "granite quarries", "dense", k=5)
    assert len(hits) == 1 and "granite" in hits[0].chunk.text
    doc, text, chunks = store.get_document("a.md")
    assert doc.chunks == 1 and text.endswith("granite quarries.") and [c.ordinal for c in chunks] == [0]
    assert_bm25_stats_consistent(store)


def test_filters_restrict_every_leg_by_source_glob_and_metadata(make_store, embedder, chunker):
    store = make_store()
    add(store, embedder, chunker, "docs/a.md", "# A\n\nCopper wiring conducts electricity.", team="red", year=2024,
        public=True)
    add(store, embedder, chunker, "docs/b.md", "# B\n\nCopper pipes carry water.", team="blue", year=2023,
        public=False)
    add(store, embedder, chunker, "notes/c.md", "# C\n\nCopper roofs turn green.", team="red", year=2023,
        tags=["x", "y"])
    add(store, embedder, chunker, "docs_b/d+e (1).md", "# D\n\nCopper coins tarnish.", team="green")

    def sources(mode: str, flt: Filter) -> set[str]:
        return {h.source for h in search(store, embedder, "copper", mode, k=10, flt=flt)}

    for mode in ("dense", "bm25", "hybrid"):
        assert sources(mode, Filter(source_glob="docs/*")) == {"docs/a.md", "docs/b.md"}
        assert sources(mode, Filter(source_glob="docs?b/d+e (?).md")) == {"docs_b/d+e (1).md"}
        assert sources(mode, Filter(source_glob="docs.b/*")) == set()  # "." is literal
        assert sources(mode, Filter(metadata={"team": "red"})) == {"docs/a.md", "notes/c.md"}
        assert sources(mode, Filter(source_glob="docs/*", metadata={"team": "red", "year": 2024})) == {"docs/a.md"}
        assert sources(mode, Filter(metadata={"public": False})) == {"docs/b.md"}
        assert sources(mode, Filter(metadata={"tags": ["x", "y"]})) == {"notes/c.md"}
        assert sources(mode, Filter(metadata={"tags": ["x"]})) == set()  # equality, not containment
        assert sources(mode, Filter(metadata={"team": "purple"})) == set()
        doc_id = store.resolve_documents("notes/c.md")[0]
        assert sources(mode, Filter(doc_ids=(doc_id,))) == {"notes/c.md"}
        assert sources(mode, Filter(doc_ids=())) == set()
    qv = embedder.embed_queries(["copper"])[0]
    fused = store.hybrid_search(qv, "copper", 10, Filter(metadata={"team": "red"}))
    assert {h.source for h in store.hits(fused)} == {"docs/a.md", "notes/c.md"}
    assert sorted(store.list_documents(), key=lambda d: d.source)[0].metadata == {
        "team": "red", "year": 2024, "public": True}
    assert len(store.resolve_documents("docs/*")) == 2


def test_nul_characters_are_stored_without_moving_offsets(make_store, embedder, chunker):
    store = make_store()
    add(store, embedder, chunker, "nul.md", "# Nul\n\nA binary-ish line\x00 about walruses.")
    _, text, chunks = store.get_document("nul.md")
    assert text == "# Nul\n\nA binary-ish line\ufffd about walruses."
    assert text[chunks[0].start:chunks[0].end] == chunks[0].text
    assert search(store, embedder, "walruses", "bm25")[0].source == "nul.md"


# --- tenants, replicas, retries, locks


def test_tenants_never_see_or_touch_each_others_rows(make_store, pg_pool, embedder, chunker):
    name = f"shared-{uuid.uuid4().hex[:8]}"
    a = make_store("tenant-a", collection=name)
    b = make_store("tenant-b", collection=name)
    add(a, embedder, chunker, "handbook.md", "# Handbook\n\nTenant A: the vault code is amber falcon.")
    add(b, embedder, chunker, "handbook.md", "# Handbook\n\nTenant B: the vault code is cobalt otter.")
    add(b, embedder, chunker, "b-only.md", "# Otters\n\nThe otter sanctuary opens at dawn.")
    handbook_id = a.resolve_documents("handbook.md")[0]
    assert b.resolve_documents("handbook.md") == [handbook_id]  # same source → same document id in both

    for mode in ("dense", "bm25", "hybrid"):
        hits = search(a, embedder, "cobalt otter sanctuary vault", mode, k=10)
        assert [h.source for h in hits] in ([], ["handbook.md"]), mode
        assert all("cobalt" not in h.chunk.text and "otter" not in h.chunk.text for h in hits)
    qv = embedder.embed_queries(["otter sanctuary"])[0]
    b_rows = [cid for cid, _ in b.hybrid_search(qv, "otter sanctuary cobalt", 10)]
    assert len(b_rows) == 2
    a_rows = {cid for cid, _ in a.hybrid_search(qv, "otter sanctuary cobalt", 10)}
    assert a_rows and not a_rows & set(b_rows)
    assert a.hits([(cid, 1.0) for cid in b_rows]) == []  # B's chunk ids mean nothing to A
    assert [d.source for d in a.list_documents()] == ["handbook.md"]
    with pytest.raises(DocumentNotFound):
        a.get_document("b-only.md")
    assert "amber" in a.get_document("handbook.md")[1] and "cobalt" in b.get_document("handbook.md")[1]
    assert a.resolve_documents("*") == [handbook_id]
    b_hashes = [c.text_hash for c in b.get_document("b-only.md")[2]]
    assert a.cached_vectors(b_hashes) == set() and b.cached_vectors(b_hashes) == set(b_hashes)
    assert a.stats()["documents"] == 1 and b.stats()["documents"] == 2

    assert a.delete_documents(b.resolve_documents("b-only.md")) == 0
    assert a.delete_documents([handbook_id]) == 1  # A's copy only
    assert a.stats()["documents"] == 0
    assert b.stats()["documents"] == 2 and b.stats()["chunks"] == b.stats()["vectors"] == 2
    assert search(b, embedder, "cobalt otter vault code", "bm25")[0].source == "handbook.md"
    with a.write_lock(), b.write_lock():  # one lock per tenant + collection
        pass
    b_only = make_store("tenant-b", collection=f"b-only-{uuid.uuid4().hex[:8]}")
    assert name in list_collections(pg_pool, "tenant-a") and name in list_collections(pg_pool, "tenant-b")
    assert b_only.collection not in list_collections(pg_pool, "tenant-a")
    assert b_only.collection in list_collections(pg_pool, "tenant-b")


def test_a_retried_batch_leaves_exactly_the_same_rows(make_store, embedder, chunker):
    store = make_store()
    old = Document(source="old.md", text="# Old\n\nA document the batch deletes.")
    add(store, embedder, chunker, old.source, old.text)
    docs = [Document(source=f"f{i}.md", text=f"# F{i}\n\n" + f"Sentence {i} about tidal streams. " * 30,
                     title=f"F{i}", metadata={"i": i}) for i in range(3)]
    writes = [DocumentWrite(d, chunker.chunk(d)) for d in docs]
    hashes = list(dict.fromkeys(c.text_hash for w in writes for c in w.chunks))
    texts = {c.text_hash: c.index_text for w in writes for c in w.chunks}
    vectors = dict(zip(hashes, embedder.embed_documents([texts[h] for h in hashes]), strict=True))
    batch = WriteBatch(documents=writes, delete_doc_ids=[old.id], vectors=vectors)
    batch.files.append(FileRecord("/data/f.md", 10, 20, "abc", documents=3, chunks=len(batch)))
    store.write(batch)
    first = snapshot(store)
    assert len(first["documents"]) == 3 and len(first["chunks"]) == len(batch) > 3
    store.write(batch)  # the task is retried after its first run committed
    assert snapshot(store) == first

    replica = make_store(collection=store.collection)
    with ThreadPoolExecutor(4) as pool:  # a retry racing the original, on two "hosts"
        for f in [pool.submit(s.write, batch) for s in (store, replica, store, replica)]:
            f.result()
    assert snapshot(store) == first
    c = counts(store)
    assert c["chunks"] == c["vectors"] == c["lexical"] == len(batch)
    assert_bm25_stats_consistent(store)


def test_two_replicas_see_each_others_writes_immediately(make_store, pg_dsn, embedder, chunker):
    name = f"replicated-{uuid.uuid4().hex[:8]}"
    one = make_store(collection=name, dsn=pg_dsn)  # each with its own pool, like two API processes
    two = make_store(collection=name, dsn=pg_dsn)
    add(one, embedder, chunker, "one.md", "# One\n\nTelescopes gather starlight with mirrors.")
    assert search(two, embedder, "telescopes mirrors", "dense")[0].source == "one.md"
    add(two, embedder, chunker, "two.md", "# Two\n\nBeekeepers harvest honey in late summer.")
    assert search(one, embedder, "honey harvest", "hybrid")[0].source == "two.md"
    assert two.delete_documents(two.resolve_documents("one.md")) == 1
    assert all(h.source != "one.md" for h in search(one, embedder, "telescopes mirrors", "dense"))
    assert one.stats()["documents"] == two.stats()["documents"] == 1


def test_write_lock_is_exclusive_across_store_objects_and_released_on_exit(make_store, pg_dsn):
    name = f"locked-{uuid.uuid4().hex[:8]}"
    one = make_store(collection=name)
    two = make_store(collection=name, dsn=pg_dsn)
    other = make_store(collection=name + "-other")
    with one.write_lock():
        with pytest.raises(CollectionLocked), two.write_lock(wait_s=0.3):
            pass
        with other.write_lock():
            pass
    got = threading.Event()

    def hold() -> None:
        with one.write_lock():
            got.set()
            time.sleep(0.5)

    t = threading.Thread(target=hold)
    t.start()
    got.wait(5)
    started = time.monotonic()
    with two.write_lock(wait_s=10):
        assert time.monotonic() - started >= 0.2  # waited for the holder
    t.join()


def test_model_is_recorded_and_a_mismatch_refused(make_store, pg_pool, embedder):
    store = make_store()
    reopened = PostgresStore(pg_pool, tenant=store.tenant, collection=store.collection, create=False)
    assert (reopened.model_name, reopened.dimension) == (embedder.name, embedder.dimension)
    with pytest.raises(EmbedderMismatch, match="all-MiniLM-L6-v2"):
        PostgresStore(pg_pool, tenant=store.tenant, collection=store.collection, model_name="st:other",
                      dimension=384)
    with pytest.raises(CollectionNotFound):
        PostgresStore(pg_pool, tenant=store.tenant, collection="never-created", create=False)
    with pytest.raises(CollectionNotFound):
        PostgresStore(pg_pool, tenant="tenant-z", collection=store.collection, create=False)


# --- the ingest pipeline and SQL fusion on the sample corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, pg_pool, embedder, sample_corpus):
    from ragworks.ingest.chunker import Chunker

    root = tmp_path_factory.mktemp("pg-corpus")
    for name in SAMPLE_FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(sample_corpus / name, root / name)
    store = PostgresStore(pg_pool, tenant="tenant-corpus", collection=f"sample-{uuid.uuid4().hex[:8]}",
                          model_name=embedder.name, dimension=embedder.dimension)

    def chunker() -> Chunker:
        return Chunker(embedder.count_tokens, model_max_tokens=embedder.max_tokens)

    pipeline = IngestPipeline(store, embedder, chunker)
    with store.write_lock(wait_s=5):
        report = pipeline.run([root])
    yield store, report, pipeline, root
    store.drop()


def test_ingest_pipeline_end_to_end_then_search(corpus, embedder):
    store, report, pipeline, root = corpus
    assert report.ok, report.to_dict()
    assert report.count("new") == len(SAMPLE_FILES) and report.chunks_written > 10
    stats = store.stats()
    assert stats["documents"] == len(SAMPLE_FILES) and stats["chunks"] == stats["vectors"] == report.chunks_written
    assert {r.path for r in store.file_records()} == {str((root / n).resolve()) for n in SAMPLE_FILES}
    for question, expected in [
        ("Who invented the Fresnel lens?", "fresnel-lens.md"),
        ("How much time did Harrison's H4 lose on its trial voyage to Jamaica?",
         "longitude-and-the-marine-chronometer.pdf"),
        ("Who were the three keepers who vanished from the Flannan Isles lighthouse in December 1900?",
         "flannan-isles-mystery.docx"),
    ]:
        for mode in ("dense", "bm25", "hybrid"):
            hits = search(store, embedder, question, mode, k=5)
            assert any(h.source.endswith(expected) for h in hits[:3]), (mode, [h.source for h in hits])
        assert search(store, embedder, question, "hybrid", k=1)[0].source.endswith(expected)
    pdf_hit = search(store, embedder, "H4 trial voyage Jamaica lost seconds", "hybrid", k=1)[0]
    assert pdf_hit.page == 2 and "5.1 seconds" in pdf_hit.chunk.text

    again = pipeline.run([root])  # nothing changed: every file skipped, nothing written
    assert again.count("unchanged") == len(SAMPLE_FILES) and again.chunks_written == 0
    tides = root / "tides.md"
    tides.write_text(tides.read_text() + "\n\n## Addendum\n\nThe bore of the Qiantang river is a tidal wave.\n")
    changed = pipeline.run([root])
    assert changed.count("updated") == 1 and changed.count("unchanged") == len(SAMPLE_FILES) - 1
    assert search(store, embedder, "Qiantang bore", "bm25", k=1)[0].source.endswith("tides.md")
    (root / "fog-signals.html").unlink()
    pruned = pipeline.run([root], prune=True)
    assert pruned.documents_removed == 1
    assert all(not h.source.endswith("fog-signals.html") for h in search(store, embedder, "fog horn siren", k=10))
    c = counts(store)
    assert c["chunks"] == c["doc_chunks"] == c["vectors"] == c["lexical"] == store.stats()["chunks"]
    assert_bm25_stats_consistent(store)


@pytest.mark.parametrize("flt", [None, Filter(source_glob="*.md"), Filter(metadata={"nope": 1})])
def test_sql_fusion_equals_python_reciprocal_rank_fusion(corpus, embedder, flt):
    store = corpus[0]
    for question in ["Who invented the Fresnel lens?", "tidal range spring neap", "sextant horizon angle sun",
                     "the of and"]:
        qv = embedder.embed_queries([question])[0]
        dense = store.dense_search(qv, 50, flt)
        lexical = store.lexical_search(question, 50, flt)
        expected = reciprocal_rank_fusion([dense, lexical], k=60)[:20]
        rows = store.hybrid_search_ranked(qv, question, 20, flt, rrf_k=60, candidates=50)
        assert [(r.row_id, r.score) for r in rows] == expected  # same ids, same order, bit-identical scores
        d_at = {cid: (rank, s) for rank, (cid, s) in enumerate(dense, 1)}
        l_at = {cid: (rank, s) for rank, (cid, s) in enumerate(lexical, 1)}
        for r in rows:
            assert (r.dense_rank, r.dense_score) == d_at.get(r.row_id, (None, None))
            assert (r.lexical_rank, r.lexical_score) == l_at.get(r.row_id, (None, None))
        if flt is not None and flt.metadata:
            assert rows == []


def test_hnsw_dense_leg_matches_exact_inner_product(corpus, embedder):
    store = corpus[0]
    rows = store._query(f"SELECT id, embedding FROM {{s}}.chunks WHERE {WHERE} ORDER BY id")
    ids = np.array([r[0] for r in rows])
    mat = np.stack([np.asarray(r[1].to_numpy() if hasattr(r[1], "to_numpy") else r[1], dtype=np.float32)
                    for r in rows])
    for question in ["Who invented the Fresnel lens?", "lighthouse keepers disappeared"]:
        qv = embedder.embed_queries([question])[0]
        got = store.dense_search(qv, 10)
        scores = mat @ qv
        order = np.argsort(-scores, kind="stable")[:10]
        assert [cid for cid, _ in got] == ids[order].tolist()
        assert np.allclose([s for _, s in got], scores[order], atol=1e-5)


def test_stats_report_the_backend_without_credentials(corpus):
    stats = corpus[0].stats()
    assert stats["backend"] == "postgres" and stats["tenant"] == "tenant-corpus"
    assert "@" not in stats["path"] and stats["path"].startswith("postgresql://")
    assert stats["disk_bytes"] > 0
    # per-kind counts summed in SQL agree with the Python definition over the same documents' metadata
    expected: Counter[str] = Counter()
    for (meta,) in corpus[0]._query(f"SELECT metadata FROM {{s}}.documents WHERE {WHERE}"):
        expected.update(content_counts(meta))
    assert stats["kinds"] == dict(sorted(expected.items())) and stats["kinds"]["text"] == stats["documents"]


def test_lexical_leg_is_okapi_bm25_over_the_stored_lexemes(corpus):
    """Scores equal a BM25 computed in Python from the same tsvectors (Lucene idf, k1 1.2, b 0.75)."""
    import math

    store = corpus[0]
    rows = store._query("SELECT c.id, length(c.tsv), u.lexeme, cardinality(u.positions) FROM {s}.chunks c, "
                        "unnest(c.tsv) u WHERE c.tenant = %(tenant)s AND c.collection = %(collection)s")
    dl: dict[int, int] = {}
    tf: dict[tuple[int, str], int] = {}
    df: dict[str, int] = {}
    for cid, length, lexeme, n in rows:
        dl[cid] = length
        tf[cid, lexeme] = n
        df[lexeme] = df.get(lexeme, 0) + 1
    n_docs, avgdl = len(dl), sum(dl.values()) / len(dl)
    for question in ["Who invented the Fresnel lens?", "spring tides and the moon", "sextant mirrors horizon"]:
        with store._pool.connection() as conn:
            qlex = conn.execute("SELECT tsvector_to_array(to_tsvector('english', %s))",
                                (tsquery_text(question).replace(" | ", " "),)).fetchone()[0]
        expected = {}
        for cid in dl:
            score = 0.0
            for lexeme in qlex:
                f = tf.get((cid, lexeme), 0)
                if f:
                    idf = math.log(1 + (n_docs - df[lexeme] + 0.5) / (df[lexeme] + 0.5))
                    score += idf * f * 2.2 / (f + 1.2 * (0.25 + 0.75 * dl[cid] / avgdl))
            if score:
                expected[cid] = score
        best = sorted(expected.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
        got = store.lexical_search(question, 10)
        assert [cid for cid, _ in got] == [cid for cid, _ in best]
        assert np.allclose([s for _, s in got], [s for _, s in best], rtol=1e-9)
