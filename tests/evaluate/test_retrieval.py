"""Evaluation through a real collection: ingest once, fuse cached legs exactly as Collection.search does.

The embedder is a hashed bag of words, not a model: these tests check the plumbing (ingest reuse, fusion equal to
`Collection.search`, reports), and stay fast; bench/retrieval.py measures the real model.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from ragworks.config import Settings
from ragworks.embed.base import normalize
from ragworks.errors import ConfigError
from ragworks.evaluate.beir import load_beir
from ragworks.evaluate.configs import parse_config
from ragworks.evaluate.retrieval import (
    LegCache,
    agreement,
    as_run_scores,
    best_chunk_ranking,
    evaluate_configs,
    open_for_dataset,
)

TOPICS = {
    "vit": ("Vitamin D and bone density", "Vitamin D deficiency accelerates bone loss in elderly women. "
            "Supplementation with vitamin D and calcium reduced hip fractures."),
    "statin": ("Statins and LDL", "Statin therapy lowers LDL cholesterol and cardiovascular mortality."),
    "sleep": ("Sleep and memory", "Slow-wave sleep consolidates declarative memory in adolescents."),
    "covid": ("Masks and respiratory infection", "Surgical masks reduced influenza transmission in households."),
    "coffee": ("Coffee and liver", "Coffee drinking is associated with lower rates of liver cirrhosis."),
    "run": ("Running and knees", "Recreational running does not increase knee osteoarthritis risk."),
    "salt": ("Sodium and blood pressure", "Reducing dietary salt lowers systolic blood pressure."),
    "gut": ("Gut microbiome", "Antibiotics disrupt the gut microbiome for months after treatment."),
}
QUERIES = {"q1": "does vitamin D prevent fractures", "q2": "statins reduce cholesterol",
           "q3": "salt intake and hypertension", "q4": "does sleep help memory"}
QRELS = "query-id\tcorpus-id\tscore\nq1\tvit\t2\nq2\tstatin\t1\nq3\tsalt\t1\nq4\tsleep\t1\nq4\tgut\t0\n"


class HashEmbedder:
    """Bag-of-words vectors from hashed words: deterministic, instant, and enough to exercise the dense leg."""

    name = "test:hash-bow-64"
    dimension = 64
    max_tokens = 512

    def _vectors(self, texts) -> np.ndarray:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().split():
                out[i, int(hashlib.md5(word.strip(".,?").encode()).hexdigest(), 16) % self.dimension] += 1.0
        return normalize(out)

    def embed_documents(self, texts) -> np.ndarray:
        return self._vectors(texts)

    def embed_queries(self, texts) -> np.ndarray:
        return self._vectors(texts)

    def count_tokens(self, texts) -> list[int]:
        return [len(t.split()) for t in texts]


@pytest.fixture(scope="module")
def embedder() -> HashEmbedder:
    return HashEmbedder()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("beir") / "tiny"
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": k, "title": t, "text": x}) + "\n" for k, (t, x) in TOPICS.items()))
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in QUERIES.items()))
    (root / "qrels" / "test.tsv").write_text(QRELS)
    return root


def test_a_document_scores_as_its_best_chunk() -> None:
    row_doc = {1: "a", 2: "b", 3: "a", 4: "c"}
    assert best_chunk_ranking([(3, 0.9), (2, 0.8), (1, 0.7), (4, 0.1)], row_doc) == ["a", "b", "c"]
    assert best_chunk_ranking([(3, 0.9), (2, 0.8), (4, 0.1)], row_doc, depth=2) == ["a", "b"]
    assert as_run_scores(["a", "b", "c"]) == {"a": 3.0, "b": 2.0, "c": 1.0}


def test_parse_config_reads_options_and_rejects_unknown_ones() -> None:
    s = Settings(rrf_k=60, dense_weight=0.5, candidates=100)
    cfg = parse_config("hybrid-weighted:w=0.7,candidates=200", s)
    assert (cfg.kind, cfg.fusion, cfg.dense_weight, cfg.candidates) == ("hybrid", "weighted", 0.7, 200)
    assert parse_config("hybrid-rrf:k=20", s).rrf_k == 20
    assert parse_config("hybrid", s).fusion == s.fusion
    inhouse = parse_config("hybrid-rrf:lex=inhouse,k1=0.9", s)
    assert (inhouse.lexical, inhouse.k1, inhouse.legs) == ("inhouse", 0.9, ("dense", "inhouse:k1=0.9,b=0.75"))
    with pytest.raises(ConfigError, match="lex=inhouse applies to bm25 and hybrid"):
        parse_config("dense:lex=inhouse", s)
    assert parse_config("hybrid", s).legs == ("dense", "bm25")  # the store's leg, as `ragworks search` runs it
    assert parse_config("bm25:lex=fts5", s).legs == ("fts5",)
    with pytest.raises(ConfigError, match="unknown option 'alpha=1'"):
        parse_config("hybrid:alpha=1", s)
    with pytest.raises(ConfigError, match="unknown config 'splade'"):
        parse_config("splade", s)


def test_rerunning_an_evaluation_reuses_the_ingested_collection(tiny: Path, tmp_path: Path, embedder) -> None:
    settings = Settings(data_dir=tmp_path, llm="extractive")
    ds = load_beir(tiny)
    col, first = open_for_dataset(ds, settings, embedder=embedder)
    col.close()
    col, again = open_for_dataset(ds, settings, embedder=embedder)
    col.close()
    assert first.chunks_embedded > 0
    assert again.chunks_embedded == 0 and again.to_dict()["unchanged"] == 1


def test_cached_leg_fusion_ranks_exactly_like_collection_search(tiny: Path, tmp_path: Path, embedder) -> None:
    ds = load_beir(tiny)
    col, _ = open_for_dataset(ds, Settings(data_dir=tmp_path, llm="extractive"), embedder=embedder)
    try:
        cache = LegCache(col, ds)
        configs = [parse_config(c) for c in ("bm25", "dense", "hybrid-rrf:k=10", "hybrid-weighted:w=0.3,candidates=3",
                                             "bm25:lex=inhouse", "hybrid-rrf:lex=inhouse,k1=0.9,b=0.4",
                                             "bm25:lex=fts5", "hybrid-weighted:w=0.3,lex=fts5")]
        results = evaluate_configs(ds, configs, col=col, cache=cache, latency_queries=2, latency_warmup=1,
                                   check_queries=0)
        for cfg in configs:
            assert agreement(cfg, cache, ds.queries, k=5) == 1.0, cfg.name
        by_name = {r.config.name: r for r in results}
        assert by_name["hybrid-rrf:k=10"].metrics["ndcg@10"] > 0.8
        assert by_name["bm25"].latency is not None and by_name["bm25"].latency.queries == 2
        assert set(cache.row_doc.values()) <= set(TOPICS)
        assert cache.view("fts5").store._bm25 is None and col.store._bm25 is not None  # FTS5 vs in memory
    finally:
        col.close()


def test_cli_writes_json_markdown_and_png(tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("bm25s")
    pytest.importorskip("matplotlib")
    from typer.testing import CliRunner

    from ragworks.cli import app

    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["eval", "beir", str(tiny), "--config", "bm25s", "--out", str(out),
                                      "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "results.json").read_text())
    assert report["datasets"][0]["configs"][0]["name"] == "bm25s"
    assert "| tiny | `bm25s` |" in (out / "results.md").read_text()
    assert (out / "results.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_reports_a_malformed_dataset_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from ragworks.cli import main

    (tmp_path / "bad").mkdir()
    monkeypatch.setattr(sys, "argv", ["ragworks", "eval", "beir", str(tmp_path / "bad"), "--data-dir", str(tmp_path)])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "no corpus.jsonl" in err and "Traceback" not in err
