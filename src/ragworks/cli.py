"""The `ragworks` command line: ingest, search, ask, stats, list, delete."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from ragworks.collection import Collection
from ragworks.config import Settings
from ragworks.documents import format_time_range
from ragworks.errors import RagworksError
from ragworks.ingest.pipeline import IngestReport
from ragworks.ingest.pipeline import Progress as IngestProgress

app = typer.Typer(
    name="ragworks",
    help="Self-hostable RAG: ingest documents, search them (dense + BM25), ask questions with cited answers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# soft_wrap: when piped, long lines (errors, citations) stay one line instead of wrapping at 80 columns.
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

CollectionOpt = Annotated[str | None, typer.Option("--collection", "-c", help="Collection name or directory.")]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="Where named collections live.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def _settings(collection: str | None, data_dir: Path | None, **overrides: Any) -> Settings:
    kw = {k: v for k, v in overrides.items() if v is not None}
    if collection:
        kw["collection"] = collection
    if data_dir:
        kw["data_dir"] = data_dir
    return Settings(**kw)


def show_path(path: str) -> str:
    """A source path as the user would type it: relative to the working directory when under it."""
    p, _, frag = path.partition("#")
    try:
        rel = os.path.relpath(p)
        p = rel if not rel.startswith("..") else p
    except ValueError:
        pass
    return p + (f"#{frag}" if frag else "")


def _clip(time_range: tuple[float, float] | None) -> str:
    """`, mm:ss–mm:ss` for a passage of a recording, "" otherwise."""
    return f", {format_time_range(*time_range)}" if time_range else ""


class _IngestProgressView:
    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.task: Any = None
        self.started = time.perf_counter()
        self.unit_tasks: dict[str, tuple[Any, float, float]] = {}  # unit → (task, first seen, amount so far)

    def _units(self, p: IngestProgress) -> None:
        """OCR pages or audio seconds read inside files: a second bar with its own rate (pages/s, audio s/s)."""
        now = time.perf_counter()
        if p.unit not in self.unit_tasks:
            task = self.progress.add_task(p.unit, total=None, detail="")
            self.unit_tasks[p.unit] = (task, now, 0.0)
        task, first, done = self.unit_tasks[p.unit]
        done += p.units
        self.unit_tasks[p.unit] = (task, first, done)
        rate = done / max(now - first, 1e-6)
        self.progress.update(task, completed=done, detail=f"{p.unit} · {rate:.2f} {p.unit.split()[-1]}/s")

    def __call__(self, p: IngestProgress) -> None:
        if p.event == "start":
            self.task = self.progress.add_task("ingest", total=p.files_total, detail=self._detail(0, 0.0))
            return
        if p.event == "units":
            self._units(p)
            return
        elapsed = max(time.perf_counter() - self.started, 1e-6)
        self.progress.update(self.task, completed=p.files_done,
                             detail=self._detail(p.chunks_written, p.chunks_written / elapsed))

    @staticmethod
    def _detail(chunks: int, rate: float) -> str:
        return f"files · {chunks} chunks · {rate:.1f} chunks/s"


_KIND_LABELS = {"text": ("text document", "text documents"), "tables": ("table", "tables"),
                "ocr_pages": ("OCR page", "OCR pages"), "audio_minutes": ("audio minute", "audio minutes")}


def kind_label(kind: str, amount: float = 2) -> str:
    """How a content kind (`documents.ContentKind`, or one a loader made up) reads in a summary."""
    one, many = _KIND_LABELS.get(kind, (kind.replace("_", " "), kind.replace("_", " ")))
    return one if amount == 1 else many


def _by_kind(kinds: dict[str, float]) -> list[tuple[str, float]]:
    """Text first, then tables, OCR pages, audio minutes, then any other kind."""
    known = list(_KIND_LABELS)
    return sorted(kinds.items(), key=lambda kv: (known.index(kv[0]) if kv[0] in known else len(known), kv[0]))


def _amount(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def _print_report(report: IngestReport) -> None:
    table = Table(title="ingest summary", show_edge=False)
    for col in ("files", "new", "updated", "unchanged", "failed", "removed", "chunks", "embedded", "seconds"):
        table.add_column(col, justify="right")
    d = report.to_dict()
    table.add_row(*(str(x) for x in (d["files"], d["new"], d["updated"], d["unchanged"], d["failed"], d["removed"],
                                      d["chunks_written"], d["chunks_embedded"], f"{d['seconds']:.1f}")))
    out.print(table)
    if d["kinds"]:
        out.print("ingested: " + " · ".join(f"{_amount(v)} {kind_label(k, v)}" for k, v in _by_kind(d["kinds"])),
                  highlight=False)
    if d["ocr_low_confidence"]:
        lt = Table(title="OCR pages below the confidence threshold (check these scans)", show_edge=False,
                   title_style="bold yellow")
        lt.add_column("file")
        lt.add_column("pages (mean word confidence)", overflow="fold")
        for item in d["ocr_low_confidence"]:
            lt.add_row(show_path(item["path"]),
                       ", ".join(f"p. {x['page']} ({x['confidence']:.0f})" for x in item["pages"]))
        out.print(lt)
    if report.failed:
        ft = Table(title="failed files", show_edge=False, title_style="bold red")
        ft.add_column("file")
        ft.add_column("reason")
        ft.add_column("detail", overflow="fold")
        for f in report.failed:
            ft.add_row(show_path(f.path), f.reason, f.error)
        out.print(ft)
    warned = [f for f in report.files if f.warnings]
    for f in warned[:10]:
        err.print(f"[yellow]warning[/] {show_path(f.path)}: {'; '.join(f.warnings[:3])}")


@app.command()
def ingest(
    paths: Annotated[list[str], typer.Argument(help="Files and directories (searched recursively), or sources: "
                                                    "s3://bucket/prefix, https://site/start, a Git URL.")],
    collection: CollectionOpt = None,
    data_dir: DataDirOpt = None,
    prune: Annotated[bool, typer.Option(help="Remove documents whose source files are gone.")] = False,
    include: Annotated[list[str] | None, typer.Option("--include", "-i", help="Only files matching this glob.")] = None,
    exclude: Annotated[list[str] | None, typer.Option("--exclude", "-x", help="Skip files matching this glob.")] = None,
    chunk_tokens: Annotated[int | None, typer.Option(help="Chunk size in model tokens.")] = None,
    embed_model: Annotated[str | None, typer.Option(help="Embedding model name or directory.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Ingest files into a collection: new and changed files are embedded, unchanged ones skipped."""
    settings = _settings(collection, data_dir, chunk_tokens=chunk_tokens, embed_model=embed_model)
    with Collection.open(settings=settings) as col:
        view = _IngestProgressView(err)
        if not as_json:
            err.print(f"[dim]collection {col.path} · embedding model {settings.embed_model}[/]")
        from ragworks.sources.config import is_source_location, source_for_location

        local = [p for p in paths if not is_source_location(p)]
        with view.progress:
            report = col.ingest(*local, prune=prune, include=include, exclude=exclude,
                                progress=None if as_json else view) if local else IngestReport()
            for location in (p for p in paths if is_source_location(p)):  # one-off, like `source add` + `sync`
                source = source_for_location(location, col.path / "source-cache", include=include or [],
                                             exclude=exclude or [])
                try:
                    part = col.sync(source, delete_missing=prune, progress=None if as_json else view)
                finally:
                    source.close()
                report.merge(part)
    if as_json:
        out.print_json(json.dumps(report.to_dict()))
    else:
        _print_report(report)
    raise typer.Exit(0 if report.ok else 1)


