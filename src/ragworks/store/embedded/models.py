"""Model versions of the embedded store (`ragworks tune`): an inactive model's vectors and index are filled in
beside the active one's, then one transaction makes it active; the previous model's rows stay for a rollback."""

from __future__ import annotations

import json
import time

import numpy as np

from ragworks.errors import CollectionNotFound, EmbedderMismatch
from ragworks.store.embedded.sqlite import SqliteBase, bump_version
from ragworks.store.vector_index import VectorIndex


class ModelVersions(SqliteBase):
    """The models a collection has vectors for, and which one searches."""

    def _activate_model(self, name: str | None, dimension: int | None) -> tuple[int, str, int]:
        active = self._conn.execute("SELECT id, name, dimension FROM models WHERE active = 1").fetchone()
        if active is None:
            if name is None or dimension is None:
                raise CollectionNotFound(f"collection at {self.path} is empty (ingest something first)")
            cur = self._conn.execute(
                "INSERT INTO models(name, dimension, active, created) VALUES(?, ?, 1, ?)",
                (name, dimension, time.time()),
            )
            return int(cur.lastrowid or 0), name, dimension
        return int(active[0]), str(active[1]), int(active[2])

    def active_model_changed(self) -> bool:
        """True once another process (`ragworks tune`'s switch or rollback) made another model the active one:
        this store still searches the old model's vectors, and its writes are refused; reopen to follow."""
        rows = self._read("SELECT id FROM models WHERE active = 1")
        return bool(rows) and int(rows[0][0]) != self.model_id

    def check_model(self, name: str, dimension: int) -> None:
        """Raise EmbedderMismatch unless `name` is the model this collection's vectors come from."""
        if name != self.model_name or dimension != self.dimension:
            raise EmbedderMismatch(
                f"collection {self.path.name!r} was embedded with {self.model_name!r} ({self.dimension}-d), but "
                f"the configured embedder is {name!r} ({dimension}-d); configure the same model "
                "(RAGWORKS_EMBED_MODEL / --embed-model) or ingest into a new collection"
            )

    def models(self) -> list[tuple[int, str, int, bool]]:
        """(id, name, dimension, active) of every model this collection has vectors for, oldest first."""
        return [(int(r[0]), str(r[1]), int(r[2]), bool(r[3]))
                for r in self._query("SELECT id, name, dimension, active FROM models ORDER BY id")]

    def add_model(self, name: str, dimension: int) -> int:
        """The id of model `name`, recorded inactive if new (its vectors are written with `write_model_vectors`)."""
        with self._tx() as conn:
            row = conn.execute("SELECT id FROM models WHERE name = ?", (name,)).fetchone()
            if row is not None:
                return int(row[0])
            cur = conn.execute("INSERT INTO models(name, dimension, active, created) VALUES(?, ?, 0, ?)",
                               (name, dimension, time.time()))
            return int(cur.lastrowid or 0)

    def missing_model_vectors(self, model_id: int, *, after: int = 0, limit: int = 256) -> list[tuple[int, str, str]]:
        """(chunk id, text hash, embedded text) of chunks after `after` whose text has no vector for `model_id`."""
        return [(int(r[0]), str(r[1]), str(r[2])) for r in self._query(
            "SELECT c.id, c.text_hash, CASE WHEN c.context = '' THEN c.text ELSE c.context || char(10) || c.text END "
            "FROM chunks c WHERE c.id > ? AND NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.model = ? "
            "AND e.text_hash = c.text_hash) ORDER BY c.id LIMIT ?", (after, model_id, limit))]

    def write_model_vectors(self, model_id: int, vectors: dict[str, np.ndarray]) -> None:
        """Store vectors of `model_id` (by chunk text hash) in one transaction."""
        with self._tx() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO embeddings(model, text_hash, vector) VALUES(?, ?, ?)",
                [(model_id, h, np.asarray(v, dtype=np.float32).tobytes()) for h, v in vectors.items()],
            )

    def build_model_index(self, model_id: int) -> int:
        """Write `model_id`'s complete FAISS file at the current log position; returns that position.

        Call under `write_lock` after every chunk has a vector of the model (else ValueError), so no chunk can
        arrive between this and `activate_model`.
        """
        row = self._query("SELECT dimension FROM models WHERE id = ?", (model_id,))
        if not row:
            raise ValueError(f"no model {model_id} in {self.path}")
        # exact index; a collection big enough for IVF gets it rebuilt by the first `flush` after activation
        index = VectorIndex(self.path, f"dense-m{model_id}", int(row[0][0]), index_type=self.index_type())
        head = self._log_head()
        last = 0
        while True:
            rows = self._query(
                "SELECT c.id, e.vector FROM chunks c LEFT JOIN embeddings e ON e.model = ? "
                "AND e.text_hash = c.text_hash WHERE c.id > ? ORDER BY c.id LIMIT 20000", (model_id, last))
            if not rows:
                break
            if any(r[1] is None for r in rows):
                raise ValueError(f"model {model_id} lacks vectors for some chunks of {self.path}")
            vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), index.dimension)
            index.add(np.asarray([r[0] for r in rows], dtype=np.int64), vecs)
            last = int(rows[-1][0])
        if index.newest_on_disk() != head:  # an equal file is this same index, written by an interrupted run
            index.save(head)
        return head

    def model_history(self) -> list[int]:
        """Model ids in the order they were made active (the last is the active one)."""
        row = self._query("SELECT value FROM meta WHERE key = 'model_history'")
        if row:
            return [int(x) for x in json.loads(row[0][0])]
        return [int(r[0]) for r in self._query("SELECT id FROM models WHERE active = 1")]

    def activate_model(self, model_id: int, seq: int, *, rollback: bool = False) -> None:
        """Make `model_id` (its index saved at `seq` by `build_model_index`) the active model in one transaction.

        `rollback` drops the current model from the history instead of pushing `model_id` onto it.
        """
        with self._tx() as conn:
            history = self.model_history()
            if rollback:
                history = history[:-1] or [model_id]
            elif history[-1:] != [model_id]:
                history.append(model_id)
            conn.execute("UPDATE models SET active = (id = ?)", (model_id,))
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)", (f"index_seq_m{model_id}", str(seq)))
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('model_history', ?)", (json.dumps(history),))
            bump_version(conn)
        self.select_model(model_id)

    def select_model(self, model_id: int) -> None:
        """Read (and write) this store's vectors as `model_id`: a view of an inactive model, for evaluation."""
        row = self._query("SELECT name, dimension FROM models WHERE id = ?", (model_id,))
        if not row:
            raise ValueError(f"no model {model_id} in {self.path}")
        with self._lock:
            self.model_id, self.model_name, self.dimension = model_id, str(row[0][0]), int(row[0][1])
            self.index = VectorIndex(self.path, f"dense-m{model_id}", self.dimension, index_type=self.index_type())
            self._index_loaded = False
