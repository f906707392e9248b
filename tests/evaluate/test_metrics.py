"""Our metrics against trec_eval (pytrec_eval) and ranx on the same runs: equal to 1e-6."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from ragworks.evaluate.metrics import evaluate, per_query, ranked

pytrec_eval = pytest.importorskip("pytrec_eval")

CUTS = (1, 3, 5, 10, 100)
SHARED_DATA = Path(os.environ.get("RAGWORKS_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))


def synthetic(seed: int, *, queries: int = 200, docs: int = 400, ties: bool = True) -> tuple[dict, dict]:
    """Many queries with graded qrels (0/1/2, some queries all-zero), scores with ties, varied run depths."""
    rng = random.Random(seed)
    run: dict[str, dict[str, float]] = {}
    qrels: dict[str, dict[str, int]] = {}
    for q in range(queries):
        qid = f"q{q}"
        judged = rng.sample(range(docs), rng.randint(1, 12))
        qrels[qid] = {f"d{d}": rng.choice((0, 1, 1, 2)) for d in judged}
        depth = rng.choice((0, 5, 30, 150))
        pool = rng.sample(range(docs), depth)
        # Push some judged docs into the run so the metrics are not all zero.
        pool += [d for d in judged if rng.random() < 0.6 and d not in pool]
        run[qid] = {f"d{d}": (round(rng.random(), 1) if ties else rng.random()) for d in pool}
        if not run[qid]:
            del run[qid]
    return run, qrels


def trec(run: dict, qrels: dict) -> dict[str, dict[str, float]]:
    measures = {f"ndcg_cut.{','.join(map(str, CUTS))}", f"recall.{','.join(map(str, CUTS))}",
                f"map_cut.{','.join(map(str, CUTS))}", "recip_rank"}
    return pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ndcg_recall_map_equal_trec_eval_with_ties_and_graded_qrels(seed: int) -> None:
    run, qrels = synthetic(seed)
    ref = trec(run, qrels)
    ours = per_query(run, qrels, [f"{m}@{k}" for m in ("ndcg", "recall", "map") for k in CUTS])
    assert set(ref) == set(run)  # pytrec_eval only scores queries present in the run
    for qid, values in ref.items():
        for k in CUTS:
            assert ours[f"ndcg@{k}"][qid] == pytest.approx(values[f"ndcg_cut_{k}"], abs=1e-6)
            assert ours[f"recall@{k}"][qid] == pytest.approx(values[f"recall_{k}"], abs=1e-6)
            assert ours[f"map@{k}"][qid] == pytest.approx(values[f"map_cut_{k}"], abs=1e-6)


def test_mrr_at_k_equals_trec_eval_recip_rank_of_the_cut_run() -> None:
    run, qrels = synthetic(3)
    for k in (1, 10, 1000):
        cut = {q: {d: scores[d] for d in ranked(scores)[:k]} for q, scores in run.items()}
        ref = trec(cut, qrels)
        ours = per_query(run, qrels, [f"mrr@{k}"])[f"mrr@{k}"]
        for qid, values in ref.items():
            assert ours[qid] == pytest.approx(values["recip_rank"], abs=1e-6)


def test_missing_queries_count_as_zero_in_the_mean() -> None:
    run, qrels = synthetic(4)
    ref = trec(run, qrels)
    mean = evaluate(run, qrels, ["ndcg@10"])["ndcg@10"]
    assert mean == pytest.approx(sum(v["ndcg_cut_10"] for v in ref.values()) / len(qrels), abs=1e-9)
    assert len(run) < len(qrels)


@pytest.mark.slow  # importing ranx JIT-compiles its numba kernels: ~20 s on 2 cores
def test_means_equal_ranx_on_a_tie_free_run() -> None:
    ranx = pytest.importorskip("ranx")
    run, qrels = synthetic(5, ties=False)
    run = {q: r for q, r in run.items() if r}
    qrels = {q: j for q, j in qrels.items() if q in run and any(v > 0 for v in j.values())}
    run = {q: run[q] for q in qrels}
    metrics = ["ndcg@10", "recall@100", "mrr@10", "map@100", "ndcg@3"]
    ours = evaluate(run, qrels, metrics)
    theirs = ranx.evaluate(ranx.Qrels(qrels), ranx.Run(run), metrics)
    for m in metrics:
        assert ours[m] == pytest.approx(theirs[m], abs=1e-6), m


def test_a_query_with_only_irrelevant_judgements_scores_zero() -> None:
    qrels = {"q": {"a": 0, "b": 0}}
    run = {"q": {"a": 1.0, "b": 0.5}}
    assert evaluate(run, qrels, ["ndcg@10", "recall@10", "mrr@10", "map@10"]) == {
        "ndcg@10": 0.0, "recall@10": 0.0, "mrr@10": 0.0, "map@10": 0.0}


def test_unknown_metric_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown metric 'p@10'"):
        evaluate({}, {"q": {"a": 1}}, ["p@10"])


def test_a_real_bm25_run_on_a_scifact_slice_scores_as_in_trec_eval(tmp_path) -> None:
    """bm25s over 300 SciFact abstracts (the judged ones first), written as a TREC run file and read back."""
    bm25s = pytest.importorskip("bm25s")
    from ragworks.evaluate.beir import load_beir, read_corpus

    root = SHARED_DATA / "scifact"
    if not (root / "corpus.jsonl").is_file():
        pytest.skip("SciFact not available")
    ds = load_beir(root).limited(100)
    corpus = read_corpus(ds.corpus_path)
    judged = list(dict.fromkeys(d for j in ds.qrels.values() for d in j if d in corpus))
    ids = (judged + [d for d in corpus if d not in set(judged)])[:300]
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize([f"{corpus[d][0]} {corpus[d][1]}" for d in ids], show_progress=False),
                    show_progress=False)
    qids = list(ds.queries)
    docs, scores = retriever.retrieve(bm25s.tokenize([ds.queries[q] for q in qids], show_progress=False), k=100,
                                      show_progress=False)
    run_file = tmp_path / "bm25.run"
    run_file.write_text("".join(f"{q} Q0 {ids[d]} {r} {s:.6f} bm25s\n" for i, q in enumerate(qids)
                                for r, (d, s) in enumerate(zip(docs[i], scores[i], strict=True), 1)))
    with run_file.open() as f:
        run = pytrec_eval.parse_run(f)
    ref = trec(run, {q: dict(j) for q, j in ds.qrels.items()})
    ours = per_query(run, ds.qrels, ["ndcg@10", "recall@100", "map@100"])
    assert len(ref) == 100
    for qid, values in ref.items():
        assert ours["ndcg@10"][qid] == pytest.approx(values["ndcg_cut_10"], abs=1e-6)
        assert ours["recall@100"][qid] == pytest.approx(values["recall_100"], abs=1e-6)
        assert ours["map@100"][qid] == pytest.approx(values["map_cut_100"], abs=1e-6)
    assert 0.3 < evaluate(run, ds.qrels, ["ndcg@10"])["ndcg@10"] < 1.0
