"""BM25 over a sparse term-frequency matrix: configurable k1 / b / idf, stemming and stopwords, saved as one file.

Scoring happens at query time from raw term frequencies (only the query terms' columns are touched), so adding or
removing documents never rewrites precomputed weights; `add` and `remove` only mark the matrix for a rebuild on
the next search. Stemming uses PyStemmer (Snowball) when installed and degrades to no stemming without it.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

IdfVariant = Literal["lucene", "robertson"]

# Lucene's EnglishAnalyzer default stopword set (also bm25s's "en").
ENGLISH_STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there these they "
    "this to was will with".split()
)


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


@dataclass(frozen=True, slots=True)
class Analyzer:
    """Text → index terms: lower-case words of `min_chars`+ characters, stopwords dropped, then stemmed.

    `stemmer` is a Snowball language for PyStemmer ("english", ...) or None; `stopwords` a set or None.
    `min_chars=2` is scikit-learn's and bm25s's tokenization; 1 also keeps "vitamin D", "T cells", "type 2" (no
    better on SciFact train or NFCorpus dev, so not the default).
    """

    stemmer: str | None = "english"
    stopwords: frozenset[str] | None = ENGLISH_STOPWORDS
    min_chars: int = 2
    _stem: Any = field(default=None, init=False, repr=False, compare=False)
    _token: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_token", re.compile(rf"(?u)\b\w{{{max(self.min_chars, 1)},}}\b"))
        if self.stemmer:
            try:
                import Stemmer
            except ImportError:  # degrade to unstemmed terms, never fail to index
                return
            object.__setattr__(self, "_stem", Stemmer.Stemmer(self.stemmer))

    @property
    def stemming(self) -> bool:
        return self._stem is not None

    def __call__(self, text: str) -> list[str]:
        words = self._token.findall(text.lower())
        if self.stopwords:
            words = [w for w in words if w not in self.stopwords]
        return list(self._stem.stemWords(words)) if self._stem is not None else words

    def to_dict(self) -> dict[str, Any]:
        return {"stemmer": self.stemmer if self.stemming else None, "min_chars": self.min_chars,
                "stopwords": sorted(self.stopwords) if self.stopwords else None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Analyzer:
        return cls(stemmer=d.get("stemmer"), stopwords=frozenset(d["stopwords"]) if d.get("stopwords") else None,
                   min_chars=int(d.get("min_chars", 2)))


class BM25Index:
    """An in-memory BM25 index of integer-keyed passages (a store's chunk ids), searchable and saveable."""

    def __init__(self, *, k1: float = 1.2, b: float = 0.75, idf: IdfVariant = "lucene",
                 analyzer: Analyzer | None = None) -> None:
        if idf not in IDF:
            raise ValueError(f"idf must be one of {', '.join(IDF)}")
        self.k1, self.b, self.idf_variant = k1, b, idf
        self.analyzer = analyzer or Analyzer()
        self.vocab: dict[str, int] = {}
        self._rows: dict[int, dict[int, int]] = {}  # passage id → {term id: tf}; the source of truth
        self._compiled: tuple[Any, np.ndarray, np.ndarray, np.ndarray, float] | None = None

    def __len__(self) -> int:
        return len(self._rows)

    def __repr__(self) -> str:
        return (f"BM25Index(passages={len(self)}, terms={len(self.vocab)}, k1={self.k1}, b={self.b}, "
                f"idf={self.idf_variant!r}, stemming={self.analyzer.stemming})")

    def add(self, ids: Sequence[int], texts: Sequence[str]) -> None:
        """Index passages; an id already present is replaced."""
        for pid, text in zip(ids, texts, strict=True):
            counts = Counter(self.analyzer(text))
            self._rows[int(pid)] = {self.vocab.setdefault(t, len(self.vocab)): c for t, c in counts.items()}
        self._compiled = None

    def remove(self, ids: Iterable[int]) -> None:
        for pid in ids:
            self._rows.pop(int(pid), None)
        self._compiled = None

    def _compile(self) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, float]:
        """CSC term-frequency matrix (passages × terms), passage ids, lengths, idf per term, mean length."""
        if self._compiled is None:
            from scipy import sparse

            ids = np.fromiter(self._rows, dtype=np.int64, count=len(self._rows))
            indptr = np.zeros(len(ids) + 1, dtype=np.int64)
            cols: list[int] = []
            data: list[int] = []
            for i, row in enumerate(self._rows.values()):
                cols.extend(row)
                data.extend(row.values())
                indptr[i + 1] = len(cols)
            tf = sparse.csr_matrix(
                (np.asarray(data, dtype=np.float32), np.asarray(cols, dtype=np.int64), indptr),
                shape=(len(ids), len(self.vocab)),
            ).tocsc()
            lengths = np.asarray(tf.sum(axis=1), dtype=np.float32).ravel()
            df = np.diff(tf.indptr).astype(np.float64)
            idf = IDF[self.idf_variant](df, len(ids)).astype(np.float32)
            avg = float(lengths.mean()) if len(ids) else 1.0
            self._compiled = (tf, ids, lengths, idf, max(avg, 1e-9))
        return self._compiled

    def search(self, query: str, k: int, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """The best `k` (passage id, BM25 score) pairs, score descending; only passages sharing a query term.

        A term repeated in the query counts as often as it occurs, as in Lucene (and bm25s).
        `allowed` restricts the result to those passage ids.
        """
        terms = Counter(self.vocab[t] for t in self.analyzer(query) if t in self.vocab)
        if not terms or not self._rows:
            return []
        tf, ids, lengths, idf, avg = self._compile()
        scores = np.zeros(len(ids), dtype=np.float32)
        for t, times in terms.items():
            lo, hi = tf.indptr[t], tf.indptr[t + 1]
            rows = tf.indices[lo:hi]
            scores[rows] += times * bm25_term_scores(tf.data[lo:hi], lengths[rows], avg, float(idf[t]),
                                                     k1=self.k1, b=self.b)
        if allowed is not None:
            scores[~np.isin(ids, allowed)] = 0.0
        hit = np.flatnonzero(scores > 0)
        if len(hit) > k:
            hit = hit[np.argpartition(-scores[hit], k - 1)[:k]]
        order = hit[np.lexsort((ids[hit], -scores[hit]))]  # score descending, then id ascending (deterministic)
        return [(int(ids[i]), float(scores[i])) for i in order]

    # --- persistence: one .npz, written atomically

    def save(self, path: Path) -> None:
        """Write the index to `path` (via a temporary file and a rename, so a crash leaves the old file)."""
        ids = np.fromiter(self._rows, dtype=np.int64, count=len(self._rows))
        lengths = np.fromiter((len(r) for r in self._rows.values()), dtype=np.int64, count=len(ids))
        terms = np.fromiter((t for r in self._rows.values() for t in r), dtype=np.int64, count=int(lengths.sum()))
        counts = np.fromiter((c for r in self._rows.values() for c in r.values()), dtype=np.int32,
                             count=len(terms))
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
            start = 0
            for pid, end in zip(z["ids"].tolist(), ends.tolist(), strict=True):
                index._rows[pid] = dict(zip(terms[start:end], counts[start:end], strict=True))
                start = end
        return index
