"""`ragworks serve --workers N`: N uvicorn worker processes behind one listening socket, with connections dealt
out round-robin by the parent.

uvicorn's own `--workers` lets every process `accept()` on a shared socket; the kernel then hands a burst of new
keep-alive connections to whichever process is waiting, so 8 clients often land 6/2 on 2 processes and the busy
one sets the tail latency (measured: 145 QPS, vs 270+ with the same connections split 4/4). Here the parent
accepts, and passes each connection's file descriptor to the next worker over a Unix socket (SCM_RIGHTS, as
Node's cluster module does); workers serve connections they are handed and never accept. The parent also
restarts a worker that dies, and on SIGTERM/SIGINT stops accepting and lets the workers finish their requests.
Workers write their Prometheus samples to a shared directory (multiprocess mode), so `/metrics` on any of them
counts every worker's requests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import select
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import uvicorn

log = logging.getLogger("ragworks.server.balancer")

RESTART_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)  # a worker that keeps dying is restarted ever more slowly
SEND_TIMEOUT_S = 1.0  # a worker that cannot take a connection in this time is skipped for this one


def supported() -> bool:
    """Descriptor passing needs Unix sockets with SCM_RIGHTS (every Unix; not Windows)."""
    return hasattr(socket, "send_fds") and hasattr(socket, "AF_UNIX")


# --- worker side -------------------------------------------------------------------------------------------------


class HandedServer(uvicorn.Server):
    """A uvicorn server that listens on nothing and serves the connections whose descriptors arrive on `channel`."""

    def __init__(self, config: uvicorn.Config, channel: socket.socket,
                 ready: Callable[[], bool] = lambda: True) -> None:
        super().__init__(config)
        self.channel = channel
        self.ready = ready  # the app can answer (its embedding model is loaded)
        self._tasks: set[asyncio.Task[None]] = set()  # referenced until done (the loop keeps only weak ones)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])  # lifespan, state; no listeners of its own
        loop = asyncio.get_running_loop()
        self.channel.setblocking(False)
        loop.add_reader(self.channel.fileno(), self._receive, loop)
        self._spawn(loop, self._announce_ready())

    def _spawn(self, loop: asyncio.AbstractEventLoop, work: Coroutine[Any, Any, None]) -> None:
        task = loop.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _announce_ready(self, timeout_s: float = 600.0) -> None:
        """Tell the parent once the app is ready, so it prefers this worker from then on."""
        deadline = time.monotonic() + timeout_s
        while not self.ready() and time.monotonic() < deadline and not self.should_exit:
            await asyncio.sleep(0.1)
        with contextlib.suppress(OSError):
            self.channel.send(b"r")

    def _protocol(self, loop: asyncio.AbstractEventLoop) -> asyncio.Protocol:
        # what uvicorn.Server.startup builds for its own listeners
        return self.config.http_protocol_class(  # type: ignore[call-arg]
            config=self.config, server_state=self.server_state, app_state=self.lifespan.state, _loop=loop)

    def _receive(self, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            try:  # one byte carries one descriptor: never two connections' fds in one read
                data, fds, _flags, _addr = socket.recv_fds(self.channel, 1, 1)
            except BlockingIOError:
                return
            except OSError as exc:
                log.error("connection channel failed (%s); stopping", exc)
                data, fds = b"", []
            if not data and not fds:  # the parent went away: finish what is in flight and exit
                loop.remove_reader(self.channel.fileno())
                self.should_exit = True
                return
            for fd in fds:
                conn = socket.socket(fileno=fd)
                conn.setblocking(False)
                self._spawn(loop, self._serve_connection(loop, conn))

    async def _serve_connection(self, loop: asyncio.AbstractEventLoop, conn: socket.socket) -> None:
        try:
            await loop.connect_accepted_socket(lambda: self._protocol(loop), conn)
        except OSError:  # the client hung up before the worker got to it
            conn.close()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(self.channel.fileno())
        await super().shutdown(sockets=sockets)


def worker_main(argv: list[str] | None = None) -> None:
    """Entry of a worker process: `python -m ragworks.server.balancer --fd N` (settings from RAGWORKS_*)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--fd", type=int, required=True)
    ap.add_argument("--log-level", default="info")
    args = ap.parse_args(argv)
    from ragworks.server.app import create_app_from_env

    channel = socket.socket(fileno=args.fd)
    app = create_app_from_env()
    config = uvicorn.Config(app, log_level=args.log_level)
    HandedServer(config, channel, ready=lambda: bool(app.state.ctx.embedder.ready)).run(sockets=[])


