"""Multi-step retrieval: a follow-up query after the first retrieval, each step logged, the answer citing passages
from every step (real embedder, real SQLite/FAISS store, extractive answerer)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ragworks.collection import Collection
from ragworks.config import Settings
from ragworks.documents import Chunk, SearchHit
from ragworks.retrieve.multistep import Step, llm_follow_up, missing_words, multi_step_search, terms_follow_up

DOCS = {
    "people/dubois.txt": "Marie Dubois, the glassmaker, was born in Velmora in 1921. She later trained in Lyon "
                         "and opened a workshop beside the cathedral.",
    "places/velmora.txt": "Velmora is a river port on the Sarre estuary. Its main export is blue salt, harvested "
                          "from the tidal flats each autumn.",
    "places/kestrel.txt": "Kestrel Bay is a fishing village. Its main export is smoked herring, sold at the winter "
                          "market.",
    "people/curie.txt": "Marie Curie was born in Warsaw in 1867 and won two Nobel prizes.",
}
QUESTION = "What is the main export of the town where Marie Dubois was born?"


@pytest.fixture
def town(tmp_path, embedder):
    def make(**kw) -> Collection:
        settings = Settings(data_dir=tmp_path / "data", collection="towns", llm="extractive", **kw)
        col = Collection.open(settings=settings, embedder=embedder, llm=None)
        if not col.exists:
            for source, text in DOCS.items():
                col.add_text(text, source=source)
        return col

    return make


def test_two_steps_are_logged_and_the_answer_cites_a_passage_from_each(town):
    col = town(retrieval_steps=2)
    answer = col.ask(QUESTION, k=4)
    assert [s["step"] for s in answer.steps] == [1, 2]
    assert answer.steps[0]["query"] == QUESTION
    follow = answer.steps[1]
    assert "Velmora" in follow["query"] and follow["reason"]  # the bridge name the first hits brought
    assert follow["hits"][0]["source"] == "places/velmora.txt"
    cited = {c.source for c in answer.citations}
    assert {"people/dubois.txt", "places/velmora.txt"} <= cited, answer.text
    assert "blue salt" in answer.text
    steps_of_cited = {answer.sources[c.number - 1].step for c in answer.citations}
    assert steps_of_cited == {1, 2}
    for c in answer.citations:  # citations still point at the exact sentence of the document
        _, text, _ = col.document(c.source)
        assert text[c.start:c.end] == c.quote
    assert answer.to_dict()["steps"] == answer.steps


def test_one_step_by_default_logs_nothing_and_answers_from_the_first_retrieval(town):
    col = town()
    answer = col.ask(QUESTION, k=4)
    assert answer.steps == [] and {h.step for h in answer.sources} == {1}


def test_no_follow_up_when_the_first_hits_cover_the_question(town):
    col = town(retrieval_steps=3)
    answer = col.ask("Where was Marie Curie born?", k=4)
    assert len(answer.steps) == 1 and answer.sources[0].source == "people/curie.txt"


def _hit(text: str) -> SearchHit:
    return SearchHit(Chunk(doc_id="d", ordinal=0, text=text, start=0, end=len(text)), 1.0, "d")


def test_terms_follow_up_asks_for_the_missing_words_and_the_bridge_name():
    first = Step(1, QUESTION, "the question", [_hit(DOCS["people/dubois.txt"])])
    assert missing_words(QUESTION, first.hits) == ["main", "export", "town"]
    follow = terms_follow_up(QUESTION, [first])
    assert follow is not None and follow[0].split() == ["Velmora", "main", "export", "town"]


class ScriptedLLM:
    """A chat model that replies from a script: stands in for the LLM's wording only (the search is real)."""

    name = "scripted"
    context_tokens = 4096

    def __init__(self, replies: list[str]) -> None:
        self.replies = replies
        self.prompts: list[str] = []

    def stream(self, messages, *, max_tokens: int, temperature: float) -> Iterator[str]:
        self.prompts.append(messages[-1]["content"])
        yield self.replies.pop(0)

    def count_tokens(self, text: str) -> int:
        return len(text.split())


def test_llm_follow_ups_run_until_the_model_says_done(town):
    col = town()
    llm = ScriptedLLM(["Velmora main export", "DONE"])
    hits, steps = multi_step_search(QUESTION, lambda q: col.search(q, k=3), steps=4, k=4, llm=llm)
    assert [s.query for s in steps] == [QUESTION, "Velmora main export"]
    assert "Marie Dubois" in llm.prompts[0] and "Question:" in llm.prompts[0]
    assert steps[1].hits[0].source == "places/velmora.txt"
    assert {h.step for h in hits} == {1, 2} and len({h.chunk.id for h in hits}) == len(hits)
    assert llm_follow_up(QUESTION, steps, ScriptedLLM(["DONE."])) is None


def test_a_rambling_llm_follow_up_is_replaced_by_the_term_follow_up():
    first = Step(1, QUESTION, "the question", [_hit(DOCS["people/dubois.txt"])])
    ramble = "DON'T reply with one short search query for this question, as you cannot find any information " * 2
    follow = llm_follow_up(QUESTION, [first], ScriptedLLM([ramble]))
    assert follow is not None and follow[0].split() == ["Velmora", "main", "export", "town"]
    assert "no search query" in follow[1]
