"""Which sources a collection follows: `<collection dir>/sources.json`, written by `ragworks source add`.

`make_source` is the one place that turns a spec's `kind` into a Source.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from ragworks.errors import ConfigError
from ragworks.ingest.source import Source

SOURCES_FILE = "sources.json"
SourceKind = Literal["folder", "s3", "web", "git"]


class SourceSpec(BaseModel):
    """One configured source. `name` is how the CLI refers to it; `interval_s` how often `watch` (and the
    server's schedule) syncs it — folders are also synced on file events, within a second."""

    name: str
    kind: SourceKind
    location: str  # a path, s3://bucket/prefix, https://site/start, or a Git URL / path
    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    branch: str = "main"  # git
    endpoint_url: str | None = None  # s3: any S3-compatible endpoint; default AWS (or AWS_ENDPOINT_URL)
    sitemap: str | None = None  # web: default robots.txt's Sitemap lines, else /sitemap.xml, else a crawl
    max_pages: int = Field(default=200, ge=1)  # web
    max_depth: int = Field(default=3, ge=0)  # web
    media: bool = False  # web: also OCR linked images and transcribe linked recordings/videos
    interval_s: float = Field(default=300.0, gt=0)


def guess_kind(location: str) -> SourceKind:
    """The kind a location names: `s3://` → s3, `http(s)://` → web, a `.git` URL or `git+…` → git, else folder."""
    if location.startswith("s3://"):
        return "s3"
    if location.startswith("git+") or location.startswith("git@") or location.rstrip("/").endswith(".git"):
        return "git"
    if location.startswith(("http://", "https://")):
        return "web"
    if (Path(location).expanduser() / ".git").exists():
        return "git"
    return "folder"


def is_source_location(location: str) -> bool:
    """Whether `ragworks ingest` should read this argument through a Source (a URL) rather than as a local path."""
    return "://" in location or location.startswith(("git+", "git@"))


def source_for_location(location: str, cache_dir: Path, *, include: Sequence[str] = (),
                        exclude: Sequence[str] = ()) -> Source:
    """A Source for a one-off `ragworks ingest <location>` (kind from the location, default options)."""
    spec = SourceSpec(name=default_name(location), kind=guess_kind(location), location=location,
                      include=list(include), exclude=list(exclude))
    return make_source(spec, cache_dir=cache_dir)


def default_name(location: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", location.rstrip("/").rsplit("/", 1)[-1]).strip("-.")
    return stem or "source"


def make_source(spec: SourceSpec, *, cache_dir: Path) -> Source:
    """The Source a spec describes; `cache_dir` holds clones of remote Git repositories."""
    if spec.kind == "folder":
        from ragworks.sources.folder import FolderSource

        return FolderSource(spec.location, include=spec.include, exclude=spec.exclude)
    if spec.kind == "s3":
        from ragworks.sources.s3 import S3Source

        endpoint = spec.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
        return S3Source(spec.location, endpoint_url=endpoint, include=spec.include, exclude=spec.exclude)
    if spec.kind == "web":
        from ragworks.sources.web import WebSource

        return WebSource(spec.location, sitemap=spec.sitemap, max_pages=spec.max_pages, max_depth=spec.max_depth,
                         include=spec.include, exclude=spec.exclude, media=spec.media)
    if spec.kind == "git":
        from ragworks.sources.git import GitSource

        return GitSource(spec.location, branch=spec.branch, include=spec.include, exclude=spec.exclude,
                         cache_dir=cache_dir)
    raise ConfigError(f"unknown source kind {spec.kind!r} (folder, s3, web, git)")


class SourceList:
    """The sources of one collection, kept in its directory (written atomically)."""

    def __init__(self, collection_dir: Path) -> None:
        self.path = collection_dir / SOURCES_FILE
        self.cache_dir = collection_dir / "source-cache"

    def load(self) -> list[SourceSpec]:
        if not self.path.is_file():
            return []
        try:
            raw: Any = json.loads(self.path.read_text())
            return [SourceSpec.model_validate(s) for s in raw.get("sources", [])]
        except (ValueError, AttributeError) as exc:
            raise ConfigError(f"{self.path}: unreadable source list ({exc}); fix or remove it") from exc

    def save(self, specs: Sequence[SourceSpec]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"sources": [s.model_dump() for s in specs]}, indent=2))
        tmp.replace(self.path)

    def add(self, spec: SourceSpec) -> None:
        specs = self.load()
        if any(s.name == spec.name for s in specs):
            raise ConfigError(f"a source named {spec.name!r} exists already (remove it first, or pick --name)")
        self.save([*specs, spec])

    def remove(self, name: str) -> SourceSpec:
        specs = self.load()
        found = [s for s in specs if s.name == name]
        if not found:
            raise ConfigError(f"no source named {name!r} (see `ragworks source list`)")
        self.save([s for s in specs if s.name != name])
        return found[0]
