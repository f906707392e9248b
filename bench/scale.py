"""Wikipedia scale on one machine: build an IVF-PQ index over N synthetic 384-d vectors and measure it.

    python bench/scale.py --sizes 100000,1000000     # the figures in bench/results/scale.json
    python bench/scale.py --sizes 20000              # CI size (~1 min)
    python bench/scale.py --fit-spectrum             # refit the synthetic spectrum to MiniLM on SciFact
    python bench/scale.py --ingest 20000,100000      # RSS per shard while a dump streams in (flat = bounded)

Vectors come from `ragworks.store.synthetic` (a Gaussian mixture whose mean direction, power-law covariance
spectrum and topic clustering are fitted to all-MiniLM-L6-v2 embeddings of SciFact; never uniform random, which
makes every ANN index look broken). Queries are held-out draws from the same mixture, perturbed. Each size runs
three phases, each in its own subprocess so one phase's peak RSS doesn't mask another's:

  generate  vectors → float16 file (what the re-ranker reads, like ingestion shards) + exact top-10 per query
  build     train IVF-PQ on a sample, add the vectors chunk by chunk, write the index file
  query     open the index memory-mapped, single-query search with exact re-ranking, per nprobe

Prints a table and the 21M-passage projection; writes bench/results/scale.json and scale.png.

`--ingest` streams a synthetic JSONL.gz dump (passages of SciFact words) through `ragworks.dumps.dump`:
embed into shards, then build the collection (SQLite + FTS5 + index), printing RSS after every shard. It
measures the pipeline's memory, so by default it embeds with a hashing stand-in (`--embedder hash`: random unit
vectors seeded by the text); `--embedder minilm` uses the real model (~30 passages/s on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
CHUNK = 65536
K = 10
WIKIPEDIA_PASSAGES = 21_000_000


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_split_mb() -> dict[str, float]:
    """Resident memory now: anonymous (heap: what the process really holds) and file-backed (page cache of
    memory-mapped files, which the kernel can drop under pressure)."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("RssAnon:", "RssFile:")):
                key, value = line.split(":")
                out[key.lower() + "_mb"] = int(value.split()[0]) / 1024
    return out


def _rows(path: Path, start: int, stop: int, dimension: int) -> np.ndarray:
    """Rows of a float16 .npy file read with plain file reads (a memory map would count the whole file as RSS)."""
    with open(path, "rb") as f:
        np.lib.format.read_magic(f)
        np.lib.format.read_array_header_1_0(f)
        f.seek(start * dimension * 2, os.SEEK_CUR)
        data = np.fromfile(f, dtype=np.float16, count=(stop - start) * dimension)
    return data.reshape(-1, dimension).astype(np.float32)


def phase_generate(n: int, work: Path, queries: int) -> dict[str, Any]:
    from tqdm import tqdm

    from ragworks.store.synthetic import SyntheticVectors

    gen = SyntheticVectors()
    q = gen.queries(queries)
    # plain writes, not a memory map: a writable map would count the whole file as this process's RSS
    out = open(work / "vectors.f16.npy", "wb")  # noqa: SIM115 - closed below, after the loop
    np.lib.format.write_array_header_1_0(out, {"descr": "<f2", "fortran_order": False, "shape": (n, gen.dimension)})
    best_s = np.full((queries, K), -np.inf, dtype=np.float32)
    best_i = np.full((queries, K), -1, dtype=np.int64)
    t0 = time.perf_counter()
    with tqdm(total=n, unit="vec", unit_scale=True, desc=f"generate {n:,}", file=sys.stderr) as bar:
        for start, x in gen.chunks(n, CHUNK):
            out.write(x.astype(np.float16).tobytes())
            # exact top-k against the float32 originals, merged 8k rows at a time (bounded score matrix)
            for sub in range(0, len(x), 8192):
                s = q @ x[sub : sub + 8192].T
                top = (
                    np.argpartition(-s, K, axis=1)[:, :K]
                    if s.shape[1] > K
                    else np.tile(np.arange(s.shape[1]), (queries, 1))
                )
                cand_s = np.concatenate([best_s, np.take_along_axis(s, top, 1)], 1)
                cand_i = np.concatenate([best_i, top + start + sub], 1)
                order = np.argsort(-cand_s, axis=1)[:, :K]
                best_s, best_i = np.take_along_axis(cand_s, order, 1), np.take_along_axis(cand_i, order, 1)
            bar.update(len(x))
    out.close()
    np.save(work / "queries.npy", q)
    np.save(work / "truth.npy", best_i)
    return {"seconds": time.perf_counter() - t0, "peak_rss_mb": peak_rss_mb()}


