"""Dump of any size → embedding shards → collection, in bounded memory and resumable at every step.

`embed_dump` streams a JSONL / JSONL.gz / Parquet dump record by record, cuts it into shards of
`records_per_shard` records (by position, so the same dump always gives the same shards), and has each shard
chunked, embedded and written by one worker: this process, a pool of processes each holding the model, or Celery
tasks (`ragworks.dumps.distributed`). Complete shards are skipped, so a killed run resumes where it stopped.
With a GPU the work is pipelined instead: processes without the model chunk and tokenize shards ahead (each
passage tokenized once, its ids reused by the embedder) while this process feeds the GPU.
`build_collection` then writes the shards into a collection one at a time (SQLite rows, FTS5, cached vectors) and
builds its vector index once, in one pass, of the kind the final size calls for.
"""

from __future__ import annotations

import json
import os
import resource
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from ragworks.config import Settings
from ragworks.documents import Chunk, Document
from ragworks.dumps.shards import ShardDir, ShardManifest, encode_docs
from ragworks.embed import passage_tokenizer
from ragworks.embed.base import Embedder, TokenIdEmbedder
from ragworks.embed.tokens import PassageTokenizer, cpu_cores
from ragworks.errors import ConfigError
from ragworks.ingest.base import LoadOptions, LoadReport
from ragworks.ingest.loaders import jsonl_records, loader_for, record_document
from ragworks.store.base import DocumentWrite, WriteBatch

# Settings a shard worker needs (sent as JSON to Celery tasks and to pool processes).
WORKER_FIELDS = (
    "embed_provider", "embed_model", "embed_base_url", "embed_dimensions", "embed_batch_size", "embed_device",
    "query_prefix", "passage_prefix", "chunk_tokens", "chunk_overlap", "chunk_context", "embed_attention",
)
GPU_BATCH = 512  # fp16 MiniLM on an H200 (bench/embed_gpu.py: 39.5k passages/s at 512); CPU batches stay small
ProgressFn = Callable[[str, int, int], None]  # (event, shard, value)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def worker_settings(settings: Settings) -> dict[str, Any]:
    """The part of `settings` a shard worker needs, as JSON-safe values."""
    data = settings.model_dump(mode="json", include=set(WORKER_FIELDS))
    if settings.embed_api_key is not None:
        data["embed_api_key"] = settings.embed_api_key.get_secret_value()
    return data


def iter_records(path: Path, settings: Settings) -> Iterator[dict[str, Any]]:
    """The dump's usable records in file order, as {source, title, text, metadata} (bad lines skipped)."""
    options = LoadOptions.from_settings(settings)
    if path.name.lower().endswith((".jsonl", ".ndjson", ".jsonl.gz")):  # fields only: no Document, spans, hashes
        yield from jsonl_records(path, path.name, options, LoadReport())
        return
    for doc in loader_for(path)(path, path.name, options, LoadReport()):
        yield {"source": doc.source, "title": doc.title, "text": doc.text, "metadata": doc.metadata}


@dataclass(slots=True)
class PreparedShard:
    """A shard's records chunked: its docs file, ready to write, and what to embed.

    `ids` are the chunks' token ids when the tokenizer allows, else `texts` holds the chunks' index texts.
    """

    docs_file: bytes
    chunks: int
    ids: tuple[np.ndarray, np.ndarray] | None  # all chunks' ids end to end, and each chunk's length
    texts: list[str]
    retokenized: int = 0  # records tokenized twice (looked short enough for one chunk, were not)


