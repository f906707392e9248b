"""Training pairs (query → relevant passage [+ hard negative]) from labels, or made from the corpus itself.

Labelled: a BEIR directory (qrels/train.tsv + queries.jsonl; each relevant document contributes its chunk the
current model ranks best for the query) or a JSONL file of {"query", "positive"[, "negative"]}. Unlabelled: a
document's title → its first passage, a section heading → its passage, a passage's own sentence → the rest of it
(Inverse Cloze Task), and optionally questions written by the configured LLM for sampled passages (doc2query).
Hard negatives are mined with BM25 and/or the current dense model from the collection, skipping passages of the
positive's documents and near-identical texts.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from ragworks.embed.base import Embedder
from ragworks.errors import ConfigError
from ragworks.store.corpus import corpus_rows, model_vectors
from ragworks.store.embedded import EmbeddedStore

NegativeMining = Literal["bm25", "dense", "both", "none"]
Progress = Callable[[str, int, int], None]
_WORD = re.compile(r"\w+")


@dataclass(slots=True)
class Pair:
    """A query, a passage that answers it, and optionally a passage that does not (a hard negative)."""

    query: str
    positive: str
    negative: str | None = None
    qid: str = ""  # pairs of one query share it: splits keep them on one side
    positive_docs: frozenset[str] = frozenset()  # document sources judged relevant (never mined as negatives)
    origin: str = "labelled"  # labelled | title | heading | ict | doc2query


@dataclass(slots=True)
class CorpusChunk:
    id: int
    source: str  # the document's source (BEIR: `<corpus file>#<_id>`)
    title: str
    text: str
    context: str
    heading: str  # the innermost heading, "" at document level
    ordinal: int

    @property
    def body(self) -> str:
        """What the collection embedded for this chunk (context line, then the passage)."""
        return f"{self.context}\n{self.text}" if self.context else self.text


@dataclass(slots=True)
class PairSet:
    """Pairs split by query: `train` is trained on, `dev` picks the checkpoint, `test` only measures."""

    train: list[Pair]
    dev: list[Pair]
    test: list[Pair]
    source: str
    notes: list[str] = field(default_factory=list)


def read_chunks(collection_path: Path) -> list[CorpusChunk]:
    """Every chunk of the collection with its document's source and title (read-only)."""
    return [CorpusChunk(r.chunk_id, r.source, r.title, r.text, r.context,
                        r.heading_path[-1] if r.heading_path else "", r.ordinal) for r in corpus_rows(collection_path)]


