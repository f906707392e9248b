"""The extractive answerer's choice of sentence: retrieval's verdict on the passages counts, not only cosine."""

import pytest

from ragworks.documents import Chunk, SearchHit
from ragworks.generate import extractive
from ragworks.generate.extractive import extract_answer, retrieval_scores


def _hit(n: int, text: str, score: float) -> SearchHit:
    chunk = Chunk(doc_id=f"d{n}", ordinal=0, text=text, start=0, end=len(text))
    return SearchHit(chunk=chunk, score=score, source=f"/docs/{n}.md", title=f"Doc {n}")


def test_retrieval_scores_are_min_max_over_the_passages_given_whatever_their_scale():
    assert retrieval_scores([0.9, 0.6, 0.3]) == pytest.approx([1.0, 0.5, 0.0])
    assert retrieval_scores([-2.0, -4.0, -6.0]) == pytest.approx([1.0, 0.5, 0.0])  # cross-encoder logits
    assert retrieval_scores([0.5, 0.5]) == [1.0, 1.0]
    assert retrieval_scores([]) == []


def test_a_look_alike_sentence_of_a_passage_retrieval_ranked_low_does_not_win(embedder, monkeypatch):
    question = "When was the harbour bridge opened?"
    hits = [_hit(1, "The harbour bridge was opened to traffic in 1932, after eight years of construction work.", 0.9),
            _hit(2, "Many visitors ask when the harbour bridge was opened. The ferry timetable changed in May.", 0.3)]
    text, citations = extract_answer(question, hits, embedder)
    assert "1932" in text and [c.number for c in citations] == [1]
    # without the retrieval term, the sentence that restates the question wins on cosine and word overlap
    monkeypatch.setattr(extractive, "RETRIEVAL_SCORE_WEIGHT", 0.0)
    text, citations = extract_answer(question, hits, embedder)
    assert "Many visitors ask" in text and [c.number for c in citations] == [2]
