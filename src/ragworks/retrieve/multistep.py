"""Multi-step retrieval for questions that need two facts: retrieve, ask a follow-up, retrieve again.

After each retrieval a follow-up query is written from what the question asks and what was found:
- with an LLM, the model reads the question and the best passages and writes one search query for the missing
  fact (naming what the passages name), or DONE;
- without one (the extractive answerer), deterministically: the question's content words that none of the best
  hits contains, plus the names (capitalised runs) the best-matching sentence of the top hit brings that the
  question does not — the bridge to the second fact. Nothing missing: no further step.

At most `steps` retrievals; each is logged (query, reason, hits) in `Answer.steps`. The final sources interleave
the steps' hits (best of step 1, best of step 2, ...), so the answerer is given passages from every step.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ragworks.documents import SearchHit
from ragworks.generate.base import LLM, Message, complete
from ragworks.ingest.chunker import split_sentences
from ragworks.lexical.analysis import STOPWORDS, Analyzer

COVER_HITS = 2  # a question word counts as found when one of each step's best hits holds it
MAX_BRIDGES = 2  # names taken from the first hits into the follow-up
# A follow-up longer than this is not a search query: small models ramble (SmolLM2-135M wrote "DON'T reply, as
# you cannot ..." for most two-hop questions, bench/results/multistep-local.md); the term follow-up replaces it.
MAX_QUERY_WORDS = 16
_QUESTION_WORDS = frozenset("name named called also both whose many much year years kind type".split())
_WORD = re.compile(r"[^\W_][\w'-]*[^\W_]|[^\W_]", re.UNICODE)
_NAME = re.compile(r"\b[A-Z][\w'-]*(?:\s+(?:of|the|de|del|von|van|and)\s+[A-Z][\w'-]*|\s+[A-Z][\w'-]*)*")
_ANALYZER = Analyzer(min_chars=1)

FOLLOW_UP_PROMPT = (
    "You help a search engine answer a question that may need two facts. You are given the question and the "
    "passages found so far. If the passages hold everything needed to answer, reply DONE. Otherwise reply with "
    "one short search query for the missing fact, using names the passages mention. Reply with the query only."
)


@dataclass(slots=True)
class Step:
    """One retrieval of a multi-step search: the query, why it was asked, and what it found."""

    number: int
    query: str
    reason: str
    hits: list[SearchHit] = field(default_factory=list)

    def to_dict(self, k: int = 5) -> dict[str, Any]:
        return {"step": self.number, "query": self.query, "reason": self.reason,
                "hits": [{"chunk_id": h.chunk.id, "doc_id": h.chunk.doc_id, "source": h.source,
                          "score": round(float(h.score), 6), "start": h.chunk.start, "end": h.chunk.end}
                         for h in self.hits[:k]]}


def _content_words(text: str) -> list[str]:
    """The words of a question worth searching for: not stopwords, not question vocabulary, in order, once."""
    words = [w for w in _WORD.findall(text) if len(w) > 2 or w.isdigit()]
    kept = [w for w in words if w.lower() not in STOPWORDS and w.lower() not in _QUESTION_WORDS]
    return list(dict.fromkeys(kept))


def _hit_terms(hits: Sequence[SearchHit]) -> set[str]:
    terms: set[str] = set()
    for h in hits:
        terms.update(_ANALYZER(h.chunk.index_text))
    return terms


def missing_words(question: str, found: Sequence[SearchHit]) -> list[str]:
    """The question's content words that none of `found` contains (compared stemmed)."""
    terms = _hit_terms(found)
    return [w for w in _content_words(question) if not set(_ANALYZER(w)) <= terms]


def bridge_names(question: str, hit: SearchHit, limit: int = MAX_BRIDGES) -> list[str]:
    """Names in the hit's sentence that best matches the question which the question does not mention."""
    text = hit.chunk.text
    q_terms = set(_ANALYZER(question))
    best, best_overlap = "", -1
    for s, e in split_sentences(text):
        overlap = len(q_terms & set(_ANALYZER(text[s:e])))
        if overlap > best_overlap:
            best, best_overlap = text[s:e], overlap
    q_lower = question.lower()
    names: list[str] = []
    for m in _NAME.finditer(best):
        name = m.group().strip()
        words = [w for w in name.split() if w.lower() not in STOPWORDS]
        if not words or name.lower() in q_lower or all(w.lower() in q_lower for w in words):
            continue
        if len(words) == 1 and (m.start() == 0 or best[: m.start()].rstrip().endswith((".", "!", "?", ":"))):
            continue  # a capitalised sentence opener ("During", "Despite"), more often not a name than one
        if name not in names:
            names.append(name)
        if len(names) >= limit:
            break
    return names


