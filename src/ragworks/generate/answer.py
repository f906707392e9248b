"""From retrieved hits to a cited Answer, streaming the text as the LLM produces it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ragworks.documents import Answer, Citation, SearchHit
from ragworks.embed.base import Embedder
from ragworks.generate.base import LLM
from ragworks.generate.citations import citation_for, resolve_citations, strip_invalid_markers
from ragworks.generate.extractive import extract_answer
from ragworks.generate.prompt import NO_ANSWER, build_messages, pack_sources

EXTRACTIVE_NOTICE = "no LLM configured: the answer is the best-matching source sentences (extractive)"
DEGENERATE_NOTICE = "the LLM's answer degenerated into repetition and was replaced by the extractive answer"


def is_degenerate(text: str, *, min_words: int = 40, min_unique_ratio: float = 0.45) -> bool:
    """True when generated text loops: few distinct word trigrams among many (small models do this)."""
    words = text.lower().split()
    if len(words) < min_words:
        return False
    trigrams = list(zip(words, words[1:], words[2:], strict=False))
    return len(set(trigrams)) / len(trigrams) < min_unique_ratio


@dataclass
class AnswerOptions:
    max_answer_tokens: int = 320
    temperature: float = 0.1
    context_budget_tokens: int = 1500
    max_sources: int = 6  # small models answer better from fewer passages


class AnswerStream:
    """Iterate to receive the answer's text pieces; `answer` is complete once iteration ends.

    `sources` (the numbered passages given to the model) are known before the first piece.
    """

    def __init__(self, question: str, hits: list[SearchHit], llm: LLM | None, embedder: Embedder,
                 options: AnswerOptions) -> None:
        self.question = question
        self.llm = llm
        self.embedder = embedder
        self.options = options
        if llm is None:
            self.sources = hits[:5]
        else:
            budget = min(options.context_budget_tokens,
                         llm.context_tokens - options.max_answer_tokens - 300)  # system prompt and question
            self.sources = pack_sources(hits[: options.max_sources], max(budget, 200), llm.count_tokens)
        self.answer: Answer | None = None

    def __iter__(self) -> Iterator[str]:
        if not self.sources:
            self.answer = Answer(self.question, NO_ANSWER, [], [], self.llm.name if self.llm else "extractive",
                                 notice="nothing in the collection matched the question")
            yield NO_ANSWER
            return
        if self.llm is None:
            text, citations = extract_answer(self.question, self.sources, self.embedder)
            self.answer = Answer(self.question, text, citations, self.sources, "extractive", notice=EXTRACTIVE_NOTICE)
            yield text
            return
        pieces: list[str] = []
        for piece in self.llm.stream(build_messages(self.question, self.sources),
                                     max_tokens=self.options.max_answer_tokens,
                                     temperature=self.options.temperature):
            pieces.append(piece)
            yield piece
            if len(pieces) % 16 == 0 and is_degenerate("".join(pieces)):
                break  # stop paying for a loop
        raw = "".join(pieces).strip()
        if is_degenerate(raw):
            text, citations = extract_answer(self.question, self.sources, self.embedder)
            yield "\n\n[extractive answer] " + text
            self.answer = Answer(self.question, text, citations, self.sources, self.llm.name,
                                 notice=DEGENERATE_NOTICE)
            return
        citations, dropped = resolve_citations(raw, self.sources)
        text = strip_invalid_markers(raw, len(self.sources)) if dropped else raw
        notice = ""
        if dropped:
            notice = f"dropped citation(s) to sources that were not given: {', '.join(f'[{n}]' for n in dropped)}"
        if not citations and NO_ANSWER.lower() not in text.lower():
            citations = self._attribute(text)
            if citations:
                notice = (notice + "; " if notice else "") + (
                    "the model cited no source: sources matched to the answer by similarity")
        self.answer = Answer(self.question, text, citations, self.sources, self.llm.name, dropped, notice)

    def _attribute(self, text: str, threshold: float = 0.5) -> list[Citation]:
        """Sources whose passage is close to the answer text: a fallback for models that forget [n] markers."""
        if not text.strip():
            return []
        vecs = self.embedder.embed_documents([text] + [h.chunk.text for h in self.sources])
        sims = vecs[1:] @ vecs[0]
        return [citation_for(int(i) + 1, self.sources[int(i)]) for i in np.argsort(-sims)[:2]
                if sims[int(i)] >= threshold]

    def result(self) -> Answer:
        """Consume the stream (if not yet) and return the answer."""
        if self.answer is None:
            for _ in self:
                pass
        assert self.answer is not None
        return self.answer
