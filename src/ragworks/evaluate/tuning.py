"""Choosing fusion defaults on training/dev queries (never on test): a grid over RRF k, dense weight, candidates.

Each grid point is scored by nDCG@10 from the cached legs (`LegCache`), so the sweep costs one retrieval per
query. Across datasets the winner maximizes the mean nDCG@10 over the datasets, each dataset weighing the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ragworks.evaluate.beir import BeirDataset
from ragworks.evaluate.configs import Lexical, RunConfig, hybrid
from ragworks.evaluate.metrics import evaluate
from ragworks.evaluate.retrieval import LegCache, collection_run

RRF_KS = (10, 20, 40, 60, 100)
DENSE_WEIGHTS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
CANDIDATES = (50, 100, 200, 400)
OBJECTIVE = "ndcg@10"


def grid(rrf_ks: Sequence[int] = RRF_KS, dense_weights: Sequence[float] = DENSE_WEIGHTS,
         candidates: Sequence[int] = CANDIDATES, *, lexical: Lexical = "store") -> list[RunConfig]:
    """Every hybrid configuration of the sweep: RRF over k × candidates, weighted over weight × candidates."""
    configs = [hybrid("rrf", rrf_k=k, candidates=c, lexical=lexical) for c in candidates for k in rrf_ks]
    configs += [hybrid("weighted", dense_weight=w, candidates=c, lexical=lexical)
                for c in candidates for w in dense_weights]
    return configs


@dataclass(slots=True)
class Sweep:
    """nDCG@10 (and Recall@100) of every grid point on each tuning dataset."""

    datasets: list[str]
    scores: dict[str, dict[str, dict[str, float]]]  # config name → dataset → metric → value
    configs: dict[str, RunConfig]

    def mean(self, name: str, metric: str = OBJECTIVE) -> float:
        return sum(self.scores[name][d][metric] for d in self.datasets) / len(self.datasets)

    def best(self, *, fusion: str | None = None, dataset: str | None = None) -> RunConfig:
        """The best configuration (optionally of one fusion method, or on one dataset); ties → earlier in grid."""
        names = [n for n, c in self.configs.items() if fusion is None or c.fusion == fusion]

        def objective(n: str) -> float:
            return self.scores[n][dataset][OBJECTIVE] if dataset else self.mean(n)

        return self.configs[max(names, key=objective)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "objective": f"mean {OBJECTIVE} over {', '.join(self.datasets)} (each dataset weighted equally)",
            "datasets": self.datasets,
            "grid": [
                {"name": n, **c.params(), "mean": round(self.mean(n), 5),
                 **{d: {m: round(v, 5) for m, v in self.scores[n][d].items()} for d in self.datasets}}
                for n, c in self.configs.items()
            ],
            "best": self.best().name,
            "best_rrf": self.best(fusion="rrf").name,
            "best_weighted": self.best(fusion="weighted").name,
            "best_per_dataset": {d: self.best(dataset=d).name for d in self.datasets},
        }


def sweep(tuning: Mapping[str, tuple[BeirDataset, LegCache]], configs: Sequence[RunConfig] | None = None) -> Sweep:
    """Score `configs` (default: `grid()`) on each tuning split; legs must cover the largest `candidates`."""
    configs = list(configs or grid())
    scores: dict[str, dict[str, dict[str, float]]] = {c.name: {} for c in configs}
    for label, (dataset, cache) in tuning.items():
        if dataset.split == "test":
            raise ValueError(f"{label}: refusing to tune on the test split")
        cache.fetch(dataset.queries, legs=sorted({leg for c in configs for leg in c.legs}))
        for cfg in configs:
            if cfg.candidates > cache.depth:
                raise ValueError(f"{cfg.name}: candidates exceed the cached leg depth {cache.depth}")
            run = collection_run(cfg, cache, dataset.queries)
            scores[cfg.name][label] = evaluate(run, dataset.qrels, [OBJECTIVE, "recall@100"])
    return Sweep(list(tuning), scores, {c.name: c for c in configs})
