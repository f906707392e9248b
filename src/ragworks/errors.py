"""Error types. Each carries a message a user can act on; the CLI and the API map them to one line / a status."""

from __future__ import annotations


class RagworksError(Exception):
    """Base class for every error ragworks raises on purpose."""

    exit_code: int = 1


class ConfigError(RagworksError):
    """A setting is missing or invalid."""

    exit_code = 2


class CollectionNotFound(RagworksError):
    """The named collection does not exist (ingest creates one)."""


class CollectionLocked(RagworksError):
    """Another process is writing to this collection."""


class EmbedderMismatch(RagworksError):
    """The collection was built with another embedding model than the one configured."""


class DocumentNotFound(RagworksError):
    """No document with that id or source path in the collection."""


class LLMUnavailable(RagworksError):
    """The configured LLM could not be loaded or reached."""


class ModelAssemblyError(LLMUnavailable):
    """A packaged model's parts are missing or damaged (the message names the pip package to reinstall)."""


class LLMError(RagworksError):
    """The LLM endpoint answered with an error."""


class EmbeddingError(RagworksError):
    """The embedding endpoint answered with an error or a malformed response."""


# --- per-file ingest failures: reported in the summary, never fatal for the run -----------------------------


class LoadError(RagworksError):
    """A file could not be turned into a document. `reason` is a short machine-readable tag."""

    reason: str = "load-error"


class UnsupportedFormat(LoadError):
    reason = "unsupported-format"


class EmptyDocument(LoadError):
    reason = "empty"


class CorruptFile(LoadError):
    reason = "corrupt"


class EncryptedFile(LoadError):
    reason = "encrypted"


class BinaryFile(LoadError):
    reason = "binary"


class DecodeError(LoadError):
    reason = "undecodable"


class FileTooLarge(LoadError):
    reason = "too-large"


class TuneUnsupported(RagworksError):
    """`ragworks tune` cannot fine-tune this collection's model or store (remote embedder, PostgreSQL)."""

    exit_code = 2
