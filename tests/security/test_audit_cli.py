"""The audit log (append-only, retention pruned on write, both backends) and the permission commands of the CLI."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from ragworks.audit import AUDIT_DB, PRUNE_EVERY_S, AuditEntry, PostgresAuditLog, SqliteAuditLog


def test_sqlite_audit_log_is_append_only_and_prunes_past_retention(tmp_path: Path):
    log = SqliteAuditLog(lambda tenant: tmp_path / tenant, retention_days=1.0)
    now = time.time()
    log.record(AuditEntry("acme", "ask", "docs", "old question", "k1", "ann", ["d1:0"], ["d1@0-10"],
                          at=now - 3 * 86_400))
    log.record(AuditEntry("acme", "search", "docs", "new question", "k1", "ann", ["d2:1"], [], at=now))
    log.record(AuditEntry("globex", "search", "docs", "theirs", "k9", None, [], [], at=now))
    entries = log.entries("acme")
    assert [e.query for e in entries] == ["new question"]  # the 3-day-old entry was pruned by the write
    assert entries[0].retrieved == ["d2:1"] and entries[0].user == "ann"
    assert [e.query for e in log.entries("globex")] == ["theirs"]  # one file per tenant
    assert log.entries("acme", user="bob") == []
    log.close()
    conn = sqlite3.connect(tmp_path / "acme" / AUDIT_DB)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE audit SET query = 'rewritten'")
    conn.close()


def test_postgres_audit_log_keeps_tenants_apart_and_prunes(pg_dsn: str):
    from ragworks.store.postgres import make_pool

    pool = make_pool(pg_dsn, max_size=2)
    try:
        log = PostgresAuditLog(pool, "ragworks", retention_days=1.0)
        a, b = f"t{uuid.uuid4().hex[:8]}", f"t{uuid.uuid4().hex[:8]}"
        now = time.time()
        log.record(AuditEntry(a, "ask", "docs", "stale", at=now - 2 * 86_400))
        log.record(AuditEntry(a, "ask", "docs", "fresh", "k1", "ann", ["x:0"], ["x@0-5"], at=now + PRUNE_EVERY_S))
        log.record(AuditEntry(b, "ask", "docs", "other", at=now))
        assert [(e.query, e.cited) for e in log.entries(a)] == [("fresh", ["x@0-5"])]
        assert [e.query for e in log.entries(b)] == ["other"]
    finally:
        pool.close()


RAGWORKS = [sys.executable, "-m", "ragworks.cli"]


def _run(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RAGWORKS_DATA_DIR": str(data_dir), "COLUMNS": "200"}
    return subprocess.run([*RAGWORKS, *args], capture_output=True, text=True, env=env, timeout=300)


def test_cli_creates_user_keys_sets_readers_and_shows_the_audit(tmp_path: Path, embedder):
    from ragworks.collection import Collection
    from ragworks.config import Settings

    data = tmp_path / "data"
    with Collection.open(settings=Settings(data_dir=data, collection="notes"), embedder=embedder, llm=None) as col:
        col.add_text("The board meets on the first Monday.", source="board.md", metadata={"readers": ["group:board"]})
    assert _run("admin", "create-tenant", "acme", data_dir=data).returncode == 0
    made = _run("admin", "create-key", "acme", "--user", "ann", "--groups", "finance,legal", data_dir=data)
    assert made.returncode == 0, made.stderr
    keys = json.loads(_run("admin", "list-keys", "acme", "--json", data_dir=data).stdout)
    assert keys[0]["user"] == "ann" and keys[0]["groups"] == ["finance", "legal"]
    bad = _run("admin", "create-key", "acme", "--groups", "finance", data_dir=data)
    assert bad.returncode != 0 and "need a user" in bad.stderr and "Traceback" not in bad.stderr
    changed = _run("docs", "set-readers", "board.md", "--readers", "group:finance,user:cfo", "-c", "notes",
                   data_dir=data)
    assert changed.returncode == 0 and "1 document(s)" in changed.stderr, changed.stderr
    wrong = _run("docs", "set-readers", "board.md", "--readers", "finance", "-c", "notes", data_dir=data)
    assert wrong.returncode != 0 and "user:<name> or group:<name>" in wrong.stderr
    with Collection.open(settings=Settings(data_dir=data, collection="notes"), embedder=embedder, llm=None) as col:
        assert col.document("board.md")[0].readers == ("group:finance", "user:cfo")
    SqliteAuditLog(lambda t: data / "tenants" / t, 90).record(AuditEntry("acme", "ask", "notes", "when?", "k1", "ann"))
    shown = _run("admin", "audit", "acme", "--json", data_dir=data)
    assert shown.returncode == 0, shown.stderr
    assert [(e["query"], e["user"]) for e in json.loads(shown.stdout)] == [("when?", "ann")]
