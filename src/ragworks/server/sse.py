"""Server-Sent Events framing (one JSON object per event, on one `data:` line)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from typing import Any

from ragworks.server.errors import RequestTimeout

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no proxy buffering of the stream


def sse_event(event: str | None, data: Any) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


def within_deadline(pieces: Iterable[str], deadline: float, timeout_s: float) -> Iterator[str]:
    """`pieces` until `deadline` (time.monotonic()); past it, stop generating and raise RequestTimeout, which the
    stream reports in-band (the request timeout covers streamed generation too, checked between tokens)."""
    it = iter(pieces)
    try:
        for piece in it:
            yield piece
            if time.monotonic() > deadline:
                raise RequestTimeout(f"the answer took longer than the request timeout ({timeout_s:g} s); "
                                     "ask for a shorter answer or raise request_timeout_s")
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()  # stops the LLM's generator: no tokens produced for nobody
