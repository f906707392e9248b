"""Shard embedding as Celery tasks: `ragworks dump embed --celery` spreads a dump's shards over `ragworks worker`s.

The coordinator streams the dump and sends one task per shard carrying that shard's records; workers chunk,
embed and write the shard into the shard directory, which must be shared by all of them (a network or local
filesystem). There is no result backend: the coordinator watches the directory for complete shards, and keeps at
most `max_outstanding` shards in flight so neither it nor Redis ever holds more than that many shards of text.
Tasks are idempotent (a complete shard is skipped), so a redelivered task (acks_late, a killed worker) or a rerun
of the whole command writes nothing twice.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from celery import shared_task

from ragworks.config import Settings
from ragworks.dumps.dump import EmbedReport, ProgressFn, ShardEmbedder, manifest_for, shard_records, worker_settings
from ragworks.dumps.shards import ShardDir
from ragworks.errors import RagworksError

EMBED_SHARD_TASK = "ragworks.dumps.embed_shard"

_embedders: dict[str, ShardEmbedder] = {}  # one model per worker process and settings, loaded on first task


class ShardTimeout(RagworksError):
    """Shards sent to Celery did not complete in time."""


@shared_task(name=EMBED_SHARD_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def embed_shard(shard_dir: str, k: int, records: list[dict[str, Any]], settings: dict[str, Any]) -> int:
    """Chunk, embed and write shard `k` of a dump; returns the chunks written (0 if it was already complete)."""
    key = json.dumps(settings, sort_keys=True)
    if key not in _embedders:
        _embedders[key] = ShardEmbedder(settings)
    return _embedders[key].embed(ShardDir(Path(shard_dir)), k, records)


def embed_dump_celery(
    path: Path,
    shard_dir: Path,
    settings: Settings,
    *,
    records_per_shard: int = 10_000,
    max_outstanding: int = 8,
    shard_timeout_s: float = 3600.0,
    poll_s: float = 0.2,
    progress: ProgressFn | None = None,
) -> EmbedReport:
    """Embed the dump at `path` into `shard_dir` with Celery workers; complete shards are skipped (resume).

    Raises ShardTimeout when no shard completes for `shard_timeout_s` while some are outstanding (no worker
    running, or all of them stuck).
    """
    from ragworks.dumps.dump import rss_mb
    from ragworks.jobs.celery_app import make_celery

    app = make_celery(settings)
    shards = ShardDir(shard_dir)
    shards.start(manifest_for(path, settings, records_per_shard))
    done = set(shards.complete())
    report = EmbedReport()
    outstanding: set[int] = set()
    wsettings = worker_settings(settings)
    t0 = time.perf_counter()
    last_progress = time.monotonic()

    def collect() -> None:
        nonlocal last_progress
        for k in sorted(outstanding):
            if shards.is_complete(k):
                outstanding.discard(k)
                report.written += 1
                report.chunks += int(shards.vectors(k).shape[0])
                report.rss_mb.append(rss_mb())
                last_progress = time.monotonic()
                if progress:
                    progress("shard", k, 0)
        if outstanding and time.monotonic() - last_progress > shard_timeout_s:
            raise ShardTimeout(
                f"shards {sorted(outstanding)[:10]} not complete after {shard_timeout_s:.0f}s: is a `ragworks worker` "
                f"running against {settings.redis_url} with access to {shards.path}?"
            )

    for k, records in shard_records(path, settings, records_per_shard):
        report.shards += 1
        report.records += len(records)
        if k in done:
            report.skipped += 1
            continue
        while len(outstanding) >= max_outstanding:
            collect()
            time.sleep(poll_s)
        app.send_task(EMBED_SHARD_TASK, args=[str(shards.path.resolve()), k, records, wsettings])
        outstanding.add(k)
        last_progress = time.monotonic() if len(outstanding) == 1 else last_progress
    while outstanding:
        collect()
        time.sleep(poll_s)
    report.seconds = time.perf_counter() - t0
    return report
