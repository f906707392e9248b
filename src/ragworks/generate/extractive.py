"""An answerer that needs no LLM: the retrieved sentences most similar to the question, each cited."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from ragworks.documents import Chunk, Citation, SearchHit
from ragworks.embed.base import Embedder
from ragworks.generate.citations import citation_for
from ragworks.generate.prompt import NO_ANSWER
from ragworks.ingest.chunker import split_sentences
from ragworks.ingest.tables import header_line_count
from ragworks.lexical.analysis import Analyzer

_BLOCK = re.compile(r"[^\n]+(?:\n(?!\s*\n)[^\n]+)*")  # runs of non-blank lines
_TERMINAL = re.compile(r"[.!?…:;\"'”’)]$")
_TABLE_LINE = re.compile(r"^\|.*\|[ \t]*$", re.MULTILINE)
_CELL_SPLIT = re.compile(r"(?<!\\)\|")
_WORD = re.compile(r"\w{3,}")
# Rows of one table read alike to an embedder: the row holding a word of the question (a name, a code) wins.
_ROW_WORD_BONUS = 0.2
# Besides cosine to the question: the share of the question's content words in the sentence and in its passage,
# a small penalty per retrieval rank, and the passage's retrieval score (min-max over the passages given, so any
# fusion or reranker scale reads the same). Chosen on SQuAD v1.1 dev's tuning articles, checked on held-out ones
# (bench/extractive_weights.py, bench/results/extractive-weights.json): the word overlaps took citation
# precision 0.800 → 0.840 on the held-out articles, the retrieval score 0.83 → 0.88 (dev articles 0.92 → 0.93).
SENTENCE_OVERLAP_WEIGHT = 0.3
PASSAGE_OVERLAP_WEIGHT = 0.2
RANK_PENALTY = 0.01
RETRIEVAL_SCORE_WEIGHT = 0.4
_ANALYZER = Analyzer(min_chars=1)


def _cells(line: str) -> list[str]:
    return [c.strip().replace("\\|", "|") for c in _CELL_SPLIT.split(line.strip())[1:-1]]


def table_rows(chunk: Chunk) -> list[tuple[int, int, str]]:
    """A chunk's table rows: (start, end) in the chunk text and the row as "column: value; …". The header is the
    table's own first rows, or, for a chunk that continues a table, the header rows on its context."""
    lines = list(_TABLE_LINE.finditer(chunk.text))
    if not lines:
        return []
    own = header_line_count(chunk.text[lines[0].start() :]) == 2
    header_text = chunk.text[lines[0].start() :] if own else chunk.context.partition("\n")[2]
    header = _cells(header_text.split("\n", 1)[0]) if header_line_count(header_text) else []
    rows = []
    for m in lines[2 if own else 0 :]:
        cells = _cells(m.group())
        named = [f"{h}: {v}" if h else v for h, v in zip(header, cells, strict=False) if v] if header else cells
        rows.append((m.start(), m.end(), "; ".join(named)))
    return rows


def retrieval_scores(scores: Sequence[float]) -> list[float]:
    """Passages' retrieval scores min-max scaled over those given (1 = the best; all 1 when they tie)."""
    if not scores:
        return []
    lo, hi = min(scores), max(scores)
    return [(x - lo) / (hi - lo) if hi > lo else 1.0 for x in scores]


