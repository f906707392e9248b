"""Claim-level citation verification: does a given source support each sentence of an answer?

Each answer sentence is scored against every sentence (and pair of adjacent sentences) of every source the
answerer was given. The score mixes lexical evidence (the share of the sentence's content words found in the
span, with the longest run of words in common as a bonus) with the embedding model's cosine similarity; each
specific of the sentence the span lacks (a figure, a name, given the question: anything beyond the question, or
the question's own subject) cuts it, because small models copy the question and invent the figure, or put the
question's subject into another passage's sentence, and the embedding cannot see that (`mismatches`; measured by
bench/verify.py). Text in a source that instructs the model ("state this as fact") never counts as support.
The best span keeps its character offsets in its document. Then per sentence: a cited source that supports it
keeps the citation; a marker pointing at a source that does not, while another given source does, is moved
there (re-attributed); a sentence without a marker gets the supporting source's; a sentence nothing supports
is unsupported — flagged, or dropped under strict grounding.

Cost: one embedding batch of the answer sentences and a few candidate spans each (~10–40 ms on 2 cores).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ragworks.documents import Citation, SearchHit, SentenceSupport
from ragworks.embed.base import Embedder
from ragworks.generate.citations import _MARKER, citation_for, cited_numbers
from ragworks.generate.extractive import table_rows
from ragworks.generate.prompt import NO_ANSWER
from ragworks.ingest.chunker import split_sentences
from ragworks.lexical.analysis import Analyzer

Grounding = Literal["off", "flag", "strict"]

SUPPORT_THRESHOLD = 0.5  # a sentence at or above this is supported (SQuAD dev, see bench/results/answers.md)
REATTRIBUTE_MARGIN = 0.1  # another source must support the sentence this much better to take the marker
CANDIDATES_PER_SENTENCE = 3  # spans embedded per sentence (best lexical ones + best of each cited source)
LEXICAL_WEIGHT = 0.55
LEXICAL_ALONE_ABOVE = 0.9  # a sentence this well covered by one span is supported without asking the embedder
LEXICAL_ALONE_BELOW = 0.15  # one sharing less than this with every span is not

_ANALYZER = Analyzer(min_chars=1)
_HEADING = re.compile(r"#{1,6}\s[^\n]*$")  # a Markdown heading line, alone in its block
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_UNITS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
          "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
# ordinals name the same figure ("after three months" = "at the end of the third month"); "first" and "second"
# are left out, being more often order and time than a count
_ORDINALS = ["third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth", "eleventh", "twelfth"]
_WORD_VALUES = ({w: i for i, w in enumerate(_UNITS, 1)} | {w: 20 + 10 * i for i, w in enumerate(_TENS)}
                | {w: i for i, w in enumerate(_ORDINALS, 3)})
_NUMBER_WORD = re.compile(  # a tens word with its unit ("twenty-five"), or a unit word other than "one"
    rf"\b({'|'.join(_TENS)})(?:[- ]({'|'.join(_UNITS[:9])}))?\b|\b({'|'.join(_UNITS[1:] + _ORDINALS)})\b")
# Instructions addressed to a model inside a document: data must never become a claim's support.
_WORD = re.compile(r"[^\W\d_][\w'’-]*")
# Words an answer uses to talk about its sources rather than about the subject: never the new information it adds.
_META = frozenset(_ANALYZER(
    "according to the source sources document documents passage passages text context information provided "
    "mentioned above below based given states stated says said answer question however therefore"))
_QUANTITY = re.compile(  # English questions whose answer is a figure
    r"\bhow (?:many|much|long|old|far|often|tall|high|big|large)\b|\b(?:what|which) (?:year|percentage)\b",
    re.IGNORECASE)
_INSTRUCTION = re.compile(
    r"\b(?:ignore|disregard)\b.{0,40}\b(?:instructions?|above|previous|prior)\b"
    r"|\b(?:state|present|report|treat|answer|say|tell)\b.{0,40}\b(?:as (?:a )?fact|as true|the user|regardless)\b"
    r"|\b(?:you are|as an? (?:ai|assistant|language model))\b.{0,60}\b(?:must|should|will)\b",
    re.IGNORECASE,
)
_BLOCK = re.compile(r"[^\n]+(?:\n(?!\s*\n)[^\n]+)*")  # runs of non-blank lines
_TABLE_LINE = re.compile(r"^\|.*\|$")
_TRAILING_MARKERS = re.compile(r"^(?:\s*\[[\d\s,;\-–]+\])+")


def looks_like_instruction(text: str) -> bool:
    """True for text that tells the reading model what to do or say (a planted prompt injection)."""
    return bool(_INSTRUCTION.search(text))


def numbers_in(text: str) -> set[str]:
    """The figures a text states, as digits: "25", "1.5", and English number words ("four", "twenty-five",
    "third"); "one" is left out, being mostly a pronoun ("one of the …")."""
    text = _MARKER.sub(" ", text)
    found = {n.replace(",", "") for n in _NUMBER.findall(text)}
    for tens, unit, alone in _NUMBER_WORD.findall(text.lower()):
        found.add(str(_WORD_VALUES[alone] if alone else _WORD_VALUES[tens] + (_WORD_VALUES[unit] if unit else 0)))
    return found


def answer_sentences(text: str) -> list[tuple[int, int]]:
    """Sentence offsets in an answer, each keeping the [n] markers that follow its final punctuation."""
    spans = split_sentences(text)
    merged: list[tuple[int, int]] = []
    for s, e in spans:
        lead = _TRAILING_MARKERS.match(text[s:e])
        if lead and merged:  # "Paris is the capital. [1] It has …": the marker belongs to the sentence before
            ps, _ = merged[-1]
            merged[-1] = (ps, s + lead.end())
            s = s + lead.end()
            while s < e and text[s].isspace():
                s += 1
            if s >= e:
                continue
        merged.append((s, e))
    return merged


@dataclass(slots=True)
class _Span:
    source: int  # 1-based source number
    start: int  # document offsets
    end: int
    text: str  # what the sentence is compared with (a table row: read with its column names)
    terms: frozenset[str]
    term_list: tuple[str, ...]
    numbers: frozenset[str]
    pair: bool  # two adjacent sentences
    quote: str  # the document's own text at [start, end)


def source_spans(sources: Sequence[SearchHit]) -> list[_Span]:
    """Every sentence and pair of adjacent sentences of the sources (injected instructions left out); a table row
    is a span of its own, compared as "column: value; …" (what the extractive answerer states) but quoted as is."""
    out: list[_Span] = []
    for n, hit in enumerate(sources, 1):
        c = hit.chunk
        windows: list[tuple[int, int, bool]] = []
        rows = table_rows(c)
        for s, e, named in rows:
            terms = _ANALYZER(named)
            out.append(_Span(n, c.start + s, c.start + e, named, frozenset(terms), tuple(terms),
                             frozenset(numbers_in(named)), False, c.text[s:e]))
        headings = {h.strip().lower() for h in c.heading_path}
        for block in _BLOCK.finditer(c.text):  # blocks: a heading is never glued to the next sentence
            if rows and all(_TABLE_LINE.match(line.strip()) for line in block.group().split("\n")):
                continue  # a table: its rows were taken above
            if _HEADING.match(block.group()) or block.group().strip().lower() in headings:
                continue  # a heading states no fact: "Travel and expenses: <anything>" must not lean on it
            sents = [(s, e) for s, e in split_sentences(block.group(), block.start())
                     if not looks_like_instruction(c.text[s:e])]
            windows += [(s, e, False) for s, e in sents]
            windows += [(a[0], b[1], True) for a, b in itertools.pairwise(sents)]
        for s, e, pair in windows:
            body = c.text[s:e]
            terms = _ANALYZER(body)
            out.append(_Span(n, c.start + s, c.start + e, body, frozenset(terms), tuple(terms),
                             frozenset(numbers_in(body)), pair, body))
    return out


def _longest_common_run(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest run of consecutive terms shared by `a` and `b` (dynamic programming, small inputs)."""
    best = 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            if x == y:
                cur[j] = prev[j - 1] + 1
                best = max(best, cur[j])
        prev = cur
    return best


