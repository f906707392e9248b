"""The LLM clients against real models: the local GGUF in-process and an OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import pytest

from ragworks.collection import Collection
from ragworks.config import Settings
from ragworks.errors import LLMError, LLMUnavailable
from ragworks.generate import make_llm
from ragworks.generate.base import complete
from ragworks.generate.llamacpp import LlamaCppLLM, llama_cpp_available, packaged_gguf
from ragworks.generate.openai_compat import OpenAICompatibleLLM

pytestmark = pytest.mark.slow
MESSAGES = [{"role": "user", "content": "Name one colour of the rainbow."}]


def test_openai_compatible_client_streams_pieces_from_a_real_server(chat_server):
    llm = OpenAICompatibleLLM(base_url=chat_server, model="smollm2")
    pieces = list(llm.stream(MESSAGES, max_tokens=16, temperature=0.0))
    assert len(pieces) > 1, "streaming should deliver several pieces, not one blob"
    assert "".join(pieces).strip()


def test_openai_compatible_client_reports_http_errors_and_unreachable_servers(chat_server):
    bad_path = OpenAICompatibleLLM(base_url=chat_server + "/nope", model="x")
    with pytest.raises(LLMError, match="404"):
        complete(bad_path, MESSAGES)
    closed = OpenAICompatibleLLM(base_url="http://127.0.0.1:9/v1", model="x", timeout_s=2)
    with pytest.raises(LLMUnavailable, match="unreachable"):
        complete(closed, MESSAGES)


def test_ask_through_an_openai_compatible_server_returns_cited_sources(chat_server, tmp_path, embedder,
                                                                       sample_corpus):
    settings = Settings(data_dir=tmp_path, collection="c", llm="openai", llm_base_url=chat_server,
                        llm_model="smollm2", max_answer_tokens=64, temperature=0.0)
    with Collection.open(settings=settings, embedder=embedder) as col:
        col.ingest(sample_corpus / "fresnel-lens.md", sample_corpus / "lightvessels.md")
        stream = col.ask_stream("Who invented the Fresnel lens?", k=3)
        pieces = list(stream)
        answer = stream.result()
    assert len(pieces) > 1
    assert answer.text and answer.model.startswith("openai:")
    assert answer.sources and answer.sources[0].source.endswith("fresnel-lens.md")
    # Whatever the small model writes, every citation kept points at a source it was given.
    for c in answer.citations:
        assert 1 <= c.number <= len(answer.sources)
        assert c.doc_id == answer.sources[c.number - 1].chunk.doc_id


def test_fireworks_preset_requires_a_key(monkeypatch):
    from ragworks.errors import ConfigError

    monkeypatch.delenv("FIREWORKS_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="FIREWORKS_API_KEY"):
        make_llm(Settings(llm="fireworks"))
    monkeypatch.setenv("FIREWORKS_API_KEY", "fw-test")
    llm = make_llm(Settings(llm="fireworks"))
    assert isinstance(llm, OpenAICompatibleLLM) and "fireworks.ai" in llm.name


@pytest.mark.skipif(not llama_cpp_available() or packaged_gguf() is None, reason="needs llama-cpp-python")
def test_local_gguf_model_streams_an_answer_and_counts_tokens():
    llm = LlamaCppLLM(context_tokens=1024)
    text = complete(llm, MESSAGES, max_tokens=12)
    assert text.strip()
    assert llm.count_tokens("hello world") >= 2
    assert make_llm(Settings(llm="auto")).name == llm.name  # auto picks the packaged model when installed
