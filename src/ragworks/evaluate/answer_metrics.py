"""Answer-level metrics: SQuAD exact match and token F1 (the official v1.1 script's normalization), ROUGE-L
(Google's `rouge-score`) and BLEU (`sacrebleu`), answer-contains-gold, and citation precision / recall.

Pure functions over strings; `[n]` markers are removed from a prediction before it is scored.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

_MARKER = re.compile(r"\s*\[\d+(?:\s*(?:,|;|-|–)\s*\d+)*\]")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def strip_markers(text: str) -> str:
    return _MARKER.sub("", text).strip()


def normalize_answer(s: str) -> str:
    """Lower case, no punctuation, no articles, single spaces (SQuAD v1.1 evaluate-v1.1.py)."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = Counter(pred) & Counter(ref)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def best_over(metric: Any, prediction: str, golds: Sequence[str]) -> float:
    """The metric against the closest of several gold answers (SQuAD's metric_max_over_ground_truths)."""
    return max((metric(prediction, g) for g in golds), default=0.0)


def contains_gold(prediction: str, golds: Sequence[str]) -> float:
    """1 when any normalized gold answer occurs in the normalized prediction (fair to sentence-long answers)."""
    pred = f" {normalize_answer(prediction)} "
    return float(any(f" {normalize_answer(g)} " in pred for g in golds if normalize_answer(g)))


@lru_cache(maxsize=1)
def _rouge_scorer() -> Any:
    try:
        from rouge_score import rouge_scorer
    except ImportError as exc:  # pragma: no cover - declared in the eval extra
        raise ImportError("ROUGE-L needs rouge-score: pip install 'ragworks[eval]'") from exc
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def rouge_l(prediction: str, gold: str) -> float:
    """ROUGE-L F-measure, as `rouge_score.rouge_scorer.RougeScorer(['rougeL'])` computes it."""
    return float(_rouge_scorer().score(gold, prediction)["rougeL"].fmeasure)


def corpus_bleu(predictions: Sequence[str], golds: Sequence[Sequence[str]]) -> float:
    """SacreBLEU corpus BLEU (0–100) with every gold answer as a reference (shorter lists padded by repetition)."""
    try:
        import sacrebleu
    except ImportError as exc:  # pragma: no cover - declared in the eval extra
        raise ImportError("BLEU needs sacrebleu: pip install 'ragworks[eval]'") from exc
    if not predictions:
        return 0.0
    width = max(len(g) for g in golds)
    streams = [[g[min(i, len(g) - 1)] for g in golds] for i in range(width)]
    return float(sacrebleu.corpus_bleu(list(predictions), streams).score)


def citation_correct(cited_text: str, golds: Sequence[str]) -> bool:
    """A citation is correct when the passage it points at contains a gold answer."""
    text = f" {normalize_answer(cited_text)} "
    return any(f" {normalize_answer(g)} " in text for g in golds if normalize_answer(g))
