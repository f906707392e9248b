"""Tuning without labels by a linear adapter distilled from the hybrid retriever (ragworks.tune.adapter)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from ragworks.collection import Collection
from ragworks.config import Settings
from ragworks.embed import versions
from ragworks.embed.local import SentenceTransformerEmbedder
from ragworks.store.embedded import EmbeddedStore
from ragworks.tune.adapter import (
    ADAPTER_FILE,
    AdapterConfig,
    StoredVectorsEmbedder,
    adapt,
    pseudo_queries,
    save_adapted,
    teacher_dev_mrr,
    teacher_rankings,
    train_adapter,
)
from ragworks.tune.pairs import chunk_vectors, read_chunks
from ragworks.tune.run import TuneOptions, run_tune
from ragworks.tune.train import TrainConfig

TEXTS = ["How far does a lighthouse beam reach?", "Fresnel lenses focus the light into a horizontal beam.",
         "Tides rise and fall twice a day."]


def _stored(collection: Path, embedder: SentenceTransformerEmbedder) -> tuple[list, np.ndarray, np.ndarray]:
    chunks = read_chunks(collection)
    vectors = chunk_vectors(collection, embedder.name)
    return chunks, np.array([c.id for c in chunks]), np.stack([vectors[c.id] for c in chunks])


def test_saved_adapter_computes_the_map_and_alpha_zero_is_the_base_model(
        tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    base = embedder.embed_documents(TEXTS)
    save_adapted(embedder.model_dir, np.zeros((384, 384), dtype=np.float32), tmp_path / "zero")
    zero = SentenceTransformerEmbedder(str(tmp_path / "zero"))
    assert np.allclose(zero.embed_documents(TEXTS), base, atol=1e-5)  # α = 0: the base model's vectors

    weight = np.random.default_rng(0).normal(0.0, 0.05, (384, 384)).astype(np.float32)
    save_adapted(embedder.model_dir, weight, tmp_path / "tuned", {"note": "test"})
    tuned = SentenceTransformerEmbedder(str(tmp_path / "tuned"))
    got = tuned.embed_queries(TEXTS)
    assert np.allclose(got, adapt(base, weight), atol=1e-4)  # the model computes exactly what was trained
    assert not np.allclose(got, base, atol=1e-2)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert json.loads((tmp_path / "tuned" / ADAPTER_FILE).read_text()) == {"note": "test"}
    assert tuned.max_tokens == embedder.max_tokens

    # re-embedding maps the stored base vectors instead of running the transformer: the same vectors
    fast = StoredVectorsEmbedder(tuned, weight, {t: v for t, v in zip(TEXTS[:2], base[:2], strict=True)})
    assert np.allclose(fast.embed_documents(TEXTS), tuned.embed_documents(TEXTS), atol=1e-4)
    assert fast.mapped == 2 and fast.name == tuned.name and fast.dimension == 384

    # the ONNX backend (API replicas' default) applies the adapter too: its query vectors match the collection's
    from ragworks.embed.onnx import OnnxEmbedder

    onnx = OnnxEmbedder(str(tmp_path / "tuned"), cache_dir=tmp_path / "onnx")
    cos = (onnx.embed_queries(TEXTS) * got).sum(axis=1)
    assert onnx.name == tuned.name and onnx.dimension == 384 and cos.min() > 0.98  # int8 drift only
    assert ((onnx.embed_queries(TEXTS) * base).sum(axis=1) < cos).all()  # not the base model's vectors


def test_pseudo_queries_are_sentences_of_their_passage_whose_positives_are_the_other_passages(
        base_collection: Path) -> None:
    chunks = read_chunks(base_collection)
    queries = pseudo_queries(chunks, per_passage=2)
    ict = [q for q in queries if q.kind == "ict"]
    titles = [q for q in queries if q.kind == "title"]
    assert ict and titles
    for q in ict:
        own = chunks[q.row]
        assert q.text in " ".join(own.text.split())
        assert q.row not in q.positives  # its own passage holds it verbatim: never the answer to learn
        assert all(chunks[r].source == own.source for r in q.positives)
    assert max(sum(q.row == r for q in ict) for r in {q.row for q in ict}) == 2
    for q in titles:
        assert q.text == chunks[q.row].title and q.row in q.positives
    excluded = {ict[0].text.lower(), titles[0].text.lower()}
    assert not {q.text.lower() for q in pseudo_queries(chunks, exclude=excluded, per_passage=2)} & excluded


def test_teacher_ranks_real_rows_and_the_adapter_never_learns_worse_than_the_base_on_dev(
        base_collection: Path, embedder: SentenceTransformerEmbedder, tmp_path: Path) -> None:
    chunks, ids, matrix = _stored(base_collection, embedder)
    queries = pseudo_queries(chunks)
    qvecs = embedder.embed_queries([q.text for q in queries])
    config = AdapterConfig(epochs=4, batch_size=64, dev_queries=40, teacher_depth=20)
    store = EmbeddedStore(base_collection, create=False)
    try:
        teacher = teacher_rankings(store, queries, qvecs, matrix, ids, config)
    finally:
        store.close()
    assert len(teacher) == len(queries)
    for ranking in teacher:
        assert 0 < len(ranking) <= 20 and all(0 <= r < len(chunks) for r, _ in ranking)
        scores = [s for _, s in ranking]
        assert scores == sorted(scores, reverse=True) and min(scores) >= 0.0 and max(scores) <= 1.0 + 1e-9
    # an ICT sentence's own passage (which quotes it) never counts as finding a positive
    q = next(q for q in queries if q.kind == "ict" and q.positives)
    assert teacher_dev_mrr([[(q.row, 1.0)]], [q]) == 0.0

    weight, result = train_adapter(queries, qvecs, matrix, teacher, config)
    assert result.steps >= 4 and len(result.dev) == 5 and result.dev_queries > 0
    assert result.best_dev_mrr >= result.base_dev_mrr
    if result.best_step == 0:  # no epoch beat the base on dev: the map stays the identity
        assert not weight.any()
    else:
        assert result.alpha in config.alphas and weight.any()


@pytest.mark.slow
def test_tune_without_labels_uses_the_adapter_and_switches_to_it(
        make_collection: Callable[[], tuple[Path, Settings]]) -> None:
    path, settings = make_collection()
    assert TuneOptions().uses_adapter() and not TuneOptions(pairs=Path("p.jsonl")).uses_adapter()
    assert not TuneOptions(generate=5).uses_adapter() and not TuneOptions(beir=Path("b")).uses_adapter()
    assert TuneOptions(beir=Path("b"), unlabelled=True).uses_adapter()
    assert not TuneOptions(method="finetune").uses_adapter()
    options = TuneOptions(force=True, adapter=AdapterConfig(epochs=2, batch_size=64, dev_queries=30),
                          train=TrainConfig(budget_minutes=0.01))  # would train nothing, were it used
    report = run_tune(path, settings, options, log=lambda _: None)

    card = json.loads((report.model_dir / "card.json").read_text())
    assert card["training"]["method"] == "adapter" and card["training"]["epochs"] == 2
    assert card["data"]["origins"]["ict"] > 0 and card["data"]["test_queries"] > 0
    assert (report.model_dir / ADAPTER_FILE).is_file() and (report.model_dir / "loss.png").is_file()
    for when in ("before", "after"):
        assert 0.0 < card["scores"][when]["dense"]["ndcg@10"] <= 1.0
    assert card["reembed"]["chunks_embedded"] > 0 and report.switched
    with Collection.open(settings=settings, create=False, llm=None) as col:
        assert col.embedder.name == versions.model_name(settings, report.model_dir)
        assert col.search("lighthouse keepers", k=3)
