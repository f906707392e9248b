"""`ragworks source add|list|remove`, `ragworks sync`, `ragworks watch` (registered in ragworks.cli)."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ragworks.collection import Collection
from ragworks.config import Settings
from ragworks.errors import ConfigError
from ragworks.ingest.pipeline import Progress as IngestProgress
from ragworks.sources.config import SourceKind, SourceList, SourceSpec, default_name, guess_kind
from ragworks.sources.sync import SyncOutcome, sync_collection
from ragworks.sources.watch import watch_collection

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

source_app = typer.Typer(help="The sources a collection follows (folders, S3 buckets, websites, Git repositories).",
                         no_args_is_help=True)

CollectionArg = Annotated[str, typer.Argument(help="Collection name or directory.")]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="Where named collections live.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def _settings(collection: str, data_dir: Path | None) -> Settings:
    kw: dict[str, Any] = {"collection": collection}
    if data_dir:
        kw["data_dir"] = data_dir
    return Settings(**kw)


def _sources(collection: str, data_dir: Path | None) -> SourceList:
    return SourceList(_settings(collection, data_dir).collection_path())


@source_app.command("add")
def source_add(
    collection: CollectionArg,
    location: Annotated[str, typer.Argument(help="A folder, s3://bucket/prefix, https://site/start, or a Git "
                                                 "repository (path, URL, git+URL).")],
    name: Annotated[str | None, typer.Option(help="How to refer to it (default: from the location).")] = None,
    kind: Annotated[str | None, typer.Option(help="folder | s3 | web | git (default: from the location).")] = None,
    include: Annotated[list[str] | None, typer.Option("--include", "-i", help="Only items matching this glob.")] = None,
    exclude: Annotated[list[str] | None, typer.Option("--exclude", "-x", help="Skip items matching this glob.")] = None,
    branch: Annotated[str, typer.Option(help="Git: the branch to follow.")] = "main",
    endpoint_url: Annotated[str | None, typer.Option(help="S3: an S3-compatible endpoint (MinIO, R2, …).")] = None,
    sitemap: Annotated[str | None, typer.Option(help="Web: the sitemap URL (default: robots.txt, /sitemap.xml, "
                                                     "else crawl).")] = None,
    max_pages: Annotated[int, typer.Option(help="Web: at most this many pages.")] = 200,
    max_depth: Annotated[int, typer.Option(help="Web: links followed this deep from the start page.")] = 3,
    media: Annotated[bool, typer.Option(help="Web: also OCR linked images and transcribe linked audio/video.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between syncs under `watch` and the server.")] = 300.0,
    data_dir: DataDirOpt = None,
) -> None:
    """Make a collection follow a source; `ragworks sync` then brings it in."""
    chosen: SourceKind = guess_kind(location) if kind is None else kind  # type: ignore[assignment]
    if chosen not in ("folder", "s3", "web", "git"):
        raise ConfigError(f"--kind must be folder, s3, web or git (got {kind!r})")
    if chosen == "folder":
        location = str(Path(location).expanduser().resolve())
    spec = SourceSpec(name=name or default_name(location), kind=chosen, location=location, include=include or [],
                      exclude=exclude or [], branch=branch, endpoint_url=endpoint_url, sitemap=sitemap,
                      max_pages=max_pages, max_depth=max_depth, media=media, interval_s=interval)
    _sources(collection, data_dir).add(spec)
    err.print(f"collection {collection!r} follows {spec.kind} source {spec.name!r}: {spec.location}"
              " — run `ragworks sync` to bring it in", highlight=False)


@source_app.command("list")
def source_list(collection: CollectionArg, data_dir: DataDirOpt = None, as_json: JsonOpt = False) -> None:
    """The sources a collection follows."""
    specs = _sources(collection, data_dir).load()
    if as_json:
        out.print_json(json.dumps([s.model_dump() for s in specs]))
        return
    table = Table(show_edge=False)
    for col in ("name", "kind", "location", "include", "interval"):
        table.add_column(col)
    for s in specs:
        table.add_row(s.name, s.kind, s.location + (f" ({s.branch})" if s.kind == "git" else ""),
                      " ".join(s.include), f"{s.interval_s:g} s")
    out.print(table)


@source_app.command("remove")
def source_remove(collection: CollectionArg, name: Annotated[str, typer.Argument(help="The source's name.")],
                  data_dir: DataDirOpt = None) -> None:
    """Stop following a source (its documents stay until deleted with `ragworks delete`)."""
    spec = _sources(collection, data_dir).remove(name)
    err.print(f"collection {collection!r} no longer follows {spec.name!r} ({spec.location})", highlight=False)


def _print_outcomes(outcomes: list[SyncOutcome]) -> None:
    table = Table(title="sync summary", show_edge=False)
    for col in ("source", "seen", "changed", "unchanged", "deleted", "failed", "embedded", "status"):
        table.add_column(col, justify="left" if col in ("source", "status") else "right")
    for o in outcomes:
        c = o.counts()
        status = "[green]ok[/]" if o.ok else f"[red]unavailable[/] {o.error}"
        table.add_row(o.name, *(str(c[k]) for k in ("seen", "changed", "unchanged", "deleted", "failed",
                                                     "embedded")), status)
    out.print(table)
    for o in outcomes:
        for f in o.report.failed if o.report else []:
            err.print(f"[yellow]failed[/] {f.path}: {f.reason}: {f.error}", highlight=False)


class _SyncBar:
    def __init__(self) -> None:
        self.progress = Progress(SpinnerColumn(), TextColumn("[bold]sync"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("items · {task.fields[chunks]} chunks"), TimeElapsedColumn(),
                                 console=err)
        self.task: Any = None

    def __call__(self, p: IngestProgress) -> None:
        if p.event == "start":
            if self.task is not None:
                self.progress.remove_task(self.task)
            self.task = self.progress.add_task("sync", total=p.files_total, chunks=0)
            return
        self.progress.update(self.task, completed=p.files_done, chunks=p.chunks_written)


def sync(
    collection: CollectionArg,
    data_dir: DataDirOpt = None,
    retries: Annotated[int, typer.Option(help="Retries of an unavailable source (backoff doubling from 1 s).")] = 2,
    as_json: JsonOpt = False,
) -> None:
    """Run every source of a collection once: new and changed items in, deleted ones out."""
    settings = _settings(collection, data_dir)
    if not SourceList(settings.collection_path()).load():
        raise ConfigError(f"collection {collection!r} follows no source: add one with `ragworks source add`")
    # by its directory: with the PostgreSQL backend too, sources.json lives there (col.path is where sync reads it)
    with Collection.open(str(settings.collection_path()), settings=settings) as col:
        bar = _SyncBar()
        if as_json:
            outcomes = sync_collection(col, retries=retries)
        else:
            with bar.progress:
                outcomes = sync_collection(col, retries=retries, progress=bar)
    if as_json:
        out.print_json(json.dumps([o.to_dict() for o in outcomes]))
    else:
        _print_outcomes(outcomes)
    # like `ragworks ingest`: 1 when anything did not come in (an unavailable source, an item that failed)
    raise typer.Exit(0 if all(o.ok and o.report is not None and o.report.ok for o in outcomes) else 1)


def watch(
    collection: CollectionArg,
    data_dir: DataDirOpt = None,
    poll: Annotated[bool, typer.Option(help="Poll folders instead of filesystem events.")] = False,
) -> None:
    """Keep a collection current: folders within seconds of a change, remote sources every interval. Ctrl-C stops."""
    settings = _settings(collection, data_dir)
    specs = SourceList(settings.collection_path()).load()
    if not specs:
        raise ConfigError(f"collection {collection!r} follows no source: add one with `ragworks source add`")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    def report(o: SyncOutcome) -> None:
        c = o.counts()
        stamp = time.strftime("%H:%M:%S")
        if not o.ok:
            err.print(f"{stamp} [red]{o.name}[/]: {o.error}", highlight=False)
        elif c["changed"] or c["deleted"] or c["failed"]:
            out.print(f"{stamp} {o.name}: {c['changed']} changed, {c['deleted']} deleted, {c['failed']} failed, "
                      f"{c['embedded']} chunks embedded", highlight=False)

    # by its directory: with the PostgreSQL backend too, sources.json lives there (col.path is where sync reads it)
    with Collection.open(str(settings.collection_path()), settings=settings) as col:
        err.print(f"loading the embedding model {settings.embed_model}…", highlight=False)
        col.embedder.dimension  # noqa: B018 - loaded now, not on the first change (≈20 s on 2 busy cores)
        err.print(f"watching {len(specs)} source(s) of {collection!r}; Ctrl-C stops", highlight=False)
        watch_collection(col, stop, events=not poll, on_outcome=report)
