"""Everything the routes share, built once per app: settings, models, open collections, keys, jobs, metrics."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ragworks.audit import AuditLog
from ragworks.config import Settings
from ragworks.generate.base import LLM
from ragworks.jobs import JobQueue
from ragworks.server.keys import KeyStore
from ragworks.server.metrics import ServerMetrics
from ragworks.server.models import SharedEmbedder
from ragworks.server.ratelimit import TokenBucketLimiter
from ragworks.server.tenants import CollectionCache
from ragworks.tenancy import LOCAL_TENANT, Tenant, tenant_for


def auth_enabled(settings: Settings, keys: KeyStore) -> bool:
    """`auth=auto` turns auth on as soon as there is an admin key or any API key: never open by accident."""
    if settings.auth != "auto":
        return settings.auth == "on"
    return settings.admin_key is not None or keys.has_keys()


def auth_description(settings: Settings, keys: KeyStore) -> str:
    """One line for `ragworks serve` to print."""
    if not auth_enabled(settings, keys):
        why = "auth=off" if settings.auth == "off" else "no admin key and no API keys configured"
        return f"auth disabled ({why}): one local user, collections under {settings.data_dir}"
    why = "auth=on" if settings.auth == "on" else (
        "an admin key is configured" if settings.admin_key is not None else "API keys exist")
    return (f"auth enabled ({why}): API key required, tenants' collections under "
            f"{settings.data_dir / 'tenants'}/<tenant>")


AUTH_RECHECK_S = 2.0


@dataclass
class ServerContext:
    settings: Settings
    embedder: SharedEmbedder
    llm: LLM | None
    collections: CollectionCache
    keys: KeyStore
    limiter: TokenBucketLimiter
    jobs: JobQueue
    metrics: ServerMetrics
    audit: AuditLog | None = None  # who read what (ids only); None when `audit` is off
    started: float = field(default_factory=time.time)
    _auth: tuple[float, bool] = (0.0, False)  # (checked at, enabled)

    @property
    def auth(self) -> bool:
        """Whether requests need an API key. Under auth=auto this is re-checked every couple of seconds, so a
        key created with `ragworks admin` while the server runs closes it without a restart."""
        checked, enabled = self._auth
        if enabled or (time.monotonic() - checked < AUTH_RECHECK_S and checked):
            return enabled
        enabled = auth_enabled(self.settings, self.keys)
        self._auth = (time.monotonic(), enabled)
        return enabled

    @property
    def timeout_s(self) -> float:
        return self.settings.request_timeout_s

    def local_tenant(self) -> Tenant:
        return tenant_for(self.settings, LOCAL_TENANT)
