"""Structure-aware chunking sized in the embedding model's own tokens.

Units are sentences (a sentence longer than the budget is cut into word windows). Units are packed greedily
into chunks; a heading starts a new chunk once the current one holds something, a paragraph boundary is preferred
over a mid-paragraph one when the chunk is mostly full, and a chunk that continues the previous one repeats its
last sentences up to `overlap` tokens. Every chunk is an exact slice of the document text, so its offsets (and
pages) point at the cited place.

Tables (TABLE spans, rendered as Markdown by the loaders) are chunks of their own, cut between rows; a chunk that
continues a table carries the table's header rows on its context (after the title › headings line), so what is
embedded, keyword-indexed and shown to the LLM names each cell's column.

Given the model's `PassageTokenizer`, a document is tokenized once: unit sizes are counted from its token offsets,
and each chunk carries its index text's token ids for the embedder (`Chunk.token_ids`), so no passage is tokenized
twice between file and vector.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ragworks.documents import Chunk, Document, Span, SpanKind
from ragworks.embed.tokens import DocTokens, PassageTokenizer
from ragworks.ingest.tables import header_line_count

if TYPE_CHECKING:
    from ragworks.config import Settings

TokenCounter = Callable[[Sequence[str]], list[int]]

_ABBREV = {"mr", "mrs", "ms", "dr", "prof", "st", "no", "vs", "etc", "e.g", "i.e", "fig", "al", "inc", "ltd",
           "jr", "sr", "mt", "approx", "cf", "ca", "vol", "pp", "jan", "feb", "mar", "apr", "jun", "jul", "aug",
           "sep", "sept", "oct", "nov", "dec", "u.s", "u.k"}
_SENT_BOUNDARY = re.compile(r"(?<=[.!?…])([\"'”’)\]]*)\s+(?=[\"'“‘(\[]?[A-Z0-9À-ÖØ-Þ])")
_CONTEXT_MAX_CHARS = 200
# No real text averages more characters per token than this. A tokenizer may count a giant "word" (a hex digest,
# URL-safe base64: over 100 characters without punctuation) as one [UNK] token; sizing such a unit by its
# length instead keeps it from becoming a single 20,000-character chunk.
_MAX_CHARS_PER_TOKEN = 10
# A "word" this long may be one [UNK] token: such text takes the unit-by-unit path, which sizes it by length.
_LONG_WORD = re.compile(r"\S{64,}")


def split_sentences(text: str, base: int = 0) -> list[tuple[int, int]]:
    """Sentence [start, end) offsets (shifted by `base`), trimmed; abbreviations don't end sentences."""
    out: list[tuple[int, int]] = []
    start = 0
    for m in _SENT_BOUNDARY.finditer(text):
        before = text[start : m.start()]
        last_word = before.rsplit(None, 1)[-1].rstrip(".").lower() if before.split() else ""
        if last_word in _ABBREV or (len(last_word) == 1 and last_word.isalpha()):
            continue
        out.append((start, m.end(1)))  # closing quotes and brackets stay with their sentence
        start = m.end()
    out.append((start, len(text)))
    result = []
    for s, e in out:
        seg = text[s:e]
        lead = len(seg) - len(seg.lstrip())
        trail = len(seg) - len(seg.rstrip())
        if e - trail > s + lead:
            result.append((base + s + lead, base + e - trail))
    return result


@dataclass(slots=True)
class _Unit:
    start: int
    end: int
    tokens: int
    para: int  # index of the block it belongs to
    heading_path: tuple[str, ...]
    heading: bool = False
    table: int = -1  # index of the TABLE span the unit is a row of, -1 outside tables
    table_header: bool = False