def phase_build(n: int, work: Path, index_type: str, opq: bool, pca: int) -> dict[str, Any]:
    import faiss
    from tqdm import tqdm

    from ragworks.store import ann

    faiss.omp_set_num_threads(os.cpu_count() or 1)
    path = work / "vectors.f16.npy"
    d = 384
    plan = ann.plan_index(n, d, index_type, opq=opq, pca=pca)  # type: ignore[arg-type]
    index = ann.new_index(plan, d)
    t0 = time.perf_counter()
    train_s = 0.0
    if plan.needs_training:
        rng = np.random.default_rng(0)
        pick = np.sort(rng.choice(n, size=min(plan.training_size(), n), replace=False))
        parts = []
        for start in range(0, n, CHUNK):  # one sequential pass, only the picked rows kept
            sel = pick[(pick >= start) & (pick < start + CHUNK)] - start
            parts.append(_rows(path, start, min(start + CHUNK, n), d)[sel])
        sample = np.concatenate(parts)
        index.train(sample)
        del sample
        train_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    with tqdm(total=n, unit="vec", unit_scale=True, desc=f"add {n:,}", file=sys.stderr) as bar:
        for start in range(0, n, CHUNK):
            x = _rows(path, start, min(start + CHUNK, n), d)
            index.add_with_ids(x, np.arange(start, start + len(x), dtype=np.int64))
            bar.update(len(x))
    add_s = time.perf_counter() - t1
    ann.write_index(index, work / "index.faiss")
    return {
        "plan": {"kind": plan.kind, "factory": plan.factory(d), "nlist": plan.nlist, "nprobe": plan.nprobe,
                 "pq_bytes": plan.pq_bytes, "rerank": plan.rerank, "reason": plan.reason},
        "train_vectors": plan.training_size() if plan.needs_training else 0,
        "train_s": train_s,
        "add_s": add_s,
        "build_s": time.perf_counter() - t0,
        "index_bytes": (work / "index.faiss").stat().st_size,
        "index_ram_estimate_bytes": plan.ram_bytes(n, d),
        "code_bytes_per_vector": plan.pq_bytes if plan.kind == "ivfpq" else (plan.pca or d) * 4,
        "peak_rss_mb": peak_rss_mb(),
        **rss_split_mb(),
    }


def phase_query(n: int, work: Path, nprobes: list[int], reranks: list[int]) -> dict[str, Any]:
    import faiss

    from ragworks.store import ann

    faiss.omp_set_num_threads(1)  # one query at a time: threads only add spin-wait (see store/vector_index.py)
    index = ann.read_index(work / "index.faiss", mmap=True)
    vectors = np.load(work / "vectors.f16.npy", mmap_mode="r")
    q = np.load(work / "queries.npy")
    truth = np.load(work / "truth.npy")

    def fetch(ids: np.ndarray) -> np.ndarray:
        order = np.argsort(ids)
        out = np.empty((len(ids), vectors.shape[1]), dtype=np.float32)
        out[order] = vectors[ids[order]]
        return out

    rows = []
    for nprobe in nprobes:
        ann.set_nprobe(index, nprobe)
        for r in reranks:
            plan = ann.IndexPlan("ivfpq", "", rerank=r)
            for i in range(min(20, len(q))):  # warm the page cache and the code path
                ann.search(index, q[i : i + 1], K, plan=plan, fetch=fetch)
            lat = []
            found = np.empty((len(q), K), dtype=np.int64)
            for i in range(len(q)):
                t = time.perf_counter()
                found[i] = ann.search(index, q[i : i + 1], K, plan=plan, fetch=fetch)[0]
                lat.append((time.perf_counter() - t) * 1000)
            rows.append({
                "nprobe": nprobe,
                "rerank": r,
                "recall_at_10": ann.recall_at_k(found, truth, K),
                "p50_ms": float(np.percentile(lat, 50)),
                "p95_ms": float(np.percentile(lat, 95)),
            })
            print(json.dumps(rows[-1]), file=sys.stderr)
    return {"runs": rows, "peak_rss_mb": peak_rss_mb(), **rss_split_mb()}


