"""`ragworks worker`: run a Celery worker for `queue_backend = "celery"` (registered in ragworks.cli)."""

from __future__ import annotations

from typing import Annotated

import typer

from ragworks.errors import RagworksError


def worker(
    pool: Annotated[str, typer.Option(help="solo | prefork | threads (prefork isolates each job in a child).")]
    = "prefork",
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", help="Jobs run at once.")] = 1,
    hostname: Annotated[str | None, typer.Option("--hostname", "-n", help="Worker name (default celery@host).")]
    = None,
    queues: Annotated[str | None, typer.Option("--queues", "-Q", help="Comma-separated queues to consume.")]
    = None,
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
) -> None:
    """Run a Celery worker that executes ingestion jobs queued by `ragworks serve` (queue_backend=celery)."""
    try:
        from ragworks.worker.app import app as celery_app
    except ImportError as exc:
        raise RagworksError(f"`ragworks worker` needs celery and redis ({exc.name} is missing): "
                            "pip install 'ragworks[queue]'") from None
    if pool not in ("solo", "prefork", "threads"):
        raise RagworksError(f"--pool must be solo, prefork or threads (got {pool!r})")
    argv = ["worker", f"--pool={pool}", f"--concurrency={concurrency}", f"--loglevel={loglevel}",
            "--without-gossip", "--without-mingle"]
    if hostname:
        argv.append(f"--hostname={hostname}")
    if queues:
        argv.append(f"--queues={queues}")
    celery_app.worker_main(argv)
