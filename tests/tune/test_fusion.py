"""The hybrid fusion weight of a tuned model: chosen on labelled dev queries, kept in its card, used while the model
is active (not after a rollback), and never over a `dense_weight` the user set."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ragworks.collection import Collection
from ragworks.config import Settings
from ragworks.embed import make_embedder, versions
from ragworks.store.embedded import EmbeddedStore
from ragworks.tune.measure import WEIGHT_GRID
from ragworks.tune.pairs import corpus_pairs, read_chunks
from ragworks.tune.run import fusion_for_tuned
from ragworks.tune.switch import rollback, switch_to

from .conftest import install

pytestmark = pytest.mark.slow


def _labelled_dev(path: Path) -> list:
    pairs = corpus_pairs(read_chunks(path))[:12]
    for p in pairs:
        p.origin = "labelled"  # as if a person had judged these
    return pairs


def _model_id(path: Path) -> int:
    store = EmbeddedStore(path, create=False)
    try:
        return store.model_id
    finally:
        store.close()


def test_the_weight_chosen_on_labelled_dev_queries_is_the_best_of_the_grid_and_measured_with(
        make_collection: Callable[[], tuple[Path, Settings]]) -> None:
    path, settings = make_collection()
    chunks = read_chunks(path)
    doc_of = {c.id: c.source for c in chunks}
    fusion, measured = fusion_for_tuned(path, settings, _model_id(path), make_embedder(settings), _labelled_dev(path),
                                        lambda s: s, doc_of)
    scores = {float(w): v for w, v in fusion["dev_ndcg@10"].items()}
    assert sorted(scores) == sorted(WEIGHT_GRID) and fusion["dev_queries"] == 12
    assert fusion["dense_weight"] in WEIGHT_GRID and scores[fusion["dense_weight"]] == max(scores.values())
    assert measured.dense_weight == fusion["dense_weight"]

    explicit = settings.model_copy(update={"dense_weight": 0.2})  # as if set by argument, environment or TOML
    fusion, measured = fusion_for_tuned(path, explicit, _model_id(path), make_embedder(settings), _labelled_dev(path),
                                        lambda s: s, doc_of)
    assert measured.dense_weight == 0.2 and "set explicitly" in fusion["note"]

    corpus_only = corpus_pairs(chunks)[:12]  # titles → passages are not real queries: they choose nothing
    fusion, measured = fusion_for_tuned(path, settings, _model_id(path), make_embedder(settings), corpus_only,
                                        lambda s: s, doc_of)
    assert fusion["dense_weight"] is None and measured is settings


def _dense_weight_of_a_search(settings: Settings) -> tuple[str, float]:
    with Collection.open(settings=settings, create=False, llm=None) as col:
        assert col.search("who kept the lighthouse", k=3)
        return col.embedder.name, col.retriever().dense_weight


def test_a_tuned_models_dense_weight_is_used_while_it_is_active_unless_set_and_not_after_rollback(
        make_collection: Callable[[], tuple[Path, Settings]], tuned_model: Path) -> None:
    path, settings = make_collection()
    model_dir = install(tuned_model, path)
    card = versions.read_card(model_dir)
    versions.write_card(model_dir, {**card, "fusion": {"dense_weight": 0.65, "dev_queries": 12}})
    switch_to(path, settings, model_dir)
    tuned_name = versions.model_name(settings, model_dir)

    assert _dense_weight_of_a_search(settings) == (tuned_name, 0.65)
    explicit = Settings(data_dir=settings.data_dir, collection="col", llm="extractive", dense_weight=0.3)
    assert _dense_weight_of_a_search(explicit) == (tuned_name, 0.3)

    rollback(path, settings)
    assert _dense_weight_of_a_search(settings) == ("st:all-MiniLM-L6-v2", Settings().dense_weight)
