"""Embedding throughput against the model's own ceiling, on a GPU or on CPU, in one run (issue 18).

    python bench/embed_gpu.py                         # auto device; 100k passages on CUDA, 2k on CPU
    python bench/embed_gpu.py --tiny                  # a few hundred passages: the CI smoke run
    python bench/embed_gpu.py --model DIR --out DIR   # a model directory (e.g. fp16 copy on a GPU machine)

Passages (~200 tokens, 130–256) are synthesized from the sample corpus's sentences, so the script needs no data
set and no download: only the packaged model (or `--model DIR`). Phases, each timed after a warm-up:

  tokenizer   the Rust tokenizer alone, 1 thread and all threads (encode_batch_fast)
  prepare     ragworks' CPU stage: chunk + tokenize once (ShardPreparer), 1 process, then all cores
  ceiling     the model alone on pre-tokenized, length-sorted, pre-padded batches already on the device
              (eager and SDPA attention): nothing but forward passes
  encode      plain sentence-transformers `model.encode` on the texts
  ragworks    SentenceTransformerEmbedder.embed_token_ids (the chunker's ids) and embed_documents (texts)
  dump        `embed_dump` end to end: JSONL → chunks → vectors → shard files (pipelined on CUDA)

Prints a table (passages/s, and each row's ratio to the best ceiling) and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def corpus_sentences() -> list[str]:
    """Sentences of the sample corpus's Markdown and text files (shipped in the repository)."""
    out: list[str] = []
    for path in sorted((REPO / "examples" / "sample-corpus").rglob("*")):
        if path.suffix in (".md", ".txt") and path.is_file():
            text = re.sub(r"^#+ .*$", "", path.read_text(encoding="utf-8"), flags=re.M)
            out += [s.strip() for s in re.split(r"(?<=[.!?])\s+", " ".join(text.split())) if len(s.split()) >= 5]
    return out


def synth_passages(n: int, count_tokens: Callable[[Sequence[str]], list[int]], seed: int = 0) -> list[str]:
    """`n` passages of 130–256 tokens: runs of random corpus sentences, cut to a drawn token length."""
    rng = np.random.default_rng(seed)
    sentences = corpus_sentences()
    lengths = count_tokens(sentences)
    passages: list[str] = []
    for target in rng.integers(130, 257, size=n):
        parts: list[str] = []
        used = 0
        for _ in range(200):  # draw sentences until the passage is 130 tokens or more and the next won't fit
            i = int(rng.integers(len(sentences)))
            if used + lengths[i] > target:
                if used >= 130:
                    break
                continue
            parts.append(sentences[i])
            used += lengths[i]
        passages.append(" ".join(parts))
    return passages


