"""Streaming a dump into embedding shards: SIGKILL at any point, rerun, and every record lands exactly once."""

from __future__ import annotations

import gzip
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ragworks.config import Settings
from ragworks.dumps.dump import build_collection, embed_dump, iter_records
from ragworks.dumps.shards import ShardDir
from ragworks.store.embedded import DB_NAME

N_RECORDS = 48
PER_SHARD = 6

EMBED = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from ragworks.config import Settings
    from ragworks.dumps.dump import embed_dump
    embed_dump(Path(sys.argv[1]), Path(sys.argv[2]), Settings(), records_per_shard=int(sys.argv[3]))
    """
)


def _records(n: int) -> list[dict[str, str]]:
    return [
        {"_id": f"r{i}", "title": f"Station {i}",
         "text": f"Record {i}: the keeper of lighthouse {i} logged wind force {i % 12} and a {i % 7}-mile fog."}
        for i in range(n)
    ]


def _jsonl_gz(path: Path, n: int) -> Path:
    with gzip.open(path, "wt") as f:
        for r in _records(n):
            f.write(json.dumps(r) + "\n")
        f.write("not json\n")  # a bad line is skipped, not fatal
    return path


def test_parquet_jsonl_and_gzip_dumps_stream_the_same_records(tmp_path: Path) -> None:
    rows = _records(30)
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet", row_group_size=7)
    _jsonl_gz(tmp_path / "d.jsonl.gz", 30)
    s = Settings()
    got = [[(r["source"].split("#")[1], r["title"], r["text"]) for r in iter_records(tmp_path / name, s)]
           for name in ("d.jsonl", "d.parquet", "d.jsonl.gz")]
    assert got[0] == got[1] == got[2] and len(got[0]) == 30


def _wait_for_shards(shard_dir: Path, n: int, proc: subprocess.Popen[bytes], timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if shard_dir.exists() and len(ShardDir(shard_dir).complete()) >= n:
            return
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "embedder exited"
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} shards after {timeout}s")


@pytest.mark.slow
def test_killed_dump_embedding_resumes_and_collection_has_every_record_once(tmp_path: Path, embedder) -> None:
    dump = _jsonl_gz(tmp_path / "wiki.jsonl.gz", N_RECORDS)
    shard_dir = tmp_path / "shards"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen([sys.executable, "-c", EMBED, str(dump), str(shard_dir), str(PER_SHARD)],
                            env=env, stderr=subprocess.PIPE)
    _wait_for_shards(shard_dir, 2, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = set(ShardDir(shard_dir).complete())
    assert 2 <= len(before) < N_RECORDS // PER_SHARD  # killed mid-run
    mtimes = {k: (shard_dir / f"shard-{k:06d}.f16.npy").stat().st_mtime_ns for k in before}

    settings = Settings(data_dir=tmp_path / "data", collection="wiki")
    report = embed_dump(dump, shard_dir, settings, records_per_shard=PER_SHARD)
    assert report.shards == N_RECORDS // PER_SHARD and report.skipped == len(before)
    assert report.written == report.shards - len(before)
    assert all((shard_dir / f"shard-{k:06d}.f16.npy").stat().st_mtime_ns == mtimes[k] for k in before)

    built = build_collection(shard_dir, settings)
    assert built.documents == N_RECORDS and built.index["vectors"] == built.chunks
    again = build_collection(shard_dir, settings)  # a rerun finds everything built and writes nothing
    assert again.skipped == again.shards and again.documents == 0

    con = sqlite3.connect(settings.collection_path() / DB_NAME)
    sources = [r[0] for r in con.execute("SELECT source FROM documents")]
    assert sorted(sources) == sorted(f"wiki.jsonl.gz#r{i}" for i in range(N_RECORDS))
    dup = con.execute("SELECT count(*) - count(DISTINCT doc_id || ':' || ordinal) FROM chunks").fetchone()[0]
    assert dup == 0
    con.close()

    # the built collection answers like an ingested one: dense (real MiniLM query) and BM25
    from ragworks.store.embedded import EmbeddedStore

    store = EmbeddedStore(settings.collection_path(), create=False)
    assert store.model_name == embedder.name
    q = embedder.embed_queries(["lighthouse 17 wind force 5"])[0]
    dense = store.hits(store.dense_search(np.asarray(q), 3))
    lexical = store.hits(store.lexical_search("lighthouse 17", 3))
    assert "lighthouse 17 " in dense[0].chunk.text and "lighthouse 17 " in lexical[0].chunk.text
    store.close()


def test_shard_directory_refuses_a_different_run(tmp_path: Path) -> None:
    from ragworks.dumps.dump import manifest_for
    from ragworks.errors import ConfigError

    dump = _jsonl_gz(tmp_path / "a.jsonl.gz", 5)
    ShardDir(tmp_path / "s").start(manifest_for(dump, Settings(), 100))
    with pytest.raises(ConfigError, match="records_per_shard"):
        ShardDir(tmp_path / "s").start(manifest_for(dump, Settings(), 50))


@pytest.mark.slow
def test_worker_processes_write_the_same_shards_as_one_process(tmp_path: Path, embedder) -> None:
    dump = _jsonl_gz(tmp_path / "wiki.jsonl.gz", 8)
    report = embed_dump(dump, tmp_path / "pool", Settings(), records_per_shard=2, workers=2)
    assert report.written == report.shards == 4 and report.chunks == 8
    shards = ShardDir(tmp_path / "pool")
    docs, vectors = shards.read(3)
    assert [d["source"] for d in docs] == ["wiki.jsonl.gz#r6", "wiki.jsonl.gz#r7"]
    texts = [f"{c['context']}\n{c['text']}" for d in docs for c in d["chunks"]]
    expected = embedder.embed_documents(texts)
    assert np.allclose(vectors, expected, atol=2e-3)  # float16 shards of the same model's vectors
