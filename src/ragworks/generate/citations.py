"""[n] markers in an answer → Citations pointing at document, page and character offsets."""

from __future__ import annotations

import re
from collections.abc import Sequence

from ragworks.documents import Citation, SearchHit

_MARKER = re.compile(r"\[(\d+(?:\s*(?:,|;|-|–)\s*\d+)*)\]")


def cited_numbers(text: str) -> list[int]:
    """Source numbers cited in `text`, in first-appearance order: [1], [2, 3], [4-6], [1][2]."""
    out: list[int] = []
    for m in _MARKER.finditer(text):
        for part in re.split(r"\s*[,;]\s*", m.group(1)):
            bounds = re.split(r"\s*[-–]\s*", part)
            if len(bounds) == 2 and bounds[0].isdigit() and bounds[1].isdigit():
                lo, hi = int(bounds[0]), int(bounds[1])
                nums = range(lo, hi + 1) if 0 < hi - lo < 20 else [lo, hi]
            else:
                nums = [int(bounds[0])]
            out.extend(n for n in nums if n not in out)
    return out


def citation_for(number: int, hit: SearchHit, *, start: int | None = None, end: int | None = None,
                 quote: str | None = None) -> Citation:
    c = hit.chunk
    return Citation(
        number=number,
        doc_id=c.doc_id,
        source=hit.source,
        title=hit.title,
        page=c.page_start,
        start=c.start if start is None else start,
        end=c.end if end is None else end,
        heading_path=c.heading_path,
        quote=c.text if quote is None else quote,
        time_range=c.time_range,
        region=c.region,
    )


def resolve_citations(text: str, sources: Sequence[SearchHit]) -> tuple[list[Citation], list[int]]:
    """Citations for the valid [n] markers, and the numbers that named no given source (dropped)."""
    citations, dropped = [], []
    for n in cited_numbers(text):
        if 1 <= n <= len(sources):
            citations.append(citation_for(n, sources[n - 1]))
        else:
            dropped.append(n)
    return citations, dropped


def strip_invalid_markers(text: str, valid: int) -> str:
    """Remove markers that cite no given source, so a reader never follows a citation to nowhere."""

    def fix(m: re.Match[str]) -> str:
        nums = [n for n in cited_numbers(m.group(0)) if 1 <= n <= valid]
        return "[" + ", ".join(map(str, nums)) + "]" if nums else ""

    return _MARKER.sub(fix, text)