class ShardPreparer:
    """Chunks and tokenizes records: the CPU half of embedding, which needs the tokenizer but not the model."""

    def __init__(self, settings: Settings, tokenizer: PassageTokenizer | None, count_tokens: Callable[..., list[int]],
                 max_tokens: int) -> None:
        from ragworks.ingest.chunker import Chunker

        self.tokenizer = tokenizer
        self.chunker = Chunker.from_settings(settings, count_tokens, max_tokens, tokenizer)

    @classmethod
    def for_model(cls, settings: Settings) -> ShardPreparer:
        """From the local model's tokenizer files alone (no weights loaded): for tokenizing processes."""
        from ragworks.embed.local import resolve_model_dir

        tok = PassageTokenizer.from_model_dir(resolve_model_dir(settings.embed_model))
        return cls(settings, tok, tok.count, tok.max_tokens)

    def prepare(self, records: list[dict[str, Any]]) -> PreparedShard:
        docs = [record_document(r) for r in records]
        chunked: list[list[Chunk] | None] = [None] * len(docs)
        retokenized = 0
        if self.tokenizer is not None:
            # A passage that fits in one chunk needs no offsets: its ids alone (the faster call) make its chunk.
            short = [i for i, d in enumerate(docs) if self.chunker.short(d)]
            for i, ids in zip(short, self.tokenizer.ids([docs[i].text for i in short], threads=1), strict=True):
                one = self.chunker.chunk_one(docs[i], ids)
                if one is not None:
                    chunked[i] = [one]
                else:
                    retokenized += 1  # longer than it looked: tokenized again below, with offsets
            rest = [i for i, c in enumerate(chunked) if c is None]
            for i, tokens in zip(rest, self.tokenizer.documents([docs[i].text for i in rest]), strict=True):
                chunked[i] = self.chunker.chunk(docs[i], tokens)
        out: list[dict[str, Any]] = []
        texts: list[str] = []
        ids_out: list[np.ndarray] = []
        for rec, doc, chunks in zip(records, docs, chunked, strict=True):
            if chunks is None:
                chunks = self.chunker.chunk(doc)
            texts.extend(c.index_text for c in chunks)
            ids_out.extend(c.token_ids for c in chunks if c.token_ids is not None)
            out.append({**rec, "chunks": [_chunk_fields(c) for c in chunks]})
        if len(ids_out) == len(texts):  # one flat array crosses the process boundary, not one per chunk
            flat = np.concatenate(ids_out) if ids_out else np.zeros(0, np.int32)
            lengths = np.fromiter((len(x) for x in ids_out), dtype=np.int64, count=len(ids_out))
            return PreparedShard(encode_docs(out), len(texts), (flat, lengths), [], retokenized)
        return PreparedShard(encode_docs(out), len(texts), None, texts, retokenized)


class ShardEmbedder:
    """Chunks and embeds shards in this process; the model loads on first use (CUDA fp16 when present)."""

    def __init__(self, settings: dict[str, Any] | Settings, embedder: Embedder | None = None) -> None:
        self.settings = settings if isinstance(settings, Settings) else Settings(**settings)
        self._embedder: Any = embedder
        self._preparer: ShardPreparer | None = None

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            from ragworks.embed import make_embedder

            s = self.settings
            if s.embed_provider == "local":
                from ragworks.embed.local import pick_device

                if pick_device(s.embed_device).startswith("cuda"):
                    s = s.model_copy(update={"embed_batch_size": max(s.embed_batch_size, GPU_BATCH)})
            self._embedder = make_embedder(s)
        return cast(Embedder, self._embedder)

    def embed(self, shards: ShardDir, k: int, records: list[dict[str, Any]]) -> int:
        """Chunk and embed `records` and write them as shard `k`; a shard already complete is left alone."""
        if shards.is_complete(k):
            return 0
        if self._preparer is None:
            emb = self.embedder
            self._preparer = ShardPreparer(self.settings, passage_tokenizer(emb), emb.count_tokens, emb.max_tokens)
        return self.write(shards, k, self._preparer.prepare(records))

    def write(self, shards: ShardDir, k: int, prepared: PreparedShard) -> int:
        """Embed a prepared shard and write it as shard `k`."""
        shards.write_encoded(k, prepared.docs_file, self.vectors(prepared))
        return prepared.chunks

    def vectors(self, prepared: PreparedShard) -> np.ndarray:
        emb = self.embedder
        if not prepared.chunks:
            return np.zeros((0, emb.dimension), np.float32)
        if prepared.ids is not None and isinstance(emb, TokenIdEmbedder) and emb.passage_tokenizer is not None:
            flat, lengths = prepared.ids
            return emb.embed_token_ids(np.split(flat, np.cumsum(lengths)[:-1]))
        if prepared.ids is not None:  # ids from a tokenizing process, but this embedder wants text
            raise ConfigError("the embedder does not take token ids; run without tokenizing processes")
        return emb.embed_documents(prepared.texts)


