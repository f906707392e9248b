"""Several server processes on one data directory: one of them, elected by a file lock, runs the jobs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from http.client import HTTPConnection
from pathlib import Path

import httpx
import pytest
from tests.realservers import free_port, wait_until

from ragworks.collection import Collection
from ragworks.config import Settings
from ragworks.jobs import EmbeddedJobQueue, JobKind, JobState, make_job_queue
from ragworks.tenancy import LOCAL_TENANT, Tenant, existing_tenants

DOCS = [{"source": f"note-{i}.md", "text": f"Note {i}: the tide tables for harbour {i} were checked at dawn.",
         "title": "", "metadata": {}} for i in range(3)]


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def search_count(metrics: str) -> float:
    """Successful searches in a Prometheus exposition: the request histogram's _count for the search route."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("ragworks_http_request_duration_seconds_count{")
               and 'route="/v1/collections/{name}/search"' in line and 'status="200"' in line)


def connection_owner(pids: list[int], server_port: int, client_port: int) -> int | None:
    """Which of `pids` holds the server end of the TCP connection from `client_port` (Linux /proc)."""
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if (int(fields[1].rsplit(":", 1)[1], 16) == server_port
                    and int(fields[2].rsplit(":", 1)[1], 16) == client_port):
                inode = fields[9]
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue
    return None


@pytest.mark.parametrize("workers", [2, 1])  # 1: two separate `ragworks serve` started on one data directory
def test_only_the_elected_process_runs_jobs_and_a_job_recorded_elsewhere_runs_once(tmp_path: Path, embedder,
                                                                                     workers: int):
    settings = Settings(data_dir=tmp_path, llm="extractive", workers=workers)
    opened: dict[str, Collection] = {}

    def open_collection(tenant: Tenant, name: str) -> Collection:
        if name not in opened:
            opened[name] = Collection.open(str(tenant.collection_dir(name)), settings=settings, embedder=embedder,
                                           llm=None)
        return opened[name]

    queues = [make_job_queue(settings, open_collection, lambda: existing_tenants(settings)) for _ in range(2)]
    assert all(isinstance(q, EmbeddedJobQueue) for q in queues)
    for q in queues:
        q.start()
    try:
        runner = wait_until(lambda: next((q for q in queues if q._is_runner), None), 10,
                            lambda: "no process was elected to run jobs")
        other = queues[1 - queues.index(runner)]
        assert not other._is_runner and other.alive  # waiting for its turn, still healthy
        local = Tenant(LOCAL_TENANT, tmp_path)
        job = other.submit(local, "notes", JobKind.DOCUMENTS, {"documents": DOCS})
        done = other.wait(local, job.id, 60)  # the recording process sees the runner's outcome in the table
        assert done.state is JobState.COMPLETED and done.attempts == 1
        assert done.progress.documents == 3
        assert len(open_collection(local, "notes").documents()) == 3
        runner.stop()  # the runner goes away: the other process takes over within the election interval
        wait_until(lambda: other._is_runner, 10, lambda: "nobody took over running jobs")
        extra = {"source": "note-9.md", "text": "Note 9: buoys were repainted.", "title": "", "metadata": {}}
        again = other.submit(local, "notes", JobKind.DOCUMENTS, {"documents": [DOCS[0], extra]})
        assert other.wait(local, again.id, 60).state is JobState.COMPLETED
    finally:
        for q in queues:
            q.stop()
        for col in opened.values():
            col.close()


@pytest.mark.slow
def test_serve_with_two_workers_answers_on_one_port_and_ingests_once(tmp_path: Path):
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "RAGWORKS_LLM": "extractive"}
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "ragworks.cli", "serve", "--data-dir", str(tmp_path / "data"),
                             "--port", str(port), "--auth", "off", "--workers", "2", "--log-level", "warning"],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        def ready() -> bool:
            try:
                return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(ready, 120, lambda: (tmp_path / "serve.log").read_text()[-3000:], interval_s=0.5)
        with httpx.Client(base_url=base, timeout=60) as http:
            http.post("/v1/collections", json={"name": "notes"})
            r = http.post("/v1/collections/notes/documents?wait=true", json={"documents": DOCS})
            assert r.status_code == 200 and r.json()["state"] == "completed", r.text
            for _ in range(6):  # new connections land on either process
                with httpx.Client(base_url=base, timeout=60) as fresh:
                    hits = fresh.post("/v1/collections/notes/search", json={"query": "tide tables harbour 2"}).json()
                    assert hits["hits"][0]["source"] == "note-2.md"
            assert len(http.get("/v1/collections/notes/documents").json()["documents"]) == 3
        workers = children(proc.pid)
        assert len(workers) == 2
        # /metrics counts every process's requests, whichever process answers the scrape (one each, round-robin)
        for _ in range(2):
            with httpx.Client(base_url=base, timeout=60) as fresh:
                assert search_count(fresh.get("/metrics").text) == 6
        # keep-alive connections opened together are dealt out evenly: 2 per process, not whoever accepts first
        conns = [HTTPConnection("127.0.0.1", port, timeout=60) for _ in range(4)]
        for conn in conns:
            conn.request("GET", "/healthz")
            assert conn.getresponse().read()
        owners = [connection_owner(workers, port, conn.sock.getsockname()[1]) for conn in conns]
        assert sorted(owners.count(pid) for pid in workers) == [2, 2], owners
        # a worker that dies is replaced (connections it held die with it); until the replacement's app has
        # started (seconds: imports, model), new connections all go to the live worker instead of waiting on it
        os.kill(workers[0], signal.SIGKILL)
        replaced = wait_until(lambda: (lambda now: now if len(now) == 2 and workers[0] not in now else None)(
            children(proc.pid)), 60, lambda: f"workers now {children(proc.pid)}")
        assert workers[1] in replaced
        meanwhile = [HTTPConnection("127.0.0.1", port, timeout=60) for _ in range(3)]
        for conn in meanwhile:
            conn.request("GET", "/healthz")
            assert conn.getresponse().read()
        assert [connection_owner(replaced, port, c.sock.getsockname()[1]) for c in meanwhile] == [workers[1]] * 3
        for _ in range(4):
            with httpx.Client(base_url=base, timeout=60) as fresh:
                assert fresh.post("/v1/collections/notes/search", json={"query": "harbour 1"}).status_code == 200
        for conn in meanwhile:
            conn.close()
        for conn in conns:
            conn.close()
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
