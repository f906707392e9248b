"""A real OpenAI-compatible server on 127.0.0.1 serving the packaged SmolLM2 GGUF (tests.realservers.llama_server).

llama.cpp's own C++ server through the prebuilt xllamacpp wheel when it is installed (the default runtime),
else llama-cpp-python's Python server.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.realservers import llama_server


@pytest.fixture(scope="session")
def chat_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from llama_server(tmp_path_factory.mktemp("chat"))
