"""Shards embedded by Celery tasks over a real redis-server and two real worker processes."""

from __future__ import annotations

import gzip
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.realservers import CeleryWorker, redis_server

from ragworks.config import Settings
from ragworks.dumps.distributed import EMBED_SHARD_TASK, embed_dump_celery
from ragworks.dumps.dump import build_collection
from ragworks.dumps.shards import ShardDir
from ragworks.store.embedded import DB_NAME

pytestmark = pytest.mark.slow

N_RECORDS = 32
PER_SHARD = 2


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


def test_celery_workers_share_the_shards_and_a_rerun_sends_nothing(tmp_path: Path, redis_url: str) -> None:
    dump = tmp_path / "wiki.jsonl.gz"
    with gzip.open(dump, "wt") as f:
        for i in range(N_RECORDS):
            f.write(json.dumps({"_id": f"r{i}", "title": f"Harbour {i}",
                                "text": f"Harbour {i} records {i * 3} ships and a tide of {i % 5} metres."}) + "\n")
    shard_dir = tmp_path / "shards"
    settings = Settings(redis_url=redis_url, data_dir=tmp_path / "data", collection="wiki")
    env = {"RAGWORKS_REDIS_URL": redis_url}
    with CeleryWorker(env, pool="solo", log_dir=tmp_path) as w1, CeleryWorker(env, pool="solo", log_dir=tmp_path) as w2:
        w1.wait_ready()
        w2.wait_ready()
        report = embed_dump_celery(dump, shard_dir, settings, records_per_shard=PER_SHARD, max_outstanding=6,
                                   shard_timeout_s=180)
        assert report.shards == report.written == N_RECORDS // PER_SHARD and report.chunks == N_RECORDS
        logs = [w1.log_text(), w2.log_text()]
        # both workers embedded some of the shards
        assert all(f"Task {EMBED_SHARD_TASK}" in log and "succeeded" in log for log in logs), logs

        mtimes = {p.name: p.stat().st_mtime_ns for p in shard_dir.glob("shard-*")}
        again = embed_dump_celery(dump, shard_dir, settings, records_per_shard=PER_SHARD, shard_timeout_s=60)
        assert again.skipped == again.shards and again.written == 0
        assert {p.name: p.stat().st_mtime_ns for p in shard_dir.glob("shard-*")} == mtimes

    assert len(ShardDir(shard_dir).complete()) == N_RECORDS // PER_SHARD
    built = build_collection(shard_dir, settings)
    assert built.documents == N_RECORDS
    con = sqlite3.connect(settings.collection_path() / DB_NAME)
    sources = sorted(r[0] for r in con.execute("SELECT source FROM documents"))
    con.close()
    assert sources == sorted(f"wiki.jsonl.gz#r{i}" for i in range(N_RECORDS))