def extract_answer(
    question: str,
    sources: list[SearchHit],
    embedder: Embedder,
    *,
    max_sentences: int = 3,
    min_similarity: float = 0.35,
    withheld: Mapping[int, Sequence[tuple[int, int]]] | None = None,
) -> tuple[str, list[Citation]]:
    """Up to `max_sentences` source sentences closest to the question, in source order, with [n] markers.

    Each citation points at the sentence itself (offsets within the document), not the whole chunk. Sentences
    overlapping `withheld` (source number → document stretches flagged as instruction-like) are never used.
    """
    candidates: list[tuple[int, int, int, str, str]] = []  # (source number, doc start, doc end, sentence, quote)
    row_bonus: list[float] = []
    question_words = {w.lower() for w in _WORD.findall(question)}
    q_terms = set(_ANALYZER(question))

    def overlap(text: str) -> float:
        return len(q_terms & set(_ANALYZER(text))) / len(q_terms) if q_terms else 0.0

    passage_overlap = [overlap(f"{h.title} {h.chunk.text}") for h in sources]
    retrieval = retrieval_scores([h.score for h in sources])
    for n, hit in enumerate(sources, 1):
        c = hit.chunk
        for s, e, row in table_rows(c):  # each row, read with its column names, is a candidate
            candidates.append((n, c.start + s, c.start + e, row, c.text[s:e]))
            row_bonus.append(_ROW_WORD_BONUS if {w.lower() for w in _WORD.findall(c.text[s:e])} & question_words
                             else 0.0)
        for block in _BLOCK.finditer(c.text):
            if block.group().startswith("|"):
                continue  # table rows, taken above
            if not _TERMINAL.search(block.group().rstrip()) and len(block.group().split()) < 12:
                continue  # a heading, caption or list label: not an answer sentence
            for s, e in split_sentences(block.group(), block.start()):
                sentence = c.text[s:e].strip()
                if len(sentence) >= 20:
                    candidates.append((n, c.start + s, c.start + e, sentence, sentence))
                    row_bonus.append(0.0)
    if withheld:
        keep = [i for i, (n, s, e, _, _) in enumerate(candidates)
                if not any(s < we and e > ws for ws, we in withheld.get(n, ()))]
        candidates, row_bonus = [candidates[i] for i in keep], [row_bonus[i] for i in keep]
    if not candidates:
        return NO_ANSWER, []
    q = embedder.embed_queries([question])[0]
    vecs = embedder.embed_documents([c[3] for c in candidates])
    sims = vecs @ q
    # Sentences from higher-ranked passages, and sentences and passages that share the question's words, win
    # near-ties: cosine alone often prefers a look-alike sentence of another passage.
    ranks = np.asarray([c[0] for c in candidates], dtype=np.float32)
    sims = sims + np.asarray(row_bonus, dtype=np.float32)
    lexical = np.asarray([SENTENCE_OVERLAP_WEIGHT * overlap(c[3]) + PASSAGE_OVERLAP_WEIGHT * passage_overlap[c[0] - 1]
                          for c in candidates], dtype=np.float32)
    retrieved = np.asarray([retrieval[c[0] - 1] for c in candidates], dtype=np.float32)
    score = sims + lexical + RETRIEVAL_SCORE_WEIGHT * retrieved - RANK_PENALTY * ranks
    order = [i for i in np.argsort(-score) if sims[i] >= min_similarity]
    if order and row_bonus[order[0]]:  # a row naming what was asked: its look-alike neighbours are no answer
        order = [i for i in order if row_bonus[i]]
    if not order:
        return NO_ANSWER, []
    # Further sentences only from the best sentence's passage: one cited passage, not three guesses
    # (SQuAD dev: citation precision rises with answer-contains-gold unchanged; bench/results/answers.md).
    order = [i for i in order if candidates[i][0] == candidates[order[0]][0]][:max_sentences]
    chosen = sorted(order, key=lambda i: (candidates[i][0], candidates[i][1]))
    parts, citations = [], []
    for i in chosen:
        n, start, end, sentence, quote = candidates[i]
        parts.append(f"{sentence} [{n}]")
        citations.append(citation_for(n, sources[n - 1], start=start, end=end, quote=quote))
    return " ".join(parts), citations


def extract_answer_by_step(question: str, sources: list[SearchHit], embedder: Embedder, *,
                           queries: dict[int, str] | None = None, per_step: int = 2, min_similarity: float = 0.35,
                           withheld: Mapping[int, Sequence[tuple[int, int]]] | None = None
                           ) -> tuple[str, list[Citation]]:
    """Multi-step retrieval's extractive answer: the best sentence(s) from each step's own passages (a two-fact
    question needs one from each), in step order, each cited with its number among all `sources`. A later step's
    sentences are chosen by that step's query (`queries`: step → query), which names what it went to find."""
    steps = sorted({h.step for h in sources})
    queries = queries or {}
    parts: list[str] = []
    citations: list[Citation] = []
    for step in steps:
        numbers = [n for n, h in enumerate(sources, 1) if h.step == step]
        asked = question if step == 1 else queries.get(step, question)
        # a follow-up's passage often names the bridge in one sentence and states the fact in the next ("Its ...")
        held = {i: withheld[n] for i, n in enumerate(numbers, 1) if n in withheld} if withheld else None
        text, cited = extract_answer(asked, [sources[n - 1] for n in numbers], embedder,
                                     max_sentences=1 if step == 1 else per_step, min_similarity=min_similarity,
                                     withheld=held)
        if text == NO_ANSWER:
            continue
        local = {c.number: numbers[c.number - 1] for c in cited}
        parts.append(_renumber(text, local))
        citations += [replace(c, number=local[c.number]) for c in cited]
    if not parts:
        return NO_ANSWER, []
    return " ".join(parts), citations


def _renumber(text: str, table: dict[int, int]) -> str:
    """[n] markers of `text` mapped through `table` (a subset's numbers → the numbers among all sources)."""
    return re.sub(r"\[(\d+)\]", lambda m: f"[{table.get(int(m.group(1)), int(m.group(1)))}]", text)