def _chunk_fields(c: Chunk) -> dict[str, Any]:
    return {
        "ordinal": c.ordinal, "text": c.text, "context": c.context, "start": c.start, "end": c.end,
        "heading_path": list(c.heading_path), "tokens": c.token_count,
    }


# --- a process pool: each process loads the model once

_POOL_EMBEDDER: ShardEmbedder | None = None


def _pool_init(settings: dict[str, Any]) -> None:
    global _POOL_EMBEDDER
    import torch

    torch.set_num_threads(1)  # N processes × 1 thread: no oversubscription of the cores
    _POOL_EMBEDDER = ShardEmbedder(settings)


def _pool_embed(shard_dir: str, k: int, records: list[dict[str, Any]]) -> int:
    assert _POOL_EMBEDDER is not None
    return _POOL_EMBEDDER.embed(ShardDir(Path(shard_dir)), k, records)


# --- a pool of tokenizing processes feeding this process's GPU: each process holds the tokenizer, not the model

_POOL_PREPARER: ShardPreparer | None = None


def _prep_init(settings: dict[str, Any]) -> None:
    global _POOL_PREPARER
    _POOL_PREPARER = ShardPreparer.for_model(Settings(**settings))


def _pool_prepare(records: list[dict[str, Any]]) -> PreparedShard:
    assert _POOL_PREPARER is not None
    return _POOL_PREPARER.prepare(records)


def default_prep_workers(settings: Settings) -> int:
    """Tokenizing processes for `embed_dump`: all cores but one when a local model runs on CUDA, else none."""
    if settings.embed_provider != "local":
        return 0
    from ragworks.embed.local import pick_device

    if not pick_device(settings.embed_device).startswith("cuda"):
        return 0
    return max(1, cpu_cores() - 1)


def _to_embed(path: Path, settings: Settings, records_per_shard: int, done: set[int],
              report: EmbedReport) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """The shards still to embed, counting every shard (and skipping the complete ones) on `report`."""
    for k, records in shard_records(path, settings, records_per_shard):
        report.shards += 1
        report.records += len(records)
        if k in done:
            report.skipped += 1
            continue
        yield k, records


@dataclass(slots=True)
class EmbedReport:
    shards: int = 0
    skipped: int = 0
    written: int = 0
    records: int = 0
    chunks: int = 0
    seconds: float = 0.0
    rss_mb: list[float] = field(default_factory=list)  # this process's RSS after each shard it saw finish

    def to_dict(self) -> dict[str, Any]:
        return {
            "shards": self.shards, "skipped": self.skipped, "written": self.written, "records": self.records,
            "chunks": self.chunks, "seconds": round(self.seconds, 2),
            "peak_rss_mb": round(peak_rss_mb(), 1), "rss_mb_per_shard": [round(x, 1) for x in self.rss_mb],
        }


def manifest_for(path: Path, settings: Settings, records_per_shard: int) -> ShardManifest:
    from ragworks.embed import embedder_name

    return ShardManifest(
        dump=path.name, dump_size=path.stat().st_size, model=embedder_name(settings),
        records_per_shard=records_per_shard, chunk_tokens=settings.chunk_tokens, chunk_overlap=settings.chunk_overlap,
    )


def shard_records(path: Path, settings: Settings, records_per_shard: int) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """(shard number, its records) in dump order; only one shard's records are in memory at a time."""
    batch: list[dict[str, Any]] = []
    k = 0
    for rec in iter_records(path, settings):
        batch.append(rec)
        if len(batch) == records_per_shard:
            yield k, batch
            k, batch = k + 1, []
    if batch:
        yield k, batch


