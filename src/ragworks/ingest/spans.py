"""Structure spans of plain text and Markdown: paragraphs, headings, lists, code blocks, tables."""

from __future__ import annotations

import re

from ragworks.documents import Span, SpanKind
from ragworks.ingest.tables import markdown_table_end


def normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


_BLANK_SPLIT = re.compile(r"\n[ \t]*\n+")
_MD_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")
_MD_FENCE = re.compile(r"^(```|~~~)")
_MD_LIST = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")


def paragraph_spans(text: str, base: int = 0) -> list[Span]:
    """Paragraph spans separated by blank lines, trimmed of surrounding whitespace."""
    spans = []
    pos = 0
    for m in [*_BLANK_SPLIT.finditer(text), None]:
        end = m.start() if m else len(text)
        block = text[pos:end]
        stripped = block.strip()
        if stripped:
            lead = len(block) - len(block.lstrip())
            s = base + pos + lead
            spans.append(Span(s, s + len(stripped)))
        if m:
            pos = m.end()
    return spans


def markdown_spans(text: str) -> list[Span]:
    """Headings (ATX and setext), fenced code, list items and paragraphs of a Markdown text."""
    spans: list[Span] = []
    lines = text.split("\n")
    offsets = []
    pos = 0
    for line in lines:
        offsets.append(pos)
        pos += len(line) + 1

    para_start: int | None = None
    para_end = 0

    def flush() -> None:
        nonlocal para_start
        if para_start is not None:
            spans.extend(paragraph_spans(text[para_start:para_end], para_start))
            para_start = None

    i = 0
    while i < len(lines):
        line, off = lines[i], offsets[i]
        heading = _MD_HEADING.match(line)
        table_end = markdown_table_end(lines, i)  # a table may interrupt a paragraph, as in GFM
        if table_end is not None:
            flush()
            s = off + len(line) - len(line.lstrip())
            spans.append(Span(s, offsets[table_end - 1] + len(lines[table_end - 1].rstrip()), SpanKind.TABLE))
            i = table_end
            continue
        if _MD_FENCE.match(line.strip()):
            flush()
            fence = line.strip()[:3]
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith(fence):
                j += 1
            end = offsets[j] + len(lines[j]) if j < len(lines) else len(text)
            spans.append(Span(off, end, SpanKind.CODE))
            i = j + 1
            continue
        if heading:
            flush()
            s = off + heading.start(2)
            spans.append(Span(s, s + len(heading.group(2)), SpanKind.HEADING, len(heading.group(1))))
        elif (
            i + 1 < len(lines)
            and line.strip()
            and re.fullmatch(r"\s*(=+|-+)\s*", lines[i + 1])
            and (para_start is None)
        ):
            flush()
            level = 1 if "=" in lines[i + 1] else 2
            s = off + len(line) - len(line.lstrip())
            spans.append(Span(s, s + len(line.strip()), SpanKind.HEADING, level))
            i += 2
            continue
        elif _MD_LIST.match(line):
            flush()
            j = i + 1  # continuation lines: indented, not a new item, not blank
            while j < len(lines) and lines[j].strip() and lines[j].startswith((" ", "\t")) and not _MD_LIST.match(
                lines[j]
            ):
                j += 1
            end = offsets[j - 1] + len(lines[j - 1])
            s = off + len(line) - len(line.lstrip())
            spans.append(Span(s, end, SpanKind.LIST_ITEM))
            i = j
            continue
        elif not line.strip():
            flush()
        else:
            if para_start is None:
                para_start = off
            para_end = off + len(line)
        i += 1
    flush()
    return spans
