"""BM25, once: the formula, the in-memory index the embedded store's lexical leg uses (`SegmentedBM25`), and the
evaluation's reference index with persistence (`BM25Index`, the same scorer, always searched fully merged).

FTS5's `bm25()` costs ~2 ms per SciFact query (it ranks every row an OR-query matches); scoring the query terms'
columns of a sparse term-frequency matrix costs ~0.3 ms, which is most of what a search's CPU budget can spare
under concurrent load (bench/serve_load.py). Quality is FTS5's: the analyzer mirrors it (Snowball stemming, 1+
character words, the same query stopwords) and scores k1 = 1.2, b = 0.75 with Lucene's idf — SciFact BM25 nDCG@10
0.6852 vs FTS5 0.6851, hybrid 0.7304 vs 0.7301; NFCorpus BM25 0.3345 vs 0.3349 (measured here).

Writes never recompile the matrix: added passages go to a delta (term → {row: tf}) and removed ones are masked
out, as Lucene treats deleted documents until a merge — their document frequencies and lengths keep counting in
idf and the mean length until the delta is merged into a new base (at 10% of the base, or a fifth deleted).
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from ragworks.lexical.analysis import Analyzer, fts5_like_analyzer

IdfVariant = Literal["lucene", "robertson"]


def idf_lucene(df: np.ndarray, n: int) -> np.ndarray:
    """Lucene BM25 idf, log(1 + (N - df + 0.5) / (df + 0.5)): never negative (Lucene 8 BM25Similarity)."""
    return np.log1p((n - df + 0.5) / (df + 0.5))


def idf_robertson(df: np.ndarray, n: int) -> np.ndarray:
    """Robertson–Spärck Jones idf, log((N - df + 0.5) / (df + 0.5)), floored at 0 for terms in most documents."""
    return np.maximum(np.log((n - df + 0.5) / (df + 0.5)), 0.0)


IDF: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {"lucene": idf_lucene, "robertson": idf_robertson}


def bm25_term_scores(tf: np.ndarray, doc_len: np.ndarray, avg_len: float, idf: float, *, k1: float, b: float
                     ) -> np.ndarray:
    """One term's BM25 score (Robertson et al., TREC-3 1994): idf · tf·(k1+1) / (tf + k1·(1 − b + b·dl/avgdl))."""
    norm = k1 * (1.0 - b + b * doc_len / avg_len)
    return idf * tf * (k1 + 1.0) / (tf + norm)


MERGE_FRACTION = 0.10  # merge the delta into the base when it holds this share of the base's rows
MERGE_MIN_ROWS = 2000  # ... but never for fewer rows than this (a merge recompiles the whole matrix)
DEAD_FRACTION = 0.20  # merge when this share of the base's rows is deleted


