"""ragworks: self-hostable retrieval-augmented generation with hybrid retrieval and cited answers.

The public names are imported on first use, so `import ragworks.<stage>` (a Celery worker, `ragworks dump
embed`, a tokenizing process) loads only what that stage needs, not the whole engine and its index libraries.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ragworks.collection import Collection
    from ragworks.config import Settings
    from ragworks.documents import Answer, Chunk, Citation, Document, SearchHit
    from ragworks.errors import RagworksError
    from ragworks.store.base import Filter

__version__ = "0.1.0"

_PUBLIC = {
    "Answer": "ragworks.documents",
    "Chunk": "ragworks.documents",
    "Citation": "ragworks.documents",
    "Collection": "ragworks.collection",
    "Document": "ragworks.documents",
    "Filter": "ragworks.store.base",
    "RagworksError": "ragworks.errors",
    "SearchHit": "ragworks.documents",
    "Settings": "ragworks.config",
}

__all__ = [
    "Answer",
    "Chunk",
    "Citation",
    "Collection",
    "Document",
    "Filter",
    "RagworksError",
    "SearchHit",
    "Settings",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ragworks' has no attribute {name!r}")