def _filters(where: list[str] | None) -> dict[str, Any]:
    out_: dict[str, Any] = {}
    for cond in where or []:
        key, sep, value = cond.partition("=")
        if not sep or not key:
            raise RagworksError(f"--where expects key=value, got {cond!r}")
        try:
            out_[key] = json.loads(value)
        except json.JSONDecodeError:
            out_[key] = value
    return out_


ModeOpt = Annotated[str | None, typer.Option("--mode", "-m", help="dense | bm25 | hybrid")]
KOpt = Annotated[int | None, typer.Option("-k", help="How many results.")]
SourceOpt = Annotated[str | None, typer.Option("--source", help="Only sources matching this glob.")]
WhereOpt = Annotated[list[str] | None, typer.Option("--where", "-w", help="Metadata filter key=value.")]


def _check_mode(mode: str | None) -> Any:
    if mode not in (None, "dense", "bm25", "hybrid"):
        raise RagworksError(f"--mode must be dense, bm25 or hybrid (got {mode!r})")
    return mode


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    collection: CollectionOpt = None,
    data_dir: DataDirOpt = None,
    mode: ModeOpt = None,
    k: KOpt = None,
    source: SourceOpt = None,
    where: WhereOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Search a collection and print the best passages."""
    settings = _settings(collection, data_dir)
    with Collection.open(settings=settings, create=False) as col:
        t0 = time.perf_counter()
        hits = col.search(query, k=k, mode=_check_mode(mode), source=source, filters=_filters(where))
        ms = (time.perf_counter() - t0) * 1000
    if as_json:
        out.print_json(json.dumps([h.to_dict() for h in hits]))
        return
    if not hits:
        out.print("no results")
        return
    for i, h in enumerate(hits, 1):
        loc = show_path(h.source) + (f" p.{h.page}" if h.page else "") + _clip(h.chunk.time_range)
        heading = " › ".join(h.chunk.heading_path)
        out.print(f"[bold]{i}.[/] [cyan]{loc}[/] [dim]{heading}[/]  score {h.score:.4f}")
        snippet = " ".join(h.chunk.text.split())
        out.print(f"   {snippet[:300]}{'…' if len(snippet) > 300 else ''}", highlight=False)
    err.print(f"[dim]{len(hits)} results in {ms:.0f} ms[/]")


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    collection: CollectionOpt = None,
    data_dir: DataDirOpt = None,
    mode: ModeOpt = None,
    k: KOpt = None,
    source: SourceOpt = None,
    where: WhereOpt = None,
    llm: Annotated[str | None, typer.Option(help="auto | local | openai | fireworks | extractive")] = None,
    llm_model: Annotated[str | None, typer.Option(help="Remote model id.")] = None,
    llm_base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible base URL.")] = None,
    llm_gguf: Annotated[str | None, typer.Option(help="Local packaged model: smollm2-135m | qwen2.5-1.5b.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Answer a question from the collection, streaming the answer, then listing its cited sources."""
    settings = _settings(collection, data_dir, llm=llm, llm_model=llm_model, llm_base_url=llm_base_url,
                         llm_gguf=llm_gguf)
    with Collection.open(settings=settings, create=False) as col:
        stream = col.ask_stream(question, k=k, mode=_check_mode(mode), source=source, filters=_filters(where))
        if as_json:
            answer = stream.result()
            out.print_json(json.dumps(answer.to_dict()))
            return
        streamed = []
        for piece in stream:
            streamed.append(piece)
            out.print(piece, end="", highlight=False, markup=False)
            out.file.flush()
        out.print()
        answer = stream.result()
    _print_verified(answer, "".join(streamed).strip())
    if answer.notice:
        err.print(f"[yellow]note:[/] {answer.notice}")
    cited = {c.number for c in answer.citations}
    if answer.sources:
        out.print("\n[bold]Sources[/]")
    for i, h in enumerate(answer.sources, 1):
        loc = show_path(h.source) + (f", page {h.page}" if h.page else "") + _clip(h.chunk.time_range)
        heading = " › ".join(h.chunk.heading_path)
        mark = "[green]cited[/]" if i in cited else "[dim]not cited[/]"
        out.print(f"  [{i}] {loc} [dim]{heading} · chars {h.chunk.start}–{h.chunk.end}[/] {mark}", highlight=False)


