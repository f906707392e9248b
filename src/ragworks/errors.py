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


class MissingDependency(LoadError):
    """A program or package this format needs is not installed (Tesseract, ffmpeg, the whisper weights)."""

    reason = "missing-dependency"


class MissingFile(LoadError):
    """Listed but gone: a dangling symbolic link, a file deleted during the run, a path that does not exist."""

    reason = "missing"


class UnreadableFile(LoadError):
    """The operating system refused to list or read it (permissions, a symbolic-link loop, an I/O error)."""

    reason = "unreadable"


class NotRegularFile(LoadError):
    """A FIFO, socket or device: reading one could block forever or never end."""

    reason = "not-a-file"


class TuneUnsupported(RagworksError):
    """`ragworks tune` cannot fine-tune this collection's model or store (remote embedder, PostgreSQL)."""

    exit_code = 2


# --- sources (sync) ---------------------------------------------------------------------------------------------


class JobNotFound(RagworksError):
    """No such job for this tenant (jobs of other tenants are not found either)."""


class QueueUnavailable(RagworksError):
    """The job queue's broker (Redis) cannot be reached: nothing was queued; retry when it is back."""


class InvalidName(RagworksError):
    """A tenant or collection name outside the allowed characters (it would become a path)."""


class SourceUnavailable(RagworksError):
    """A source could not be listed or read (unreachable, bad credentials, a server error): nothing is deleted
    because of it; sync reports it and retries with backoff."""


class SourceItemError(LoadError):
    """One item of a source could not be fetched (the rest of the sync goes on)."""

    reason = "fetch-failed"


class InvalidReaders(RagworksError):
    """A document's readers (its allowed principals) are not a list of `user:<name>` / `group:<name>` tokens."""
