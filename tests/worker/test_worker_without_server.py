"""A Celery worker needs the queue extra, not the server's: its modules import with the web framework absent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BLOCK_SERVER = """
import sys
for name in ("fastapi", "starlette", "uvicorn", "sse_starlette", "multipart", "python_multipart"):
    sys.modules[name] = None  # any import of these now raises ImportError
import ragworks.worker.app, ragworks.worker.runner, ragworks.worker.tasks, ragworks.worker.cli
import ragworks.jobs.distributed, ragworks.jobs.embedded, ragworks.tenancy
assert not any(m.startswith("ragworks.server") for m in sys.modules), sorted(
    m for m in sys.modules if m.startswith("ragworks.server"))
print("ok")
"""


def test_worker_modules_import_without_fastapi_or_the_server_package() -> None:
    src = Path(__file__).resolve().parents[2] / "src"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", BLOCK_SERVER], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]
