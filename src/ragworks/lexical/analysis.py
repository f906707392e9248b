"""Text → index terms for the BM25 legs and the answer checks: stopword sets and the Snowball-stemming Analyzer.

The floor below store/, retrieve/ and generate/: the embedded store's in-memory leg, the evaluation's reference
BM25, the verifier and the abstention check all analyze text the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# Lucene's EnglishAnalyzer default stopword set (also bm25s's "en").
ENGLISH_STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there these they "
    "this to was will with".split()
)

# Query-side only: these words carry no BM25 signal but make OR-queries slow on big corpora.
STOPWORDS = frozenset(
    "a an and are as at be but by for from has have how i in is it its of on or that the their there "
    "these this to was were what when where which who whom why will with does did do can could would "
    "should you your we our they them he she his her"
    .split()
)


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


def fts5_like_analyzer() -> Analyzer:
    """Words of 1+ characters, the FTS5 leg's query stopwords dropped, Snowball-stemmed (as FTS5's porter leg)."""
    return Analyzer(stemmer="english", stopwords=STOPWORDS, min_chars=1)
