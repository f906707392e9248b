"""The ONNX Runtime backend against the torch model it was exported from (real export, real quantization)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from ragworks.config import Settings
from ragworks.embed import embedder_name, make_embedder
from ragworks.embed import onnx as onnx_mod
from ragworks.embed.onnx import OnnxEmbedder
from ragworks.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
SCIFACT = REPO.parent / "shared" / "data" / "scifact" / "corpus.jsonl"

pytestmark = pytest.mark.slow  # the first test of a session exports and quantizes the model (~15 s)


def real_passages(n: int = 32) -> list[str]:
    """SciFact abstracts when the shared data is there, else the shipped sample corpus's markdown files."""
    if SCIFACT.exists():
        out = []
        with SCIFACT.open(encoding="utf-8") as f:
            for line in f:
                r = json.loads(line)
                out.append(f"{r['title']}\n{r['text']}")
                if len(out) == n:
                    break
        return out
    return [p.read_text(encoding="utf-8")[:1500] for p in sorted((REPO / "examples" / "sample-corpus").glob("*.md"))]


QUERIES = [
    "Who invented the Fresnel lens?",
    "Vitamin D deficiency increases the risk of tuberculosis.",
    "How do fog signals warn ships?",
    "0-dimensional biomaterials show inductive properties.",
    "What happened to the keepers of the Flannan Isles lighthouse?",
]


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def onnx_int8(onnx_cache) -> OnnxEmbedder:
    return OnnxEmbedder("all-MiniLM-L6-v2", cache_dir=onnx_cache, quantize=True)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray((a * b).sum(axis=1))


def test_int8_vectors_stay_within_cosine_099_of_torch_on_real_passages(onnx_int8, embedder):
    texts = real_passages()
    ours, ref = onnx_int8.embed_documents(texts), embedder.embed_documents(texts)
    assert ours.shape == ref.shape == (len(texts), 384) and ours.dtype == np.float32
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cos = cosines(ours, ref)
    assert cos.mean() >= 0.99 and cos.min() >= 0.98, (cos.mean(), cos.min())
    q = cosines(onnx_int8.embed_queries(QUERIES), embedder.embed_queries(QUERIES))
    assert q.min() >= 0.98 and q.mean() >= 0.99, q


def test_fp32_export_reproduces_torch_vectors(onnx_cache, embedder):
    fp32 = OnnxEmbedder("all-MiniLM-L6-v2", cache_dir=onnx_cache, quantize=False)
    texts = real_passages(16) + QUERIES
    assert cosines(fp32.embed_documents(texts), embedder.embed_documents(texts)).min() > 0.9999


def test_onnx_ranks_a_real_corpus_like_torch(onnx_int8, embedder):
    passages = real_passages()
    docs_t, docs_o = embedder.embed_documents(passages), onnx_int8.embed_documents(passages)
    queries = [p.split("\n")[0] for p in passages[:20]]  # each passage's title asks for that passage
    qt, qo = embedder.embed_queries(queries), onnx_int8.embed_queries(queries)
    top_t, top_o = np.argsort(-(qt @ docs_t.T), axis=1)[:, :5], np.argsort(-(qo @ docs_o.T), axis=1)[:, :5]
    assert (top_t[:, 0] == top_o[:, 0]).mean() >= 0.95
    overlap = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(top_t, top_o, strict=True)])
    assert overlap >= 0.9, overlap


def test_second_load_reuses_the_cached_export(onnx_int8, onnx_cache, monkeypatch):
    path = onnx_int8.onnx_path
    assert path.parent.parent == onnx_cache and path.name == "model-int8.onnx"
    mtime = path.stat().st_mtime_ns

    def no_export(*args: object) -> None:
        raise AssertionError("exported again although the cache holds the model")

    monkeypatch.setattr(onnx_mod, "_export_fp32", no_export)
    monkeypatch.setattr(onnx_mod, "_quantize", no_export)
    t0 = time.perf_counter()
    again = OnnxEmbedder("all-MiniLM-L6-v2", cache_dir=onnx_cache)
    assert time.perf_counter() - t0 < 10
    assert again.onnx_path == path and path.stat().st_mtime_ns == mtime
    assert not list(path.parent.glob("*.tmp*"))  # atomic writes leave no temporaries
    assert np.allclose(again.embed_queries(QUERIES[:2]), onnx_int8.embed_queries(QUERIES[:2]), atol=1e-6)


def test_settings_select_the_onnx_backend_with_the_torch_models_name(onnx_cache, embedder):
    settings = Settings(embed_backend="onnx", onnx_cache_dir=onnx_cache)
    emb = make_embedder(settings)
    assert isinstance(emb, OnnxEmbedder)
    # Same name: a collection built by either backend can be queried by the other (cosine ≥ 0.99).
    assert emb.name == embedder.name == embedder_name(settings)
    assert emb.count_tokens(QUERIES) == embedder.count_tokens(QUERIES)
    assert emb.max_tokens == embedder.max_tokens


def test_token_vectors_match_torch_token_embeddings(onnx_cache, embedder):
    fp32 = OnnxEmbedder("all-MiniLM-L6-v2", cache_dir=onnx_cache, quantize=False)
    ours = fp32.token_vectors(QUERIES[:2])
    ref = embedder._model.encode(QUERIES[:2], output_value="token_embeddings")
    for a, b in zip(ours, ref, strict=True):
        assert np.allclose(a, b.numpy()[1:-1], atol=1e-3)


def test_a_model_without_mean_pooling_is_refused_with_a_clear_error(tmp_path):
    from ragworks.embed.local import resolve_model_dir

    src = resolve_model_dir("all-MiniLM-L6-v2")
    model = tmp_path / "cls-model"
    (model / "1_Pooling").mkdir(parents=True)
    (model / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": False,
                                                                   "pooling_mode_cls_token": True}))
    (model / "tokenizer.json").write_bytes((src / "tokenizer.json").read_bytes())
    with pytest.raises(ConfigError, match="mean-pooling"):
        OnnxEmbedder(str(model), cache_dir=tmp_path / "cache")


def test_a_model_saved_by_sentence_transformers_5_loads_and_unknown_modules_are_refused(tmp_path, onnx_cache,
                                                                                         embedder):
    import shutil

    from ragworks.embed.local import resolve_model_dir

    # sentence-transformers 5 (what `ragworks tune` saves with) writes {"pooling_mode": "mean"}
    model = tmp_path / "st5-model"
    shutil.copytree(resolve_model_dir("all-MiniLM-L6-v2"), model)
    (model / "1_Pooling" / "config.json").write_text(json.dumps({"embedding_dimension": 384,
                                                                   "pooling_mode": "mean"}))
    got = OnnxEmbedder(str(model), cache_dir=onnx_cache).embed_queries(QUERIES[:2])
    assert ((got * embedder.embed_queries(QUERIES[:2])).sum(axis=1) > 0.99).all()
    modules = json.loads((model / "modules.json").read_text())
    modules.insert(2, {"idx": 2, "name": "2", "path": "2_Custom", "type": "somewhere.CustomLayer"})
    (model / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ConfigError, match="CustomLayer"):  # never silently skipped: vectors would not match
        OnnxEmbedder(str(model), cache_dir=onnx_cache)
