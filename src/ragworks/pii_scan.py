"""`ragworks pii scan PATH… | -c NAME`: the PII findings in files (loaded as ingest loads them) or in a collection.

The report names each finding's type, place (line and character offsets) and score, never the value, so the
report itself can be shared with whoever decides the policy.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ragworks.collection import Collection
from ragworks.config import Settings
from ragworks.errors import LoadError, RagworksError
from ragworks.guard.hidden import strip_invisible
from ragworks.guard.pii import require_pii_extra, shared_detector
from ragworks.ingest.base import LoadOptions, LoadReport
from ragworks.ingest.discover import discover
from ragworks.ingest.loaders import loader_for

pii_app = typer.Typer(help="Find personal data (emails, phones, cards, IBANs, national IDs, IPs, names).",
                      no_args_is_help=True)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _files(paths: list[Path], options: LoadOptions) -> Iterator[tuple[str, str, str]]:
    """(source, text, error) per document of the files under `paths`; a file that fails gives its error."""
    found = discover(paths)
    for where, problem in found.problems:
        yield str(where), "", str(problem)
    for path in found.files:
        try:
            for doc in loader_for(path)(path, str(path), options, LoadReport()):
                yield doc.source, strip_invisible(doc.text), ""
        except LoadError as exc:
            yield str(path), "", str(exc)


def _stored(col: Collection) -> Iterator[tuple[str, str, str]]:
    after: str | None = None
    while True:
        page = col.documents(limit=200, after=after)
        if not page:
            return
        for d in page:
            _, text, _ = col.document(d.id)
            yield d.source, text, ""
        after = page[-1].source


def scan(items: Iterator[tuple[str, str, str]]) -> dict[str, Any]:
    """Findings per document (type, line, start, end, score), counts by type, and the documents that failed."""
    detector = shared_detector()
    documents: list[dict[str, Any]] = []
    failed: list[dict[str, str]] = []
    totals: Counter[str] = Counter()
    for source, text, error in items:
        if error:
            failed.append({"source": source, "error": error})
            continue
        findings = []
        for f in detector.find(text):
            findings.append({**f.to_dict(), "line": text.count("\n", 0, f.start) + 1})
            totals[f.type] += 1
        documents.append({"source": source, "findings": findings})
    return {"documents": documents, "totals": dict(sorted(totals.items())), "failed": failed}


@pii_app.command("scan")
def pii_scan(
    paths: Annotated[list[Path] | None, typer.Argument(help="Files or directories to scan.")] = None,
    collection: Annotated[str | None, typer.Option("--collection", "-c", help="Scan a collection instead.")] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Where named collections live.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Report PII findings per document: type, line, offsets, score (never the value)."""
    try:
        if bool(paths) == bool(collection):
            raise typer.BadParameter("give PATH… or -c NAME (one of them)")
        require_pii_extra()
        kw: dict[str, Any] = {"data_dir": data_dir} if data_dir else {}
        settings = Settings(**kw)
        if collection:
            with Collection.open(collection, settings=settings, create=False) as col:
                report = scan(_stored(col))
        else:
            missing = [str(p) for p in paths or [] if not p.exists()]
            if missing:
                raise typer.BadParameter(f"no such file or directory: {', '.join(missing)}")
            report = scan(_files(list(paths or []), LoadOptions.from_settings(settings)))
    except RagworksError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(exc.exit_code) from None
    if as_json:
        out.print_json(json.dumps(report))
        return
    table = Table("source", "type", "line", "offsets", "score")
    for doc in report["documents"]:
        for f in doc["findings"]:
            table.add_row(doc["source"], f["type"], str(f["line"]), f"{f['start']}–{f['end']}", f"{f['score']:.2f}")
    out.print(table)
    with_pii = sum(1 for d in report["documents"] if d["findings"])
    totals = ", ".join(f"{t} {n}" for t, n in report["totals"].items()) or "none"
    out.print(f"{len(report['documents'])} document(s) scanned, {with_pii} with PII: {totals}")
    for f in report["failed"]:
        err.print(f"[yellow]not scanned:[/yellow] {f['source']}: {f['error']}")