class SegmentedBM25:
    """BM25 over integer-keyed passages: a CSC base segment, a dict delta, and a mask of deleted base rows.

    Thread-safe: searches hold a lock only to read a consistent snapshot of the segment references.
    """

    def __init__(self, *, k1: float = 1.2, b: float = 0.75, idf: IdfVariant = "lucene",
                 analyzer: Callable[[str], list[str]] | None = None) -> None:
        self.k1, self.b, self.idf_variant = k1, b, idf
        self.analyzer = analyzer or fts5_like_analyzer()
        self.vocab: dict[str, int] = {}
        self._lock = threading.Lock()
        # base segment
        self._tf = None  # scipy CSC (rows × terms) of float32 term frequencies
        self._ids = np.zeros(0, dtype=np.int64)
        self._row_of: dict[int, int] = {}
        self._lengths = np.zeros(0, dtype=np.float32)
        self._df_base = np.zeros(0, dtype=np.float32)
        self._dead = np.zeros(0, dtype=bool)
        self._n_dead = 0
        # delta segment
        self._delta_rows: dict[int, dict[int, int]] = {}
        self._postings: dict[int, dict[int, int]] = {}
        self._delta_len = 0

    def __len__(self) -> int:
        return len(self._ids) - self._n_dead + len(self._delta_rows)

    def __repr__(self) -> str:
        return (f"SegmentedBM25(passages={len(self)}, base={len(self._ids)}, delta={len(self._delta_rows)}, "
                f"deleted={self._n_dead}, terms={len(self.vocab)})")

    # --- writes

    def _term_ids(self, counts: Counter[str]) -> dict[int, int]:
        """Words → term ids (new words get new ids); call with the lock held."""
        return {self.vocab.setdefault(t, len(self.vocab)): c for t, c in counts.items()}

    def build(self, ids: Sequence[int], texts: Iterable[str]) -> None:
        """Replace everything with these passages, compiled into one base segment."""
        analyzed = [(int(pid), Counter(self.analyzer(text))) for pid, text in zip(ids, texts, strict=False)]
        with self._lock:
            self.vocab = {}
            self._compile({pid: self._term_ids(c) for pid, c in analyzed})

    def add(self, ids: Sequence[int], texts: Sequence[str]) -> None:
        """Index passages into the delta; an id already present is replaced."""
        analyzed = [(int(pid), Counter(self.analyzer(text))) for pid, text in zip(ids, texts, strict=True)]
        with self._lock:
            for pid, counts in analyzed:
                terms = self._term_ids(counts)
                self._remove_locked(pid)
                self._delta_rows[pid] = terms
                self._delta_len += sum(terms.values())
                for t, c in terms.items():
                    self._postings.setdefault(t, {})[pid] = c
            self._maybe_merge()

    def remove(self, ids: Iterable[int]) -> None:
        with self._lock:
            for pid in ids:
                self._remove_locked(int(pid))
            self._maybe_merge()

    def _remove_locked(self, pid: int) -> None:
        terms = self._delta_rows.pop(pid, None)
        if terms is not None:
            self._delta_len -= sum(terms.values())
            for t in terms:
                posting = self._postings[t]
                del posting[pid]
                if not posting:
                    del self._postings[t]
            return
        row = self._row_of.get(pid)
        if row is not None and not self._dead[row]:
            self._dead[row] = True
            self._n_dead += 1

    def _maybe_merge(self) -> None:
        base = len(self._ids)
        if (len(self._delta_rows) >= max(MERGE_MIN_ROWS, MERGE_FRACTION * base)
                or (base and self._n_dead >= DEAD_FRACTION * base)):
            self._merge()

    def _rows_locked(self) -> dict[int, dict[int, int]]:
        """passage id → {term id: tf} for every live passage of both segments; call with the lock held."""
        rows: dict[int, dict[int, int]] = {}
        if self._tf is not None and len(self._ids):
            csr = self._tf.tocsr()
            for r in np.flatnonzero(~self._dead):
                lo, hi = csr.indptr[r], csr.indptr[r + 1]
                rows[int(self._ids[r])] = dict(zip(csr.indices[lo:hi].tolist(),
                                                   csr.data[lo:hi].astype(np.int64).tolist(), strict=True))
        rows.update(self._delta_rows)
        return rows

    def _merge(self) -> None:
        self._compile(self._rows_locked())

    def _compile(self, rows: dict[int, dict[int, int]]) -> None:
        from scipy import sparse

        ids = np.fromiter(rows, dtype=np.int64, count=len(rows))
        indptr = np.zeros(len(ids) + 1, dtype=np.int64)
        np.cumsum([len(r) for r in rows.values()], out=indptr[1:])
        cols = np.fromiter((t for r in rows.values() for t in r), dtype=np.int64, count=int(indptr[-1]))
        data = np.fromiter((c for r in rows.values() for c in r.values()), dtype=np.float32, count=len(cols))
        tf = sparse.csr_matrix((data, cols, indptr), shape=(len(ids), len(self.vocab))).tocsc()
        self._tf = tf
        self._ids = ids
        self._row_of = {int(pid): i for i, pid in enumerate(ids)}
        self._lengths = np.asarray(tf.sum(axis=1), dtype=np.float32).ravel()
        self._df_base = np.diff(tf.indptr).astype(np.float32)
        self._dead = np.zeros(len(ids), dtype=bool)
        self._n_dead = 0
        self._delta_rows, self._postings, self._delta_len = {}, {}, 0

    # --- search

    def search(self, query: str, k: int, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """The best `k` (passage id, BM25 score) pairs, score descending (ties: smaller id first).

        Only passages sharing a query term; a term repeated in the query counts as often as it occurs (Lucene).
        `allowed` restricts the result to those passage ids.
        """
        words = self.analyzer(query)
        with self._lock:
            terms = Counter(self.vocab[t] for t in words if t in self.vocab)
            if not terms or k <= 0:
                return []
            tf, ids, lengths, df_base, dead = self._tf, self._ids, self._lengths, self._df_base, self._dead
            n = len(ids) + len(self._delta_rows)
            if n == 0:
                return []
            avg = max(float(lengths.sum() + self._delta_len) / n, 1e-9)
            delta = {t: dict(self._postings.get(t, {})) for t in terms}
            delta_len = {pid: sum(self._delta_rows[pid].values()) for p in delta.values() for pid in p}
            any_dead = self._n_dead > 0
        idf_of = IDF[self.idf_variant]
        scores = np.zeros(len(ids), dtype=np.float32)
        extra: dict[int, np.float32] = {}
        for t, times in terms.items():
            df = (float(df_base[t]) if t < len(df_base) else 0.0) + len(delta[t])
            idf = float(idf_of(np.array([df]), n)[0])
            if tf is not None and t < tf.shape[1]:
                lo, hi = tf.indptr[t], tf.indptr[t + 1]
                rows = tf.indices[lo:hi]
                scores[rows] += times * bm25_term_scores(tf.data[lo:hi], lengths[rows], avg, idf,
                                                         k1=self.k1, b=self.b)
            if delta[t]:  # the delta's postings, through the same formula
                pids = list(delta[t])
                part = times * bm25_term_scores(np.fromiter(delta[t].values(), dtype=np.float32, count=len(pids)),
                                                np.asarray([delta_len[p] for p in pids], dtype=np.float32), avg,
                                                idf, k1=self.k1, b=self.b)
                for pid, s in zip(pids, part, strict=True):  # float32 sums, term by term, as the base's
                    extra[pid] = np.float32(extra.get(pid, np.float32(0.0)) + s)
        if any_dead:
            scores[dead] = 0.0
        if allowed is not None:
            scores[~np.isin(ids, allowed)] = 0.0
            keep = set(allowed.tolist())
            extra = {pid: s for pid, s in extra.items() if pid in keep}
        hit = np.flatnonzero(scores > 0)
        if len(hit) > k:
            hit = hit[np.argpartition(-scores[hit], k - 1)[:k]]
        found = [(int(ids[i]), float(scores[i])) for i in hit] + [(p, float(s)) for p, s in extra.items() if s > 0]
        found.sort(key=lambda x: (-x[1], x[0]))
        return found[:k]


class BM25Index(SegmentedBM25):
    """The reference BM25 of `eval beir` (`lex=inhouse`): SegmentedBM25 merged before every search after a write,
    so removals leave document frequencies and the mean length exactly; saved to and loaded from one file.

    Analyzer defaults to Lucene's English analysis (2+ character words, Lucene's stopwords) as bm25s does.
    """

    def __init__(self, *, k1: float = 1.2, b: float = 0.75, idf: IdfVariant = "lucene",
                 analyzer: Analyzer | None = None) -> None:
        super().__init__(k1=k1, b=b, idf=idf, analyzer=analyzer or Analyzer())
        self._dirty = False

    def __repr__(self) -> str:
        stemming = getattr(self.analyzer, "stemming", False)
        return (f"BM25Index(passages={len(self)}, terms={len(self.vocab)}, k1={self.k1}, b={self.b}, "
                f"idf={self.idf_variant!r}, stemming={stemming})")

    def add(self, ids: Sequence[int], texts: Sequence[str]) -> None:
        super().add(ids, texts)
        self._dirty = True

    def remove(self, ids: Iterable[int]) -> None:
        super().remove(ids)
        self._dirty = True

    def search(self, query: str, k: int, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        if self._dirty:
            with self._lock:
                self._merge()
                self._dirty = False
        return super().search(query, k, allowed)

    def rows(self) -> dict[int, dict[int, int]]:
        """passage id → {term id: tf}, every live passage (merged first)."""
        with self._lock:
            self._merge()
            self._dirty = False
            return self._rows_locked()

    # --- persistence: one .npz, written atomically

    def save(self, path: Path) -> None:
        """Write the index to `path` (via a temporary file and a rename, so a crash leaves the old file)."""
        rows = self.rows()
        ids = np.fromiter(rows, dtype=np.int64, count=len(rows))
        lengths = np.fromiter((len(r) for r in rows.values()), dtype=np.int64, count=len(ids))
        terms = np.fromiter((t for r in rows.values() for t in r), dtype=np.int64, count=int(lengths.sum()))
        counts = np.fromiter((c for r in rows.values() for c in r.values()), dtype=np.int32, count=len(terms))
        assert isinstance(self.analyzer, Analyzer)
        meta = {"k1": self.k1, "b": self.b, "idf": self.idf_variant, "analyzer": self.analyzer.to_dict(),
                "vocab": sorted(self.vocab, key=self.vocab.__getitem__)}
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb") as f:
            np.savez(f, ids=ids, lengths=lengths, terms=terms, counts=counts,
                     meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> BM25Index:
        with np.load(path) as z:
            meta = json.loads(z["meta"].tobytes().decode())
            index = cls(k1=meta["k1"], b=meta["b"], idf=meta["idf"], analyzer=Analyzer.from_dict(meta["analyzer"]))
            index.vocab = {t: i for i, t in enumerate(meta["vocab"])}
            ends = np.cumsum(z["lengths"])
            terms, counts = z["terms"].tolist(), z["counts"].tolist()
            rows: dict[int, dict[int, int]] = {}
            start = 0
            for pid, end in zip(z["ids"].tolist(), ends.tolist(), strict=True):
                rows[pid] = dict(zip(terms[start:end], counts[start:end], strict=True))
                start = end
        with index._lock:
            index._compile(rows)
        return index