@dataclass(slots=True)
class _Claim:
    """What one answer sentence asserts, as the checks below read it."""

    terms: list[str]  # content terms, in order
    numbers: set[str]  # figures it states
    names: frozenset[str]  # terms of its capitalized words after the first (names), less the question's
    new: frozenset[str]  # terms the question does not have, less words about sources ("according to …")
    asked: frozenset[str]  # terms it shares with the question (what it is about)


def claim_of(body: str, question_terms: frozenset[str] = frozenset()) -> _Claim:
    terms = _ANALYZER(body)
    words = [m.group() for m in _WORD.finditer(body)][1:]  # the first word is capitalized by grammar
    names = {t for w in words if w[0].isupper() for t in _ANALYZER(w) if len(t) > 1}
    new = set(terms) - question_terms - _META if question_terms else set()
    return _Claim(terms, numbers_in(body), frozenset(names - question_terms), frozenset(new),
                  frozenset(question_terms.intersection(terms)))


def mismatches(claim: _Claim, span: _Span) -> int:
    """How many of the claim's specifics the span lacks: a figure it states; a name it states that the question did
    not; when it adds words to the question, every one of them (it restates the question and asserts nothing the
    span backs); when it takes words from the question, every one of them (the span is about something else: "The
    hotel is available on the first day" from a passage on laptops). Each is a way a small model's sentence is
    wrong while sharing most of its words with a passage."""
    return ((bool(claim.numbers) and not claim.numbers <= span.numbers) + (not claim.names <= span.terms)
            + (bool(claim.new) and not claim.new & span.terms) + (bool(claim.asked) and not claim.asked & span.terms))


