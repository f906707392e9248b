"""A running server follows `ragworks tune`'s model switch and rollback made by another process, without a restart."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ragworks.embed import versions
from ragworks.server import tenants
from ragworks.tune.switch import rollback, switch_to

from .conftest import add_text, make_settings

pytestmark = pytest.mark.slow


def test_the_server_searches_and_ingests_with_the_model_tune_switched_to_and_back(
        tmp_path: Path, app_factory, embedder, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tenants, "MODEL_RECHECK_S", 0.0)
    settings = make_settings(tmp_path / "data")
    client: TestClient
    with app_factory(settings) as client:
        assert client.post("/v1/collections", json={"name": "notes"}).status_code == 201
        add_text(client, "notes", "fog.md", "Fog signals: a diaphone sounds two blasts every minute.")
        add_text(client, "notes", "lens.md", "Augustin Fresnel's lens bends light into one beam.")
        base = client.get("/v1/collections/notes").json()["embedding_model"]

        # another process installs a "tuned" model (a copy of the base weights under a version name) and switches
        path = tmp_path / "data" / "notes"
        model_dir = versions.models_dir(path) / "tuned-test"
        shutil.copytree(embedder.model_dir, model_dir)
        versions.write_card(model_dir, {"version": model_dir.name, "base": {"name": embedder.name}})
        switched = switch_to(path, settings, model_dir)
        assert switched.activated and switched.model_name != base

        assert client.get("/v1/collections/notes").json()["embedding_model"] == switched.model_name
        hits = client.post("/v1/collections/notes/search", json={"query": "who made the lens", "mode": "dense"})
        assert hits.status_code == 200 and hits.json()["hits"][0]["source"] == "lens.md"
        # ingestion goes on with the new model (before: EmbedderMismatch until the server was restarted)
        add_text(client, "notes", "tide.md", "Spring tides follow the new and full moon.")

        back = rollback(path, settings)
        assert back.model_name == base
        assert client.get("/v1/collections/notes").json()["embedding_model"] == base
        hits = client.post("/v1/collections/notes/search", json={"query": "spring tides moon", "mode": "dense"})
        assert hits.json()["hits"][0]["source"] == "tide.md"  # embedded by the rollback for the base model
