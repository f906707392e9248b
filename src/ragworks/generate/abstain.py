"""Calibrated abstention: answer "the sources do not contain the answer" when the evidence says so.

The evidence is read off retrieval and the draft answer:
  dense_top        cosine of the best passage to the question (absolute, unlike min-max fused scores)
  top_score        the first hit's final score (fused, or the reranker's when one ran)
  question_overlap share of the question's content words found in the best-matching given passage
  answer_support   mean claim-level support of the draft answer (generate/verify.py); 0 when it declined
A logistic model over standardized features gives P(answerable); the answer abstains below `threshold`.
Coefficients and threshold are fitted on labelled dev questions (`ragworks eval qa --tune-abstention`, never on
a test split) and stored in the collection's `answering.json`; `DEFAULT_POLICY` was fitted the same way on the
tuning articles of SQuAD v1.1 dev (see bench/answers.py). Because support can only raise P(answerable), the
policy can abstain before generation when even a fully supported draft would fall short (no LLM time spent).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ragworks.documents import SearchHit
from ragworks.errors import ConfigError
from ragworks.lexical.analysis import Analyzer

FEATURES = ("dense_top", "top_score", "question_overlap", "answer_support")
POLICY_FILE = "answering.json"
_ANALYZER = Analyzer(min_chars=1)


@dataclass
class AbstentionPolicy:
    """P(answerable) = sigmoid(bias + Σ weight_f · (x_f − mean_f) / scale_f); abstain when it is < threshold."""

    weights: dict[str, float]
    means: dict[str, float]
    scales: dict[str, float]
    bias: float
    threshold: float
    fitted_on: str = ""  # what data chose it (shown with every decision)
    metrics: dict[str, float] = field(default_factory=dict)  # dev abstention recall / false-abstention rate

    def probability(self, evidence: Mapping[str, float | None]) -> float:
        z = self.bias
        for f, w in self.weights.items():
            x = evidence.get(f)
            x = self.means[f] if x is None else float(x)  # a missing signal (BM25-only search) counts as average
            z += w * (x - self.means[f]) / (self.scales[f] or 1.0)
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))

    def best_case(self, evidence: Mapping[str, float | None]) -> float:
        """P(answerable) if the draft answer turned out fully supported: below threshold, skip generating."""
        return self.probability({**evidence, "answer_support": 1.0})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AbstentionPolicy:
        try:
            return cls(weights=dict(d["weights"]), means=dict(d["means"]), scales=dict(d["scales"]),
                       bias=float(d["bias"]), threshold=float(d["threshold"]), fitted_on=str(d.get("fitted_on", "")),
                       metrics=dict(d.get("metrics", {})))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"abstention policy is malformed ({exc}); re-run `ragworks eval qa --tune-abstention`"
                              ) from exc


# Fitted by `python bench/answers.py --questions 300 --dev 120 --llm extractive,reranker=maxsim` (stage 1: `eval qa
# --tune-abstention` on SQuAD v1.1 dev's tuning third; 80 answerable + 40 held-out-article questions, extractive
# over MaxSim-reranked passages, which `answer_reranker = "auto"` gives by default): abstention 0.975, false
# abstention 0.0625 there; on the 300 + 150 held-out questions 0.847 and 0.037 (bench/results/answers-300-maxsim).
DEFAULT_POLICY = AbstentionPolicy(
    weights={"dense_top": 1.637, "top_score": 0.302, "question_overlap": 1.806, "answer_support": 0.485},
    means={"dense_top": 0.467, "top_score": 0.976, "question_overlap": 0.535, "answer_support": 0.817},
    scales={"dense_top": 0.169, "top_score": 0.058, "question_overlap": 0.233, "answer_support": 0.387},
    bias=1.831, threshold=0.628,
    fitted_on="built-in (SQuAD v1.1 dev articles, 120 questions, extractive over MaxSim-reranked passages)",
)


def retrieval_evidence(question: str, sources: Sequence[SearchHit]) -> dict[str, float | None]:
    """The retrieval half of the evidence (no model calls: scores the search already computed, and word overlap)."""
    dense = [h.dense_score for h in sources if h.dense_score is not None]
    q_terms = set(_ANALYZER(question))
    overlap = 0.0
    if q_terms:
        for h in sources:
            # index_text: the passage with its context (title, headings, a continued table's header rows)
            overlap = max(overlap, len(q_terms & set(_ANALYZER(h.title + " " + h.chunk.index_text))) / len(q_terms))
    return {"dense_top": max(dense) if dense else None, "top_score": sources[0].score if sources else None,
            "question_overlap": overlap}


def decide(policy: AbstentionPolicy, evidence: Mapping[str, float | None], *, stage: str) -> dict[str, Any]:
    """The decision and everything it was made from (this dict goes into the answer's JSON)."""
    p = policy.best_case(evidence) if stage == "retrieval" else policy.probability(evidence)
    return {"abstain": p < policy.threshold, "stage": stage, "p_answerable": round(p, 4),
            "threshold": policy.threshold, "evidence": {k: (None if v is None else round(float(v), 4))
                                                        for k, v in evidence.items()},
            "policy": policy.fitted_on}


# --- storage: the collection's answering.json (written atomically)

def policy_path(collection_path: Path) -> Path:
    return Path(collection_path) / POLICY_FILE


def load_policy(path: Path | None, *, model: str | None = None) -> AbstentionPolicy | None:
    """The policy in an `answering.json` — the one tuned for `model` (an answerer's name) if there is one, else the
    last one tuned — or a policy JSON of its own; None when there is no such file."""
    if path is None or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read abstention policy {path}: {exc}") from exc
    if model is not None and model in data.get("by_model", {}):
        return AbstentionPolicy.from_dict(data["by_model"][model])
    return AbstentionPolicy.from_dict(data.get("abstention", data))


def save_policy(path: Path, policy: AbstentionPolicy, *, model: str | None = None) -> Path:
    """Store `policy` in `path` as the latest one and, with `model`, as that answerer's (other keys are kept)."""
    data: dict[str, Any] = {}
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            data = {}
    data["abstention"] = policy.to_dict()
    if model is not None:
        data.setdefault("by_model", {})[model] = policy.to_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


# --- fitting on labelled dev questions

def _fill(rows: Sequence[Mapping[str, float | None]], features: Sequence[str]) -> np.ndarray:
    x = np.array([[np.nan if (v := r.get(f)) is None else float(v) for f in features] for r in rows],
                 dtype=np.float64)
    col_mean = np.nanmean(np.where(np.isnan(x), np.nan, x), axis=0) if len(x) else np.zeros(len(features))
    col_mean = np.nan_to_num(col_mean)
    return np.where(np.isnan(x), col_mean, x)


def fit_policy(rows: Sequence[Mapping[str, float | None]], answerable: Sequence[bool], *,
               max_false_abstention: float = 0.08, l2: float = 1.0, fitted_on: str = "") -> AbstentionPolicy:
    """Logistic regression (Newton's method, L2) of answerability on the evidence, then the threshold that abstains
    on the most unanswerable questions while wrongly abstaining on at most `max_false_abstention` of the answerable.
    """
    y = np.asarray(answerable, dtype=np.float64)
    if len(set(y.tolist())) < 2:
        raise ConfigError("tuning abstention needs both answerable and unanswerable questions "
                          "(SQuAD 2.0, `unanswerable` in JSONL, or --unanswerable-from-held-out-articles)")
    features = [f for f in FEATURES if any(r.get(f) is not None for r in rows)]
    x = _fill(rows, features)
    means, scales = x.mean(axis=0), x.std(axis=0)
    scales[scales == 0] = 1.0
    z = np.hstack([np.ones((len(x), 1)), (x - means) / scales])
    w = np.zeros(z.shape[1])
    reg = np.eye(z.shape[1]) * l2
    reg[0, 0] = 0.0
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ w, -30, 30)))
        grad = z.T @ (p - y) + reg @ w
        hess = (z * (p * (1 - p))[:, None]).T @ z + reg + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    probs = 1.0 / (1.0 + np.exp(-np.clip(z @ w, -30, 30)))
    pos, neg = probs[y == 1], probs[y == 0]
    best = (0.0, 0.0, 0.0)  # (recall, -false rate, threshold)
    for t in np.unique(np.concatenate([probs, [0.0]])):
        false_rate = float((pos < t).mean())
        recall = float((neg < t).mean())
        if false_rate <= max_false_abstention and (recall, -false_rate) > best[:2]:
            best = (recall, -false_rate, float(t))
    return AbstentionPolicy(
        weights={f: float(w[i + 1]) for i, f in enumerate(features)},
        means={f: float(means[i]) for i, f in enumerate(features)},
        scales={f: float(scales[i]) for i, f in enumerate(features)},
        bias=float(w[0]), threshold=best[2], fitted_on=fitted_on,
        metrics={"abstention_recall": best[0], "false_abstention": -best[1], "questions": float(len(y))},
    )
