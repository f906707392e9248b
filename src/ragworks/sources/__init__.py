"""Where documents live: implementations of the Source protocol (ingest/source.py) — folder, S3-compatible bucket,
website, Git repository — plus sync (run a collection's sources once) and watch (keep them current)."""

from ragworks.ingest.source import FetchedItem, Source, SourceItem

__all__ = ["FetchedItem", "Source", "SourceItem"]
