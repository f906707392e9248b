"""The retrieval legs of `PostgresStore` as SQL text: the filter, dense (pgvector HNSW), keyword (tsvector,
Okapi BM25 in SQL) and their reciprocal rank fusion, plus the text search helpers they need.

- Dense: inner product over `chunks.embedding` cast to the collection's dimension (the partial HNSW index of that
  dimension); every dense query is filtered (at least by tenant and collection), so it runs with
  `hnsw.iterative_scan = relaxed_order` (`set_hnsw`) and the caller re-sorts the candidates in an outer query.
- Keyword: an OR-query of the question's lexemes (`tsquery_text`) under the text search configuration of its
  detected language (`TS_CONFIGS`), ranked by BM25 from the maintained statistics (`lexicon`,
  `collections.n_chunks/total_len`), or by `ts_rank_cd`.
- Fused: both legs and RRF in one statement (`fused_sql`).

Statements keep the `{s}` (schema), `%(tenant)s` and `%(collection)s` placeholders: `PostgresStore._sql` fills
the schema and refuses any statement that does not bind both.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ragworks.lexical.analysis import STOPWORDS
from ragworks.lexical.languages import VIETNAMESE_STOPWORDS, detect_language
from ragworks.store.base import Filter
from ragworks.store.postgres_schema import _json

if TYPE_CHECKING:
    import psycopg

TS_CONFIG = "english"  # every row's configuration in databases made before per-language configurations
# ragworks.lexical.languages' language → the PostgreSQL text search configuration that treats it alike: its
# Snowball stemmer, or `simple` (lower-cased words, no stemmer, no stopwords) for Vietnamese and other scripts.
TS_CONFIGS = {"english": "english", "vietnamese": "simple", "french": "french", "german": "german",
              "spanish": "spanish", "portuguese": "portuguese", "italian": "italian", "dutch": "dutch",
              "other": "simple"}

_LEXEME = re.compile(r"[^\W_]+", re.UNICODE)  # letters and digits only: nothing to_tsquery would parse as syntax
_REGEX_META = frozenset(".^$*+?()[]{}|\\")
# the permission rule over `documents d` (ragworks.access): public, or a reader token the caller holds
_READERS_RULE = "(d.readers = '{}' OR d.readers && %(f_readers)s::text[])"


# --- text search helpers (tested without a server)


def ts_config_of(text: str) -> str:
    """The text search configuration for `text`'s detected language (see TS_CONFIGS)."""
    return TS_CONFIGS.get(detect_language(text), "simple")


def tsquery_text(text: str, language: str = "english") -> str:
    """A free-text question → `to_tsquery` input: its letter/digit runs OR-ed (`a | b`), stopwords dropped.

    Only `[^\\W_]+` runs survive, so no query operator, quote or backslash can reach `to_tsquery`. Vietnamese
    drops its own function words (`simple` keeps every word) and is NFC-normalized as its passages' terms are.
    """
    if language == "vietnamese":
        text = unicodedata.normalize("NFC", text)
    stopwords = VIETNAMESE_STOPWORDS if language == "vietnamese" else STOPWORDS
    terms = [t.lower() for t in _LEXEME.findall(text)]
    kept = [t for t in terms if t not in stopwords] or terms
    return " | ".join(dict.fromkeys(kept))


def glob_to_regex(glob: str) -> str:
    """SQLite-GLOB-style pattern (`*`, `?`, `[abc]`, `[^a]`/`[!a]`) → an anchored PostgreSQL regex.

    `*` matches any run of characters (slashes included), as in `EmbeddedStore`; every other regex
    metacharacter is escaped, so a source glob can never become an arbitrary regex.
    """
    out = ["^"]
    i, n = 0, len(glob)
    while i < n:
        ch = glob[i]
        i += 1
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "[":
            j = i
            if j < n and glob[j] in "!^":
                j += 1
            if j < n and glob[j] == "]":
                j += 1
            while j < n and glob[j] != "]":
                j += 1
            if j >= n:  # no closing bracket: a literal "["
                out.append("\\[")
                continue
            body = glob[i:j]
            i = j + 1
            negate = body[:1] in ("!", "^")
            if negate:
                body = body[1:]
            body = body.replace("\\", "\\\\").replace("[", "\\[")
            out.append("[" + ("^" if negate else "") + body + "]")
        else:
            out.append("\\" + ch if ch in _REGEX_META else ch)
    out.append("$")
    return "".join(out)