class HashEmbedder:
    """Random unit vectors seeded by the text: the pipeline's memory and I/O without the model's CPU time."""

    name = "hash-384"
    dimension = 384
    max_tokens = 512

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        import zlib

        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for i, t in enumerate(texts):
            out[i] = np.random.default_rng(zlib.crc32(t.encode())).standard_normal(self.dimension)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    embed_queries = embed_documents

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(t.split()) * 4 // 3 for t in texts]


def write_dump(path: Path, n: int) -> None:
    """`n` passage records of 60–160 words drawn (Zipf-like) from SciFact's vocabulary, gzipped JSONL."""
    import gzip
    import re

    words: dict[str, int] = {}
    scifact = Path(os.environ.get("RAGWORKS_SCIFACT", "/work/shared/data/scifact")) / "corpus.jsonl"
    with open(scifact) as f:
        for i, line in enumerate(f):
            for w in re.findall(r"[a-z]+", json.loads(line)["text"].lower()):
                words[w] = words.get(w, 0) + 1
            if i > 2000:
                break
    vocab = np.array(sorted(words, key=words.__getitem__, reverse=True))
    p = 1.0 / np.arange(1, len(vocab) + 1)
    p /= p.sum()
    rng = np.random.default_rng(0)
    with gzip.open(path, "wt", compresslevel=1) as f:
        for i in range(n):
            text = " ".join(rng.choice(vocab, size=int(rng.integers(60, 160)), p=p))
            f.write(json.dumps({"_id": f"p{i}", "title": f"Article {i // 5}", "text": text}) + "\n")


def phase_ingest(n: int, work: Path, embedder_kind: str, per_shard: int) -> dict[str, Any]:
    from ragworks.config import Settings
    from ragworks.dumps.dump import build_collection, embed_dump, rss_mb

    dump = work / "dump.jsonl.gz"
    t = time.perf_counter()
    write_dump(dump, n)
    write_s = time.perf_counter() - t
    settings = Settings(data_dir=work / "data", collection="wiki")
    embed_rss: list[float] = []
    build_rss: list[float] = []
    emb = HashEmbedder() if embedder_kind == "hash" else None
    rep = embed_dump(dump, work / "shards", settings, records_per_shard=per_shard, embedder=emb,  # type: ignore[arg-type]
                     progress=lambda e, k, c: embed_rss.append(rss_mb()))
    embed_peak = peak_rss_mb()
    built = build_collection(work / "shards", settings, progress=lambda e, k, c: build_rss.append(rss_mb()))
    db = work / "data" / "wiki" / "ragworks.sqlite3"
    search = store_search_latency(settings)
    return {
        "search": search,
        "records": n, "records_per_shard": per_shard, "embedder": embedder_kind, "dump_write_s": write_s,
        "embed": rep.to_dict(), "embed_peak_rss_mb": embed_peak, "embed_rss_mb_per_shard": embed_rss,
        "build": built.to_dict(), "build_rss_mb_per_shard": build_rss, "peak_rss_mb": peak_rss_mb(),
        "shard_bytes": sum(p.stat().st_size for p in (work / "shards").iterdir()),
        "sqlite_bytes": db.stat().st_size,
    }


