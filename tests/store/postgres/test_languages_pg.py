"""PostgreSQL's BM25 leg under each chunk's language: Vietnamese keeps its tones, English stays stemmed, and a
database made before (one `english` configuration for every row) keeps working as it did."""

from __future__ import annotations

import uuid

import psycopg

from ragworks.collection import Collection
from ragworks.config import Settings
from ragworks.store.postgres import PostgresStore, _schema_sql, tsquery_text

DOCS = {
    "ban.md": "# Bàn gỗ\n\nCửa hàng này bán bàn gỗ lim và ghế tre cho quán cà phê.",
    "ban2.md": "# Người bạn\n\nBạn tôi sống ở Huế và thích nghe nhạc trịnh mỗi tối.",
    "ban3.md": "# Ban nhạc\n\nBan nhạc rock biểu diễn ở sân vận động Mỹ Đình tối nay.",
    "cay.md": "# Cây tre\n\nĐây là cây tre mọc nhanh nhất, gần một mét mỗi ngày.",
    "running.md": "# Running\n\nThe runners were running along the river before the marathon.",
}
QUERIES = ("bạn", "ban", "bàn gỗ", "đây cây", "who runs by the river", "ban nhạc tối nay")


def _collection(tmp_path, embedder, **kw) -> Collection:
    col = Collection.open(f"lang-{uuid.uuid4().hex[:8]}", settings=Settings(data_dir=tmp_path, llm="extractive", **kw),
                          embedder=embedder, llm=None)
    for source, text in DOCS.items():
        col.add_text(text, source=source)
    return col


def _bm25(col: Collection, query: str) -> list[str]:
    return [h.source for h in col.search(query, mode="bm25", k=10)]


def test_vietnamese_rows_keep_tones_and_both_stores_bm25_legs_agree(pg_dsn, tmp_path, embedder):
    pg = _collection(tmp_path, embedder, store_backend="postgres", postgres_dsn=pg_dsn)
    embedded = _collection(tmp_path, embedder, lexical_backend="memory")
    try:
        store = pg.store
        assert isinstance(store, PostgresStore) and store.per_language_tsv
        configs = dict(store._query(
            "SELECT d.source, c.ts_config::text FROM {s}.chunks c JOIN {s}.documents d ON d.tenant = c.tenant AND "
            "d.collection = c.collection AND d.id = c.doc_id WHERE c.tenant = %(tenant)s AND "
            "c.collection = %(collection)s"))
        assert configs == {"ban.md": "simple", "ban2.md": "simple", "ban3.md": "simple", "cay.md": "simple",
                           "running.md": "english"}
        assert _bm25(pg, "bạn") == ["ban2.md"]  # not the table (bàn), selling (bán) or the band (ban)
        assert _bm25(pg, "ban") == ["ban3.md"]
        assert _bm25(pg, "đây cây") == ["cay.md"]  # `english` would have stemmed them to "đâi", "câi"
        assert _bm25(pg, "who runs by the river") == ["running.md"]  # English still stemmed
        for q in QUERIES:
            assert _bm25(pg, q) == _bm25(embedded, q), q
    finally:
        pg.close()
        embedded.close()


def test_vietnamese_queries_drop_vietnamese_function_words():
    assert tsquery_text("Bạn tôi sống ở đâu và làm gì?", "vietnamese") == "bạn | tôi | sống | làm"
    decomposed = "Tie\u0302\u0301ng Vie\u0323\u0302t"
    assert tsquery_text(decomposed, "vietnamese") == "tiếng | việt"


def test_a_database_made_before_keeps_english_for_every_row_and_gains_the_column(pg_dsn, tmp_path, embedder):
    schema = f"old_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:  # the schema as it was made before
        for stmt in _schema_sql(schema):
            conn.execute(stmt.replace(" ts_config regconfig NOT NULL DEFAULT 'english',", "")
                         .replace("to_tsvector(ts_config,", "to_tsvector('english'::regconfig,"))
    col = Collection.open("c", settings=Settings(data_dir=tmp_path, llm="extractive", store_backend="postgres",
                                                 postgres_dsn=pg_dsn, postgres_schema=schema),
                          embedder=embedder, llm=None)
    try:
        for source, text in DOCS.items():
            col.add_text(text, source=source)
        assert isinstance(col.store, PostgresStore) and not col.store.per_language_tsv
        assert _bm25(col, "who runs by the river") == ["running.md"]
        assert "ban2.md" in _bm25(col, "bạn")  # queries parse as `english`, as the rows were
    finally:
        col.close()
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
