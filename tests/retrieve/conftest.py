"""One ingested copy of the shipped sample corpus for the retrieval tests that only read it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ragworks.collection import Collection
from ragworks.config import Settings


@pytest.fixture(scope="session")
def sample_collection(tmp_path_factory, embedder, sample_corpus) -> Iterator[Collection]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("sample"), collection="sample", llm="extractive")
    col = Collection.open(settings=settings, embedder=embedder, llm=None)
    assert col.ingest(sample_corpus).ok
    yield col
    col.close()