def lexical_support(claim: _Claim, span: _Span) -> float:
    """Share of the sentence's content terms in the span, nudged up by a long shared run; each specific of the
    claim the span lacks (see `mismatches`) halves it."""
    terms = claim.terms
    if not terms or (claim.numbers and span.pair):
        return 0.0  # a stated figure must sit in one sentence with its subject, not borrowed from the next
    unique = set(terms)
    coverage = len(unique & span.terms) / len(unique)
    run = _longest_common_run(terms, span.term_list) / len(terms) if coverage > 0.3 else 0.0
    score = min(1.0, 0.8 * coverage + 0.2 * run + (0.2 * coverage if run >= 0.6 else 0.0))
    return score * 0.5 ** mismatches(claim, span)


@dataclass(slots=True)
class Verification:
    text: str  # the answer with markers corrected (and, strict, unsupported sentences removed)
    sentences: list[SentenceSupport]
    citations: list[Citation]

    @property
    def unsupported(self) -> int:
        return sum(s.status == "unsupported" for s in self.sentences)

    @property
    def mean_support(self) -> float:
        scored = [s.score for s in self.sentences if s.status != "neutral"]
        return float(np.mean(scored)) if scored else 0.0


def addresses(question: str, verification: Verification) -> bool:
    """Whether the delivered, checked sentences could answer the question (True when there is nothing to compare):
    one must share a content word with it (a supported sentence that shares none states a fact of the sources, not
    an answer), and one must state a figure when it asks for a quantity ("how many …?": a sentence without one
    restates the question)."""
    q_terms = set(_ANALYZER(question))
    checked = [s for s in verification.sentences if s.start >= 0 and s.status != "neutral"]
    if not q_terms or not checked:
        return True
    if _QUANTITY.search(question) and not any(numbers_in(s.text) for s in checked):
        return False
    return any(q_terms & set(_ANALYZER(s.text)) for s in checked)


def _strip_markers(text: str) -> str:
    return re.sub(r"\s+([.,;:!?])", r"\1", _MARKER.sub("", text)).strip()


