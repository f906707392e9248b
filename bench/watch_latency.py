"""How soon `ragworks watch` makes a new, a changed and a deleted file searchable (target: within 5 s).

    python bench/watch_latency.py [--rounds 5] [--seed-files 50]

Runs the real CLI as a user would: `ragworks source add` a folder, `ragworks sync`, then `ragworks watch` in a
subprocess (filesystem events, then `--poll`). This process writes, rewrites and deletes files in the folder and
reads the collection (another process's reader, as a server would) until the change is there. The first change
after start-up is a warm-up (caches, first embedding) and is not counted; the time `watch` takes to start (it loads
the embedding model before watching) is reported on its own row. Prints a table and writes
bench/results/watch_latency.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from ragworks.collection import Collection
from ragworks.config import Settings

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
TIMEOUT_S = 60.0
WORDS = ["heron", "otter", "lantern", "harbour", "quarry", "orchard", "glacier", "meadow", "falcon", "compass"]


def cli(*args: str, data_dir: Path) -> list[str]:
    return [sys.executable, "-m", "ragworks.cli", *args, "--data-dir", str(data_dir)]


def note(i: int, word: str) -> str:
    return f"# Note {i}\n\nThis note is about the {word} and nothing else. " * 3 + "\n"


def wait_for(check: Callable[[], bool]) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < TIMEOUT_S:
        if check():
            return time.perf_counter() - started
        time.sleep(0.02)
    raise TimeoutError(f"change not visible after {TIMEOUT_S} s")


def measure(mode: str, rounds: int, seed_files: int, work: Path) -> dict[str, list[float]]:
    folder, data = work / f"folder-{mode}", work / f"data-{mode}"
    folder.mkdir()
    for i in range(seed_files):
        (folder / f"seed-{i}.md").write_text(note(i, WORDS[i % len(WORDS)]))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    subprocess.run(cli("source", "add", "notes", str(folder), "--interval", "3600", data_dir=data), check=True,
                   env=env, capture_output=True)
    subprocess.run(cli("sync", "notes", "--json", data_dir=data), check=True, env=env, capture_output=True)
    started = time.perf_counter()
    watcher = subprocess.Popen(cli("watch", "notes", *(["--poll"] if mode == "polling" else []), data_dir=data),
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert watcher.stderr is not None
    for line in watcher.stderr:  # "watching …" once the model is loaded and the observers run
        if line.startswith("watching"):
            break
    ready_s = time.perf_counter() - started
    threading.Thread(target=watcher.stderr.read, daemon=True).start()  # keep draining: a full pipe would block it
    col = Collection.open("notes", settings=Settings(data_dir=data), create=False)
    store = col.store
    latencies: dict[str, list[float]] = {"new": [], "changed": [], "deleted": [], "start_s": [ready_s]}
    try:
        for r in range(rounds + 1):
            path = folder / f"round-{r}.md"
            key = str(path.resolve())
            path.write_text(note(r, f"{WORDS[r % len(WORDS)]}-{r}-new"))
            new = wait_for(lambda key=key: bool(store.documents_from(key)))  # type: ignore[misc]
            before = dict(store.documents_from(key))
            path.write_text(note(r, f"{WORDS[r % len(WORDS)]}-{r}-changed"))
            changed = wait_for(lambda key=key, before=before: store.documents_from(key) != before)  # type: ignore[misc]
            path.unlink()
            deleted = wait_for(lambda key=key: not store.documents_from(key))  # type: ignore[misc]
            if r == 0:
                print(f"{mode}: ready after {ready_s:.1f} s (model load); warm-up new {new:.2f} s", file=sys.stderr)
                continue
            latencies["new"].append(new)
            latencies["changed"].append(changed)
            latencies["deleted"].append(deleted)
            print(f"{mode} round {r}: new {new:.2f} s, changed {changed:.2f} s, deleted {deleted:.2f} s",
                  file=sys.stderr)
    finally:
        col.close()
        watcher.send_signal(signal.SIGINT)
        try:
            watcher.wait(timeout=20)
        except subprocess.TimeoutExpired:
            watcher.kill()
    return latencies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seed-files", type=int, default=50)
    ap.add_argument("--modes", nargs="+", default=["events", "polling"], choices=["events", "polling"])
    args = ap.parse_args()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ragworks-watch-bench-") as tmp:
        for mode in args.modes:
            lat = measure(mode, args.rounds, args.seed_files, Path(tmp))
            start = lat.pop("start_s")[0]
            rows.append({"mode": mode, "change": "start (model load)", "n": 1, "p50_s": round(start, 3),
                         "max_s": round(start, 3)})
            for kind, values in lat.items():
                rows.append({"mode": mode, "change": kind, "n": len(values),
                             "p50_s": round(statistics.median(values), 3), "max_s": round(max(values), 3)})
    header = "| mode | change | rounds | p50 s | max s | within 5 s |\n|---|---|---|---|---|---|\n"
    table = header + "".join(f"| {r['mode']} | {r['change']} | {r['n']} | {r['p50_s']:.2f} | {r['max_s']:.2f} | "
                             f"{'-' if r['change'].startswith('start') else 'yes' if r['max_s'] <= 5 else 'no'} |\n"
                             for r in rows)
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"rounds": args.rounds, "seed_files": args.seed_files, "cpus": os.cpu_count(), "loadavg": os.getloadavg(),
            "python": platform.python_version(), "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    (RESULTS / "watch_latency.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    (RESULTS / "watch_latency.md").write_text(
        "# `ragworks watch`: time from a file change to the collection showing it\n\n"
        f"{args.seed_files} seed files, {args.rounds} rounds after a warm-up, {os.cpu_count()} CPUs "
        "(shared machine); a reader in another process polls every 20 ms.\n\n" + table)


if __name__ == "__main__":
    main()