def _print_verified(answer: Any, streamed: str) -> None:
    """After the stream: the verified answer when verification changed it, and every unsupported sentence marked."""
    from rich.markup import escape

    if answer.text.strip() != streamed:
        label = "abstained" if answer.abstained else "verified answer"
        body, pos = [], 0
        for s in answer.sentences:
            if s.start < 0:
                continue
            body.append(escape(answer.text[pos:s.start]))
            piece = escape(answer.text[s.start:s.end])
            body.append(f"[red]{piece} ⚠[/]" if s.status == "unsupported" else piece)
            pos = s.end
        body.append(escape(answer.text[pos:]))
        out.print(f"\n[bold]{label}:[/] " + "".join(body), highlight=False)
    checked = [s for s in answer.sentences if s.status != "neutral"]
    if checked:
        out.print("\n[bold]Verified[/] [dim](each sentence against the passages given; support 0–1)[/]")
    for i, s in enumerate(checked, 1):
        if s.status == "unsupported":
            where = "dropped" if s.start < 0 else "flagged"
            out.print(f"  {i}. [red]⚠ unsupported ({where}, support {s.score:.2f})[/]: {escape(s.text)}",
                      highlight=False)
            continue
        hit = answer.sources[s.source - 1] if s.source else None
        loc = f"{show_path(hit.source)} chars {s.span_start}–{s.span_end}" if hit else ""
        how = {"reattributed": f"[yellow]citation moved {list(s.cited)} → [{s.source}][/]",
               "attributed": f"[yellow]citation added [{s.source}][/]"}.get(s.status, f"[green]✓ [{s.source}][/]")
        out.print(f"  {i}. {how} support {s.score:.2f} · {escape(loc)}", highlight=False)


