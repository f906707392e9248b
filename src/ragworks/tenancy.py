"""Tenants: who a request or job acts for, and the directory that holds everything of theirs.

With auth on, tenant T's collections live in `data_dir/tenants/T/<collection>` and its jobs in
`data_dir/tenants/T/jobs.sqlite3`. With auth off — and for the CLI — one local tenant (the `tenant` setting,
"default") uses `data_dir` itself. The server, the job queues and Celery workers all resolve tenants here, so a
worker needs no web framework.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ragworks.config import DEFAULT_TENANT, Settings
from ragworks.errors import InvalidName

LOCAL_TENANT = DEFAULT_TENANT  # with auth off: Settings.tenant, the CLI's tenant, under data_dir itself
TENANTS_DIR = "tenants"

TENANT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
COLLECTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_tenant_name(name: str) -> str:
    if not TENANT_NAME.match(name) or name == LOCAL_TENANT:
        raise InvalidName(f"invalid tenant name {name!r}: lowercase letters, digits, '-' and '_', at most 63 "
                       f"characters, not {LOCAL_TENANT!r}")
    return name


def check_collection_name(name: str) -> str:
    if not COLLECTION_NAME.match(name) or name == TENANTS_DIR or name.endswith(".sqlite3"):
        raise InvalidName(f"invalid collection name {name!r}: letters, digits, '.', '-' and '_', at most 64 "
                       "characters, starting with a letter or digit")
    return name


@dataclass(frozen=True, slots=True)
class Tenant:
    """Who a request acts for, and the directory that holds everything of theirs."""

    name: str
    root: Path

    def collection_dir(self, name: str) -> Path:
        return self.root / check_collection_name(name)

    @property
    def jobs_db(self) -> Path:
        return self.root / "jobs.sqlite3"


def local_tenant(settings: Settings) -> Tenant:
    """The tenant with auth off, the same the CLI uses (`tenant` setting): collections right under data_dir."""
    return Tenant(settings.tenant, settings.data_dir)


def tenant_for(settings: Settings, name: str) -> Tenant:
    if name in (LOCAL_TENANT, settings.tenant):
        return local_tenant(settings)
    return Tenant(name, settings.data_dir / TENANTS_DIR / check_tenant_name(name))


def existing_tenants(settings: Settings) -> Iterator[Tenant]:
    """Every tenant root on disk (the local one included), e.g. to resume their unfinished jobs."""
    yield local_tenant(settings)
    base = settings.data_dir / TENANTS_DIR
    if base.is_dir():
        for d in sorted(base.iterdir()):
            if d.is_dir() and TENANT_NAME.match(d.name):
                yield Tenant(d.name, d)
