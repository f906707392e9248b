"""An answerer that needs no LLM: the retrieved sentences most similar to the question, each cited."""

from __future__ import annotations

import re

import numpy as np

from ragworks.documents import Citation, SearchHit
from ragworks.embed.base import Embedder
from ragworks.generate.citations import citation_for
from ragworks.generate.prompt import NO_ANSWER
from ragworks.ingest.chunker import split_sentences

_BLOCK = re.compile(r"[^\n]+(?:\n(?!\s*\n)[^\n]+)*")  # runs of non-blank lines
_TERMINAL = re.compile(r"[.!?…:;\"'”’)]$")


def extract_answer(
    question: str,
    sources: list[SearchHit],
    embedder: Embedder,
    *,
    max_sentences: int = 3,
    min_similarity: float = 0.35,
) -> tuple[str, list[Citation]]:
    """Up to `max_sentences` source sentences closest to the question, in source order, with [n] markers.

    Each citation points at the sentence itself (offsets within the document), not the whole chunk.
    """
    candidates: list[tuple[int, int, int, str]] = []  # (source number, doc start, doc end, sentence)
    for n, hit in enumerate(sources, 1):
        c = hit.chunk
        for block in _BLOCK.finditer(c.text):
            if not _TERMINAL.search(block.group().rstrip()) and len(block.group().split()) < 12:
                continue  # a heading, caption or list label: not an answer sentence
            for s, e in split_sentences(block.group(), block.start()):
                sentence = c.text[s:e].strip()
                if len(sentence) >= 20:
                    candidates.append((n, c.start + s, c.start + e, sentence))
    if not candidates:
        return NO_ANSWER, []
    q = embedder.embed_queries([question])[0]
    vecs = embedder.embed_documents([c[3] for c in candidates])
    sims = vecs @ q
    # A small bonus for sentences from higher-ranked sources breaks near-ties toward the retriever's judgement.
    ranks = np.asarray([c[0] for c in candidates], dtype=np.float32)
    score = sims - 0.01 * ranks
    order = [i for i in np.argsort(-score) if sims[i] >= min_similarity]
    if not order:
        return NO_ANSWER, []
    # Further sentences only from the best sentence's passage: one cited passage, not three guesses
    # (SQuAD dev: citation precision rises with answer-contains-gold unchanged; bench/results/answers.md).
    order = [i for i in order if candidates[i][0] == candidates[order[0]][0]][:max_sentences]
    chosen = sorted(order, key=lambda i: (candidates[i][0], candidates[i][1]))
    parts, citations = [], []
    for i in chosen:
        n, start, end, sentence = candidates[i]
        parts.append(f"{sentence} [{n}]")
        citations.append(citation_for(n, sources[n - 1], start=start, end=end, quote=sentence))
    return " ".join(parts), citations
