"""`ragworks docs set-readers` and `ragworks admin audit`: document permissions and the audit log from the shell."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ragworks.access import normalize_readers
from ragworks.audit import make_audit_log
from ragworks.collection import Collection
from ragworks.config import Settings
from ragworks.tenancy import tenant_for

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

docs_app = typer.Typer(help="Documents of a collection: permissions.", no_args_is_help=True)

DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="Where named collections live.")]


def _settings(collection: str | None, data_dir: Path | None) -> Settings:
    overrides: dict[str, object] = {}
    if collection is not None:
        overrides["collection"] = collection
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    return Settings(**overrides)  # type: ignore[arg-type]


@docs_app.command("set-readers")
def set_readers(
    ref: Annotated[str, typer.Argument(help="Document id, source, source glob or file path.")],
    readers: Annotated[str, typer.Option("--readers", help="Comma-separated user:/group: tokens; '' = everyone "
                                         "in the tenant.")],
    collection: Annotated[str | None, typer.Option("--collection", "-c", help="Collection name or directory.")]
    = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Replace who may read the documents REF names. Applies to the next search; nothing is re-embedded."""
    tokens = normalize_readers(readers)
    with Collection.open(collection, settings=_settings(collection, data_dir), create=False) as col:
        n = col.set_readers(ref, tokens)
    err.print(f"{n} document(s) now readable by {', '.join(tokens) or 'everyone in the tenant'}", highlight=False)


def audit(
    tenant: Annotated[str, typer.Argument(help="The tenant whose log to show ('default': the local one).")],
    since_days: Annotated[float | None, typer.Option("--since-days", help="Only entries of the last N days.")]
    = None,
    user: Annotated[str | None, typer.Option(help="Only this user's entries.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many entries, newest first.")] = 100,
    data_dir: DataDirOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Show the audit log: who asked what, and which documents were retrieved and cited (ids only)."""
    settings = _settings(None, data_dir)
    log = make_audit_log(settings, lambda name: tenant_for(settings, name).root)
    if log is None:
        err.print("the audit log is off (audit = false)", highlight=False)
        raise typer.Exit(1)
    since = time.time() - since_days * 86_400 if since_days is not None else None
    entries = log.entries(tenant, since=since, user=user, limit=limit)
    log.close()
    if as_json:
        out.print_json(json.dumps([e.to_dict() for e in entries]))
        return
    table = Table(show_edge=False)
    for c in ("time (UTC)", "key", "user", "action", "collection", "query", "retrieved", "cited"):
        table.add_column(c)
    for e in entries:
        table.add_row(datetime.fromtimestamp(e.at, UTC).strftime("%Y-%m-%d %H:%M:%S"), e.key_id or "-",
                      e.user or "-", e.action, e.collection, e.query[:60], str(len(e.retrieved)), str(len(e.cited)))
    out.print(table)
