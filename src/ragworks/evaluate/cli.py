"""`ragworks eval …`: retrieval quality on BEIR-format datasets, and fusion tuning on their train/dev splits."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ragworks.config import Settings
from ragworks.errors import ConfigError

eval_app = typer.Typer(
    name="eval", help="Measure retrieval quality on BEIR-format datasets.", no_args_is_help=True,
    pretty_exceptions_enable=False, add_completion=False,
)
out = Console()
err = Console(stderr=True)

DatasetArg = Annotated[Path, typer.Argument(help="BEIR directory: corpus.jsonl, queries.jsonl, qrels/<split>.tsv.")]
CorpusOpt = Annotated[Path | None, typer.Option(help="Corpus file replacing DATASET_DIR/corpus.jsonl.")]
CollectionOpt = Annotated[str | None, typer.Option("--collection", "-c",
                                                   help="Collection to ingest into and search (default beir-NAME).")]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="Where named collections live.")]
LimitOpt = Annotated[int | None, typer.Option(help="Evaluate only the first N queries.")]


def _settings(data_dir: Path | None) -> Settings:
    return Settings(data_dir=data_dir, llm="extractive") if data_dir else Settings(llm="extractive")


def _progress(what: str, done: int, total: int) -> None:
    err.print(f"[dim]{what} {done}/{total}[/]")


def _print(datasets: list[dict[str, Any]]) -> None:
    from ragworks.evaluate.report import TABLE_METRICS

    for d in datasets:
        table = Table(title=f"{d['label']} · {d['split']} · {d['queries']} queries", show_edge=False)
        table.add_column("config")
        for m in (*TABLE_METRICS, "p50 ms", "p95 ms", "CPU p50 ms"):
            table.add_column(m, justify="right")
        for c in d["configs"]:
            lat = c.get("latency") or {}
            table.add_row(c["name"], *(f"{c['metrics'][m]:.4f}" for m in TABLE_METRICS),
                          *(f"{lat[k]:.1f}" if k in lat else "—" for k in ("p50_ms", "p95_ms", "cpu_p50_ms")))
        out.print(table)
        for note in d["notes"]:
            err.print(f"[yellow]note:[/] {note}")


@eval_app.command("beir")
def beir(
    dataset_dir: DatasetArg,
    config: Annotated[list[str] | None, typer.Option(
        "--config", help="bm25 | dense | hybrid | hybrid-rrf:k=60 | hybrid-weighted:w=0.5 | bm25s (repeatable)."
    )] = None,
    split: Annotated[str, typer.Option(help="Which qrels/<split>.tsv to score.")] = "test",
    out_dir: Annotated[Path, typer.Option("--out", help="Where results.json/.md/.png go.")] = Path("eval-results"),
    collection: CollectionOpt = None,
    data_dir: DataDirOpt = None,
    corpus: CorpusOpt = None,
    limit_queries: LimitOpt = None,
    latency: Annotated[bool, typer.Option(help="Time Collection.search per query (k=10).")] = True,
    threads: Annotated[int, typer.Option(help="torch/FAISS threads while evaluating (0: library defaults).")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON report.")] = False,
) -> None:
    """Ingest a BEIR corpus (once; re-runs reuse it), retrieve for every query, and score each configuration."""
    from ragworks.evaluate.beir import load_beir
    from ragworks.evaluate.configs import parse_config
    from ragworks.evaluate.report import write_all
    from ragworks.evaluate.retrieval import DatasetResult, LegCache, evaluate_configs, open_for_dataset, set_threads

    settings = _settings(data_dir)
    configs = [parse_config(c, settings) for c in (config or ["bm25", "dense", "hybrid"])]
    if len({c.name for c in configs}) != len(configs):
        raise ConfigError("the same --config is given twice")
    dataset = load_beir(dataset_dir, split=split, corpus=corpus).limited(limit_queries)
    col = cache = None
    ingest: dict[str, Any] = {}
    if any(c.uses_collection for c in configs):
        err.print(f"[dim]ingesting {dataset.corpus_path} (unchanged files are skipped)…[/]")
        col, report = open_for_dataset(dataset, settings, collection=collection)
        ingest = report.to_dict()
        cache = LegCache(col, dataset)
    set_threads(threads)  # after the ingest, which embeds the corpus on every core; queries are timed on `threads`
    try:
        results = evaluate_configs(dataset, configs, col=col, cache=cache, latency=latency, progress=_progress)
    finally:
        if col is not None:
            col.close()
    result = DatasetResult(dataset, dataset.name, str(col.path) if col else "", results, ingest,
                           cache.seconds if cache else 0.0)
    report_dict: dict[str, Any] = {"generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": platform.platform(),
                   "datasets": [result.to_dict()]}
    paths = write_all(report_dict, out_dir)
    if as_json:
        out.print_json(json.dumps(report_dict))
    else:
        _print(report_dict["datasets"])
        err.print(f"[dim]wrote {', '.join(str(p) for p in paths.values())}[/]")


@eval_app.command("tune")
def tune(
    dataset_dir: DatasetArg,
    split: Annotated[str, typer.Option(help="A train or dev split (tuning on test is refused).")] = "train",
    collection: CollectionOpt = None,
    data_dir: DataDirOpt = None,
    corpus: CorpusOpt = None,
    limit_queries: LimitOpt = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="Write the sweep as JSON here.")] = None,
    threads: Annotated[int, typer.Option(help="torch/FAISS threads while evaluating (0: library defaults).")] = 1,
) -> None:
    """Sweep hybrid fusion (RRF k, dense weight, candidates) on a train/dev split and print the best settings."""
    from ragworks.evaluate.beir import load_beir
    from ragworks.evaluate.report import write_json
    from ragworks.evaluate.retrieval import LegCache, open_for_dataset, set_threads
    from ragworks.evaluate.tuning import CANDIDATES, sweep

    if split == "test":
        raise ConfigError("tune on a train or dev split; the test split is for reporting")
    dataset = load_beir(dataset_dir, split=split, corpus=corpus).limited(limit_queries)
    col, _ = open_for_dataset(dataset, _settings(data_dir), collection=collection)
    set_threads(threads)  # after the ingest (every core), before the timed queries
    try:
        cache = LegCache(col, dataset, depth=max(CANDIDATES))
        cache.fetch(dataset.queries, progress=_progress)
        result = sweep({dataset.name: (dataset, cache)})
    finally:
        col.close()
    summary = result.to_dict()
    table = Table(title=f"{dataset.name} · {split} · {len(dataset.queries)} queries · nDCG@10", show_edge=False)
    table.add_column("config")
    table.add_column("nDCG@10", justify="right")
    table.add_column("R@100", justify="right")
    for row in sorted(summary["grid"], key=lambda r: -r["mean"])[:15]:
        table.add_row(row["name"], f"{row['mean']:.4f}", f"{row[dataset.name]['recall@100']:.4f}")
    out.print(table)
    out.print(f"best: [bold]{summary['best']}[/] · best RRF: {summary['best_rrf']} · "
              f"best weighted: {summary['best_weighted']}")
    if out_file:
        write_json(summary, out_file)
