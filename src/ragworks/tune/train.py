"""Fine-tune a sentence-transformers embedder on (query, positive[, hard negative]) pairs, on the CPU, in a budget.

MultipleNegativesRankingLoss: each query must rank its positive above every other passage of the batch (the other
queries' positives and all hard negatives). Batches never hold two pairs with the same positive (that would teach
the model a relevant passage is irrelevant). Every `eval_every` steps the dev pairs are scored (MRR of each dev
query's positive among all dev passages); the best checkpoint is the one saved, and training stops at the budget,
after `max_epochs`, or when the dev score has not improved `patience` times running.
"""

from __future__ import annotations

import copy
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragworks.tune.pairs import Pair

if TYPE_CHECKING:
    from ragworks.tune.adapter import AdapterResult

StepProgress = Callable[[int, int, float, float | None], None]  # (step, planned steps, train loss, dev MRR)


@dataclass(slots=True)
class TrainConfig:
    budget_minutes: float = 20.0
    batch_size: int = 32
    learning_rate: float = 3e-5
    warmup_fraction: float = 0.1
    max_epochs: int = 4
    eval_every: int = 25  # steps; also at the end of every epoch
    patience: int = 4
    threads: int = 2
    scale: float = 20.0  # MNRL's inverse temperature (the library default)
    seed: int = 0
    max_seq_length: int = 0  # tokens per text while training (0: the model's own); the saved model keeps its own