# --- parent side -------------------------------------------------------------------------------------------------


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    channel: socket.socket  # the parent's end
    started: float = field(default_factory=time.monotonic)
    restarts: int = 0
    ready: bool = False  # its app has started (it said so on the channel)

    def check_ready(self) -> bool:
        if not self.ready and select.select([self.channel], [], [], 0)[0]:  # never wait here
            with contextlib.suppress(OSError):  # its end is gone: the supervisor restarts it
                self.ready = self.channel.recv(16).startswith(b"r")
        return self.ready


class Balancer:
    """Binds host:port, starts `count` workers and deals accepted connections to them round-robin."""

    def __init__(self, host: str, port: int, count: int, *, log_level: str = "info",
                 env: dict[str, str] | None = None, backlog: int = 2048) -> None:
        if count < 1:
            raise ValueError("count must be at least 1")
        self.count = count
        self.log_level = log_level
        # the workers' Prometheus samples go to files here, so any worker's /metrics reports all of them
        self.metrics_dir = tempfile.mkdtemp(prefix="ragworks-metrics-")
        self.env = {**os.environ, **(env or {}), "PROMETHEUS_MULTIPROC_DIR": self.metrics_dir}
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        self.listener = socket.create_server((host, port), family=family, backlog=backlog,
                                             dualstack_ipv6=False)
        self.workers: list[Worker] = []
        self._next = 0
        self._stopping = False

    def _spawn(self, restarts: int = 0) -> Worker:
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "ragworks.server.balancer", "--fd", str(child_end.fileno()),
                 "--log-level", self.log_level],
                pass_fds=[child_end.fileno()], env=self.env)
        finally:
            child_end.close()
        parent_end.settimeout(SEND_TIMEOUT_S)
        return Worker(proc, parent_end, restarts=restarts)

    def start(self) -> None:
        self.workers = [self._spawn() for _ in range(self.count)]

    def deal(self, conn: socket.socket) -> bool:
        """Hand `conn` to the next live worker, preferring those whose app has started (a restarted worker loading
        its model would hold the connection for seconds); False when none could take it (the connection is then
        closed)."""
        try:
            any_ready = sum(w.check_ready() for w in self.workers) > 0
            for _ in range(len(self.workers)):
                worker = self.workers[self._next % len(self.workers)]
                self._next += 1
                if worker.proc.poll() is not None or (any_ready and not worker.ready):
                    continue
                try:
                    socket.send_fds(worker.channel, [b"c"], [conn.fileno()])
                except OSError:  # dead, or its channel is full: the next worker takes it
                    continue
                return True
            return False
        finally:
            conn.close()  # the worker holds its own copy of the descriptor now

    def supervise(self) -> None:
        """Restart workers that exited while the balancer is running."""
        for i, worker in enumerate(self.workers):
            code = worker.proc.poll()
            if code is None or self._stopping:
                continue
            wait = RESTART_BACKOFF_S[min(worker.restarts, len(RESTART_BACKOFF_S) - 1)]
            if time.monotonic() - worker.started < wait:
                continue
            log.warning("worker %d (pid %d) exited with %s; restarting", i, worker.proc.pid, code)
            worker.channel.close()
            # a worker that ran a while before dying starts its backoff over
            restarts = 0 if time.monotonic() - worker.started > 60 else worker.restarts + 1
            self.workers[i] = self._spawn(restarts)

    def serve_forever(self, poll_s: float = 0.5) -> None:
        self.listener.setblocking(False)
        with selectors.DefaultSelector() as sel:
            sel.register(self.listener, selectors.EVENT_READ)
            while not self._stopping:
                for _key, _ev in sel.select(timeout=poll_s):
                    while True:
                        try:
                            conn, _addr = self.listener.accept()
                        except (BlockingIOError, InterruptedError):
                            break
                        except OSError as exc:  # e.g. EMFILE: keep serving, try again on the next wake-up
                            log.error("accept failed: %s", exc)
                            time.sleep(0.05)
                            break
                        self.deal(conn)
                self.supervise()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop accepting, ask the workers to finish (SIGTERM: uvicorn's graceful shutdown), kill stragglers."""
        self._stopping = True
        self.listener.close()
        for worker in self.workers:
            if worker.proc.poll() is None:
                worker.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for worker in self.workers:
            try:
                worker.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.proc.kill()
                worker.proc.wait()
            worker.channel.close()
        shutil.rmtree(self.metrics_dir, ignore_errors=True)

    def request_stop(self, *_args: Any) -> None:
        self._stopping = True


def serve(host: str, port: int, count: int, *, log_level: str = "info", env: dict[str, str] | None = None) -> None:
    """Run the balancer in the foreground until SIGINT/SIGTERM."""
    balancer = Balancer(host, port, count, log_level=log_level, env=env)
    previous = {sig: signal.signal(sig, balancer.request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        balancer.start()
        balancer.serve_forever()
    finally:
        balancer.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    worker_main()