def _tokens(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def near_identical(a: str, b: str, threshold: float = 0.8) -> bool:
    """Token-set Jaccard ≥ threshold: the same passage up to formatting, or a copy of it."""
    ta, tb = _tokens(a), _tokens(b)
    if not ta or not tb:
        return a.strip() == b.strip()
    return len(ta & tb) / len(ta | tb) >= threshold


# --- labelled pairs


def chunk_vectors(collection_path: Path, model_name: str) -> dict[int, np.ndarray]:
    """{chunk id: stored vector} of model `model_name` (read-only; empty if the collection has none of it)."""
    return model_vectors(collection_path, model_name)


def beir_pairs(root: Path, chunks: Sequence[CorpusChunk], embedder: Embedder, *, split: str = "train",
               vectors: dict[int, np.ndarray] | None = None) -> list[Pair]:
    """Pairs from a BEIR split's qrels: each relevant document's chunk that `embedder` ranks best for the query.

    `vectors` (the collection's stored vectors of `embedder`) saves embedding the candidate chunks again.
    """
    from ragworks.evaluate.beir import load_beir

    ds = load_beir(root, split=split)
    by_doc: dict[str, list[CorpusChunk]] = {}
    for c in chunks:
        by_doc.setdefault(ds.doc_id_of(c.source), []).append(c)
    qids = [q for q, judged in ds.qrels.items() if any(rel > 0 and d in by_doc for d, rel in judged.items())]
    if not qids:
        raise ConfigError(f"{root}: no {split} qrels name a document of this collection (ingest its corpus.jsonl)")
    qvecs = embedder.embed_queries([ds.queries[q] for q in qids])
    pairs = []
    for qvec, qid in zip(qvecs, qids, strict=True):
        rel_docs = [d for d, rel in ds.qrels[qid].items() if rel > 0 and d in by_doc]
        sources = frozenset(c.source for d in rel_docs for c in by_doc[d])
        for d in rel_docs:
            cands = by_doc[d]
            best = cands[0]
            if len(cands) > 1:
                if vectors is not None and all(c.id in vectors for c in cands):
                    mat = np.stack([vectors[c.id] for c in cands])
                else:
                    mat = embedder.embed_documents([c.body for c in cands])
                scores = mat @ qvec
                best = cands[int(np.argmax(scores))]
            pairs.append(Pair(ds.queries[qid], best.body, qid=qid, positive_docs=sources))
    return pairs


def jsonl_pairs(path: Path, chunks: Sequence[CorpusChunk]) -> list[Pair]:
    """Pairs from JSONL lines {"query", "positive"[, "negative"]}; a positive found in the collection is linked."""
    by_text: dict[str, str] = {}
    for c in chunks:
        by_text.setdefault(c.text.strip(), c.source)
        by_text.setdefault(c.body.strip(), c.source)
    pairs = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read pairs file {path}: {exc}") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            query, positive = str(rec["query"]).strip(), str(rec["positive"]).strip()
        except (ValueError, KeyError, TypeError):
            raise ConfigError(f"{path}:{n}: expected a JSON object with \"query\" and \"positive\"") from None
        if not query or not positive:
            continue
        src = by_text.get(positive)
        neg = rec.get("negative")
        pairs.append(Pair(query, positive, str(neg) if neg else None, qid=f"q{n}",
                          positive_docs=frozenset([src]) if src else frozenset()))
    if not pairs:
        raise ConfigError(f"{path}: no pairs (one JSON object per line: {{\"query\": …, \"positive\": …}})")
    return pairs


# --- pairs from the corpus itself


def corpus_pairs(chunks: Sequence[CorpusChunk], *, min_words: int = 3, max_pairs: int | None = None,
                 seed: int = 0) -> list[Pair]:
    """Title → the document's first passage, heading → its section's first passage (passage without the context
    line, which repeats the title and headings and would make the pair trivial)."""
    pairs: list[Pair] = []
    seen_docs: set[str] = set()
    seen_sections: set[tuple[str, str]] = set()
    for c in chunks:
        if c.source not in seen_docs and len(_WORD.findall(c.title)) >= min_words and c.text.strip():
            seen_docs.add(c.source)
            pairs.append(Pair(c.title, c.text, qid=f"t:{c.source}", positive_docs=frozenset([c.source]),
                              origin="title"))
        key = (c.source, c.heading)
        if c.heading and key not in seen_sections and c.heading != c.title and len(_WORD.findall(c.heading)) >= 2:
            seen_sections.add(key)
            pairs.append(Pair(c.heading, c.text, qid=f"h:{c.source}#{c.heading}",
                              positive_docs=frozenset([c.source]), origin="heading"))
    if max_pairs is not None and len(pairs) > max_pairs:
        pairs = random.Random(seed).sample(pairs, max_pairs)
    return pairs


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")


def sentences(text: str) -> list[str]:
    """`text` split after . ! or ? followed by a capital or a digit (good enough for ICT; no abbreviation list)."""
    return [s.strip() for s in _SENTENCE_END.split(" ".join(text.split())) if s.strip()]


def ict_pairs(chunks: Sequence[CorpusChunk], *, count: int, remove_fraction: float = 0.9, min_words: int = 6,
              max_words: int = 40, seed: int = 0) -> list[Pair]:
    """Inverse Cloze Task pairs (Lee et al., ACL 2019): a random sentence of a passage → that passage.

    In `remove_fraction` of the pairs the sentence is cut from the passage, so the model learns what a passage is
    about, not to find copied words; the rest keep it, as real queries sometimes quote their passage. A passage
    needs another sentence besides the query; at most one pair per chunk, for up to `count` random chunks.
    """
    rng = random.Random(seed)
    order = list(chunks)
    rng.shuffle(order)
    pairs: list[Pair] = []
    for c in order:
        if len(pairs) >= count:
            break
        sents = sentences(c.text)
        if len(sents) < 2:
            continue
        usable = [i for i, sent in enumerate(sents) if min_words <= len(_WORD.findall(sent)) <= max_words]
        if not usable:
            continue
        i = rng.choice(usable)
        rest = sents[:i] + sents[i + 1 :] if rng.random() < remove_fraction else sents
        passage = " ".join(rest)
        positive = f"{c.context}\n{passage}" if c.context else passage
        pairs.append(Pair(sents[i], positive, qid=f"i:{c.id}", positive_docs=frozenset([c.source]), origin="ict"))
    return pairs


_D2Q_PROMPT = ("Write one short search query that this passage answers. Reply with the query only.\n\n"
               "Passage: {passage}")


def doc2query_pairs(chunks: Sequence[CorpusChunk], llm: object, *, count: int, max_seconds: float, seed: int = 0,
                    progress: Progress | None = None) -> tuple[list[Pair], dict[str, float]]:
    """Up to `count` LLM-written queries for random passages, stopping after `max_seconds`; (pairs, measurements).

    Generated queries that are empty, too long, or mostly copied from the passage are dropped.
    """
    from ragworks.generate.base import LLM, complete

    model: LLM = llm  # type: ignore[assignment]
    rng = random.Random(seed)
    sample = rng.sample(list(chunks), min(count, len(chunks)))
    pairs: list[Pair] = []
    started = time.perf_counter()
    tried = 0
    for c in sample:
        if time.perf_counter() - started > max_seconds:
            break
        tried += 1
        passage = " ".join(c.text.split()[:160])
        text = complete(model, [{"role": "user", "content": _D2Q_PROMPT.format(passage=passage)}], max_tokens=40)
        query = text.strip().splitlines()[0].strip(" \"'") if text.strip() else ""
        words = _WORD.findall(query.lower())
        if 3 <= len(words) <= 30 and not near_identical(query, passage, 0.5) and query.lower() not in passage.lower():
            pairs.append(Pair(query, c.text, qid=f"g:{c.id}", positive_docs=frozenset([c.source]), origin="doc2query"))
        if progress is not None:
            progress("doc2query", tried, len(sample))
    seconds = time.perf_counter() - started
    return pairs, {"requested": count, "tried": tried, "kept": len(pairs), "seconds": round(seconds, 1),
                   "seconds_per_query": round(seconds / max(tried, 1), 2)}


# --- splits and hard negatives


def split_pairs(pairs: Sequence[Pair], *, dev_fraction: float = 0.1, test_fraction: float = 0.0, max_dev: int = 200,
                max_test: int = 300, seed: int = 0) -> tuple[list[Pair], list[Pair], list[Pair]]:
    """(train, dev, test) with every query's pairs on one side; dev and test hold whole queries."""
    qids = list(dict.fromkeys(p.qid for p in pairs))
    random.Random(seed).shuffle(qids)
    n_test = min(max_test, round(len(qids) * test_fraction)) if test_fraction else 0
    n_dev = min(max_dev, max(1, round(len(qids) * dev_fraction))) if len(qids) > 1 else 0
    test_q, dev_q = set(qids[:n_test]), set(qids[n_test : n_test + n_dev])
    return ([p for p in pairs if p.qid not in test_q and p.qid not in dev_q], [p for p in pairs if p.qid in dev_q],
            [p for p in pairs if p.qid in test_q])


def mine_negatives(pairs: Sequence[Pair], store: EmbeddedStore, chunks: Sequence[CorpusChunk],
                   embedder: Embedder | None, *, method: NegativeMining = "bm25", depth: int = 30, skip: int = 2,
                   seed: int = 0, progress: Progress | None = None) -> int:
    """Give each pair without one a hard negative from the collection; returns how many got one.

    Candidates are the top `depth` chunks of BM25 and/or the current dense model; chunks of the positive's
    documents and passages near-identical to the positive are excluded, and the first `skip` remaining ranks too
    (unjudged but relevant passages crowd the very top). One is drawn at random from the rest.
    """
    if method == "none":
        return 0
    by_id = {c.id: c for c in chunks}
    rng = random.Random(seed)
    todo = [p for p in pairs if p.negative is None]
    qvecs = None
    if method in ("dense", "both"):
        if embedder is None:
            raise ValueError("dense negative mining needs an embedder")
        qvecs = embedder.embed_queries([p.query for p in todo])
    given = 0
    for i, p in enumerate(todo):
        ranked: list[int] = []
        if method in ("bm25", "both"):
            ranked += [cid for cid, _ in store.lexical_search(p.query, depth)]
        if qvecs is not None:
            ranked += [cid for cid, _ in store.dense_search(qvecs[i], depth)]
        cands: list[CorpusChunk] = []
        for cid in dict.fromkeys(ranked):
            c = by_id.get(cid)
            if c is None or c.source in p.positive_docs or near_identical(c.text, p.positive):
                continue
            cands.append(c)
        pool = cands[skip:] or cands
        if pool:
            p.negative = rng.choice(pool).body
            given += 1
        if progress is not None and (i % 50 == 0 or i == len(todo) - 1):
            progress("negatives", i + 1, len(todo))
    return given
