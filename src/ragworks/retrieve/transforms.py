"""Query transforms through the LLM: multi-query (RAG-Fusion), HyDE and step-back, each fused with the query.

Every transform writes one or more extra search texts; the original query always stays one of them, and the
result lists are fused with reciprocal rank fusion (RAG-Fusion, Raudaschl 2023). HyDE (Gao et al., 2022) searches
with a passage the LLM imagines answers the question; step-back (Zheng et al., 2023) with a broader question.
Off by default (`query_transform`): they cost an LLM call per search and on SciFact with the small local model they
did not help (bench/results/retrieval.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Literal

from ragworks.documents import SearchHit
from ragworks.generate.base import LLM, Message, complete
from ragworks.retrieve.fusion import reciprocal_rank_fusion

TransformKind = Literal["multi-query", "hyde", "step-back"]

PROMPTS: dict[TransformKind, str] = {
    "multi-query": "Rewrite the user's search query in {n} different ways that keep its meaning, using other "
                   "words. Write one rewrite per line, with no numbering and nothing else.",
    "hyde": "Write one short passage (3 sentences) from a scientific or reference text that answers the user's "
            "question. Write only the passage.",
    "step-back": "Write one broader, more general question about the background knowledge needed to answer the "
                 "user's question. Write only the question.",
}
_LIST_MARK = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s*")


def parse_lines(text: str, limit: int) -> list[str]:
    """Non-empty lines of an LLM answer, list markers stripped, duplicates dropped, at most `limit`."""
    out: list[str] = []
    for line in text.splitlines():
        line = _LIST_MARK.sub("", line).strip().strip('"')
        if len(line) > 2 and line.lower() not in (o.lower() for o in out):
            out.append(line)
    return out[:limit]


class QueryTransform:
    """Turns a query into the texts to search with (the query first) by asking `llm`."""

    def __init__(self, llm: LLM, kind: TransformKind, *, count: int = 3, max_tokens: int = 96) -> None:
        self.llm = llm
        self.kind = kind
        self.count = count
        self.max_tokens = max_tokens
        self.name = f"{kind}:{llm.name}"

    def variants(self, query: str) -> list[str]:
        messages: list[Message] = [
            {"role": "system", "content": PROMPTS[self.kind].format(n=self.count)},
            {"role": "user", "content": query},
        ]
        text = complete(self.llm, messages, max_tokens=self.max_tokens, temperature=0.0)
        if self.kind == "multi-query":
            extra = parse_lines(text, self.count)
        else:
            extra = [" ".join(text.split())] if text.strip() else []
        return [query, *(e for e in extra if e.lower() != query.lower())]


def fused_search(search: Callable[[str, int], list[SearchHit]], texts: Sequence[str], k: int, *, rrf_k: int = 60
                 ) -> list[SearchHit]:
    """Search each text for `k` hits and fuse the lists by RRF; a hit keeps the fused score."""
    by_id: dict[int, SearchHit] = {}
    legs = []
    for text in texts:
        hits = search(text, k)
        legs.append([(h.row_id, h.score) for h in hits])
        for h in hits:
            by_id.setdefault(h.row_id, h)
    out = []
    for row, score in reciprocal_rank_fusion(legs, k=rrf_k)[:k]:
        hit = by_id[row]
        hit.score = score
        out.append(hit)
    return out
