"""`ragworks index …` (what vector index a collection has, and why) and `ragworks dump …` (Wikipedia-size dumps)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, cast

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ragworks.config import Settings
from ragworks.store.ann import IndexChoice

index_app = typer.Typer(help="The collection's vector index: its type, size and expected recall.", no_args_is_help=True)
dump_app = typer.Typer(
    help="Index a dump of any size (JSONL, JSONL.gz, Parquet): embed into shards, then build the collection.",
    no_args_is_help=True,
)
out = Console(soft_wrap=True)

CollectionOpt = Annotated[str | None, typer.Option("--collection", "-c", help="Collection name or directory.")]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="Where named collections live.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def _settings(collection: str | None, data_dir: Path | None, **kw: Any) -> Settings:
    kw = {k: v for k, v in kw.items() if v is not None}
    if collection:
        kw["collection"] = collection
    if data_dir:
        kw["data_dir"] = data_dir
    return Settings(**kw)


def expected_recall(store: Any, sample: int = 100, k: int = 10) -> float:
    """Recall@k of the store's dense search against exact search, with `sample` stored vectors as queries.

    Exact search scans every stored vector once, in batches (bounded memory, O(collection) time).
    """
    ids = store.random_chunk_ids(sample)
    if not ids:
        return 1.0
    qids, queries = store._vectors_for(ids)
    best_s = np.full((len(qids), k + 1), -np.inf, dtype=np.float32)
    best_i = np.full((len(qids), k + 1), -1, dtype=np.int64)
    for cids, vecs in store.iter_vectors():
        s = queries @ vecs.T
        cand_s = np.concatenate([best_s, s], 1)
        cand_i = np.concatenate([best_i, np.broadcast_to(cids, s.shape)], 1)
        top = np.argsort(-cand_s, axis=1)[:, : k + 1]
        best_s, best_i = np.take_along_axis(cand_s, top, 1), np.take_along_axis(cand_i, top, 1)
    hits = total = 0
    for own, q, truth in zip(qids, queries, best_i, strict=True):
        want = [int(i) for i in truth if i != own and i >= 0][:k]
        got = [cid for cid, _ in store.dense_search(q, k + 1) if cid != own][:k]
        hits += len(set(want) & set(got))
        total += len(want)
    return hits / max(total, 1)


def _why(idx: Any, want: Any, n: int) -> str:
    from ragworks.store.vector_index import MIN_TRAIN

    if want.kind == idx.kind:
        return str(want.reason)
    if want.needs_training and n < MIN_TRAIN:
        return f"{want.reason}, but {n} vectors are too few to train it (needs {MIN_TRAIN}): exact until then"
    return f"{want.reason} (switches at the next write or `ragworks index set-type`)"


@index_app.command("info")
def index_info(
    collection: CollectionOpt = None,
    data_dir: DataDirOpt = None,
    sample: Annotated[int, typer.Option(help="Stored vectors used as queries for the recall self-check (0: skip).")]
    = 100,
    as_json: JsonOpt = False,
) -> None:
    """Show the index type, why it was chosen, its size on disk and in RAM, and recall@10 against exact search."""
    from ragworks.store.embedded import EmbeddedStore

    s = _settings(collection, data_dir)
    store = EmbeddedStore(s.collection_path(), create=False)
    try:
        store.sync_index()
        idx = store.index
        n = len(idx)
        want = idx.plan_for(n)
        files = idx._files()
        info: dict[str, Any] = {
            "collection": store.path.name,
            **idx.describe(),
            "index_type_setting": store.index_type(),
            "why": _why(idx, want, n),
            "vectors": n,
            "dimension": store.dimension,
            "disk_bytes": files[-1][1].stat().st_size if files else 0,
            "ram_bytes_estimate": idx.plan.ram_bytes(n, store.dimension),
        }
        if sample and n:
            t = time.perf_counter()
            info["expected_recall_at_10"] = round(expected_recall(store, sample), 4)
            info["recall_sample"] = sample
            info["recall_check_s"] = round(time.perf_counter() - t, 2)
    finally:
        store.close()
    if as_json:
        out.print_json(json.dumps(info))
        return
    table = Table(show_header=False, show_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in info.items():
        if key in ("disk_bytes", "ram_bytes_estimate"):
            value = f"{value / 2**20:,.1f} MiB"
        table.add_row(key.replace("_", " "), str(value))
    out.print(table)


@index_app.command("set-type")
def index_set_type(
    index_type: Annotated[str, typer.Argument(help="auto | flat | hnsw | ivf | ivfpq")],
    collection: CollectionOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Choose the index type (auto: by size) and rebuild the index now."""
    from ragworks.errors import ConfigError
    from ragworks.store.embedded import EmbeddedStore

    if index_type not in ("auto", "flat", "hnsw", "ivf", "ivfpq"):
        raise ConfigError(f"unknown index type {index_type!r}: use auto, flat, hnsw, ivf or ivfpq")
    s = _settings(collection, data_dir)
    store = EmbeddedStore(s.collection_path(), create=False)
    try:
        with store.write_lock():
            store.set_index_type(cast(IndexChoice, index_type))
            store.flush()
            out.print(f"index: {store.index.kind} ({store.index.plan.factory(store.dimension)}), {len(store.index):,} "
                      f"vectors — {store.index.plan.reason}")
    finally:
        store.close()


