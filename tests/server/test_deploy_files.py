"""Dockerfile, docker-compose.yml and deploy/k8s describe the process layout the tests run (no Docker here:
the files are parsed and checked against Settings and the app's routes)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from ragworks.config import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
NOT_SETTINGS = {"HF_HUB_OFFLINE", "TOKENIZERS_PARALLELISM", "PYTHONUNBUFFERED", "PATH"}


def _settings_var(name: str) -> bool:
    return name.startswith("RAGWORKS_") and name.removeprefix("RAGWORKS_").lower() in Settings.model_fields


def _compose_default(value: str) -> str:
    """A compose value with `${VAR:-default}` replaced by its default (what runs when VAR is unset)."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", value)


def _k8s_docs() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _kind(kind: str, name: str) -> dict[str, Any]:
    found = [d for d in _k8s_docs() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}"
    return found[0]


def test_every_environment_variable_in_the_deploy_files_is_a_setting() -> None:
    names: set[str] = set()
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for service in compose["services"].values():
        names |= {k for k in (service.get("environment") or {}) if k.startswith("RAGWORKS_")}
    for doc in _k8s_docs():
        if doc["kind"] in ("ConfigMap", "Secret"):
            names |= set(doc.get("data") or {}) | set(doc.get("stringData") or {})
    names |= set(re.findall(r"\b(RAGWORKS_[A-Z0-9_]+)=", (ROOT / "Dockerfile").read_text()))
    assert "RAGWORKS_REDIS_URL" in names and "RAGWORKS_POSTGRES_DSN" in names
    unknown = sorted(n for n in names - NOT_SETTINGS if not _settings_var(n))
    assert not unknown, f"not Settings fields: {unknown}"


def test_compose_runs_api_replicas_workers_redis_and_pgvector() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert services["postgres"]["image"] == "pgvector/pgvector:pg17"
    assert services["redis"]["image"].startswith("redis:")
    assert services["api"]["command"] == ["ragworks", "serve"] and services["api"]["deploy"]["replicas"] >= 2
    assert services["worker"]["command"][:2] == ["ragworks", "worker"]
    for name in ("api", "worker"):
        env = services[name]["environment"]
        assert env["RAGWORKS_QUEUE_BACKEND"] == "celery"
        assert _compose_default(env["RAGWORKS_STORE_BACKEND"]) == "postgres"
        assert "redis://redis:" in env["RAGWORKS_REDIS_URL"] and "@postgres:" in env["RAGWORKS_POSTGRES_DSN"]
        assert "ragworks-data:/data" in services[name]["volumes"], "API and workers share uploads"
        Settings(**{k.removeprefix("RAGWORKS_").lower(): _compose_default(v) for k, v in env.items()
                    if k != "RAGWORKS_ADMIN_KEY"})  # every value validates


def test_dockerfile_is_cpu_only_non_root_with_a_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "download.pytorch.org/whl/cpu" in text
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and not users[-1].startswith(("0", "root"))
    assert re.search(r"^HEALTHCHECK .*", text, re.M) and "/healthz" in text
    assert re.search(r'^CMD \["ragworks", "serve"\]', text, re.M)
    assert ".venv" in (ROOT / ".dockerignore").read_text()


def test_k8s_deployments_probe_the_real_health_routes() -> None:
    from ragworks.server import create_app

    app = create_app(Settings(data_dir=Path("/tmp/ragworks-deploy-test")), start_jobs=False)
    routes = set(app.openapi()["paths"])
    api = _kind("Deployment", "ragworks-api")["spec"]["template"]["spec"]
    (container,) = api["containers"]
    assert container["args"] == ["ragworks", "serve"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz" in routes
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz" in routes
    assert api["securityContext"]["runAsNonRoot"] is True
    sources = {next(iter(s.values()))["name"] for s in container["envFrom"]}
    assert sources == {"ragworks-config", "ragworks-secrets"}
    _kind("ConfigMap", "ragworks-config"), _kind("Secret", "ragworks-secrets")
    service = _kind("Service", "ragworks-api")
    assert service["spec"]["selector"] == _kind("Deployment", "ragworks-api")["spec"]["selector"]["matchLabels"]
    worker = _kind("Deployment", "ragworks-worker")["spec"]["template"]["spec"]
    assert worker["containers"][0]["args"][:2] == ["ragworks", "worker"]
    assert "ragworks.worker.app" in " ".join(worker["containers"][0]["livenessProbe"]["exec"]["command"])
    claims = {v["persistentVolumeClaim"]["claimName"] for spec in (api, worker) for v in spec["volumes"]}
    assert claims == {"ragworks-data"}
    assert _kind("PersistentVolumeClaim", "ragworks-data")["spec"]["accessModes"] == ["ReadWriteMany"]


def test_qdrant_is_a_compose_profile_and_a_k8s_overlay() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    qdrant = compose["services"]["qdrant"]
    assert qdrant["image"].startswith("qdrant/qdrant:") and qdrant["profiles"] == ["qdrant"]
    env = compose["services"]["api"]["environment"]
    assert env["RAGWORKS_QDRANT_URL"] == "http://qdrant:6333" and "qdrantdata:/qdrant/storage" in qdrant["volumes"]
    Settings(store_backend="qdrant", qdrant_url=env["RAGWORKS_QDRANT_URL"])
    overlay = yaml.safe_load((K8S / "qdrant" / "kustomization.yaml").read_text())
    assert overlay["resources"] == ["../", "qdrant.yaml"]
    ops = yaml.safe_load(overlay["patches"][0]["patch"])
    assert {o["path"]: o["value"] for o in ops} == {"/data/RAGWORKS_STORE_BACKEND": "qdrant",
                                                    "/data/RAGWORKS_QDRANT_URL": "http://ragworks-qdrant:6333"}
    docs = [d for d in yaml.safe_load_all((K8S / "qdrant" / "qdrant.yaml").read_text()) if d]
    service = next(d for d in docs if d["kind"] == "Service")
    assert service["metadata"]["name"] == "ragworks-qdrant" and service["spec"]["ports"][0]["port"] == 6333
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    assert sts["spec"]["template"]["metadata"]["labels"] == service["spec"]["selector"]


@pytest.mark.parametrize("path", sorted(p.name for p in K8S.glob("*.yaml")))
def test_k8s_files_are_listed_in_the_kustomization(path: str) -> None:
    if path == "kustomization.yaml":
        return
    assert path in yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
