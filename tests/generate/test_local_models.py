"""Both packaged chat models (SmolLM2's template and Qwen's ChatML) through prompt packing, streaming and citations.

Real llama.cpp (the installed runtime), real GGUFs from their packages, real retrieval over the sample corpus.
"""

from __future__ import annotations

import time

import pytest

from ragworks.collection import Collection
from ragworks.config import Settings
from ragworks.generate.answer import AnswerOptions, AnswerStream
from ragworks.generate.llamacpp import LlamaCppLLM, installed_runtime, llama_cpp_available
from ragworks.generate.models import CATALOG, is_installed, resolve_gguf
from ragworks.generate.prompt import SYSTEM_PROMPT, build_messages, source_header

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not llama_cpp_available(), reason="needs xllamacpp or llama-cpp-python")]
TEMPLATE_DEFAULT_SYSTEM = {"smollm2-135m": "named SmolLM", "qwen2.5-1.5b": "You are Qwen"}
QUESTION = "Who invented the Fresnel lens?"


def _model(name: str) -> LlamaCppLLM:
    if not is_installed(CATALOG[name]):
        pytest.skip(f"{name} is not installed: {CATALOG[name].install}")
    return LlamaCppLLM(resolve_gguf(name), context_tokens=1024, threads=2)


@pytest.fixture(scope="module")
def lighthouse_collection(tmp_path_factory, embedder, sample_corpus):
    settings = Settings(data_dir=tmp_path_factory.mktemp("data"), collection="c")
    with Collection.open(settings=settings, embedder=embedder, llm=None) as col:
        col.ingest(sample_corpus / "fresnel-lens.md", sample_corpus / "lightvessels.md")
        yield col


def _check_packing_through_the_template(llm: LlamaCppLLM, name: str, stream: AnswerStream, max_tokens: int) -> None:
    """The packed prompt, as this model's own chat template renders it, fits the window and carries every source."""
    prompt = llm.render_prompt(build_messages(QUESTION, stream.sources))
    assert prompt.startswith("<|im_start|>system\n" + SYSTEM_PROMPT)
    assert TEMPLATE_DEFAULT_SYSTEM[name] not in prompt  # our system prompt replaced the template's default
    assert prompt.rstrip().endswith("<|im_start|>assistant")
    for n, hit in enumerate(stream.sources, 1):
        assert source_header(n, hit) in prompt
    assert llm.count_tokens(prompt) + max_tokens <= llm.context_tokens


def test_smollm2_packs_renders_and_streams_without_template_tokens(lighthouse_collection, embedder):
    llm = _model("smollm2-135m")
    hits = lighthouse_collection.search(QUESTION, k=8)
    options = AnswerOptions(max_answer_tokens=48, temperature=0.0)
    stream = AnswerStream(QUESTION, hits, llm, embedder, options)
    assert len(stream.sources) >= 2  # several sources fit a 1024-token window beside the template
    _check_packing_through_the_template(llm, "smollm2-135m", stream, options.max_answer_tokens)
    pieces = list(stream)
    answer = stream.result()
    assert len(pieces) > 1 and answer.text
    assert "<|im_" not in "".join(pieces) and "<|endoftext|>" not in "".join(pieces)
    for c in answer.citations:  # whatever the small model writes, kept citations point at given sources
        assert c.doc_id == answer.sources[c.number - 1].chunk.doc_id


def test_leaving_a_stream_early_stops_generation_and_the_model_answers_again(embedder):
    """What the repetition guard and the server's timeout rely on: closing the stream ends llama.cpp's work."""
    llm = _model("smollm2-135m")
    messages = [{"role": "user", "content": "Count from 1 to 200, separated by commas."}]
    stream = llm.stream(messages, max_tokens=400, temperature=0.0)
    first = [next(stream) for _ in range(3)]
    started = time.monotonic()
    stream.close()  # what `break` in AnswerStream does
    assert time.monotonic() - started < 30  # not the ~400 tokens left
    assert len(first) == 3
    again = "".join(llm.stream(messages, max_tokens=8, temperature=0.0))
    assert again.strip()


def test_qwen_answers_with_a_citation_marker_through_its_chatml_template(lighthouse_collection, embedder):
    llm = _model("qwen2.5-1.5b")
    hits = lighthouse_collection.search(QUESTION, k=2)
    options = AnswerOptions(max_answer_tokens=40, temperature=0.0)
    stream = AnswerStream(QUESTION, hits, llm, embedder, options)
    _check_packing_through_the_template(llm, "qwen2.5-1.5b", stream, options.max_answer_tokens)
    pieces = list(stream)
    answer = stream.result()
    assert len(pieces) > 1 and "<|im_" not in "".join(pieces)
    assert "Fresnel" in answer.text
    assert answer.citations and not answer.notice, answer.text  # it wrote [n] itself; none was dropped
    assert answer.sources[answer.citations[0].number - 1].source.endswith("fresnel-lens.md")


@pytest.mark.skipif(installed_runtime("llama-cpp-python") is None or installed_runtime("xllamacpp") is None,
                    reason="needs both llama.cpp bindings (llama-cpp-python: ragworks[local-llm-compiled])")
def test_both_runtimes_read_the_same_prompt_and_count_the_same_tokens():
    path = resolve_gguf("smollm2-135m")
    compiled = LlamaCppLLM(path, context_tokens=512, threads=1, runtime="llama-cpp-python")
    prebuilt = LlamaCppLLM(path, context_tokens=512, threads=1, runtime="xllamacpp")
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "Sources: [1] x\nQ?"}]
    assert compiled.render_prompt(messages) == prebuilt.render_prompt(messages)
    text = "The Fresnel lens was first installed at Cordouan in 1823 [1]."
    assert compiled.count_tokens(text) == prebuilt.count_tokens(text) > 10
    assert "".join(compiled.stream(messages, max_tokens=4, temperature=0.0)).strip()
