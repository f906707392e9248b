"""ragworks: self-hostable retrieval-augmented generation with hybrid retrieval and cited answers."""

from ragworks.collection import Collection
from ragworks.config import Settings
from ragworks.documents import Answer, Chunk, Citation, Document, SearchHit
from ragworks.errors import RagworksError
from ragworks.store.base import Filter

__version__ = "0.1.0"

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
