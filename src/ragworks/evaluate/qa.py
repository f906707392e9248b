"""`ragworks eval qa`: answer quality end to end, through the same `Collection.ask` the CLI and the API use.

Datasets: SQuAD JSON (v1.1; v2.0's `is_impossible` questions are unanswerable) and JSONL lines
`{"question", "answers": [...], "unanswerable"?, "gold_sources"?, "context"?, "id"?}`. Their contexts are ingested
into a collection (one document per paragraph); `held_out_fraction` makes questions unanswerable by leaving their
articles out of it. Every configuration (a set of Settings overrides: `llm=extractive`, `llm=local`, …) answers
every question; `score` turns the per-question records into the metrics, `apply_policy` re-decides abstention
offline with a fitted policy (exactly the rule `AnswerStream` applies online).
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ragworks.documents import Answer, Document
from ragworks.errors import ConfigError
from ragworks.evaluate import answer_metrics as am
from ragworks.generate.abstain import AbstentionPolicy
from ragworks.generate.prompt import NO_ANSWER


@dataclass
class QAItem:
    id: str
    question: str
    answers: list[str]
    unanswerable: bool = False
    gold_sources: list[str] = field(default_factory=list)  # sources of the passages that hold the answer
    article: str = ""


@dataclass
class QADataset:
    name: str
    items: list[QAItem]
    documents: dict[str, list[Document]]  # article → its paragraphs (what is ingested)


def article_split(title: str) -> str:
    """"dev" for a third of the articles (by a hash of the title), "test" for the rest: tune on one, report on the
    other, the same way on every machine."""
    return "dev" if int(hashlib.sha1(title.encode()).hexdigest(), 16) % 3 == 0 else "test"


def load_squad(path: Path, *, articles: str = "all") -> QADataset:
    """SQuAD v1.1 / v2.0 JSON: one document per paragraph (source `title#i`), questions keep their paragraph."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))["data"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is not SQuAD-format JSON (a top-level 'data' list): {exc}") from exc
    items: list[QAItem] = []
    documents: dict[str, list[Document]] = {}
    for article in data:
        title = str(article.get("title", ""))
        if articles != "all" and article_split(title) != articles:
            continue
        docs = documents.setdefault(title, [])
        for i, para in enumerate(article.get("paragraphs", [])):
            source = f"{title}#{i}"
            docs.append(Document(source=source, text=para["context"], title=title.replace("_", " ")))
            for qa in para.get("qas", []):
                impossible = bool(qa.get("is_impossible", False))
                answers = list(dict.fromkeys(a["text"] for a in qa.get("answers", []) if a.get("text")))
                if not answers and not impossible:
                    continue
                items.append(QAItem(str(qa["id"]), qa["question"], answers, impossible,
                                    [] if impossible else [source], title))
    return QADataset(path.stem, items, documents)