@dataclass(slots=True)
class TrainResult:
    steps: int = 0
    epochs: float = 0.0
    seconds: float = 0.0
    stopped: str = ""  # budget | epochs | early-stop
    best_step: int = 0
    best_dev_mrr: float = 0.0
    base_dev_mrr: float = 0.0
    losses: list[tuple[int, float]] = field(default_factory=list)
    dev: list[tuple[int, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["losses"] = [(s, round(v, 4)) for s, v in self.losses]
        d["dev"] = [(s, round(v, 4)) for s, v in self.dev]
        return d


def make_batches(pairs: Sequence[Pair], batch_size: int, rng: random.Random) -> list[list[Pair]]:
    """Shuffled batches in which no positive (and no query) appears twice; leftovers go to later batches."""
    order = list(pairs)
    rng.shuffle(order)
    batches: list[list[Pair]] = []
    pending = order
    while pending:
        batch: list[Pair] = []
        seen: set[str] = set()
        rest: list[Pair] = []
        for p in pending:
            keys = {p.positive, "q:" + p.query}
            if len(batch) < batch_size and not (keys & seen):
                batch.append(p)
                seen |= keys
            else:
                rest.append(p)
        if len(batch) < 2:  # nothing left to contrast against
            break
        batches.append(batch)
        pending = rest
    return batches


def dev_mrr(model: Any, dev: Sequence[Pair], batch_size: int = 64) -> float:
    """Mean reciprocal rank of each dev query's positive among all dev positives and negatives."""
    import torch

    if not dev:
        return 0.0
    passages = list(dict.fromkeys([p.positive for p in dev] + [p.negative for p in dev if p.negative]))
    pos_index = {t: i for i, t in enumerate(passages)}
    model.eval()
    with torch.no_grad():
        q = model.encode([p.query for p in dev], batch_size=batch_size, normalize_embeddings=True,
                         convert_to_numpy=True, show_progress_bar=False)
        d = model.encode(passages, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                         show_progress_bar=False)
    scores = q @ d.T
    relevant: dict[str, set[int]] = {}
    for p in dev:
        relevant.setdefault(p.qid, set()).add(pos_index[p.positive])
    ranks = []
    for i, p in enumerate(dev):
        row = scores[i].copy()
        target = row[pos_index[p.positive]]
        row[list(relevant[p.qid])] = -np.inf  # the query's other relevant passages do not count against it
        ranks.append(1 + int(np.sum(row > target)))
    return float(np.mean([1.0 / r for r in ranks]))


def train(base_dir: Path, train_pairs: Sequence[Pair], dev_pairs: Sequence[Pair], out_dir: Path,
          config: TrainConfig, *, progress: StepProgress | None = None) -> TrainResult:
    """Train from `base_dir` and save the best checkpoint to `out_dir` (atomically: temp dir, then rename)."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.losses import MultipleNegativesRankingLoss

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(max(1, config.threads))
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    started = time.perf_counter()
    deadline = started + config.budget_minutes * 60
    model = SentenceTransformer(str(base_dir), device="cpu", local_files_only=True)
    own_length = model.max_seq_length
    if config.max_seq_length:  # shorter texts: more steps in the budget on a CPU
        model.max_seq_length = min(config.max_seq_length, own_length or config.max_seq_length)
    loss_fn = MultipleNegativesRankingLoss(model, scale=config.scale)
    tokenize = getattr(model, "preprocess", None) or model.tokenize  # `tokenize` is deprecated in ST 5.2+
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.01)
    per_epoch = len(make_batches(train_pairs, config.batch_size, random.Random(config.seed)))
    if per_epoch == 0:
        raise ValueError("too few training pairs to form a batch (need at least two distinct pairs)")
    planned = per_epoch * config.max_epochs
    warmup = max(1, int(planned * config.warmup_fraction))

    def lr_at(step: int) -> float:  # linear warmup, then linear decay over the planned steps
        if step < warmup:
            return (step + 1) / warmup
        return max(0.05, 1.0 - (step - warmup) / max(1, planned - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    result = TrainResult()
    result.base_dev_mrr = result.best_dev_mrr = dev_mrr(model, dev_pairs)
    result.dev.append((0, result.base_dev_mrr))
    best_state: dict[str, Any] | None = None
    since_best = 0
    step = 0
    smoothed: float | None = None

    def evaluate_now() -> bool:
        """Score dev; keep the best state; True when training should stop early."""
        nonlocal best_state, since_best
        mrr = dev_mrr(model, dev_pairs)
        result.dev.append((step, mrr))
        if mrr > result.best_dev_mrr or not dev_pairs:
            result.best_dev_mrr, result.best_step = mrr, step
            best_state = copy.deepcopy(model.state_dict())
            since_best = 0
        else:
            since_best += 1
        return bool(dev_pairs) and since_best >= config.patience

    stop = ""
    for epoch in range(config.max_epochs):
        batches = make_batches(train_pairs, config.batch_size, rng)
        for bi, batch in enumerate(batches):
            if time.perf_counter() >= deadline:
                stop = "budget"
                break
            model.train()
            columns = [[p.query for p in batch], [p.positive for p in batch]]
            if all(p.negative for p in batch):
                columns.append([p.negative or "" for p in batch])
            features = [tokenize(col) for col in columns]
            loss = loss_fn(features, torch.empty(0))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            step += 1
            value = float(loss.item())
            smoothed = value if smoothed is None else 0.9 * smoothed + 0.1 * value
            result.losses.append((step, value))
            last_of_epoch = bi == len(batches) - 1
            mrr = None
            if step % config.eval_every == 0 or last_of_epoch:
                if evaluate_now():
                    stop = "early-stop"
                mrr = result.dev[-1][1]
            if progress is not None:
                progress(step, planned, smoothed, mrr)
            if stop:
                break
        result.epochs = round(epoch + (bi + 1) / max(1, len(batches)), 2)
        if stop:
            break
    else:
        stop = "epochs"
    if stop == "budget" and (not result.dev or result.dev[-1][0] != step):
        evaluate_now()
    result.steps, result.stopped = step, stop
    result.seconds = round(time.perf_counter() - started, 1)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.max_seq_length = own_length
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(str(tmp))
    os.replace(tmp, out_dir)
    return result


def plot_curve(result: TrainResult | AdapterResult, path: Path, *, title: str = "") -> None:
    """Training loss (raw and smoothed) and dev MRR per step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    if result.losses:
        steps, values = zip(*result.losses, strict=True)
        ax.plot(steps, values, color="tab:blue", alpha=0.3, label="train loss")
        window = max(1, len(values) // 20)
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1 :], smooth, color="tab:blue", label=f"train loss (mean of {window})")
    ax.set_xlabel("step")
    ax.set_ylabel("train loss")
    if result.dev:
        ax2 = ax.twinx()
        ds, dv = zip(*result.dev, strict=True)
        ax2.plot(ds, dv, "o-", color="tab:orange", label="dev MRR")
        ax2.set_ylabel("dev MRR")
        if result.best_step:
            ax2.axvline(result.best_step, color="tab:orange", ls=":", lw=1)
        ax2.legend(loc="upper right")
    ax.legend(loc="upper left")
    ax.set_title(title or f"{result.steps} steps, {result.seconds:.0f} s, stopped: {result.stopped}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