# --- the legs' SQL


@dataclass(frozen=True, slots=True)
class _FilterSQL:
    join: str  # "" or a JOIN of documents d
    where: str  # "" or " AND ..."
    params: dict[str, Any]


def filter_sql(flt: Filter | None, chunk_alias: str = "c") -> _FilterSQL:
    """A Filter → the JOIN, conditions and parameters that restrict the chunks of either leg."""
    if not flt:
        return _FilterSQL("", "", {})
    conds: list[str] = []
    params: dict[str, Any] = {}
    join = ""
    if flt.source_glob or flt.metadata or flt.readers is not None:
        join = (f" JOIN {{s}}.documents d ON d.tenant = {chunk_alias}.tenant AND "
                f"d.collection = {chunk_alias}.collection AND d.id = {chunk_alias}.doc_id")
    if flt.source_glob:
        conds.append("d.source ~ %(f_glob)s")
        params["f_glob"] = glob_to_regex(flt.source_glob)
    for i, (key, value) in enumerate(flt.metadata.items()):
        if value is None or isinstance(value, str | int | float | bool):
            conds.append(f"d.metadata @> %(f_meta{i})s::jsonb")  # GIN-indexable; exact for scalars
            params[f"f_meta{i}"] = _json({key: value})
        else:
            conds.append(f"d.metadata -> %(f_key{i})s = %(f_meta{i})s::jsonb")
            params[f"f_key{i}"] = key
            params[f"f_meta{i}"] = _json(value)
    if flt.doc_ids is not None:
        conds.append(f"{chunk_alias}.doc_id = ANY(%(f_ids)s)")
        params["f_ids"] = list(flt.doc_ids)
    if flt.readers is not None:
        conds.append(_READERS_RULE)
        params["f_readers"] = list(flt.readers)
    return _FilterSQL(join, "".join(" AND " + c for c in conds), params)


def dense_sql(f: _FilterSQL, d: int) -> str:
    """The `n_dense` nearest chunks of dimension `d` to `qvec` by inner product (`dist` = its negative)."""
    return (
        f"SELECT c.id, c.embedding::vector({d}) <#> %(qvec)s::vector({d}) AS dist FROM {{s}}.chunks c{f.join} "
        f"WHERE c.tenant = %(tenant)s AND c.collection = %(collection)s AND vector_dims(c.embedding) = {d}"
        f"{f.where} ORDER BY dist LIMIT %(n_dense)s"
    )


def lexical_sql(f: _FilterSQL, ranking: Literal["bm25", "ts_rank_cd"]) -> str:
    """The `n_lex` best chunks matching `tsq` (`lexical_params`), by BM25 or `ts_rank_cd` (`score`)."""
    match = (f"SELECT c.id, c.tsv FROM {{s}}.chunks c{f.join} WHERE c.tenant = %(tenant)s AND "
             f"c.collection = %(collection)s AND c.tsv @@ to_tsquery(%(tscfg)s::regconfig, %(tsq)s){f.where}")
    if ranking == "ts_rank_cd":
        return (f"SELECT m.id, ts_rank_cd(m.tsv, to_tsquery(%(tscfg)s::regconfig, %(tsq)s), %(norm)s)::float8 "
                "AS score "
                f"FROM ({match}) m ORDER BY score DESC, m.id LIMIT %(n_lex)s")
    # Okapi BM25 (k1, b; Lucene's idf, never negative) over the matching chunks. Document frequencies come
    # from `lexicon`, N and the average length from `collections`; a chunk's length is its number of distinct
    # lexemes (length(tsv)). ts_filter(setweight(...)) keeps just the query's lexemes of each chunk (in C),
    # so only those are unnested to read their term frequencies (number of positions). The query's lexemes
    # are an immutable expression of a parameter, folded to a constant array at plan time (so `lexicon` is
    # probed by its key), and each step is MATERIALIZED: no join order, with or without table statistics,
    # can make the cost more than (matching chunks × query terms).
    qlex = "tsvector_to_array(to_tsvector(%(tscfg)s::regconfig, %(qtext)s))"
    return (
        "WITH stats AS MATERIALIZED (SELECT greatest(n_chunks, 1)::float8 AS n, "
        "greatest(total_len::float8 / greatest(n_chunks, 1), 1.0) AS avgdl FROM {s}.collections "
        "WHERE tenant = %(tenant)s AND collection = %(collection)s), "
        "terms AS MATERIALIZED (SELECT l.lexeme, ln(1.0 + (s.n - l.df + 0.5) / (l.df + 0.5)) AS idf "
        "FROM {s}.lexicon l, stats s WHERE l.tenant = %(tenant)s AND l.collection = %(collection)s "
        f"AND l.lexeme = ANY({qlex}) AND l.df > 0), "
        f"matched AS MATERIALIZED (SELECT c.id, length(c.tsv) AS dl, "
        f"ts_filter(setweight(c.tsv, 'A', {qlex}), '{{a}}') AS qtv FROM {{s}}.chunks c{f.join} "
        f"WHERE c.tenant = %(tenant)s AND c.collection = %(collection)s "
        f"AND c.tsv @@ to_tsquery(%(tscfg)s::regconfig, %(tsq)s){f.where}) "
        "SELECT m.id, sum(t.idf * x.tf * (%(k1)s + 1.0) / (x.tf + %(k1)s * (1.0 - %(b)s + %(b)s * "
        "m.dl / s.avgdl)))::float8 AS score "
        "FROM matched m CROSS JOIN stats s CROSS JOIN LATERAL (SELECT u.lexeme, "
        "cardinality(u.positions)::float8 AS tf FROM unnest(m.qtv) u) x "
        "JOIN terms t ON t.lexeme = x.lexeme GROUP BY m.id ORDER BY score DESC, m.id LIMIT %(n_lex)s"
    )


