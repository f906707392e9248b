"""The process's Qdrant clients (one per server URL or local directory) and the listing of a tenant's
collections; `QdrantStore` and the store catalog reach them through ragworks.store.qdrant.
"""

from __future__ import annotations

import atexit
import threading
from pathlib import Path

from ragworks.config import Settings
from ragworks.errors import ConfigError
from ragworks.store.qdrant_payload import collection_name

try:  # the `qdrant` extra
    from qdrant_client import QdrantClient
    from qdrant_client import models as qm
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("the Qdrant store needs the `qdrant` extra: pip install 'ragworks[qdrant]'") from exc

_CLIENTS: dict[tuple[str, str], QdrantClient] = {}
_CLIENTS_LOCK = threading.Lock()
_WRITE_LOCKS: dict[str, threading.Lock] = {}


def shared_client(*, url: str | None = None, api_key: str | None = None, path: str | Path | None = None
                  ) -> QdrantClient:
    """The process's client for one server or local directory (local mode allows one client per directory)."""
    if (url is None) == (path is None):
        raise ConfigError("the Qdrant store needs exactly one of qdrant_url or qdrant_path")
    key = ("url", url) if url is not None else ("path", str(Path(str(path)).resolve()))
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(key)
        if client is None:
            if url is not None:
                client = QdrantClient(url=url, api_key=api_key)
            else:
                Path(str(path)).mkdir(parents=True, exist_ok=True)
                client = QdrantClient(path=str(path))
            _CLIENTS[key] = client
        return client


def close_client(client: QdrantClient) -> None:
    """Close a shared client and forget it (local mode: frees its directory for another client)."""
    with _CLIENTS_LOCK:
        for key, known in list(_CLIENTS.items()):
            if known is client:
                del _CLIENTS[key]
    client.close()


@atexit.register
def _close_clients() -> None:
    for client in list(_CLIENTS.values()):
        close_client(client)


def client_for(settings: Settings) -> QdrantClient:
    """The shared client for `settings`: qdrant_url (+ qdrant_api_key), else qdrant_path, else data_dir/qdrant."""
    if settings.qdrant_url is not None:
        key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        return shared_client(url=settings.qdrant_url, api_key=key)
    return shared_client(path=settings.qdrant_path or settings.data_dir / "qdrant")


def list_collections(client: QdrantClient, tenant: str, prefix: str = "ragworks") -> list[str]:
    """The names of one tenant's collections (from each Qdrant collection's meta point)."""
    names = []
    for c in client.get_collections().collections:
        if not c.name.startswith(prefix + "_"):
            continue
        found = client.scroll(c.name, scroll_filter=qm.Filter(must=[
            qm.FieldCondition(key="kind", match=qm.MatchValue(value="meta")),
            qm.FieldCondition(key="tenant", match=qm.MatchValue(value=tenant))]), limit=1, with_payload=True)[0]
        if found and c.name == collection_name(prefix, tenant, str((found[0].payload or {})["collection"])):
            names.append(str((found[0].payload or {})["collection"]))
    return sorted(names)


def _is_local(client: QdrantClient) -> bool:
    """Whether `client` is qdrant-client's local mode (its in-process implementation), not a server."""
    from qdrant_client.local.qdrant_local import QdrantLocal

    return isinstance(getattr(client, "_client", None), QdrantLocal)