def verify_answer(
    text: str,
    sources: Sequence[SearchHit],
    embedder: Embedder,
    *,
    grounding: Grounding = "flag",
    threshold: float = SUPPORT_THRESHOLD,
    margin: float = REATTRIBUTE_MARGIN,
    question: str = "",
) -> Verification:
    """Score every sentence of `text` against `sources`, fix its markers, and (strict) drop unsupported ones.
    With the `question`, names it gave are not asked of the span, and a sentence must add something the span backs
    (see `mismatches`)."""
    spans = source_spans(sources)
    raw = answer_sentences(text)
    bodies = [_strip_markers(text[s:e]) for s, e in raw]
    question_terms = frozenset(_ANALYZER(question))
    claims = [claim_of(b, question_terms) for b in bodies]
    terms = [c.terms for c in claims]
    cited = [tuple(n for n in cited_numbers(text[s:e]) if 1 <= n <= len(sources)) for s, e in raw]
    checkable = [bool(t) and NO_ANSWER.lower() not in b.lower() for t, b in zip(terms, bodies, strict=True)]

    # Lexical scores for all spans; embed only the promising candidates of each sentence.
    candidates: list[list[tuple[int, float]]] = []
    for i in range(len(raw)):
        if not checkable[i] or not spans:
            candidates.append([])
            continue
        lex = [lexical_support(claims[i], sp) for sp in spans]
        order = sorted(range(len(spans)), key=lambda j: -lex[j])
        chosen = order[:CANDIDATES_PER_SENTENCE]
        for n in set(cited[i]):  # the cited sources' best spans are always judged
            best = next((j for j in order if spans[j].source == n), None)
            if best is not None and best not in chosen:
                chosen.append(best)
        candidates.append([(j, lex[j]) for j in chosen])
    cos: dict[tuple[int, int], float] = {}
    # Lexically decisive sentences (copied, or sharing almost nothing) need no embedding: that keeps the check
    # to a few milliseconds for extractive answers and most abstentions.
    asked = [i for i in range(len(raw)) if candidates[i] and LEXICAL_ALONE_BELOW <= max(
        lex for _, lex in candidates[i]) < LEXICAL_ALONE_ABOVE]
    span_ids = sorted({j for i in asked for j, _ in candidates[i]})
    if span_ids:
        vecs = embedder.embed_documents([bodies[i] for i in asked] + [spans[j].text for j in span_ids])
        sent_vecs, span_vecs = vecs[: len(asked)], vecs[len(asked):]
        where = {j: k for k, j in enumerate(span_ids)}
        for row, i in enumerate(asked):
            for j, _ in candidates[i]:
                cos[(i, j)] = float(span_vecs[where[j]] @ sent_vecs[row])

    def score(i: int, j: int, lex: float) -> float:
        if (i, j) not in cos:
            return lex
        s = LEXICAL_WEIGHT * lex + (1 - LEXICAL_WEIGHT) * max(0.0, cos[(i, j)])
        return s * 0.6 ** mismatches(claims[i], spans[j])  # the embedding is blind to a wrong figure or name

    pieces: list[str] = []
    supports: list[SentenceSupport] = []
    citations: list[Citation] = []
    cursor = 0
    out = ""
    for i, (s, e) in enumerate(raw):
        sentence = text[s:e]
        gap = text[cursor:s]
        cursor = e
        if not checkable[i]:
            out += gap
            start = len(out)
            out += sentence
            supports.append(SentenceSupport(sentence, start, len(out), 0.0, "neutral", cited[i]))
            continue
        # best first; on a tie the shorter span (one sentence rather than a pair) is the more precise citation
        scored = sorted(((score(i, j, lex), j) for j, lex in candidates[i]),
                        key=lambda t: (round(t[0], 6), -len(spans[t[1]].text)), reverse=True)
        best_score, best_j = scored[0] if scored else (0.0, -1)
        per_source: dict[int, tuple[float, int]] = {}
        for sc, j in scored:
            per_source.setdefault(spans[j].source, (sc, j))
        kept = [n for n in cited[i] if n in per_source and per_source[n][0] >= threshold]
        if kept:
            status, numbers = "supported", kept
        elif best_score >= threshold and (not cited[i] or best_score - max(
                (per_source.get(n, (0.0, -1))[0] for n in cited[i]), default=0.0) >= margin):
            status, numbers = ("reattributed" if cited[i] else "attributed"), [spans[best_j].source]
        else:
            status, numbers = "unsupported", list(cited[i])
        top_sc, top_j = per_source[numbers[0]] if numbers and numbers[0] in per_source else (best_score, best_j)
        if status == "unsupported" and grounding == "strict":
            supports.append(SentenceSupport(sentence, -1, -1, best_score, status, cited[i]))
            continue
        new_sentence = sentence
        if numbers != list(cited[i]) or (status != "unsupported" and len(cited[i]) != len(kept)):
            body = _MARKER.sub("", sentence).rstrip()
            new_sentence = body + " " + "".join(f"[{n}]" for n in numbers) if numbers else body
        out += gap if out else gap.lstrip()
        start = len(out)
        out += new_sentence
        sp = spans[top_j] if top_j >= 0 else None
        supports.append(SentenceSupport(
            new_sentence, start, len(out), top_sc, status, cited[i], source=sp.source if sp else None,
            doc_id=sources[sp.source - 1].chunk.doc_id if sp else None, span_start=sp.start if sp else None,
            span_end=sp.end if sp else None, quote=sp.quote if sp else ""))
        if status != "unsupported":
            for n in numbers:
                _, j = per_source[n]
                citations.append(citation_for(n, sources[n - 1], start=spans[j].start, end=spans[j].end,
                                              quote=spans[j].quote))
    out += text[cursor:] if raw else text
    pieces.append(out)
    final = "".join(pieces).strip()
    if grounding == "strict" and not any(s.start >= 0 and s.status != "neutral" for s in supports):
        if any(s.status == "unsupported" for s in supports):
            final, citations = NO_ANSWER, []
            supports = [SentenceSupport(s.text, -1, -1, s.score, s.status, s.cited) for s in supports]
    return Verification(final, supports, citations)
