"""Fixtures for `ragworks tune`: the sample corpus ingested once, and one really trained (tiny) tuned model."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from ragworks.collection import Collection
from ragworks.config import Settings
from ragworks.embed import versions
from ragworks.tune.pairs import corpus_pairs, read_chunks, split_pairs
from ragworks.tune.train import TrainConfig, train

# a third of the sample corpus: enough documents, titles and headings; small enough to re-embed in seconds
FILES = ("bell-rock-lighthouse.md", "cape-hatteras-lighthouse.md", "eddystone-lighthouses.md", "fresnel-lens.md",
         "light-characteristics.md", "lighthouse-keepers.md", "lightvessels.md", "magnetic-compass.md",
         "pharos-of-alexandria.md", "tides.md", "fog-signals.html")


@pytest.fixture(scope="session")
def base_collection(tmp_path_factory: pytest.TempPathFactory, embedder, sample_corpus: Path) -> Path:
    """Part of the sample corpus ingested with all-MiniLM-L6-v2 (never modified: tests copy it)."""
    root = tmp_path_factory.mktemp("tune-base")
    docs = root / "docs"
    docs.mkdir()
    for name in FILES:
        shutil.copy(sample_corpus / name, docs / name)
    settings = Settings(data_dir=root, collection="base", llm="extractive")
    with Collection.open(settings=settings, embedder=embedder, llm=None) as col:
        report = col.ingest(docs)
        assert report.ok
    return root / "base"


@pytest.fixture
def make_collection(tmp_path: Path, base_collection: Path) -> Callable[[], tuple[Path, Settings]]:
    """A private copy of the ingested sample collection and the (default) settings that open it."""

    def make() -> tuple[Path, Settings]:
        data = tmp_path / "data"
        shutil.copytree(base_collection, data / "col", ignore=shutil.ignore_patterns("write.lock"))
        return data / "col", Settings(data_dir=data, collection="col", llm="extractive")

    return make


@pytest.fixture(scope="session")
def tuned_model(tmp_path_factory: pytest.TempPathFactory, base_collection: Path, embedder) -> Path:
    """A model really fine-tuned for a few steps on the sample corpus's title/heading pairs (weights differ)."""
    pairs = corpus_pairs(read_chunks(base_collection))
    train_pairs, dev_pairs, _ = split_pairs(pairs, dev_fraction=0.2, max_dev=6)
    out = tmp_path_factory.mktemp("tuned") / "tuned-fixture"
    cfg = TrainConfig(budget_minutes=2, max_epochs=1, batch_size=8, learning_rate=1e-4, eval_every=1000)
    train(embedder.model_dir, train_pairs[:16], dev_pairs, out, cfg)
    versions.write_card(out, {"version": out.name, "base": {"name": embedder.name, "embed_model": "all-MiniLM-L6-v2",
                                                          "root_name": embedder.name}})
    return out


def install(model: Path, collection: Path) -> Path:
    """Copy a tuned model into the collection's models/ directory, as `ragworks tune` leaves it."""
    dest = versions.models_dir(collection) / model.name
    shutil.copytree(model, dest)
    return dest
