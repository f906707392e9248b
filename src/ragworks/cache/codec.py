"""Search hits and answers as JSON (what both cache backends hold): exact round trips, no pickle.

Pickle from a shared Redis would let whoever can write to it run code in every API process; this codec only ever
builds the dataclasses it knows (documents.py's), with tuples tagged so they come back as tuples.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from ragworks.documents import Answer, Chunk, Citation, SearchHit, SentenceSupport

_KNOWN: dict[str, type] = {c.__name__: c for c in (Answer, Chunk, Citation, SearchHit, SentenceSupport)}
_SKIP = {"token_ids"}  # Chunk's tokenizer ids: never stored by any store either


def _enc(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {"__dc": type(value).__name__}
        for f in dataclasses.fields(value):
            if f.init and f.name not in _SKIP:
                out[f.name] = _enc(getattr(value, f.name))
        return out
    if isinstance(value, tuple):
        return {"__tuple": [_enc(v) for v in value]}
    if isinstance(value, list):
        return [_enc(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _enc(v) for k, v in value.items()}
    return value


def _dec(value: Any) -> Any:
    if isinstance(value, list):
        return [_dec(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__tuple" in value:
        return tuple(_dec(v) for v in value["__tuple"])
    name = value.get("__dc")
    if name is None:
        return {k: _dec(v) for k, v in value.items()}
    cls = _KNOWN.get(name)
    if cls is None:
        raise ValueError(f"cache entry holds an unknown type {name!r}")
    return cls(**{k: _dec(v) for k, v in value.items() if k != "__dc"})


def dumps(value: Any) -> str:
    """A list of SearchHit or an Answer (anything built from documents.py's dataclasses) → JSON text."""
    return json.dumps(_enc(value), ensure_ascii=False, separators=(",", ":"), default=str)


def loads(text: str | bytes) -> Any:
    return _dec(json.loads(text))