def embed_dump(
    path: Path,
    shard_dir: Path,
    settings: Settings,
    *,
    records_per_shard: int = 10_000,
    workers: int = 1,
    prep_workers: int | None = None,
    progress: ProgressFn | None = None,
    embedder: Embedder | None = None,
) -> EmbedReport:
    """Embed the dump at `path` into shards under `shard_dir`, skipping complete shards (resume after a kill).

    `workers` > 1 runs that many processes, each with its own copy of the model and one torch thread.
    `prep_workers` > 0 pipelines instead: that many processes chunk and tokenize shards ahead while this process
    embeds them (None: all cores but one on CUDA, else 0). `embedder` (in-process only) replaces the one the
    settings describe.
    """
    shards = ShardDir(shard_dir)
    shards.start(manifest_for(path, settings, records_per_shard))
    done = set(shards.complete())
    report = EmbedReport()
    t0 = time.perf_counter()

    def finished(k: int, n: int) -> None:
        report.written += 1
        report.chunks += n
        report.rss_mb.append(rss_mb())
        if progress:
            progress("shard", k, n)

    if prep_workers is None:
        prep_workers = default_prep_workers(settings) if embedder is None and workers <= 1 else 0
    if prep_workers > 0:
        _embed_pipelined(path, shards, settings, records_per_shard, prep_workers, done, report, finished, embedder)
    elif workers <= 1:
        worker = ShardEmbedder(settings, embedder)
        for k, records in _to_embed(path, settings, records_per_shard, done, report):
            finished(k, worker.embed(shards, k, records))
    else:
        import multiprocessing

        # spawn, not fork: a forked copy of a process that has touched torch or tokenizers threads can deadlock
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_pool_init,
                                 initargs=(worker_settings(settings),)) as pool:
            pending: dict[Future[int], int] = {}
            for k, records in _to_embed(path, settings, records_per_shard, done, report):
                while len(pending) >= 2 * workers:  # bounded: at most 2 shards per worker in flight
                    _drain(pending, finished)
                pending[pool.submit(_pool_embed, str(shard_dir), k, records)] = k
            while pending:
                _drain(pending, finished)
    report.seconds = time.perf_counter() - t0
    return report


def _embed_pipelined(path: Path, shards: ShardDir, settings: Settings, records_per_shard: int, prep_workers: int,
                     done: set[int], report: EmbedReport, finished: Callable[[int, int], None],
                     embedder: Embedder | None) -> None:
    """Tokenizing processes prepare shards ahead (at most 2 each in flight); this process embeds them in order,
    and a writer thread saves each shard while the next one is on the GPU."""
    import multiprocessing
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    worker = ShardEmbedder(settings, embedder)
    worker.embedder  # load the model while the first shards are being tokenized  # noqa: B018
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(prep_workers, mp_context=ctx, initializer=_prep_init,
                             initargs=(worker_settings(settings),)) as pool, \
            ThreadPoolExecutor(1, thread_name_prefix="ragworks-shard-writer") as writer:
        ahead: deque[tuple[int, Future[PreparedShard]]] = deque()
        writing: deque[tuple[int, int, Future[None]]] = deque()

        def embed_next() -> None:
            k, fut = ahead.popleft()
            prepared = fut.result()
            vectors = worker.vectors(prepared)
            writing.append((k, prepared.chunks, writer.submit(shards.write_encoded, k, prepared.docs_file, vectors)))
            while writing and (writing[0][2].done() or len(writing) > 2):
                k_done, n_done, wfut = writing.popleft()
                wfut.result()
                finished(k_done, n_done)

        for k, records in _to_embed(path, settings, records_per_shard, done, report):
            while len(ahead) >= 2 * prep_workers:
                embed_next()
            ahead.append((k, pool.submit(_pool_prepare, records)))
        while ahead:
            embed_next()
        while writing:
            k_done, n_done, wfut = writing.popleft()
            wfut.result()
            finished(k_done, n_done)


