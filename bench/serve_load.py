"""HTTP load benchmark: concurrent clients against `ragworks serve` (embedded backend) on 127.0.0.1.

    .venv/bin/python bench/serve_load.py                          # 8 clients, 20 s of search, 20 s of ask
    .venv/bin/python bench/serve_load.py --duration 10 --clients 4 --phases search
    .venv/bin/python bench/serve_load.py --soak 600               # 10 minutes of mixed load: errors, RSS trend

The collection (10,000 chunks by default) is built once from SQuAD v1.1 dev paragraphs (then SciFact abstracts
if more are needed), chunked at 64 tokens, and cached under ~/.cache/ragworks-bench/. The server runs in its own
process (`python -m ragworks.cli serve`, auth off, extractive answers, no rate limit); clients are threads, each
with its own httpx connection, asking SQuAD dev questions in a closed loop (send, wait, send again).

Reported per phase: requests, QPS, latency p50/p95/p99/max, errors, and the server's RSS at the start and end.
Target (from the issue): hybrid `/v1/collections/{name}/search` p95 <= 50 ms with 8 concurrent clients.
Results go to `--out` (JSON) and a table on stdout. The machine may be shared: the load average is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parent.parent
SHARED = (REPO / ".." / "shared" / "data").resolve()
DEFAULT_OUT = REPO / "bench" / "results" / "serve_load.json"
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


# --- the server ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Server:
    def __init__(self, data_dir: Path, log_path: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "RAGWORKS_LLM": "extractive",
            "RAGWORKS_RATE_LIMIT_PER_MINUTE": "0",
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
        self.log = log_path.open("w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ragworks.cli",
                "serve",
                "--data-dir",
                str(data_dir),
                "--port",
                str(self.port),
                "--auth",
                "off",
                "--log-level",
                "warning",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )
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
        return rss_mib(self.proc.pid)

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
) -> tuple[Samples, float]:
    """Closed-loop clients for `seconds`; returns all samples and the measured wall time."""
    results = [Samples() for _ in range(clients)]
    stop = threading.Event()
    barrier = threading.Barrier(clients + 1)

    def client(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        mine = results[i]
        with httpx.Client(base_url=base, timeout=60) as http:
            barrier.wait()
            while not stop.is_set():
                kind = "ask" if rng.random() < ask_fraction else "search"
                path, body = request_body(kind, rng.choice(questions), mode, k)
                t0 = time.perf_counter()
                try:
                    r = http.post(path, json=body)
                    ok = r.status_code == 200
                    err = "" if ok else f"HTTP {r.status_code}: {r.text[:200]}"
                except httpx.HTTPError as exc:
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per phase")
    ap.add_argument("--phases", default="search,ask", help="comma-separated: search, ask")
    ap.add_argument("--mode", default="hybrid", choices=["dense", "bm25", "hybrid"])
    ap.add_argument("-k", type=int, default=8)
    ap.add_argument("--chunks", type=int, default=10_000, help="size of the collection")
    ap.add_argument("--soak", type=float, default=0.0, help="seconds of mixed load (10%% ask) instead of phases")
    ap.add_argument("--cache", type=Path, default=default_cache())
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    data_dir = args.cache / f"serve-load-{args.chunks}"
    data_dir.mkdir(parents=True, exist_ok=True)
    corpus = build_collection(data_dir, args.chunks, args.data)
    questions = squad_questions(args.data)
    load_before = list(os.getloadavg())
    server = Server(data_dir, data_dir / "server.log")
    rows: list[dict[str, Any]] = []
    rss_trace: list[tuple[float, float]] = []
    try:
        run_load(
            server.base, clients=2, seconds=3, questions=questions, ask_fraction=0.2, mode=args.mode, k=args.k, seed=99
        )  # warm-up: caches, FAISS index, thread pool
        if args.soak:
            phases = [("soak", 0.1, args.soak)]
        else:
            phases = [(p, 1.0 if p == "ask" else 0.0, args.duration) for p in args.phases.split(",")]
        for name, ask_fraction, seconds in phases:
            rss_start = server.rss_mib
            t_phase = time.perf_counter()

            def tick(t: float, t0: float = t_phase) -> None:
                if not rss_trace or t - rss_trace[-1][0] >= 5:
                    rss_trace.append((round(time.perf_counter() - t0, 1), round(server.rss_mib, 1)))

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
            )
            row = {
                "phase": f"{name} ({args.mode})",
                "clients": args.clients,
                "seconds": round(elapsed, 1),
                **summarize(samples, elapsed),
                "rss_start_mib": round(rss_start, 1),
                "rss_end_mib": round(server.rss_mib, 1),
            }
            if name == "soak":
                row["by_kind"] = {k: summarize(samples, elapsed, k) for k in ("search", "ask")}
            if samples.errors:
                row["first_errors"] = sorted(set(samples.errors))[:5]
            rows.append(row)
    finally:
        server.stop()
    load_after = list(os.getloadavg())

    print_table(rows)
    search = next((r for r in rows if r["phase"].startswith("search")), None)
    verdict = None
    if search and search.get("requests"):
        verdict = search["p95_ms"] <= TARGET_P95_MS
        print(
            f"\ntarget: {args.mode} search p95 <= {TARGET_P95_MS:.0f} ms with {args.clients} clients: "
            f"{search['p95_ms']} ms -> {'PASS' if verdict else 'FAIL'}"
        )
    if args.soak and rss_trace:
        print(f"RSS over the soak (s, MiB): {rss_trace}")
    print(f"load average before {load_before}, after {load_after} ({os.cpu_count()} CPUs; the machine may be shared)")
    result = {
        "benchmark": "serve_load",
        "collection": corpus,
        "clients": args.clients,
        "mode": args.mode,
        "k": args.k,
        "rows": rows,
        "target_p95_ms": TARGET_P95_MS,
        "target_met": verdict,
        "rss_trace": rss_trace,
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
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
