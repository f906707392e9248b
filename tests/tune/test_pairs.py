"""Training pairs: from labels or from the corpus, and hard negatives that are never positives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragworks.errors import ConfigError
from ragworks.store.embedded import EmbeddedStore
from ragworks.tune.pairs import (
    CorpusChunk,
    Pair,
    corpus_pairs,
    ict_pairs,
    jsonl_pairs,
    mine_negatives,
    near_identical,
    read_chunks,
    sentences,
    split_pairs,
)


def test_corpus_pairs_map_titles_and_headings_to_passages_without_the_context_line(base_collection: Path) -> None:
    chunks = read_chunks(base_collection)
    pairs = corpus_pairs(chunks)
    titles = [p for p in pairs if p.origin == "title"]
    headings = [p for p in pairs if p.origin == "heading"]
    assert titles and headings
    by_source = {c.source: c for c in reversed(chunks)}  # first chunk of each document
    for p in titles:
        (source,) = p.positive_docs
        assert p.query == by_source[source].title
        assert p.positive == by_source[source].text  # the passage, not the context line repeating the title
    assert len({p.qid for p in pairs}) == len(pairs)


def test_split_keeps_each_query_on_one_side() -> None:
    pairs = [Pair(f"q{i // 2}", f"passage {i}", qid=f"q{i // 2}") for i in range(40)]
    train, dev, test = split_pairs(pairs, dev_fraction=0.2, test_fraction=0.2)
    sides = [{p.qid for p in side} for side in (train, dev, test)]
    assert all(side for side in sides)
    assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) and not (sides[1] & sides[2])
    assert len(train) + len(dev) + len(test) == 40


def _mine_bm25_negatives(collection: Path, pairs: list, chunks: list) -> dict[str, str]:
    """Mine BM25 negatives into `pairs` (at least 80% get one); returns each chunk body's source."""
    store = EmbeddedStore(collection, create=False)
    try:
        given = mine_negatives(pairs, store, chunks, None, method="bm25")
    finally:
        store.close()
    assert given >= len(pairs) * 0.8
    return {c.body: c.source for c in chunks}


def test_mined_negatives_are_never_from_positive_documents_or_near_copies(base_collection: Path) -> None:
    chunks = read_chunks(base_collection)
    pairs = corpus_pairs(chunks)
    source_of_body = _mine_bm25_negatives(base_collection, pairs, chunks)
    for p in pairs:
        if p.negative is None:
            continue
        assert source_of_body[p.negative] not in p.positive_docs
        assert not near_identical(p.negative, p.positive)


def test_jsonl_pairs_link_positives_found_in_the_collection(base_collection: Path, tmp_path: Path) -> None:
    chunks = read_chunks(base_collection)
    path = tmp_path / "pairs.jsonl"
    lines = [{"query": "who kept the light", "positive": chunks[0].text},
             {"query": "an outside passage", "positive": "Text the collection does not hold.", "negative": "x y"}]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    pairs = jsonl_pairs(path, chunks)
    assert pairs[0].positive_docs == frozenset([chunks[0].source])
    assert pairs[1].positive_docs == frozenset() and pairs[1].negative == "x y"


def test_malformed_pairs_file_is_a_clear_error(base_collection: Path, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "no query key"}\n')
    with pytest.raises(ConfigError, match=r"bad\.jsonl:1"):
        jsonl_pairs(path, read_chunks(base_collection))


def _chunk(cid: int, text: str, source: str = "doc.md") -> CorpusChunk:
    return CorpusChunk(cid, source, "A title", text, "A title", "", 0)


def test_ict_pairs_query_a_sentence_of_the_passage_mostly_cut_from_it() -> None:
    texts = [f"Sentence one of passage {i} talks about tides. The second sentence of passage {i} names the moon. "
             f"A third sentence of passage {i} ends it here." for i in range(200)]
    chunks = [_chunk(i, t, f"doc{i}.md") for i, t in enumerate(texts)]
    pairs = ict_pairs(chunks, count=150, remove_fraction=0.9)
    assert len(pairs) == 150 and len({p.qid for p in pairs}) == 150  # one pair per chunk
    by_qid = {f"i:{c.id}": c for c in chunks}
    cut = 0
    for p in pairs:
        chunk = by_qid[p.qid]
        assert p.query.strip() and p.query in sentences(chunk.text)
        assert p.positive.startswith("A title\n")  # the context line, as the collection embedded it
        assert p.positive_docs == {chunk.source} and p.origin == "ict"
        cut += p.query not in p.positive
    assert 0.8 <= cut / len(pairs) < 1.0  # ~90% without their sentence, some keep it


def test_ict_pairs_skip_passages_with_a_single_sentence_or_none_of_query_length() -> None:
    chunks = [_chunk(0, "Only one sentence in this passage about fog signals."),
              _chunk(1, "Too short. Also short. Tiny."),
              _chunk(2, "   "),
              _chunk(3, "The keeper lit the lamp at dusk every evening. He wound the clockwork twice a night.")]
    pairs = ict_pairs(chunks, count=10)
    assert [p.qid for p in pairs] == ["i:3"]
    assert all(p.query.strip() and p.positive.strip() for p in pairs)


def test_ict_pairs_on_a_real_collection_never_get_their_positive_as_a_hard_negative(base_collection: Path) -> None:
    chunks = read_chunks(base_collection)
    pairs = ict_pairs(chunks, count=60)
    assert len(pairs) >= 30 and all(p.query.strip() for p in pairs)
    source_of_body = _mine_bm25_negatives(base_collection, pairs, chunks)
    for p in pairs:
        if p.negative is not None:
            assert source_of_body[p.negative] not in p.positive_docs  # not the passage, nor its document
            assert not near_identical(p.negative, p.positive)