def terms_follow_up(question: str, steps: Sequence[Step]) -> tuple[str, str] | None:
    """(query, reason) for the next step without an LLM, or None when the hits so far cover the question."""
    found = [h for st in steps for h in st.hits[:COVER_HITS]]
    missing = missing_words(question, found)
    if not missing:
        return None
    top = steps[-1].hits[0] if steps[-1].hits else None
    names = bridge_names(question, top) if top is not None else []
    query = " ".join([*names, *missing])
    reason = f"not in the best hits: {', '.join(missing)}" + (f"; names they bring: {', '.join(names)}"
                                                              if names else "")
    return query, reason


def llm_follow_up(question: str, steps: Sequence[Step], llm: LLM, *, passages: int = 3) -> tuple[str, str] | None:
    """(query, reason) the LLM asks for next, or None when it says the passages suffice."""
    shown = [h for st in steps for h in st.hits[:passages]]
    context = "\n\n".join(f"[{i}] {h.chunk.readable_text[:800]}" for i, h in enumerate(shown, 1))
    messages: list[Message] = [
        {"role": "system", "content": FOLLOW_UP_PROMPT},
        {"role": "user", "content": f"Question: {question}\n\nPassages:\n{context}\n\nSearch query or DONE:"},
    ]
    text = complete(llm, messages, max_tokens=48, temperature=0.0).strip()
    line = next((ln.strip().strip('"') for ln in text.splitlines() if ln.strip()), "")
    if not line or "DONE" in line.upper().split() or line.upper().startswith("DONE"):
        return None
    if len(line.split()) > MAX_QUERY_WORDS:
        fallback = terms_follow_up(question, steps)
        if fallback is None:
            return None
        return fallback[0], f"the LLM's follow-up was no search query ({len(line.split())} words); " + fallback[1]
    return line, "follow-up written by the LLM"


def interleave(steps: Sequence[Step], k: int) -> list[SearchHit]:
    """The steps' hits taken in turn, at most `k`. A passage several steps found belongs to one step: each step
    first claims its best passage no earlier step claimed, then every other passage goes to the step that ranked
    it best (on a tie, the later one: the follow-up asked for it). So every step keeps a passage of its own."""
    owner: dict[str, tuple[int, int]] = {}  # chunk id → (rank, -step), the smallest wins; claims rank -1
    for st in steps:
        first = next((h for h in st.hits if h.chunk.id not in owner), None)
        if first is not None:
            owner[first.chunk.id] = (-1, -st.number)
    for st in steps:
        for rank, h in enumerate(st.hits):
            key = (rank, -st.number)
            if h.chunk.id not in owner or key < owner[h.chunk.id]:
                owner[h.chunk.id] = key
    own = [[replace(h, step=st.number) for h in st.hits if owner[h.chunk.id][1] == -st.number] for st in steps]
    out: list[SearchHit] = []
    seen: set[str] = set()
    for i in range(max((len(o) for o in own), default=0)):
        for hits in own:
            if i < len(hits) and hits[i].chunk.id not in seen:
                seen.add(hits[i].chunk.id)
                out.append(hits[i])
                if len(out) >= k:
                    return out
    return out


def multi_step_search(question: str, search: Callable[[str], list[SearchHit]], *, steps: int, k: int,
                      llm: LLM | None = None) -> tuple[list[SearchHit], list[Step]]:
    """Up to `steps` retrievals for `question`; the interleaved hits (at most `k`) and the log of steps."""
    done = [Step(1, question, "the question", search(question))]
    asked = {question.strip().lower()}
    while len(done) < steps and done[-1].hits:
        follow = llm_follow_up(question, done, llm) if llm is not None else terms_follow_up(question, done)
        if follow is None or not _WORD.search(follow[0]) or follow[0].strip().lower() in asked:
            break  # done, nothing searchable (a model's reply of quotes or markup), or asked already
        asked.add(follow[0].strip().lower())
        done.append(Step(len(done) + 1, follow[0], follow[1], search(follow[0])))
    if len(done) == 1:
        return done[0].hits[:k], done
    return interleave(done, k), done
