"""Tuning without labels by distilling the hybrid retriever into a linear adapter on the embedding model.

Without labels the only judge of relevance at hand is the collection's own hybrid retriever (BM25 + the dense
model), which beats the dense model alone on domains with rare terms (SciFact: hybrid nDCG@10 0.730, dense 0.654).
So pseudo queries are made from the corpus (a sentence of each passage, Inverse Cloze Task style, and document
titles), the hybrid retriever ranks the whole collection for each, and a linear map `A = I + W` applied to the
model's pooled output (queries and passages alike) is trained so that the dense softmax over the collection
matches the teacher's ("distil"), and/or so that a sentence finds the other passages of its own document
("pairs"). The transformer is frozen and the passages' vectors are the ones already stored, so training takes
seconds, not the ~30 s a step costs to fine-tune the transformer on 2 cores. The saved model is the base model
plus one `Dense` layer before `Normalize`: any sentence-transformers loader uses it as is.

The strength of the map (`W` scaled by α, WiSE-FT style: α = 0 is the base model) and the epoch are chosen on
held-out pseudo queries: a sentence must find the other passages of its document (its own passage, which holds
the sentence verbatim, is left out), a measure on which the hybrid teacher also beats the dense model.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ragworks.embed.base import Embedder
from ragworks.errors import ConfigError
from ragworks.retrieve.fusion import weighted_fusion
from ragworks.store.embedded import EmbeddedStore
from ragworks.tune.pairs import _WORD, CorpusChunk, sentences

AdapterLoss = Literal["distil", "pairs", "both"]
Progress = Callable[[str, int, int], None]
ADAPTER_FILE = "adapter.json"  # written beside the saved model: how the map was trained


@dataclass(slots=True)
class AdapterConfig:
    loss: AdapterLoss = "distil"
    teacher_dense_weight: float = 0.4  # the teacher's weighted fusion (the collection's default weight)
    teacher_candidates: int = 400  # per leg, as a search fuses
    teacher_depth: int = 100  # the teacher's distribution covers its top this many chunks
    teacher_temperature: float = 0.05  # over fused scores in [0, 1]
    scale: float = 20.0  # the student's inverse temperature over cosine similarities
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    epochs: int = 3
    batch_size: int = 256
    dev_queries: int = 1500
    alphas: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)  # strengths of the map tried on dev (1: as trained)
    max_corpus: int = 20000  # above this many chunks each step contrasts against a random sample of them
    titles: bool = True  # also titles → their document's passages
    sentences_per_passage: int = 1  # pseudo queries per passage (distinct sentences)
    seed: int = 0
    threads: int = 2


@dataclass(slots=True)
class PseudoQuery:
    text: str
    kind: str  # ict | title
    row: int  # the chunk (row of the vector matrix) the query was made from
    positives: list[int]  # rows that answer it: the document's other passages (ict) or all of them (title)


@dataclass(slots=True)
class AdapterResult:
    steps: int = 0
    epochs: float = 0.0
    seconds: float = 0.0
    stopped: str = "epochs"
    best_step: int = 0
    best_epoch: int = 0
    alpha: float = 1.0
    base_dev_mrr: float = 0.0
    best_dev_mrr: float = 0.0
    teacher_dev_mrr: float = 0.0
    train_queries: int = 0
    dev_queries: int = 0
    origins: dict[str, int] = field(default_factory=dict)  # pseudo queries by kind (ict, title)
    timings: dict[str, float] = field(default_factory=dict)
    losses: list[tuple[int, float]] = field(default_factory=list)
    dev: list[tuple[int, float]] = field(default_factory=list)
    alpha_dev: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["losses"] = [(s, round(v, 4)) for s, v in self.losses]
        d["dev"] = [(s, round(v, 4)) for s, v in self.dev]
        return d


def pseudo_queries(chunks: Sequence[CorpusChunk], *, titles: bool = True, exclude: set[str] | None = None,
                   per_passage: int = 1, min_words: int = 6, max_words: int = 40, seed: int = 0,
                   ) -> list[PseudoQuery]:
    """`per_passage` sentences of each passage with another sentence besides them, and each document's title
    (≥ 3 words).

    `exclude` holds lower-cased texts never to use as queries (e.g. an evaluation's queries).
    """
    rng = random.Random(seed)
    exclude = exclude or set()
    rows_of: dict[str, list[int]] = {}
    for i, c in enumerate(chunks):
        rows_of.setdefault(c.source, []).append(i)
    out: list[PseudoQuery] = []
    seen: set[str] = set()
    for i, c in enumerate(chunks):
        if (titles and c.source not in seen and len(_WORD.findall(c.title)) >= 3
                and c.title.strip().lower() not in exclude):
            seen.add(c.source)
            out.append(PseudoQuery(c.title, "title", i, list(rows_of[c.source])))
        sents = sentences(c.text)
        usable = [s for s in sents if min_words <= len(_WORD.findall(s)) <= max_words] if len(sents) >= 2 else []
        usable = [s for s in usable if s.strip().lower() not in exclude]
        if not usable:
            continue
        picked = [rng.choice(usable)] if per_passage == 1 else rng.sample(usable, min(per_passage, len(usable)))
        for sent in picked:
            out.append(PseudoQuery(sent, "ict", i, [r for r in rows_of[c.source] if r != i]))
    return out


def teacher_rankings(store: EmbeddedStore, queries: Sequence[PseudoQuery], qvecs: np.ndarray, vectors: np.ndarray,
                     ids: np.ndarray, config: AdapterConfig, *, progress: Progress | None = None,
                     ) -> list[list[tuple[int, float]]]:
    """Each query's top `teacher_depth` rows by the hybrid retriever: (row, fused score in [0, 1]), best first."""
    row_of = {int(cid): r for r, cid in enumerate(ids)}
    n = min(config.teacher_candidates, len(ids))
    out: list[list[tuple[int, float]]] = []
    for start in range(0, len(queries), 512):
        sims = qvecs[start : start + 512] @ vectors.T
        for j in range(sims.shape[0]):
            q = queries[start + j]
            top = np.argpartition(-sims[j], n - 1)[:n] if n < len(ids) else np.arange(len(ids))
            top = top[np.argsort(-sims[j, top])]
            dense = [(int(ids[k]), float(sims[j, k])) for k in top]
            lexical = store.lexical_search(q.text, n)
            fused = weighted_fusion([dense, lexical], [config.teacher_dense_weight, 1.0 - config.teacher_dense_weight])
            out.append([(row_of[cid], score) for cid, score in fused[: config.teacher_depth] if cid in row_of])
        if progress is not None:
            progress("teacher", min(start + 512, len(queries)), len(queries))
    return out


def _mask_rows(q: PseudoQuery) -> list[int]:
    """Rows a query must not be scored against: an ICT sentence's own passage holds it verbatim."""
    return [q.row] if q.kind == "ict" else []


def dev_mrr(qvecs: np.ndarray, vectors: np.ndarray, queries: Sequence[PseudoQuery]) -> float:
    """Mean reciprocal rank of each query's best positive among all rows (its own passage left out for ICT)."""
    if not queries:
        return 0.0
    sims = qvecs @ vectors.T
    ranks = []
    for j, q in enumerate(queries):
        row = sims[j].copy()
        row[_mask_rows(q)] = -np.inf
        best = row[q.positives].max()
        ranks.append(1.0 / (1 + int(np.sum(row > best))))
    return float(np.mean(ranks))


def teacher_dev_mrr(teacher: Sequence[list[tuple[int, float]]], queries: Sequence[PseudoQuery]) -> float:
    """`dev_mrr` of the teacher's rankings (a positive outside its top `teacher_depth` counts 0)."""
    if not queries:
        return 0.0
    ranks = []
    for ranking, q in zip(teacher, queries, strict=True):
        masked = set(_mask_rows(q))
        order = [r for r, _ in ranking if r not in masked]
        hits = [i for i, r in enumerate(order) if r in set(q.positives)]
        ranks.append(1.0 / (1 + hits[0]) if hits else 0.0)
    return float(np.mean(ranks))


def adapt(x: Any, weight: Any, alpha: float = 1.0) -> Any:
    """normalize(x + α·x·Wᵀ) for numpy arrays or torch tensors (what the saved model computes)."""
    y = x + alpha * (x @ weight.T)
    if isinstance(y, np.ndarray):
        return y / np.maximum(np.linalg.norm(y, axis=-1, keepdims=True), 1e-12)
    import torch

    return torch.nn.functional.normalize(y, dim=-1)


def split_dev(queries: Sequence[PseudoQuery], n_dev: int, seed: int = 0) -> tuple[list[int], list[int]]:
    """(train, dev) indices; dev holds only ICT queries whose document has another passage (the measure above)."""
    order = list(range(len(queries)))
    random.Random(seed).shuffle(order)
    scorable = [k for k in order if queries[k].kind == "ict" and queries[k].positives]
    if len(scorable) < 20:  # documents of one passage each: titles are the only scorable queries
        scorable = [k for k in order if queries[k].positives]
    dev = set(scorable[: min(n_dev, len(scorable) // 5)])
    return [k for k in order if k not in dev], [k for k in order if k in dev]


def train_adapter(queries: Sequence[PseudoQuery], qvecs: np.ndarray, vectors: np.ndarray,
                  teacher: Sequence[list[tuple[int, float]]], config: AdapterConfig, *,
                  progress: Callable[[int, int, float, float | None], None] | None = None,
                  ) -> tuple[np.ndarray, AdapterResult]:
    """Train W on stored passage vectors; returns (α·W of the best epoch and α on dev, the measurements)."""
    import torch

    torch.set_num_threads(max(1, config.threads))
    torch.manual_seed(config.seed)
    started = time.perf_counter()
    result = AdapterResult()
    train_idx, dev_idx = split_dev(queries, config.dev_queries, config.seed)
    dev_q = [queries[k] for k in dev_idx]
    result.train_queries, result.dev_queries = len(train_idx), len(dev_idx)
    result.base_dev_mrr = result.best_dev_mrr = dev_mrr(qvecs[dev_idx], vectors, dev_q)
    result.teacher_dev_mrr = teacher_dev_mrr([teacher[k] for k in dev_idx], dev_q)
    result.dev.append((0, result.base_dev_mrr))
    dim = vectors.shape[1]
    q_all, d_all = torch.from_numpy(qvecs.astype(np.float32)), torch.from_numpy(vectors.astype(np.float32))
    weight = torch.nn.Parameter(torch.zeros(dim, dim))
    optimizer = torch.optim.AdamW([weight], lr=config.learning_rate, weight_decay=config.weight_decay)
    best = np.zeros((dim, dim), dtype=np.float32)
    rng = random.Random(config.seed)
    n_rows = len(vectors)
    per_epoch = max(1, -(-len(train_idx) // config.batch_size))
    planned = per_epoch * config.epochs
    step = 0
    for epoch in range(config.epochs):
        order = list(train_idx)
        rng.shuffle(order)
        for start in range(0, len(order), config.batch_size):
            batch = [queries[k] for k in order[start : start + config.batch_size]]
            rows_teacher = [teacher[k] for k in order[start : start + config.batch_size]]
            # the rows contrasted against: all of them, or (big collections) the batch's own plus a sample
            if n_rows <= config.max_corpus:
                cols = np.arange(n_rows)
            else:
                own = {r for q, t in zip(batch, rows_teacher, strict=True) for r in [q.row, *q.positives]
                       + [r for r, _ in t]}
                cols = np.array(sorted(own | set(rng.sample(range(n_rows), config.max_corpus))))
            col_of = {int(r): i for i, r in enumerate(cols)}
            qb = adapt(q_all[order[start : start + config.batch_size]], weight)
            db = adapt(d_all[torch.from_numpy(cols)], weight)
            logits = config.scale * qb @ db.T
            mask = torch.zeros_like(logits, dtype=torch.bool)
            for j, q in enumerate(batch):
                mask[j, [col_of[r] for r in _mask_rows(q)]] = True
            logp = torch.log_softmax(logits.masked_fill(mask, -1e4), dim=-1)
            loss = torch.zeros(())
            if config.loss in ("distil", "both"):
                target = torch.zeros_like(logits)
                for j, (q, ranking) in enumerate(zip(batch, rows_teacher, strict=True)):
                    kept = [(col_of[r], s) for r, s in ranking if r not in _mask_rows(q)]
                    if kept:
                        scores = torch.tensor([s for _, s in kept], dtype=torch.float32)
                        target[j, [c for c, _ in kept]] = torch.softmax(scores / config.teacher_temperature, 0)
                loss = loss - (target * logp).sum(-1).mean()
            if config.loss in ("pairs", "both"):
                pos = torch.zeros_like(logits, dtype=torch.bool)
                has = torch.zeros(len(batch), dtype=torch.bool)
                for j, q in enumerate(batch):
                    if q.positives:
                        pos[j, [col_of[r] for r in q.positives]] = True
                        has[j] = True
                if bool(has.any()):
                    loss = loss - torch.logsumexp(logp.masked_fill(~pos, -1e4), -1)[has].mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            result.losses.append((step, float(loss.item())))
            if progress is not None:
                progress(step, planned, float(loss.item()), None)
        with torch.no_grad():
            current = weight.detach().numpy().copy()
        mrr = dev_mrr(adapt(qvecs[dev_idx], current), adapt(vectors, current), dev_q)
        result.dev.append((step, mrr))
        if progress is not None:
            progress(step, planned, result.losses[-1][1], mrr)
        if mrr > result.best_dev_mrr:
            result.best_dev_mrr, result.best_step, result.best_epoch, best = mrr, step, epoch + 1, current
    result.steps, result.epochs = step, float(config.epochs)
    # WiSE-FT: the map's strength, chosen on dev (α = 1 is the best epoch as trained; no gain keeps W = 0)
    alpha = 1.0
    if result.best_step:
        for a in config.alphas:
            result.alpha_dev[f"{a:g}"] = round(dev_mrr(adapt(qvecs[dev_idx], best, a), adapt(vectors, best, a), dev_q),
                                               4)
        alpha = max(config.alphas, key=lambda a: (result.alpha_dev[f"{a:g}"], a))
        result.best_dev_mrr = max(result.best_dev_mrr, result.alpha_dev[f"{alpha:g}"])
    result.alpha = alpha
    result.seconds = round(time.perf_counter() - started, 1)
    return (alpha * best).astype(np.float32), result


def save_adapted(base_dir: Path, weight: np.ndarray, out_dir: Path, info: dict[str, Any] | None = None) -> None:
    """The base model with `Dense(I + weight)` before its `Normalize`, saved atomically to `out_dir`."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize

    base = SentenceTransformer(str(base_dir), device="cpu", local_files_only=True)
    modules = [m for m in base if not isinstance(m, Normalize)]
    dim = weight.shape[0]
    matrix = torch.eye(dim) + torch.from_numpy(weight.astype(np.float32))
    # the map acts on pooled vectors: x·(I + W)ᵀ, exactly `adapt` before its normalization
    dense = Dense(dim, dim, bias=False, activation_function=None, init_weight=matrix)
    model = SentenceTransformer(modules=[*modules, dense, Normalize()], device="cpu")
    model.max_seq_length = base.max_seq_length
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(str(tmp))
    (tmp / ADAPTER_FILE).write_text(json.dumps(info or {}, indent=2, default=str) + "\n")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)


class StoredVectorsEmbedder:
    """An adapted model that re-embeds a passage whose base vector is stored by mapping that vector (no transformer
    pass; equal up to float rounding, as the map is linear and acts before `Normalize`); others go to the model."""

    def __init__(self, model: Embedder, weight: np.ndarray, stored: dict[str, np.ndarray]) -> None:
        self.model, self.weight, self.stored = model, weight.astype(np.float32), stored
        self.mapped = 0  # passages served from stored vectors

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def dimension(self) -> int:
        return self.model.dimension

    @property
    def max_tokens(self) -> int:
        return self.model.max_tokens

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        known = [i for i, t in enumerate(texts) if t in self.stored]
        if known:
            out[known] = adapt(np.stack([self.stored[texts[i]] for i in known]), self.weight)
            self.mapped += len(known)
        rest = [i for i, t in enumerate(texts) if t not in self.stored]
        if rest:
            out[rest] = self.model.embed_documents([texts[i] for i in rest])
        return out

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.model.embed_queries(texts)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.model.count_tokens(texts)


def distil(store: EmbeddedStore, chunks: Sequence[CorpusChunk], vectors: dict[int, np.ndarray], base: Embedder,
           base_dir: Path, out_dir: Path, config: AdapterConfig, *, exclude: set[str] | None = None,
           progress: Progress | None = None,
           step_progress: Callable[[int, int, float, float | None], None] | None = None,
           ) -> tuple[np.ndarray, AdapterResult]:
    """Pseudo queries → teacher rankings → trained map → model saved to `out_dir`; (the map's W, measurements)."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    usable = [c for c in chunks if c.id in vectors]
    ids = np.array([c.id for c in usable], dtype=np.int64)
    matrix = np.stack([vectors[c.id] for c in usable]).astype(np.float32)
    queries = pseudo_queries(usable, titles=config.titles, exclude=exclude, per_passage=config.sentences_per_passage,
                             seed=config.seed)
    if len(queries) < 10:
        raise ConfigError(f"only {len(queries)} pseudo queries in this collection (sentences and titles): too little "
                          "text to tune without labels; give --pairs or --beir")
    qvecs = base.embed_queries([q.text for q in queries]).astype(np.float32)
    timings["queries_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    teacher = teacher_rankings(store, queries, qvecs, matrix, ids, config, progress=progress)
    timings["teacher_s"] = round(time.perf_counter() - t0, 1)
    weight, result = train_adapter(queries, qvecs, matrix, teacher, config, progress=step_progress)
    result.timings = {**timings, "train_s": result.seconds}
    result.origins = {kind: sum(q.kind == kind for q in queries) for kind in ("ict", "title")}
    t0 = time.perf_counter()
    save_adapted(base_dir, weight, out_dir, {"config": asdict(config), "result": result.to_dict()})
    result.timings["save_s"] = round(time.perf_counter() - t0, 1)
    return weight, result