def _word_windows(text: str, start: int, end: int, tokens: int, budget: int) -> list[tuple[int, int]]:
    """Cut an over-long sentence into roughly equal word-aligned pieces of at most ~budget tokens."""
    pieces = max(2, -(-tokens // max(budget, 1)))
    words = [(m.start() + start, m.end() + start) for m in re.finditer(r"\S+", text[start:end])]
    if len(words) <= 1:  # one giant "word" (a URL, base64): cut by characters
        step = max(1, (end - start) // pieces)
        return [(s, min(s + step, end)) for s in range(start, end, step)]
    per = -(-len(words) // pieces)
    return [(words[i][0], words[min(i + per, len(words)) - 1][1]) for i in range(0, len(words), per)]


class Chunker:
    """Splits documents into chunks of at most `max_tokens` tokens (context line included)."""

    def __init__(
        self,
        count_tokens: TokenCounter,
        *,
        chunk_tokens: int = 256,
        overlap: int = 32,
        model_max_tokens: int = 512,
        with_context: bool = True,
        tokenizer: PassageTokenizer | None = None,
    ) -> None:
        self.count_tokens = count_tokens
        self.tokenizer = tokenizer
        self._context_ids: dict[str, np.ndarray] = {}
        self.chunk_tokens = min(chunk_tokens, model_max_tokens - 2)  # [CLS] and [SEP]
        self.overlap = min(overlap, self.chunk_tokens // 2)
        self.with_context = with_context
        self._context_tokens: dict[str, int] = {}

    @classmethod
    def from_settings(cls, settings: Settings, count_tokens: TokenCounter, max_tokens: int,
                      tokenizer: PassageTokenizer | None = None) -> Chunker:
        """The chunker `settings` asks for, over a model's token counter and length limit (one place, for
        collections and dump shards)."""
        s = settings
        return cls(count_tokens, chunk_tokens=s.chunk_tokens, overlap=s.chunk_overlap, model_max_tokens=max_tokens,
                   with_context=s.chunk_context, tokenizer=tokenizer)

    def context_for(self, doc: Document, path: tuple[str, ...]) -> str:
        if not self.with_context:
            return ""
        title = " ".join(doc.title.split("\n")).strip()  # the context's first line is title › headings, alone
        parts = [title] if title else []
        for h in path:
            if not parts or h.strip().lower() != parts[-1].lower():
                parts.append(h.strip())
        return " › ".join(parts)[:_CONTEXT_MAX_CHARS]

    def _count(self, text: str, ranges: Sequence[tuple[int, int]], tokens: DocTokens | None) -> list[int]:
        if tokens is not None:
            return [tokens.count(s, e) for s, e in ranges]
        return self.count_tokens([text[s:e] for s, e in ranges])

    def _units(self, doc: Document, tokens: DocTokens | None = None) -> list[_Unit]:
        text = doc.text
        spans = doc.spans or _fallback_spans(text)
        path: list[tuple[int, str]] = []  # (level, heading)
        tables: dict[int, int] = {}  # TABLE span index → how many of its lines are header rows
        raw: list[tuple[int, int, int, tuple[str, ...], bool]] = []
        for pi, sp in enumerate(spans):
            if sp.kind is SpanKind.HEADING:
                heading = " ".join(text[sp.start : sp.end].split())
                path = [(lvl, h) for lvl, h in path if lvl < max(sp.level, 1)]
                path.append((max(sp.level, 1), heading))
                raw.append((sp.start, sp.end, pi, tuple(h for _, h in path), True))
                continue
            hp = tuple(h for _, h in path)
            if sp.kind in (SpanKind.CODE, SpanKind.TABLE):
                lines = [(m.start() + sp.start, m.end() + sp.start)
                         for m in re.finditer(r"[^\n]*\S[^\n]*", text[sp.start : sp.end])]
                raw.extend((s, e, pi, hp, False) for s, e in lines)
                if sp.kind is SpanKind.TABLE:
                    tables[pi] = header_line_count(text[sp.start : sp.end])
            else:
                raw.extend((s, e, pi, hp, False) for s, e in split_sentences(text[sp.start : sp.end], sp.start))
        counts = [self._sized(n, e - s) for (s, e, *_), n in
                  zip(raw, self._count(text, [(s, e) for s, e, *_ in raw], tokens), strict=True)]
        units: list[_Unit] = []
        row_in_table = 0
        for (s, e, pi, hp, is_h), n in zip(raw, counts, strict=True):
            table = pi if pi in tables else -1
            row_in_table = row_in_table + 1 if table >= 0 and units and units[-1].table == table else 0
            is_header = table >= 0 and row_in_table < tables[table]
            if n > self.chunk_tokens:  # an over-long heading (HTML <h2> around a paragraph) is split like text
                pieces = _word_windows(text, s, e, n, self.chunk_tokens)
                piece_counts = [self._sized(pn, b - a) for (a, b), pn in
                                zip(pieces, self._count(text, pieces, tokens), strict=True)]
                for (a, b), pn in zip(pieces, piece_counts, strict=True):
                    for a2, b2 in (
                        _word_windows(text, a, b, pn, self.chunk_tokens) if pn > self.chunk_tokens else [(a, b)]
                    ):
                        units.append(_Unit(a2, b2, min(pn, self.chunk_tokens), pi, hp, table=table))
            else:
                units.append(_Unit(s, e, min(n, self.chunk_tokens), pi, hp, is_h, table, is_header))
        return units

    def _table_leads(self, doc: Document, units: list[_Unit]) -> dict[int, str]:
        """Each table's header rows, to repeat on the chunks that continue it (none when the header is so long that
        repeating it would crowd out the rows)."""
        leads: dict[int, str] = {}
        for u in units:
            if u.table_header:
                leads[u.table] = (leads[u.table] + "\n" if u.table in leads else "") + doc.text[u.start : u.end]
        for table, lead in list(leads.items()):
            if self.count_tokens([lead])[0] > self.chunk_tokens // 2:
                del leads[table]
        return leads

    @staticmethod
    def _sized(tokens: int, chars: int) -> int:
        """`tokens`, or more for a unit far too long in characters for its token count (see _MAX_CHARS_PER_TOKEN)."""
        if chars <= 256:  # short units: a heading like "Organisation" is legitimately 12 characters, 1 token
            return tokens
        return max(tokens, -(-chars // _MAX_CHARS_PER_TOKEN))

    def _budget(self, doc: Document, path: tuple[str, ...], lead: str = "") -> int:
        ctx = self.context_for(doc, path) + (f"\n{lead}" if lead else "")
        if ctx not in self._context_tokens:
            if len(self._context_tokens) > 4096:
                self._context_tokens.clear()
                self._context_ids.clear()
            if self.tokenizer is not None and ctx:
                self._context_ids[ctx] = self.tokenizer.ids([ctx])[0]
                self._context_tokens[ctx] = len(self._context_ids[ctx]) + 1
            else:
                self._context_tokens[ctx] = self.count_tokens([ctx])[0] + 1 if ctx else 0
        return max(16, self.chunk_tokens - self._context_tokens[ctx])

    def short(self, doc: Document) -> bool:
        """Whether `doc` is worth trying as one chunk (`chunk_one`) before tokenizing it with offsets: plain
        paragraphs, no giant words, and at most 4 characters per token of budget (English averages ~4.4)."""
        return (
            len(doc.text) <= 4 * self._budget(doc, ())
            and not doc.anchors  # OCR pages and speech segments take the unit path (page-bound chunks, locators)
            and all(sp.kind in (SpanKind.PARAGRAPH, SpanKind.LIST_ITEM) for sp in doc.spans)
            and _LONG_WORD.search(doc.text) is None
        )

    def chunk_one(self, doc: Document, text_ids: np.ndarray) -> Chunk | None:
        """The single chunk of a `short` document, from the ids of its whole text (no offsets needed), or None
        when it does not fit in one chunk. It is the chunk `chunk` would make: the trimmed text, every token."""
        text = doc.text
        start, end = len(text) - len(text.lstrip()), len(text.rstrip())
        if end <= start or len(text_ids) > self._budget(doc, ()):
            return None
        context = self.context_for(doc, ())
        time_range, region = doc.locate(start, end)
        ids = self._index_ids(context, DocTokens(np.asarray(text_ids), np.zeros(0, np.int64), np.zeros(0, np.int64)),
                              0, 0, whole=True)
        return Chunk(doc_id=doc.id, ordinal=0, text=text[start:end], start=start, end=end, heading_path=(),
                     page_start=doc.page_at(start), page_end=doc.page_at(max(start, end - 1)),
                     token_count=len(text_ids), context=context, time_range=time_range, region=region,
                     token_ids=ids)

    def tokenize(self, doc: Document) -> DocTokens | None:
        """The document's tokens, when this chunker has the model's tokenizer."""
        return self.tokenizer.document(doc.text) if self.tokenizer is not None else None

    def chunk(self, doc: Document, tokens: DocTokens | None = None) -> list[Chunk]:
        """Chunks of `doc`; `tokens` are its tokens if already made (`PassageTokenizer.documents` in a batch)."""
        if tokens is None:
            tokens = self.tokenize(doc)
        units = self._units(doc, tokens)
        leads = self._table_leads(doc, units)
        para_tokens: dict[int, int] = {}
        for u in units:
            para_tokens[u.para] = para_tokens.get(u.para, 0) + u.tokens
        groups: list[list[_Unit]] = []
        current: list[_Unit] = []
        used = 0
        budget = self.chunk_tokens
        # OCR pages: a chunk stays on one page, so its citation names that page and its box lies on it
        by_page = bool(doc.page_starts) and any(a.box is not None for a in doc.anchors)
        for u in units:
            content = [x for x in current if not x.heading]
            if by_page and current and doc.page_at(u.start) != doc.page_at(current[-1].start):
                groups.append(current)
                current, used = [], 0
            # a heading starts a chunk; so does a table, and whatever follows one (tables are chunks of their own)
            if content and (u.heading or u.table != content[-1].table):
                groups.append(current)
                current, used = [], 0
            if not current:
                budget = self._budget(doc, u.heading_path)
            new_para = bool(current) and u.para != current[-1].para
            para_fits = used + para_tokens[u.para] <= budget
            if current and (used + u.tokens > budget or (new_para and not para_fits and used >= 0.7 * budget)):
                groups.append(current)
                carry = self._overlap(current) if not u.heading and u.table < 0 else []
                current, used = list(carry), sum(x.tokens for x in carry)
                budget = self._budget(doc, (carry[0] if carry else u).heading_path, leads.get(u.table, ""))
                while current and used + u.tokens > budget:
                    used -= current.pop(0).tokens
            current.append(u)
            used += u.tokens
        if current:
            groups.append(current)

        chunks: list[Chunk] = []
        for group in groups:
            if all(u.heading for u in group) and chunks:
                continue  # a trailing heading with nothing under it
            start, end = group[0].start, group[-1].end
            first_content = next((u for u in group if not u.heading), group[0])
            path = first_content.heading_path
            context = self.context_for(doc, path)
            if first_content.table >= 0 and not first_content.table_header and first_content.table in leads:
                context += "\n" + leads[first_content.table]  # a continued table: its header rows again
            time_range, region = doc.locate(start, end)
            chunks.append(
                Chunk(
                    doc_id=doc.id,
                    ordinal=len(chunks),
                    text=doc.text[start:end],
                    start=start,
                    end=end,
                    heading_path=path,
                    page_start=doc.page_at(start),
                    page_end=doc.page_at(max(start, end - 1)),
                    token_count=sum(u.tokens for u in group),
                    context=context,
                    time_range=time_range,
                    region=region,
                    token_ids=self._index_ids(context, tokens, start, end),
                )
            )
        return chunks

    def _index_ids(self, context: str, tokens: DocTokens | None, start: int, end: int, *,
                   whole: bool = False) -> np.ndarray | None:
        """The ids of a chunk's index text (context line, then the passage), sliced from the document's tokens."""
        if tokens is None or self.tokenizer is None or not self.tokenizer.composable:
            return None
        ctx_ids = None
        if context:
            ctx_ids = self._context_ids.get(context)
            if ctx_ids is None:
                ctx_ids = self._context_ids[context] = self.tokenizer.ids([context])[0]
        return self.tokenizer.join(ctx_ids, tokens.ids if whole else tokens.slice(start, end))

    def _overlap(self, group: list[_Unit]) -> list[_Unit]:
        if self.overlap <= 0:
            return []
        carry: list[_Unit] = []
        total = 0
        for u in reversed(group):
            if u.heading or total + u.tokens > self.overlap:
                break
            carry.insert(0, u)
            total += u.tokens
        return carry


def _fallback_spans(text: str) -> list[Span]:
    from ragworks.ingest.loaders import paragraph_spans

    return paragraph_spans(text)
