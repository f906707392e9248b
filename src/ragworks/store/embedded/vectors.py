"""The dense leg of the embedded store: a FAISS index (vector_index.py) derived from the vectors in SQLite.

The index file records the last `vector_log` entry it contains and catches up by replaying the rest, so a
`kill -9` at any moment leaves SQLite at its last commit and the index at its last complete file, and the next
open reconciles them. An index that outgrows its kind is rebuilt beside the serving one from one read snapshot.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import replace

import numpy as np

from ragworks.store.ann import IndexChoice, plan_index
from ragworks.store.base import Filter
from ragworks.store.embedded.sqlite import ADD, SqliteBase, head_of
from ragworks.store.vector_index import MIN_TRAIN, VectorIndex


class VectorLeg(SqliteBase):
    """Dense search, the index's upkeep (replay, flush, rebuild) and reads of the stored vectors."""

    _index_dirty: bool  # the index type setting changed or a bulk load ran: rebuild on the next flush
    _deleted_since_gc: bool  # chunks were deleted: drop their unused cached vectors on the next flush

    def _saved_seq(self) -> int:
        row = self._query("SELECT value FROM meta WHERE key = ?", (f"index_seq_m{self.model_id}",))
        return int(row[0][0]) if row else 0

    def _vectors_for(self, chunk_ids: Sequence[int], conn: sqlite3.Connection | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
        # CROSS JOIN pins the loop order (chunks by id, then the embedding by primary key); with a plain JOIN
        # SQLite scanned every embedding per call: 2.9 s at 4k chunks, quadratic in collection size.
        ids: list[int] = []
        blobs: list[bytes] = []
        for i in range(0, len(chunk_ids), 900):
            part = list(chunk_ids[i : i + 900])
            sql = ("SELECT c.id, e.vector FROM chunks c "
                   "CROSS JOIN embeddings e ON e.model = ? AND e.text_hash = c.text_hash "
                   f"WHERE c.id IN ({','.join('?' * len(part))})")
            args = [self.model_id, *part]
            rows = self._query(sql, args) if conn is None else conn.execute(sql, args).fetchall()
            for cid, blob in rows:
                ids.append(cid)
                blobs.append(blob)
        if not ids:
            return np.zeros(0, dtype=np.int64), np.zeros((0, self.dimension), dtype=np.float32)
        vecs = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(ids), self.dimension)
        return np.asarray(ids, dtype=np.int64), vecs

    def vectors_for(self, chunk_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(ids, float32 vectors) of the active model for those of `chunk_ids` that still exist."""
        return self._vectors_for(chunk_ids)

    def set_index_type(self, choice: IndexChoice) -> None:
        """Remember `choice` for this collection; the next `flush` rebuilds the index if its kind differs."""
        with self._tx() as conn:
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('index_type', ?)", (choice,))
        self.index.index_type = choice
        self._index_dirty = True

    def request_index_rebuild(self) -> None:
        """Make the next `flush` rebuild the index from SQLite in one pass (after a bulk load)."""
        self._index_dirty = True

    def iter_vectors(self, batch: int = 20000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(chunk ids, vectors) of the whole collection, `batch` chunks at a time (bounded memory)."""
        last = 0
        while True:
            rows = self._query("SELECT id FROM chunks WHERE id > ? ORDER BY id LIMIT ?", (last, batch))
            if not rows:
                return
            yield self._vectors_for([r[0] for r in rows])
            last = rows[-1][0]

    def random_chunk_ids(self, n: int) -> list[int]:
        return sorted(r[0] for r in self._query("SELECT id FROM chunks ORDER BY random() LIMIT ?", (n,)))

    def rebuild_index(self) -> None:
        """Rebuild the FAISS index from the vectors in SQLite, choosing its kind by size (or `index_type`), with
        searches waiting (`flush` builds an outgrown index beside the serving one instead)."""
        with self._lock:
            fresh = self._build_beside()
            if fresh is not None:
                self.index = fresh

    def _build_beside(self) -> VectorIndex | None:
        """A new index built from one read snapshot of SQLite while searches go on with the current one; its
        `seq` is that snapshot's log head. None if the model was switched meanwhile."""
        model_id = self.model_id
        fresh = VectorIndex(self.path, f"dense-m{model_id}", self.dimension, index_type=self.index_type())
        with self._reader() as conn:
            conn.execute("BEGIN")  # the head, the sample and every vector come from the same snapshot
            try:
                head = head_of(conn)
                n = int(conn.execute("SELECT count(*) FROM chunks").fetchone()[0])
                plan = fresh.plan_for(n)
                if plan.needs_training and n < MIN_TRAIN:
                    plan = replace(plan_index(n, self.dimension, "flat"),
                                   reason=f"{n} vectors: too few to train {plan.kind}")
                sample = np.zeros(0)
                if plan.needs_training:
                    ids = sorted(r[0] for r in conn.execute("SELECT id FROM chunks ORDER BY random() LIMIT ?",
                                                             (plan.training_size(),)))
                    sample = self._vectors_for(ids, conn)[1]
                fresh.rebuild(plan, sample)
                last = 0
                while rows := conn.execute("SELECT id FROM chunks WHERE id > ? ORDER BY id LIMIT 20000",
                                           (last,)).fetchall():
                    fresh.add(*self._vectors_for([r[0] for r in rows], conn))
                    last = rows[-1][0]
            finally:
                conn.execute("COMMIT")
        fresh.seq = head
        return fresh if self.model_id == model_id else None

    def sync_index(self) -> None:
        """Bring the in-memory index up to the last committed write (ours or another process's)."""
        if self._index_loaded and self.index.seq == self._read_head():
            return  # up to date: checked on a pooled connection, without waiting for the writer's lock
        with self._lock:
            if not self._index_loaded:
                self.index.load()
                self._index_loaded = True
            head = self._log_head()
            if self.index.seq == head:
                return
            saved = self._saved_seq()
            if self.index.seq < saved:  # the log before `saved` was compacted away: start from that file
                if not self.index.load() or self.index.seq < saved:
                    self.rebuild_index()
                    return
            rows = self._query("SELECT seq, chunk_id, op FROM vector_log WHERE seq > ? ORDER BY seq", (self.index.seq,))
            last_op: dict[int, int] = {}
            top = self.index.seq
            for seq, cid, op in rows:
                last_op[cid] = op
                top = seq
            # added ids are new (AUTOINCREMENT): removing them too only guards against a replay interrupted
            # half-way, and HNSW, which cannot remove, would rebuild on every flush, so it gets the deletions only
            gone = [cid for cid, op in last_op.items() if op != ADD]
            self.index.remove(gone if self.index.plan.kind == "hnsw" else list(last_op))
            ids, vecs = self._vectors_for([cid for cid, op in last_op.items() if op == ADD])
            self.index.add(ids, vecs)
            self.index.seq = max(top, head if not rows else top)

    def flush(self) -> None:
        """Save the index file at the current log position, compact the log, drop unused cached vectors."""
        with self._flush_lock:
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            if (
                not self._deleted_since_gc
                and not self._index_dirty
                and self._log_head() == self._saved_seq()
                and self.index.newest_on_disk()
            ):
                return  # nothing written since the last save: don't even load the index
            # a bulk load leaves millions of log rows: rebuild from SQLite in one pass instead of replaying them
            bulk = self._index_dirty
            if bulk:
                self._index_loaded = True
                self.rebuild_index()
                rebuilt = True
            else:
                self.sync_index()
                rebuilt = self.index.outgrown()
        if rebuilt and not bulk:
            # the index outgrew its kind (flat → IVF, IVF lists, HNSW deletions): build the new one beside it,
            # off the lock, so searches keep answering from the current index (a big build takes minutes)
            fresh = self._build_beside()
            with self._lock:
                if fresh is not None:
                    self.index = fresh
                self.sync_index()  # replay what was written during the build
        with self._lock:
            self._index_dirty = False
            seq = self.index.seq
            if rebuilt or seq > self._saved_seq() or not self.index.newest_on_disk():
                self.index.save(seq, replace=rebuilt)
                self._log_compacting()  # the BM25 leg replays what the compaction below removes
                with self._tx() as conn:
                    conn.execute(
                        "INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)",
                        (f"index_seq_m{self.model_id}", str(seq)),
                    )
                    conn.execute("DELETE FROM vector_log WHERE seq <= ?", (seq,))
            if self._deleted_since_gc:
                with self._tx() as conn:
                    conn.execute("DELETE FROM embeddings WHERE text_hash NOT IN (SELECT text_hash FROM chunks)")
                self._deleted_since_gc = False

    def dense_search(self, query: np.ndarray, k: int, flt: Filter | None = None) -> list[tuple[int, float]]:
        self.sync_index()
        allowed = self._allowed_ids(flt) if flt else None
        with self._lock:
            found = self.index.search(query, self.index.candidates(k), allowed)
        if allowed is not None and len(found) < min(k, len(allowed)):
            # an approximate index (IVF probes, HNSW's beam) can miss allowed rows under a narrow filter: score
            # the allowed rows exactly, so a permitted caller still gets k results
            return self._exact_among(query, allowed, k)
        if not self.index.plan.rerank or not found:
            return found
        # compressed (PQ) scores only pick candidates: re-score them exactly from the stored vectors
        ids, vecs = self._vectors_for([cid for cid, _ in found])
        scores = vecs @ np.asarray(query, dtype=np.float32).ravel()
        top = np.argsort(-scores)[:k]
        return [(int(ids[i]), float(scores[i])) for i in top]

    def _exact_among(self, query: np.ndarray, allowed: np.ndarray, k: int) -> list[tuple[int, float]]:
        """Top-k of `allowed` by inner product, from the stored vectors (a filtered search's exact fallback)."""
        ids, vecs = self._vectors_for(allowed.tolist())
        if not len(ids):
            return []
        scores = vecs @ np.asarray(query, dtype=np.float32).ravel()
        top = np.argsort(-scores, kind="stable")[:k]
        return [(int(ids[i]), float(scores[i])) for i in top]
