"""The BM25 leg of the embedded store: SQLite FTS5, or for collections up to `lexical_memory_max_chunks` an
in-memory BM25 (lexical/bm25.py) that replays the same vector log as the FAISS index.

The FTS5 table indexes each passage's terms as ragworks.lexical.languages analyzes them (per-language rules,
joined by spaces), so it gets no stemmer or mark folding of its own. Collections made before that indexed the
raw text with FTS5's Porter stemmer and folded marks (LEGACY_FTS): they keep doing so until re-created, because
removing a row from an external-content FTS5 table needs exactly the text it was indexed with.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from typing import Literal

from ragworks.lexical.analysis import STOPWORDS, fts5_like_analyzer
from ragworks.lexical.bm25 import SegmentedBM25
from ragworks.lexical.languages import LanguageAnalyzer
from ragworks.store.base import Filter
from ragworks.store.embedded.sqlite import ADD, SqliteBase, filter_sql, head_of

FTS_SQL = """CREATE VIRTUAL TABLE chunks_fts USING fts5(
    body, content='chunk_bodies', content_rowid='id', tokenize='unicode61 remove_diacritics 0')"""
LEGACY_FTS_SQL = """CREATE VIRTUAL TABLE chunks_fts USING fts5(
    body, content='chunk_bodies', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2')"""
LEXICAL_ANALYZER = "languages-1"  # meta `lexical_analyzer` of collections indexed through LanguageAnalyzer

LexicalBackend = Literal["auto", "fts5", "memory"]
LEXICAL_MEMORY_MAX_CHUNKS = 200_000  # "auto": in-memory BM25 up to this many chunks (~0.3 KB each), FTS5 beyond
LEXICAL_SYNC_BUILD_CHUNKS = 20_000  # build the in-memory BM25 inline up to this size (~0.5 s); beyond, in the
# background while FTS5 answers

_TERM = re.compile(r"\w+", re.UNICODE)


def fts_query(text: str) -> str:
    """A free-text question → an FTS5 OR-query of its quoted terms (stopwords dropped unless nothing is left)."""
    terms = [t.lower() for t in _TERM.findall(text)]
    kept = [t for t in terms if t not in STOPWORDS] or terms
    unique = list(dict.fromkeys(kept))
    return " OR ".join(f'"{t}"' for t in unique)


class LexicalLeg(SqliteBase):
    """Keyword search over the chunk bodies, FTS5 or in memory."""

    lexical_analyzer: LanguageAnalyzer | None

    def _init_lexical(self) -> None:
        self.lexical_backend: LexicalBackend = "auto"
        self.lexical_memory_max_chunks = LEXICAL_MEMORY_MAX_CHUNKS
        self._bm25: SegmentedBM25 | None = None
        self._bm25_seq = 0
        self._bm25_skip_head = -1
        self._bm25_lock = threading.Lock()
        self._bm25_building: threading.Thread | None = None

    def _open_fts(self) -> LanguageAnalyzer | None:
        """Create the FTS5 table of a new collection; the analyzer its terms come from (None: LEGACY_FTS)."""
        conn = self._conn
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'chunks_fts'").fetchone() is None:
            conn.execute(FTS_SQL)
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('lexical_analyzer', ?)", (LEXICAL_ANALYZER,))
        row = conn.execute("SELECT value FROM meta WHERE key = 'lexical_analyzer'").fetchone()
        return LanguageAnalyzer() if row is not None and row[0] == LEXICAL_ANALYZER else None

    def _fts_body(self, body: str) -> str:
        """What the FTS5 table indexes for a passage body (also what removing it must pass again)."""
        return body if self.lexical_analyzer is None else self.lexical_analyzer.indexed_text(body)

    def _bm25_analyzer(self) -> Callable[[str], list[str]]:
        """The in-memory leg's analyzer: the FTS5 table's, so both legs index the same terms."""
        return self.lexical_analyzer if self.lexical_analyzer is not None else fts5_like_analyzer()

    def configure_lexical(self, backend: LexicalBackend, memory_max_chunks: int = LEXICAL_MEMORY_MAX_CHUNKS) -> None:
        """Choose the BM25 leg: FTS5, the in-memory index, or "auto" (in memory up to `memory_max_chunks`)."""
        self.lexical_backend = backend
        self.lexical_memory_max_chunks = memory_max_chunks

    def lexical_search(self, query: str, k: int, flt: Filter | None = None) -> list[tuple[int, float]]:
        bm25 = self._memory_bm25()
        if bm25 is not None:
            return bm25.search(query, k, self._allowed_ids(flt) if flt else None)
        return self._fts5_search(query, k, flt)

    def _fts5_search(self, query: str, k: int, flt: Filter | None = None) -> list[tuple[int, float]]:
        if self.lexical_analyzer is None:
            match = fts_query(query)
        else:  # the query's terms under its own language's rules, quoted (they are letters and digits only)
            match = " OR ".join(f'"{t}"' for t in dict.fromkeys(self.lexical_analyzer.query(query)))
        if not match:
            return []
        where, args = filter_sql(flt)
        if where:
            sql = (
                "SELECT f.rowid, bm25(chunks_fts) FROM chunks_fts f JOIN chunks c ON c.id = f.rowid "
                f"JOIN documents d ON d.id = c.doc_id WHERE chunks_fts MATCH ? AND {where} ORDER BY rank LIMIT ?"
            )
            rows = self._read(sql, [match, *args, k])
        else:
            rows = self._read(
                "SELECT rowid, bm25(chunks_fts) FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY rank LIMIT ?",
                (match, k),
            )
        return [(int(r[0]), -float(r[1])) for r in rows]

    def _memory_bm25(self) -> SegmentedBM25 | None:
        """The in-memory BM25, brought up to the last committed write; None means "use FTS5" for this search."""
        if self.lexical_backend == "fts5":
            return None
        bm25, head = self._bm25, self._read_head()
        if bm25 is not None and self._bm25_seq == head:
            return bm25
        if bm25 is None and self._bm25_skip_head == head:
            return None  # too big for memory when last counted, and nothing written since
        with self._bm25_lock:
            if self._bm25_building is not None:
                return None  # a background build is under way: FTS5 answers meanwhile
            if self._bm25 is not None and self._replay_bm25(self._bm25):
                return self._bm25
            n = int(self._read("SELECT count(*) FROM chunks")[0][0])
            if self.lexical_backend == "auto" and n > self.lexical_memory_max_chunks:
                self._bm25, self._bm25_skip_head = None, head
                return None
            if n <= LEXICAL_SYNC_BUILD_CHUNKS:
                self._build_bm25()
                return self._bm25
            self._bm25_building = threading.Thread(target=self._build_bm25_background, daemon=True,
                                                   name="ragworks-bm25-build")
            self._bm25_building.start()
            return None

    def _build_bm25(self) -> None:
        """Index every chunk body as of one snapshot (and remember that snapshot's log position)."""
        bm25 = SegmentedBM25(analyzer=self._bm25_analyzer())
        with self._reader() as conn:
            conn.execute("BEGIN")
            try:
                seq = head_of(conn)
                rows = conn.execute("SELECT id, body FROM chunk_bodies ORDER BY id").fetchall()
            finally:
                conn.execute("COMMIT")
        bm25.build([r[0] for r in rows], (r[1] for r in rows))
        self._bm25, self._bm25_seq = bm25, seq

    def _build_bm25_background(self) -> None:
        try:
            self._build_bm25()
        except Exception:  # FTS5 keeps answering; the next search tries again
            logging.getLogger("ragworks.store").exception("building the in-memory BM25 index failed")
        finally:
            with self._bm25_lock:
                self._bm25_building = None

    def _replay_bm25(self, bm25: SegmentedBM25) -> bool:
        """Apply the vector log after `_bm25_seq` to `bm25`; False if compaction removed entries it needs."""
        with self._reader() as conn:
            conn.execute("BEGIN")
            try:
                head = head_of(conn)
                if head == self._bm25_seq:
                    return True
                # AUTOINCREMENT numbers committed entries without gaps (a rollback restores sqlite_sequence), so
                # a missing next entry means a flush compacted it away: rebuild instead of replaying
                first = conn.execute("SELECT min(seq) FROM vector_log WHERE seq > ?", (self._bm25_seq,)).fetchone()[0]
                if first is None or first > self._bm25_seq + 1:
                    return False
                last_op: dict[int, int] = {}
                for cid, op in conn.execute("SELECT chunk_id, op FROM vector_log WHERE seq > ? AND seq <= ? "
                                            "ORDER BY seq", (self._bm25_seq, head)):
                    last_op[int(cid)] = int(op)
                added = [cid for cid, op in last_op.items() if op == ADD]
                bodies: list[tuple[int, str]] = []
                for i in range(0, len(added), 900):
                    part = added[i : i + 900]
                    marks = ",".join("?" * len(part))
                    bodies += conn.execute(f"SELECT id, body FROM chunk_bodies WHERE id IN ({marks})", part).fetchall()
            finally:
                conn.execute("COMMIT")
        bm25.remove(cid for cid, op in last_op.items() if op != ADD)
        bm25.add([b[0] for b in bodies], [b[1] for b in bodies])
        self._bm25_seq = head
        return True

    def _log_compacting(self) -> None:
        with self._bm25_lock:  # replay what the compaction removes, so BM25 needs no rebuild
            if self._bm25 is not None and self._bm25_building is None:
                self._replay_bm25(self._bm25)