def _drain(pending: dict[Future[int], int], finished: Callable[[int, int], None]) -> None:
    from concurrent.futures import FIRST_COMPLETED, wait

    done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
    for fut in done:
        finished(pending.pop(fut), fut.result())


# --- shards → collection


@dataclass(slots=True)
class BuildReport:
    shards: int = 0
    skipped: int = 0
    documents: int = 0
    chunks: int = 0
    seconds: float = 0.0
    index: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "shards": self.shards, "skipped": self.skipped, "documents": self.documents, "chunks": self.chunks,
            "seconds": round(self.seconds, 2), "index": self.index, "peak_rss_mb": round(peak_rss_mb(), 1),
        }


def _batch(docs: list[dict[str, Any]], vectors: np.ndarray, source_path: str) -> WriteBatch:
    batch = WriteBatch()
    row = 0
    for rec in docs:
        doc = Document(source=rec["source"], text=rec["text"], title=rec["title"], metadata=rec["metadata"],
                       source_path=source_path)
        chunks = []
        for c in rec["chunks"]:
            chunk = Chunk(doc_id=doc.id, ordinal=c["ordinal"], text=c["text"], start=c["start"], end=c["end"],
                          heading_path=tuple(c["heading_path"]), token_count=c["tokens"], context=c["context"])
            chunks.append(chunk)
            batch.vectors[chunk.text_hash] = vectors[row]
            row += 1
        batch.documents.append(DocumentWrite(doc, chunks))
    return batch


def build_collection(
    shard_dir: Path, settings: Settings, *, progress: ProgressFn | None = None
) -> BuildReport:
    """Write every complete shard into the collection `settings` names, then build its vector index once.

    Shards already written (listed in the collection's `bulk-progress.json`) are skipped; a shard written twice
    (a kill between its commit and the progress file) replaces its own documents, so nothing is duplicated.
    """
    from ragworks.store.embedded import EmbeddedStore

    shards = ShardDir(shard_dir)
    manifest = shards.manifest()
    if manifest is None:
        from ragworks.errors import ConfigError

        raise ConfigError(f"{shard_dir} has no {shard_dir / 'manifest.json'}: run `ragworks dump embed` first")
    complete = shards.complete()
    if not complete:
        from ragworks.errors import ConfigError

        raise ConfigError(f"{shard_dir} has no complete shard yet: run `ragworks dump embed` first")
    dimension = int(shards.vectors(complete[0]).shape[1])
    path = settings.collection_path()
    store = EmbeddedStore(path, model_name=manifest.model, dimension=dimension)
    if settings.index_type is not None and settings.index_type != store.index_type():
        store.set_index_type(settings.index_type)
    report = BuildReport()
    t0 = time.perf_counter()
    progress_file = path / "bulk-progress.json"
    built: set[int] = set()
    if progress_file.exists():
        state = json.loads(progress_file.read_text())
        if state.get("shard_dir") == str(shards.path.resolve()):
            built = set(state["built"])
    try:
        with store.write_lock():
            for k in complete:
                report.shards += 1
                if k in built:
                    report.skipped += 1
                    continue
                docs, vectors = shards.read(k)
                batch = _batch(docs, vectors, manifest.dump)
                store.write(batch)
                report.documents += len(batch.documents)
                report.chunks += len(batch)
                built.add(k)
                tmp = progress_file.with_name(".bulk-progress.tmp")
                tmp.write_text(json.dumps({"shard_dir": str(shards.path.resolve()), "built": sorted(built)}))
                os.replace(tmp, progress_file)
                if progress:
                    progress("build", k, len(batch))
            if report.documents or not store.index.newest_on_disk():
                store.request_index_rebuild()
                store.flush()
            else:
                store.sync_index()
            report.index = {**store.index.describe(), "vectors": len(store.index)}
    finally:
        store.close()
    report.seconds = time.perf_counter() - t0
    return report