def timed(fn: Callable[[], Any], n: int, repeat: int = 1) -> dict[str, float]:
    """Best of `repeat` runs of fn() over `n` items: seconds and items/s."""
    secs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        secs.append(time.perf_counter() - t)
    best = min(secs)
    return {"n": n, "seconds": round(best, 3), "per_s": round(n / best, 1),
            "seconds_all": [round(x, 3) for x in secs], "seconds_median": round(statistics.median(secs), 3)}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def ceiling(model: Any, tok: Any, ids: list[np.ndarray], batch: int, device: str) -> Callable[[], None]:
    """Forward passes only: batches built and moved to the device before the clock starts."""
    import torch

    lengths = [min(len(x), tok.content_limit) + len(tok.head) + len(tok.tail) for x in ids]
    order = np.argsort(lengths, kind="stable")
    batches = []
    for start in range(0, len(order), batch):
        idx = order[start : start + batch]
        width = -(-max(lengths[i] for i in idx) // 8) * 8
        arr = np.full((len(idx), width), tok.pad_id, dtype=np.int64)
        mask = np.zeros((len(idx), width), dtype=np.int64)
        for r, i in enumerate(idx):
            row = tok.head + ids[i][: tok.content_limit].tolist() + tok.tail
            arr[r, : len(row)] = row
            mask[r, : len(row)] = 1
        batches.append({"input_ids": torch.from_numpy(arr).to(device),
                        "attention_mask": torch.from_numpy(mask).to(device)})

    def run() -> None:
        with torch.inference_mode():
            for b in batches:
                model(b)["sentence_embedding"]
        sync(device)

    return run


def load_st(model_dir: Path, device: str, attention: str) -> Any:
    from sentence_transformers import SentenceTransformer

    kw = {"attn_implementation": attention} if attention != "default" else None
    m = SentenceTransformer(str(model_dir), device=device, local_files_only=True, model_kwargs=kw)
    m.eval()
    if device.startswith("cuda"):
        m.half()
    return m


def prep_rate(settings: Any, records: list[dict[str, Any]], processes: int) -> dict[str, float]:
    """ShardPreparer (chunk + tokenize once) over `records`, in `processes` spawned processes (0: in-process)."""
    from ragworks.dumps.dump import ShardPreparer, _pool_prepare, _prep_init, worker_settings

    if processes == 0:
        prep = ShardPreparer.for_model(settings)
        prep.prepare(records[:200])  # warm-up
        return timed(lambda: prep.prepare(records), len(records), repeat=2)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("spawn")
    per = max(1, -(-len(records) // (processes * 4)))
    parts = [records[i : i + per] for i in range(0, len(records), per)]
    with ProcessPoolExecutor(processes, mp_context=ctx, initializer=_prep_init,
                             initargs=(worker_settings(settings),)) as pool:
        list(pool.map(_pool_prepare, [records[:100]] * processes))  # every process up and warm
        return timed(lambda: list(pool.map(_pool_prepare, parts)), len(records), repeat=2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--model", default="all-MiniLM-L6-v2", help="packaged model name or a model directory")
    ap.add_argument("--passages", type=int, default=0, help="passages per phase (0: 100k on CUDA, 2k on CPU)")
    ap.add_argument("--batch", type=int, default=0, help="batch size (0: 512 on CUDA, 32 on CPU)")
    ap.add_argument("--tiny", action="store_true", help="a smoke run of a few hundred passages")
    ap.add_argument("--skip", default="", help="comma-separated phases to skip")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = ap.parse_args()

    import torch

    from ragworks.config import Settings
    from ragworks.dumps.dump import embed_dump
    from ragworks.embed.local import SentenceTransformerEmbedder, pick_device, resolve_model_dir

    device = pick_device(None if args.device == "auto" else args.device)
    cuda = device.startswith("cuda")
    n = args.passages or (200 if args.tiny else 100_000 if cuda else 2000)
    batch = args.batch or (512 if cuda else 32)
    skip = set(filter(None, args.skip.split(",")))
    cores = len(os.sched_getaffinity(0))
    model_dir = resolve_model_dir(args.model)
    settings = Settings(embed_model=str(model_dir), embed_device=device, embed_batch_size=batch)
    emb = SentenceTransformerEmbedder(str(model_dir), device=device, batch_size=batch)
    embedders = [emb]
    tok = emb.passage_tokenizer
    assert tok is not None
    passages = synth_passages(n, tok.count)
    token_counts = tok.count(passages)
    records = [{"source": f"p{i}", "title": "", "text": t, "metadata": {}} for i, t in enumerate(passages)]
    rows: dict[str, dict[str, Any]] = {}
    machine = {
        "device": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
        "cores": cores, "torch": torch.__version__, "python": platform.python_version(),
        "platform": platform.platform(),
    }
    print(f"{n:,} passages, mean {np.mean(token_counts):.0f} tokens (min {min(token_counts)}, max "
          f"{max(token_counts)}); {device} ({machine['device']}), {cores} cores, batch {batch}", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    out_file = args.out / ("embed_gpu-tiny.json" if args.tiny else f"embed_gpu-{'cuda' if cuda else 'cpu'}.json")
    ceilings: dict[str, float] = {}
    errors: dict[str, str] = {}

    def save() -> dict[str, Any]:
        best = max(ceilings.values()) if ceilings else None
        result = {"machine": machine, "passages": n, "batch": batch, "mean_tokens": float(np.mean(token_counts)),
                  "ceiling_best": best, "phases": rows, "errors": errors,
                  "ratios": {k: round(v["per_s"] / best, 3) for k, v in rows.items() if "per_s" in v and best}}
        out_file.write_text(json.dumps(result, indent=2))
        return result

    def record(name: str, result: dict[str, Any], **extra: Any) -> None:
        rows[name] = {**result, **extra}
        print(f"  {name:<34} {result['per_s']:>10,.0f} /s  ({result['n']:,} in {result['seconds']:.2f} s)", flush=True)
        save()

    def phase(name: str, fn: Callable[[], None]) -> None:
        """Run one phase; a failure is recorded and the next phase still runs (one GPU session, all figures)."""
        if name in skip:
            return
        try:
            fn()
        except Exception as exc:  # report it and go on
            import traceback

            traceback.print_exc()
            errors[name] = f"{type(exc).__name__}: {exc}"
            save()
        if cuda:
            torch.cuda.empty_cache()

    small = min(n, 20_000)
    ids = tok.ids(passages)  # what the chunker slices out of a document's tokens (a test checks they are equal)

    def tokenizer_phase() -> None:
        record("tokenizer, 1 thread", timed(lambda: tok._ids(passages[:small]), small, repeat=2))
        record(f"tokenizer, {cores} threads", timed(lambda: tok.ids(passages), n, repeat=2))

    def prepare_phase() -> None:
        record("prepare (chunk+tokenize), 1 core", prep_rate(settings, records[: min(n, 10_000)], 0))
        if cores > 1:
            many = prep_rate(settings, records, cores)
            record(f"prepare, {cores} processes", many, per_core=round(many["per_s"] / cores, 1))

    def ceiling_phase() -> None:
        for attention in (["eager", "sdpa"] if cuda else ["default", "eager"]):
            model = load_st(model_dir, device, attention)
            ceiling(model, tok, ids[: min(n, 4 * batch)], batch, device)()  # warm-up
            sub = ids if attention != "sdpa" else ids[: min(n, 30_000)]
            result = timed(ceiling(model, tok, sub, batch, device), len(sub), repeat=3)
            ceilings[attention] = result["per_s"]
            record(f"ceiling: model alone, {attention}", result)
            del model

    reference: list[np.ndarray] = []

    def encode_phase() -> None:
        model = load_st(model_dir, device, "default")
        sub_n = min(n, 20_000)
        model.encode(passages[: 2 * batch], batch_size=batch)
        record("sentence-transformers encode", timed(
            lambda: model.encode(passages[:sub_n], batch_size=batch, convert_to_numpy=True), sub_n, repeat=2))
        reference.append(model.encode(passages[:512], batch_size=batch, convert_to_numpy=True,
                                      normalize_embeddings=True))

    def ragworks_phase() -> None:
        emb = embedders[0]
        emb.embed_token_ids(ids[: 4 * batch])  # warm-up
        record("ragworks embed_token_ids", timed(lambda: emb.embed_token_ids(ids), n, repeat=3))
        record("ragworks embed_documents (text)", timed(lambda: emb.embed_documents(passages), n, repeat=2))
        if reference:
            cos = float((emb.embed_token_ids(ids[:512]) * reference[0]).sum(1).min())
            rows["agreement_min_cosine"] = {"value": cos}
            print(f"  min cosine vs model.encode over 512 passages: {cos:.5f}", flush=True)

    def dump_phase() -> None:
        copies = 4 if cuda else 1  # long enough on a GPU that starting the tokenizing processes is amortized
        with tempfile.TemporaryDirectory() as tmp:
            dump = Path(tmp) / "dump.jsonl"
            with dump.open("w") as f:
                for c in range(copies):
                    for i, text in enumerate(passages):
                        f.write(json.dumps({"_id": f"p{c}-{i}", "title": "", "text": text}) + "\n")
            per_shard = max(64, n // (4 * cores)) if cuda else max(16, n // 4)
            stamps: list[tuple[float, int]] = []
            t = time.perf_counter()
            report = embed_dump(dump, Path(tmp) / "shards", settings, records_per_shard=per_shard,
                                progress=lambda event, k, chunks: stamps.append((time.perf_counter(), chunks)))
            secs = time.perf_counter() - t
            steady = {}
            if len(stamps) > 2:  # from the first shard written to the last: the rate once the pipeline is full
                span = stamps[-1][0] - stamps[0][0]
                steady = {"steady_per_s": round(sum(c for _, c in stamps[1:]) / max(span, 1e-9), 1),
                          "first_shard_s": round(stamps[0][0] - t, 2)}
            record("dump embed end to end", {"n": report.chunks, "seconds": round(secs, 3),
                                              "per_s": round(report.chunks / secs, 1)},
                   records=report.records, shards=report.shards, records_per_shard=per_shard, **steady)
            if steady:
                print(f"  {'dump embed, pipeline full':<34} {steady['steady_per_s']:>10,.0f} /s  (first shard after "
                      f"{steady['first_shard_s']} s)", flush=True)

    phase("tokenizer", tokenizer_phase)
    phase("prepare", prepare_phase)
    phase("ceiling", ceiling_phase)
    phase("encode", encode_phase)
    phase("ragworks", ragworks_phase)
    embedders.clear()  # the dump loads its own model, as a user's `ragworks dump embed` does
    phase("dump", dump_phase)

    result = save()
    best = result["ceiling_best"]
    table = [("phase", "passages/s", "vs ceiling")]
    for name, row in rows.items():
        if "per_s" in row:
            table.append((name, f"{row['per_s']:,.0f}", f"{row['per_s'] / best:.2f}" if best else "—"))
        if "steady_per_s" in row:
            table.append((name + " (pipeline full)", f"{row['steady_per_s']:,.0f}",
                          f"{row['steady_per_s'] / best:.2f}" if best else "—"))
    width = max(len(r[0]) for r in table)
    print()
    for r in table:
        print(f"{r[0]:<{width}}  {r[1]:>12}  {r[2]:>10}")
    if errors:
        print(f"\nphases that failed: {errors}")
    print(f"\nwrote {out_file}")
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