def store_search_latency(settings: Any, n: int = 100) -> dict[str, Any]:
    """p50/p95 of the built collection's two legs: FTS5 BM25 (2-word queries) and dense (stored vectors)."""
    from ragworks.store.embedded import EmbeddedStore

    store = EmbeddedStore(settings.collection_path(), create=False)
    store.sync_index()
    rng = np.random.default_rng(1)
    ids = store.random_chunk_ids(n)
    _, queries = store._vectors_for(ids)
    texts = [" ".join(h.chunk.text.split()[:40][i] for i in rng.integers(0, 30, 2))
             for h in store.hits([(cid, 0.0) for cid in ids])]
    out: dict[str, Any] = {"index": store.index.describe(), "vectors": len(store.index)}
    for leg, run in (("bm25", lambda i: store.lexical_search(texts[i], 10)),
                     ("dense", lambda i: store.dense_search(queries[i], 10))):
        lat = []
        for i in range(len(ids)):
            t = time.perf_counter()
            run(i)
            lat.append((time.perf_counter() - t) * 1000)
        out[leg] = {"p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95))}
    store.close()
    return out


def run_phase(args: list[str]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def projection(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Scale the largest measured size to 21M passages, line by line (printed as arithmetic)."""
    from ragworks.store import ann

    big = max(results, key=lambda r: r["n"])
    n, d = WIKIPEDIA_PASSAGES, 384
    plan = ann.plan_index(n, d, "ivfpq")
    codes = n * (plan.pq_bytes + 8)
    centroids = plan.nlist * d * 4
    ram = plan.ram_bytes(n, d)
    f16 = n * d * 2
    per_vec_add = big["build"]["add_s"] / big["n"]
    scanned = big["n"] // big["build"]["plan"]["nlist"] * big["build"]["plan"]["nprobe"]
    runs = [x for x in big["query"]["runs"] if x["rerank"]] or big["query"]["runs"]
    at = min(runs, key=lambda x: abs(x["nprobe"] - big["build"]["plan"]["nprobe"]))
    lines = [
        f"nlist = 2^round(log2(√{n:,})) = {plan.nlist}, nprobe default = {plan.nprobe}",
        f"codes + ids: {n:,} × ({plan.pq_bytes} B PQ + 8 B id) = {codes / 1e9:.2f} GB",
        f"coarse centroids: {plan.nlist} × {d} × 4 B = {centroids / 1e6:.1f} MB; PQ tables: 256 × {d} × 4 B"
        f" = {256 * d * 4 / 1e6:.2f} MB",
        f"index RAM ≈ {ram / 1e9:.2f} GB (target ≤ 2.5 GB), memory-mapped from disk",
        f"full vectors for re-ranking (float16 shards, on disk, page cache only): {n:,} × {d} × 2 B = "
        f"{f16 / 1e9:.1f} GB",
        f"add time: {per_vec_add * 1e6:.1f} µs/vector measured at {big['n']:,} → {per_vec_add * n / 60:.0f} min "
        f"(+ training on {plan.training_size():,} vectors)",
        f"query: lists scanned per query ≈ {n // plan.nlist * plan.nprobe:,} codes "
        f"(vs {scanned:,} at {big['n']:,}); if p50 grew with that ({at['p50_ms']:.1f} ms at nprobe {at['nprobe']}), "
        f"≈ {at['p50_ms'] * n // plan.nlist * plan.nprobe / scanned:.0f} ms: an upper bound, re-ranking cost is "
        "constant; raise nlist to cut it",
    ]
    return {"n": n, "index_ram_bytes": ram, "codes_bytes": codes, "vectors_f16_bytes": f16, "lines": lines}


def fit_spectrum(docs: int) -> None:
    """Embed SciFact passages with MiniLM and compare their statistics with the synthetic generator's."""
    import faiss

    from ragworks.config import Settings
    from ragworks.embed import make_embedder
    from ragworks.store.synthetic import SyntheticVectors

    texts = []
    with open(Path(os.environ.get("RAGWORKS_SCIFACT", "/work/shared/data/scifact")) / "corpus.jsonl") as f:
        for line in f:
            rec = json.loads(line)
            texts.append((rec.get("title", "") + "\n" + rec["text"])[:1000])
            if len(texts) >= docs:
                break
    real = make_embedder(Settings()).embed_documents(texts)

    def stats(x: np.ndarray) -> dict[str, float]:
        mu = x.mean(0)
        c = x - mu
        ev = np.linalg.eigvalsh(c.T @ c / len(c))[::-1]
        alpha = -np.polyfit(np.log(np.arange(1, 201)), np.log(ev[:200]), 1)[0]
        sims = x @ x.T
        np.fill_diagonal(sims, -1)
        km = faiss.Kmeans(x.shape[1], 50, niter=20, seed=1)
        km.train(c.astype(np.float32))
        _, a = km.index.search(c.astype(np.float32), 1)
        centroids = np.asarray(km.centroids)
        between = float((centroids[a[:, 0]] ** 2).sum() / (c**2).sum())
        return {"mean_norm": float(np.linalg.norm(mu)), "alpha": float(alpha), "between_share_k50": between,
                "nn_cos_median": float(np.median(sims.max(1))), "cos_median": float(np.median(sims[sims > -1]))}

    synthetic = SyntheticVectors().rows(0, len(texts))
    out = {"docs": len(texts), "scifact_minilm": stats(real), "synthetic": stats(synthetic)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scale_spectrum.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in results:
        for rr, style in ((0, "--"), (max(x["rerank"] for x in r["query"]["runs"]), "-")):
            pts = [x for x in r["query"]["runs"] if x["rerank"] == rr]
            if not pts:
                continue
            ax.plot([x["p50_ms"] for x in pts], [x["recall_at_10"] for x in pts], style, marker="o",
                    label=f"{r['n']:,} {'re-rank ' + str(rr) if rr else 'PQ only'}")
            for x in pts:
                ax.annotate(str(x["nprobe"]), (x["p50_ms"], x["recall_at_10"]), fontsize=7)
    ax.axhline(0.9, color="grey", lw=0.5)
    ax.set_xlabel("query p50 (ms, one thread)")
    ax.set_ylabel("recall@10 vs exact")
    ax.set_title("IVF-PQ on MiniLM-like synthetic vectors (labels: nprobe)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def ingest_main(a: argparse.Namespace, load: tuple[float, float, float]) -> None:
    from rich.console import Console
    from rich.table import Table

    runs = []
    for n in [int(x) for x in a.ingest.split(",")]:
        runs.append(run_phase(["--phase", "ingest", "--n", str(n), "--workdir", str(a.workdir / "ingest"),
                               "--embedder", a.embedder, "--records-per-shard", str(a.records_per_shard)]))
    t = Table(title=f"Streaming ingestion memory (load avg {load[0]:.1f}, {os.cpu_count()} cores, {a.embedder})")
    for col in ("records", "shards", "chunks", "embed s", "RSS MB after shard 1 / mid / last (embed)",
                "build s", "RSS MB after shard 1 / mid / last (build)", "peak RSS MB", "SQLite MB", "shards MB",
                "index", "BM25 p50/p95 ms", "dense p50/p95 ms"):
        t.add_column(col)
    for r in runs:
        e, b = r["embed_rss_mb_per_shard"], r["build_rss_mb_per_shard"]
        t.add_row(f"{r['records']:,}", str(r["embed"]["shards"]), f"{r['embed']['chunks']:,}",
                  f"{r['embed']['seconds']:.0f}", f"{e[0]:.0f} / {e[len(e) // 2]:.0f} / {e[-1]:.0f}",
                  f"{r['build']['seconds']:.0f}", f"{b[0]:.0f} / {b[len(b) // 2]:.0f} / {b[-1]:.0f}",
                  f"{r['peak_rss_mb']:.0f}", f"{r['sqlite_bytes'] / 1e6:.0f}", f"{r['shard_bytes'] / 1e6:.0f}",
                  r["search"]["index"]["factory"],
                  f"{r['search']['bm25']['p50_ms']:.1f} / {r['search']['bm25']['p95_ms']:.1f}",
                  f"{r['search']['dense']['p50_ms']:.1f} / {r['search']['dense']['p95_ms']:.1f}")
    Console(width=220).print(t)
    RESULTS.mkdir(exist_ok=True)
    name = f"{a.out}-ingest.json"
    (RESULTS / name).write_text(json.dumps({"load_avg": load, "cpus": os.cpu_count(), "runs": runs}, indent=2))
    Console().print(f"wrote {RESULTS / name}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100000,1000000")
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--nprobes", default="16,32,64,128")
    p.add_argument("--rerank", default="0,100", help="re-ranked candidates (0: PQ scores only)")
    p.add_argument("--index-type", default="ivfpq", choices=["auto", "flat", "hnsw", "ivf", "ivfpq"])
    p.add_argument("--opq", action="store_true")
    p.add_argument("--pca", type=int, default=0)
    p.add_argument("--workdir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "ragworks-scale")
    p.add_argument("--out", default="scale")
    p.add_argument("--fit-spectrum", type=int, nargs="?", const=2000, default=0, metavar="DOCS")
    p.add_argument("--ingest", default="", metavar="SIZES", help="streaming-ingestion RSS benchmark at these sizes")
    p.add_argument("--embedder", default="hash", choices=["hash", "minilm"])
    p.add_argument("--records-per-shard", type=int, default=5000)
    p.add_argument("--phase", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    a = p.parse_args()

    if a.fit_spectrum:
        fit_spectrum(a.fit_spectrum)
        return
    if a.phase:
        work = a.workdir / str(a.n)
        if a.phase == "generate":
            res = phase_generate(a.n, work, a.queries)
        elif a.phase == "ingest":
            import shutil

            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            res = phase_ingest(a.n, work, a.embedder, a.records_per_shard)
        elif a.phase == "build":
            res = phase_build(a.n, work, a.index_type, a.opq, a.pca)
        else:
            res = phase_query(a.n, work, [int(x) for x in a.nprobes.split(",")], [int(x) for x in a.rerank.split(",")])
        print(json.dumps(res))
        return

    load = os.getloadavg()
    if a.ingest:
        ingest_main(a, load)
        return
    results = []
    for n in [int(s) for s in a.sizes.split(",")]:
        work = a.workdir / str(n)
        work.mkdir(parents=True, exist_ok=True)
        common = ["--n", str(n), "--workdir", str(a.workdir)]
        r: dict[str, Any] = {"n": n}
        r["generate"] = run_phase(["--phase", "generate", "--queries", str(a.queries), *common])
        r["build"] = run_phase(["--phase", "build", "--index-type", a.index_type, "--pca", str(a.pca),
                                *(["--opq"] if a.opq else []), *common])
        r["query"] = run_phase(["--phase", "query", "--nprobes", a.nprobes, "--rerank", a.rerank, *common])
        results.append(r)
        for f in work.iterdir():
            f.unlink()

    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"IVF-PQ scale benchmark (load avg {load[0]:.1f}, {os.cpu_count()} cores)")
    for col in ("vectors", "factory", "build s", "peak RSS MB (gen/build/query)", "index MB", "B/vector",
                "nprobe", "rerank", "recall@10", "p50 ms", "p95 ms"):
        t.add_column(col)
    for r in results:
        b = r["build"]
        for x in r["query"]["runs"]:
            t.add_row(f"{r['n']:,}", b["plan"]["factory"], f"{b['build_s']:.0f}",
                      f"{r['generate']['peak_rss_mb']:.0f}/{b['peak_rss_mb']:.0f}/{r['query']['peak_rss_mb']:.0f}",
                      f"{b['index_bytes'] / 1e6:.1f}", str(b["code_bytes_per_vector"]), str(x["nprobe"]),
                      str(x["rerank"]), f"{x['recall_at_10']:.3f}", f"{x['p50_ms']:.2f}", f"{x['p95_ms']:.2f}")
    console = Console(width=200)
    console.print(t)
    proj = projection(results)
    console.print(f"[bold]Projection to {WIKIPEDIA_PASSAGES:,} passages[/bold]")
    for line in proj["lines"]:
        console.print("  " + line)
    RESULTS.mkdir(exist_ok=True)
    doc = {"load_avg": load, "cpus": os.cpu_count(), "queries": a.queries, "k": K, "results": results,
           "projection_21m": proj}
    (RESULTS / f"{a.out}.json").write_text(json.dumps(doc, indent=2))
    plot(results, RESULTS / f"{a.out}.png")
    console.print(f"wrote {RESULTS / (a.out + '.json')} and {a.out}.png")


if __name__ == "__main__":
    main()