@app.command()
def stats(collection: CollectionOpt = None, data_dir: DataDirOpt = None, as_json: JsonOpt = False) -> None:
    """Counts and sizes of a collection."""
    with Collection.open(settings=_settings(collection, data_dir), create=False) as col:
        s = col.stats()
    if as_json:
        out.print_json(json.dumps(s))
        return
    table = Table(show_header=False, show_edge=False)
    for key, value in s.items():
        if key == "kinds":
            for kind, amount in _by_kind(value):
                table.add_row(kind_label(kind), _amount(amount))
            continue
        table.add_row(key, f"{value / 2**20:.1f} MiB" if key == "disk_bytes" else str(value))
    out.print(table)


@app.command("list")
def list_documents(
    collection: CollectionOpt = None,
    data_dir: DataDirOpt = None,
    limit: Annotated[int, typer.Option(help="How many documents.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """List the documents in a collection."""
    with Collection.open(settings=_settings(collection, data_dir), create=False) as col:
        docs = col.documents(limit=limit)
    if as_json:
        out.print_json(json.dumps([{"id": d.id, "source": d.source, "title": d.title, "chunks": d.chunks}
                                   for d in docs]))
        return
    table = Table(show_edge=False)
    for c in ("id", "source", "title", "chunks"):
        table.add_column(c)
    for d in docs:
        table.add_row(d.id[:12], show_path(d.source), d.title[:60], str(d.chunks))
    out.print(table)


@app.command()
def delete(
    ref: Annotated[str, typer.Argument(help="Document id, source path, or a glob on sources.")],
    collection: CollectionOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Delete documents with their chunks, vectors and keyword-index rows."""
    with Collection.open(settings=_settings(collection, data_dir), create=False) as col:
        p = Path(ref)
        target = (str(p.resolve()) + "/*") if p.is_dir() else str(p.resolve()) if p.exists() else ref
        n = col.delete(target)
    out.print(f"deleted {n} document(s)")


from ragworks.evaluate.cli import eval_app  # noqa: E402 - registered after the core commands
from ragworks.evaluate.qa_cli import qa as _eval_qa  # noqa: E402, F401 - registers `ragworks eval qa`

app.add_typer(eval_app, name="eval")

from ragworks.tune.cli import tune  # noqa: E402 - `ragworks tune` (issue 6)

app.command("tune")(tune)

from ragworks.dumps.cli import dump_app, index_app  # noqa: E402 - Wikipedia scale (issue 5)

app.add_typer(index_app, name="index")
app.add_typer(dump_app, name="dump")

from ragworks.mcp.cli import mcp as _mcp_command  # noqa: E402 - MCP server (issue 16)
from ragworks.sources.cli import source_app, sync, watch  # noqa: E402 - sources, sync, watch (issue 16)

app.add_typer(source_app, name="source")
app.command("sync")(sync)
app.command("watch")(watch)
app.command("mcp")(_mcp_command)

from ragworks.pii_scan import pii_app  # noqa: E402 - `ragworks pii scan` (issue 14)

app.add_typer(pii_app, name="pii")

from ragworks.access_cli import audit as _audit_command  # noqa: E402 - permissions and audit (issue 14)
from ragworks.access_cli import docs_app  # noqa: E402

app.add_typer(docs_app, name="docs")


# --- the HTTP server and its tenants (ragworks.server) ----------------------------------------------------------


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (settings: host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (settings: port).")] = None,
    data_dir: DataDirOpt = None,
    auth: Annotated[str | None, typer.Option(help="auto | on | off (auto: on once an admin key or API key exists)")]
    = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    workers: Annotated[int | None, typer.Option(help="Server processes on the port (settings: workers; 0: one per "
                                                     "CPU core); one of them runs the embedded job queue.")] = None,
) -> None:
    """Run the HTTP API, the OpenAI-compatible endpoints and the web page (uvicorn)."""
    try:
        import uvicorn

        from ragworks.server import create_app
    except ImportError as exc:
        raise RagworksError(f"`ragworks serve` needs the server extra ({exc.name} is missing): "
                            "pip install 'ragworks[server]'") from None
    from ragworks.server.context import auth_description, auth_enabled
    from ragworks.server.keys import make_key_store

    if auth not in (None, "auto", "on", "off"):
        raise RagworksError(f"--auth must be auto, on or off (got {auth!r})")
    settings = _settings(None, data_dir, host=host, port=port, auth=auth, workers=workers)
    if settings.workers == 0:  # one process per core (the CPU set this process may run on)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        settings = settings.model_copy(update={"workers": max(1, cores)})
    keys = make_key_store(settings)
    try:
        err.print(auth_description(settings, keys), highlight=False)
        if not auth_enabled(settings, keys) and settings.host not in ("127.0.0.1", "localhost", "::1"):
            err.print(f"[yellow]warning:[/] auth is off and the server listens on {settings.host}: anyone who can "
                      "reach it can read and change every collection")
    finally:
        keys.close()
    err.print(f"serving on http://{settings.host}:{settings.port}/ (API docs: /docs; queue: {settings.queue_backend})",
              highlight=False)
    if settings.workers == 1:
        uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=log_level)
        return
    # worker processes build their own app from the environment: hand them the flags' settings that way
    os.environ.update({"RAGWORKS_DATA_DIR": str(settings.data_dir), "RAGWORKS_AUTH": settings.auth,
                       "RAGWORKS_WORKERS": str(settings.workers)})
    from ragworks.server import balancer

    if balancer.supported():  # the parent deals connections round-robin: keep-alive clients spread evenly
        balancer.serve(settings.host, settings.port, settings.workers, log_level=log_level)
        return
    uvicorn.run("ragworks.server.app:create_app_from_env", factory=True, workers=settings.workers,
                host=settings.host, port=settings.port, log_level=log_level)


admin_app = typer.Typer(help="Tenants and API keys for `ragworks serve`.", no_args_is_help=True)
app.add_typer(admin_app, name="admin")
admin_app.command("audit")(_audit_command)

from ragworks.worker.cli import worker as _worker_command  # noqa: E402 - Celery worker (queue_backend=celery)

app.command("worker")(_worker_command)


def _key_store(data_dir: Path | None) -> Any:
    from ragworks.server.keys import make_key_store

    return make_key_store(_settings(None, data_dir))


@admin_app.command("create-tenant")
def admin_create_tenant(name: Annotated[str, typer.Argument(help="Tenant name (lowercase).")],
                        data_dir: DataDirOpt = None) -> None:
    """Create a tenant (its collections live in data_dir/tenants/NAME)."""
    keys = _key_store(data_dir)
    created = keys.create_tenant(name)
    keys.close()
    err.print(f"tenant {name!r} {'created' if created else 'already exists'}", highlight=False)


@admin_app.command("create-key")
def admin_create_key(tenant: Annotated[str, typer.Argument(help="The tenant the key acts for.")],
                     label: Annotated[str, typer.Option(help="A note on what the key is for.")] = "",
                     user: Annotated[str | None, typer.Option(help="The user the key reads as (documents' "
                                                              "readers apply); none = the whole tenant.")] = None,
                     groups: Annotated[str, typer.Option(help="The user's groups, comma-separated.")] = "",
                     data_dir: DataDirOpt = None) -> None:
    """Create an API key for TENANT and print it (once: only its hash is stored). Turns auth on (auth=auto)."""
    keys = _key_store(data_dir)
    try:
        key, record = keys.create_key(tenant, label, user=user,
                                      groups=tuple(g.strip() for g in groups.split(",") if g.strip()))
    finally:
        keys.close()
    err.print(f"key {record.id} for tenant {tenant!r} (store it now; it cannot be shown again):", highlight=False)
    print(key)


@admin_app.command("list-tenants")
def admin_list_tenants(data_dir: DataDirOpt = None, as_json: JsonOpt = False) -> None:
    """List tenants and how many active keys each has."""
    keys = _key_store(data_dir)
    tenants = keys.tenants()
    keys.close()
    if as_json:
        out.print_json(json.dumps(tenants))
        return
    table = Table(show_edge=False)
    for c in ("tenant", "active keys"):
        table.add_column(c)
    for t in tenants:
        table.add_row(t["name"], str(t["active_keys"]))
    out.print(table)


@admin_app.command("list-keys")
def admin_list_keys(tenant: Annotated[str | None, typer.Argument(help="Only this tenant's keys.")] = None,
                    data_dir: DataDirOpt = None, as_json: JsonOpt = False) -> None:
    """List API keys (ids and labels; the keys themselves are not stored)."""
    keys = _key_store(data_dir)
    records = keys.keys(tenant)
    keys.close()
    if as_json:
        out.print_json(json.dumps([r.to_dict() for r in records]))
        return
    table = Table(show_edge=False)
    for c in ("id", "tenant", "label", "status"):
        table.add_column(c)
    for r in records:
        table.add_row(r.id, r.tenant, r.label, "revoked" if r.revoked else "active")
    out.print(table)


@admin_app.command("revoke-key")
def admin_revoke_key(key_id: Annotated[str, typer.Argument(help="The key's id (from list-keys).")],
                     data_dir: DataDirOpt = None) -> None:
    """Revoke an API key: requests with it get 401 from then on."""
    keys = _key_store(data_dir)
    record = keys.revoke_key(key_id)
    keys.close()
    err.print(f"key {record.id} of tenant {record.tenant!r} revoked", highlight=False)


def main() -> None:
    """Entry point: RagworksError and bad input become one line on stderr and a non-zero exit, never a traceback."""
    try:
        app()
    except RagworksError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        sys.exit(exc.exit_code)
    except FileNotFoundError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("[red]interrupted[/]")
        sys.exit(130)


if __name__ == "__main__":
    main()
