"""`ragworks serve` as a user runs it: a subprocess that says whether auth is on, serves, and stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from pydantic import SecretStr

from ragworks.config import Settings
from ragworks.server.context import auth_description
from ragworks.server.keys import KeyStore


@pytest.mark.slow
def test_serve_prints_the_auth_mode_serves_and_stops_on_sigterm(tmp_path, kit):
    port = kit.free_port()
    env = {**os.environ, "RAGWORKS_DATA_DIR": str(tmp_path / "data"), "RAGWORKS_LLM": "extractive"}
    env.pop("RAGWORKS_ADMIN_KEY", None)
    log = (tmp_path / "serve.log").open("w+")
    proc = subprocess.Popen([sys.executable, "-m", "ragworks.cli", "serve", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env=env, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "the server did not get ready"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    out = (tmp_path / "serve.log").read_text()
    assert "auth disabled (no admin key and no API keys configured)" in out
    assert f"serving on http://127.0.0.1:{port}/" in out
    assert "Application shutdown complete" in out
    assert code in (0, -signal.SIGTERM), out  # uvicorn re-raises the signal once it has shut down cleanly


def test_the_auth_line_says_why(tmp_path):
    keys = KeyStore(tmp_path)
    assert auth_description(Settings(data_dir=tmp_path), keys).startswith("auth disabled (no admin key")
    assert auth_description(Settings(data_dir=tmp_path, auth="off"), keys).startswith("auth disabled (auth=off)")
    admin = Settings(data_dir=tmp_path, admin_key=SecretStr("k"))
    assert auth_description(admin, keys).startswith("auth enabled (an admin key is configured)")
    keys.create_tenant("acme")
    keys.create_key("acme")
    assert auth_description(Settings(data_dir=tmp_path), keys).startswith("auth enabled (API keys exist)")
    keys.close()