def _progress(label: str, total: int | None) -> Progress:
    return Progress(SpinnerColumn(), TextColumn(f"[bold]{label}"), BarColumn(), TextColumn("{task.completed} shards"),
                    TextColumn("{task.fields[chunks]:,} chunks · {task.fields[rate]:.1f} chunks/s"),
                    TimeElapsedColumn(), console=out)

@contextlib.contextmanager
def _shard_progress(label: str) -> Iterator[Callable[[str, int, int], None]]:
    """A bar advanced once per finished shard, showing chunks so far and their rate."""
    started = time.perf_counter()
    with _progress(label, None) as bar:
        task = bar.add_task(label, total=None, chunks=0, rate=0.0)
        chunks = 0

        def on_shard(event: str, k: int, n: int) -> None:
            nonlocal chunks
            chunks += n
            bar.update(task, advance=1, chunks=chunks, rate=chunks / max(time.perf_counter() - started, 1e-6))

        yield on_shard



@dump_app.command("embed")
def dump_embed(
    dump: Annotated[Path, typer.Argument(help="A .jsonl, .jsonl.gz or .parquet dump (one record per passage).")],
    shards: Annotated[Path, typer.Option("--shards", help="Directory for the embedding shards.")],
    records_per_shard: Annotated[
        int | None, typer.Option(help="Records per shard, the unit of resume (default: dump_records_per_shard).")
    ] = None,
    workers: Annotated[int, typer.Option(help="Embedding processes, each with the model (CPU).")] = 1,
    prep_workers: Annotated[
        int | None, typer.Option(help="Tokenizing processes feeding this process's model (default: all cores but one "
                                      "on a GPU, none on CPU).")
    ] = None,
    celery: Annotated[bool, typer.Option("--celery", help="Send shards to `ragworks worker`s via Redis.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Embed a dump into shard files; rerun after a kill and it resumes at the first incomplete shard."""
    from ragworks.dumps.dump import embed_dump

    s = Settings()
    per_shard = records_per_shard or s.dump_records_per_shard
    with _shard_progress("embed") as on_shard:
        if celery:
            from ragworks.dumps.distributed import embed_dump_celery  # needs the queue extra

            report = embed_dump_celery(dump, shards, s, records_per_shard=per_shard,
                                       max_outstanding=max(2 * workers, 4), progress=on_shard)
        else:
            report = embed_dump(dump, shards, s, records_per_shard=per_shard, workers=workers,
                                prep_workers=prep_workers, progress=on_shard)
    d = report.to_dict()
    if as_json:
        out.print_json(json.dumps(d))
    else:
        out.print(f"{d['shards']} shards ({d['skipped']} already complete, {d['written']} written), "
                  f"{d['records']:,} records, {d['chunks']:,} chunks embedded in {d['seconds']:.1f} s; "
                  f"peak RSS {d['peak_rss_mb']:.0f} MB")


@dump_app.command("build")
def dump_build(
    shards: Annotated[Path, typer.Argument(help="The shard directory `ragworks dump embed` wrote.")],
    collection: CollectionOpt = None,
    data_dir: DataDirOpt = None,
    index_type: Annotated[str | None, typer.Option(help="auto | flat | hnsw | ivf | ivfpq (default: auto)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write the shards into a collection (SQLite, FTS5) and build its vector index once, by final size."""
    from ragworks.dumps.dump import build_collection

    s = _settings(collection, data_dir, index_type=index_type)
    with _shard_progress("build") as on_shard:
        report = build_collection(shards, s, progress=on_shard)
    d = report.to_dict()
    if as_json:
        out.print_json(json.dumps(d))
    else:
        out.print(f"{d['documents']:,} documents, {d['chunks']:,} chunks from {d['shards'] - d['skipped']} shards "
                  f"({d['skipped']} already built) in {d['seconds']:.1f} s; index {d['index'].get('factory')} over "
                  f"{d['index'].get('vectors', 0):,} vectors")