def load_jsonl(path: Path) -> QADataset:
    """JSONL questions; lines with a `context` contribute it as a document (gold for that question)."""
    items: list[QAItem] = []
    docs: list[Document] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                question = str(rec["question"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"{path}:{n}: not a JSON object with a 'question' ({exc})") from exc
            answers = rec.get("answers") or []
            answers = [answers] if isinstance(answers, str) else [str(a) for a in answers]
            gold = [str(s) for s in rec.get("gold_sources") or rec.get("doc_ids") or []]
            context = rec.get("context")
            if context:
                source = f"ctx-{hashlib.sha1(context.encode()).hexdigest()[:12]}"
                if source not in seen:
                    seen.add(source)
                    docs.append(Document(source=source, text=str(context), title=str(rec.get("title", ""))))
                gold = gold or [source]
            unanswerable = bool(rec.get("unanswerable", not answers))
            items.append(QAItem(str(rec.get("id", n)), question, answers, unanswerable, gold,
                                str(rec.get("title", ""))))
    return QADataset(path.stem, items, {"": docs} if docs else {})


def load_dataset(path: Path, *, articles: str = "all") -> QADataset:
    if not path.is_file():
        raise ConfigError(f"no such dataset file: {path}")
    return load_jsonl(path) if path.suffix in (".jsonl", ".ndjson") else load_squad(path, articles=articles)


def select(dataset: QADataset, *, sample: int | None, seed: int, held_out_fraction: float = 0.0
           ) -> tuple[list[QAItem], list[Document], list[str]]:
    """The questions to ask, the documents to ingest, and the held-out articles.

    With `held_out_fraction` F, that share of the articles (chosen by `seed`) is left out of the collection and
    their questions become unanswerable; a sample of N questions then takes round(N·F) of those.
    """
    rng = random.Random(seed)
    articles = sorted(dataset.documents)
    held: set[str] = set()
    if held_out_fraction > 0:
        if not 0 < held_out_fraction < 1 or len(articles) < 2:
            raise ConfigError("--unanswerable-from-held-out-articles needs a FRACTION in (0, 1) and a dataset with "
                              "several articles (SQuAD JSON)")
        shuffled = articles[:]
        rng.shuffle(shuffled)
        held = set(shuffled[: max(1, round(held_out_fraction * len(articles)))])
    answerable, unanswerable = [], []
    for it in dataset.items:
        if it.article in held:
            unanswerable.append(QAItem(it.id, it.question, it.answers, True, [], it.article))
        elif it.unanswerable:
            unanswerable.append(it)
        else:
            answerable.append(it)
    if sample is not None:
        n_un = round(sample * held_out_fraction) if held else round(sample * len(unanswerable) /
                                                                     max(1, len(dataset.items)))
        n_un = min(n_un, len(unanswerable))
        answerable = rng.sample(answerable, min(len(answerable), sample - n_un))
        unanswerable = rng.sample(unanswerable, n_un)
    items = answerable + unanswerable
    rng.shuffle(items)
    docs = [d for a in articles if a not in held for d in dataset.documents[a]]
    return items, docs, sorted(held)


# --- asking


def record(item: QAItem, answer: Answer, seconds: float) -> dict[str, Any]:
    """What one question leaves for scoring (kept in the JSON report)."""
    gold_sources = set(item.gold_sources)
    given_gold = [i for i, h in enumerate(answer.sources, 1)
                  if h.source in gold_sources or (item.answers and am.citation_correct(h.chunk.text, item.answers))]
    cites = [{"number": c.number, "source": c.source,
              "correct": bool(item.answers) and 1 <= c.number <= len(answer.sources)
              and am.citation_correct(answer.sources[c.number - 1].chunk.text, item.answers)}
             for c in answer.citations]
    checked = [s for s in answer.sentences if s.status != "neutral"]
    delivered = [s for s in checked if s.start >= 0]  # strict grounding drops unsupported sentences
    evidence = dict((answer.abstention or {}).get("evidence") or {})
    return {
        "id": item.id, "question": item.question, "answers": item.answers, "unanswerable": item.unanswerable,
        "prediction": answer.text, "abstained": answer.abstained,
        "declined": (answer.abstention or {}).get("stage") == "answerer",
        "citations": cites, "gold_given": given_gold,
        "gold_hit": any(h.source in gold_sources for h in answer.sources),
        "sentences": len(delivered), "unsupported": sum(s.status == "unsupported" for s in delivered),
        "reattributed": sum(s.status == "reattributed" for s in delivered),
        "draft_sentences": len(checked), "draft_unsupported": sum(s.status == "unsupported" for s in checked),
        "seconds": seconds, "tokens": answer.generated_tokens, "generation_s": answer.generation_s,
        "evidence": evidence, "model": answer.model,
    }


def ask_all(col: Any, items: Sequence[QAItem], progress: Callable[[int], None] | None = None
            ) -> list[dict[str, Any]]:
    out = []
    for i, item in enumerate(items, 1):
        started = time.perf_counter()
        answer = col.ask(item.question)
        out.append(record(item, answer, time.perf_counter() - started))
        if progress:
            progress(i)
    return out


def apply_policy(records: Sequence[dict[str, Any]], policy: AbstentionPolicy) -> list[dict[str, Any]]:
    """Records as they would be had `policy` decided abstention (the answerer's own declines stay)."""
    out = []
    for r in records:
        p = policy.probability(r["evidence"])
        if not r["declined"] and (p < policy.threshold) != r["abstained"]:
            r = {**r, "abstained": p < policy.threshold}
            if r["abstained"]:
                r.update(prediction=NO_ANSWER, citations=[], sentences=0, unsupported=0, reattributed=0,
                         draft_sentences=0, draft_unsupported=0)
        out.append(r)
    return out


def _mean(xs: Sequence[float]) -> float | None:
    return float(np.mean(xs)) if len(xs) else None


def score(records: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """The metrics of one configuration (answer-text metrics over answerable questions; abstaining scores 0)."""
    ans = [r for r in records if not r["unanswerable"]]
    una = [r for r in records if r["unanswerable"]]
    preds = ["" if r["abstained"] else am.strip_markers(r["prediction"]) for r in ans]
    golds = [r["answers"] for r in ans]
    answered = [r for r in ans if not r["abstained"]]
    with_cites = [r for r in answered if r["citations"]]
    recall_base = [r for r in answered if r["gold_given"]]
    spoken = [r for r in records if not r["abstained"]]
    sentences = sum(r["sentences"] for r in spoken)
    drafts = sum(r["draft_sentences"] for r in spoken)
    gen_s = sum(r["generation_s"] for r in records if r["tokens"])
    return {
        "questions": len(records), "answerable": len(ans), "unanswerable": len(una),
        "exact_match": _mean([am.best_over(am.exact_match, p, g) for p, g in zip(preds, golds, strict=True)]),
        "f1": _mean([am.best_over(am.token_f1, p, g) for p, g in zip(preds, golds, strict=True)]),
        "rouge_l": _mean([am.best_over(am.rouge_l, p, g) if p else 0.0 for p, g in zip(preds, golds, strict=True)]),
        "bleu": am.corpus_bleu(preds, golds) if ans else None,
        "contains_gold": _mean([am.contains_gold(p, g) for p, g in zip(preds, golds, strict=True)]),
        "hit@k": _mean([float(r["gold_hit"]) for r in ans]),
        "citation_precision": _mean([sum(c["correct"] for c in r["citations"]) / len(r["citations"])
                                     for r in with_cites]),
        "citation_recall": _mean([float(any(c["correct"] for c in r["citations"])) for r in recall_base]),
        "abstention_recall": _mean([float(r["abstained"]) for r in una]),
        "false_abstention": _mean([float(r["abstained"]) for r in ans]),
        "unsupported_rate": (sum(r["unsupported"] for r in spoken) / sentences) if sentences else None,
        "draft_unsupported_rate": (sum(r["draft_unsupported"] for r in spoken) / drafts) if drafts else None,
        "reattributed_rate": (sum(r["reattributed"] for r in spoken) / sentences) if sentences else None,
        "s_per_answer": _mean([r["seconds"] for r in records]),
        "tokens_per_s": (sum(r["tokens"] for r in records) / gen_s) if gen_s else None,
    }


def parse_config(spec: str) -> tuple[str, dict[str, Any]]:
    """`extractive` → ("extractive", {llm: extractive}); `local,grounding=strict` → Settings overrides; an
    optional `name=` names the configuration in the report."""
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if not parts:
        raise ConfigError("an empty --llm configuration")
    overrides: dict[str, Any] = {}
    name = ""
    for p in parts:
        if "=" in p:
            k, v = (x.strip() for x in p.split("=", 1))
            if k == "name":
                name = v
            else:
                overrides[k.replace("-", "_")] = v
        else:
            overrides["llm"] = p
    return name or spec, overrides