def lexical_params(query: str, *, per_language_tsv: bool, norm: int, k1: float, b: float) -> dict[str, Any] | None:
    """The keyword leg's parameters for a question; None when it has no lexeme to look for."""
    # the query is parsed as passages of its language were (a database made before: `english` throughout)
    language = detect_language(query) if per_language_tsv else "english"
    tsq = tsquery_text(query, language)
    if not tsq:
        return None
    return {"tsq": tsq, "qtext": tsq.replace(" | ", " "), "norm": norm, "k1": k1,
            "b": b, "tscfg": TS_CONFIGS.get(language, "simple") if per_language_tsv else TS_CONFIG}


_NO_LEXICAL = "SELECT NULL::bigint AS id, NULL::float8 AS score WHERE false"


def fused_sql(dense: str, lexical: str | None) -> str:
    """Both legs and their reciprocal rank fusion (`rrf_k`, top `k`) in one statement; `lexical` None: none."""
    return (
        f"WITH dense AS MATERIALIZED ({dense}), "
        "dense_ranked AS (SELECT id, dist, row_number() OVER (ORDER BY dist, id) AS r FROM dense), "
        f"lexical AS MATERIALIZED ({lexical or _NO_LEXICAL}), "
        "lexical_ranked AS (SELECT id, score, row_number() OVER (ORDER BY score DESC, id) AS r FROM lexical) "
        "SELECT coalesce(d.id, l.id) AS id, "
        "coalesce(1.0::float8 / (%(rrf_k)s + d.r), 0) + coalesce(1.0::float8 / (%(rrf_k)s + l.r), 0) AS fused, "
        "d.r AS dense_rank, -d.dist AS dense_score, l.r AS lexical_rank, l.score AS lexical_score "
        "FROM dense_ranked d FULL OUTER JOIN lexical_ranked l ON d.id = l.id "
        "ORDER BY fused DESC, id LIMIT %(k)s"
    )


def set_hnsw(conn: psycopg.Connection[Any], k: int, *, ef_search: int, max_scan_tuples: int, iterative: bool
             ) -> None:
    """Transaction-local HNSW settings: ef_search ≥ k, and (pgvector 0.8+) a relaxed iterative scan, so the
    tenant/collection/metadata filters applied after the index scan never starve the result."""
    ef = str(min(max(ef_search, k), 1000))
    if iterative:
        conn.execute(
            "SELECT set_config('hnsw.ef_search', %s, true), "
            "set_config('hnsw.iterative_scan', 'relaxed_order', true), "
            "set_config('hnsw.max_scan_tuples', %s, true)", (ef, str(max_scan_tuples)))
    else:  # older pgvector: no iterative scan; a wide beam is the only defence against filtered-out results
        conn.execute("SELECT set_config('hnsw.ef_search', '1000', true)")
