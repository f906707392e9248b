"""An OpenAI-compatible embeddings endpoint: llama.cpp's real server with the packaged GGUF in embedding mode."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.realservers import llama_server


@pytest.fixture(scope="session")
def embedding_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from llama_server(tmp_path_factory.mktemp("embed"), embedding=True)
