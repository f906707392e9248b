"""A passage is tokenized once from file to vector, and the vectors are the model's own (issue 18)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ragworks.documents import Document
from ragworks.ingest.base import LoadOptions, LoadReport
from ragworks.ingest.chunker import Chunker
from ragworks.ingest.loaders import loader_for

REPO = Path(__file__).resolve().parents[2]


def _sample_docs(sample_corpus: Path) -> list[Document]:
    docs: list[Document] = []
    for path in sorted(p for p in sample_corpus.rglob("*") if p.is_file()):
        docs += list(loader_for(path)(path, str(path), LoadOptions(), LoadReport()))
    return docs


class CountingTokenizer:
    """Wraps a Rust tokenizer and records every text it is asked to tokenize."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.texts: list[str] = []

    def _batch(self, name: str, texts: list[str], **kw: Any) -> Any:
        self.texts += texts
        return getattr(self.inner, name)(texts, **kw)

    def encode(self, text: str, **kw: Any) -> Any:
        self.texts.append(text)
        return self.inner.encode(text, **kw)

    def encode_batch(self, texts: list[str], **kw: Any) -> Any:
        return self._batch("encode_batch", texts, **kw)

    def encode_batch_fast(self, texts: list[str], **kw: Any) -> Any:
        return self._batch("encode_batch_fast", texts, **kw)


def test_chunker_slices_each_chunks_ids_out_of_one_document_tokenization(embedder, sample_corpus):
    tok = embedder.passage_tokenizer
    assert tok is not None and tok.composable
    with_ids = Chunker(embedder.count_tokens, model_max_tokens=embedder.max_tokens, tokenizer=tok)
    counting = Chunker(embedder.count_tokens, model_max_tokens=embedder.max_tokens)
    chunks = 0
    for doc in _sample_docs(sample_corpus):
        a, b = with_ids.chunk(doc), counting.chunk(doc)
        # the same chunks as counting every sentence separately…
        assert [(c.start, c.end, c.context, c.token_count) for c in a] == \
               [(c.start, c.end, c.context, c.token_count) for c in b], doc.source
        for c in a:  # …and each carries exactly the ids of its index text
            assert c.token_ids is not None
            assert c.token_ids.tolist() == tok.ids([c.index_text])[0].tolist()
            chunks += 1
    assert chunks > 150


def test_embedding_token_ids_matches_sentence_transformers_encode(embedder, sample_corpus):
    chunker = Chunker(embedder.count_tokens, model_max_tokens=embedder.max_tokens,
                      tokenizer=embedder.passage_tokenizer)
    chunks = [c for doc in _sample_docs(sample_corpus)[:8] for c in chunker.chunk(doc)]
    texts = [c.index_text for c in chunks]
    reference = embedder._model.encode(texts, batch_size=16, convert_to_numpy=True, normalize_embeddings=True)
    from_ids = embedder.embed_token_ids([c.token_ids for c in chunks])
    from_text = embedder.embed_documents(texts)
    assert from_ids.shape == reference.shape and from_ids.dtype == np.float32
    assert float((from_ids * reference).sum(1).min()) > 0.9999
    assert float((from_text * reference).sum(1).min()) > 0.9999
    query = "Who invented the Fresnel lens?"
    ref_q = embedder._model.encode([query], normalize_embeddings=True)
    assert float((embedder.embed_queries([query]) * ref_q).sum()) > 0.9999


def test_a_passage_longer_than_the_model_limit_is_truncated_like_the_model_does(embedder):
    long_text = " ".join(["lighthouse keepers trimmed the wicks every night"] * 80)  # ~560 tokens
    reference = embedder._model.encode([long_text], normalize_embeddings=True)
    ids = embedder.passage_tokenizer.ids([long_text])
    assert len(ids[0]) > embedder.max_tokens
    assert float((embedder.embed_token_ids(ids) * reference).sum()) > 0.9999


def test_ingest_tokenizes_each_document_once_and_never_a_chunk_again(collection, sample_corpus, monkeypatch):
    emb = collection.embedder
    tok = emb.passage_tokenizer
    counter = CountingTokenizer(tok._tok)
    monkeypatch.setattr(tok, "_tok", counter)

    def no_second_tokenization(*a: Any, **kw: Any) -> Any:
        raise AssertionError("sentence-transformers tokenized a passage again")

    monkeypatch.setattr(emb._model, "tokenize", no_second_tokenization)
    report = collection.ingest(sample_corpus)
    assert report.ok and report.chunks_embedded > 150
    docs = {d.text for d in _sample_docs(sample_corpus)}
    contexts = set()
    for t in counter.texts:
        if t not in docs:
            contexts.add(t)
    # Every text tokenized is a whole document (once) or a context line (title › headings, once each).
    assert sum(1 for t in counter.texts if t in docs) == len(docs)
    # the rest are context lines (title › headings, a continued table's header rows), never a chunk's passage
    passages = {c.text for d in _sample_docs(sample_corpus) for c in collection._pipeline(None).chunker.chunk(d)}
    assert not (contexts & passages)
    # and the stored vectors are the model's
    hits = collection.search("Who invented the Fresnel lens?", k=3, mode="dense")
    assert "fresnel" in hits[0].source.lower()


def test_onnx_embedder_takes_the_same_ids(tmp_path, embedder):
    pytest.importorskip("onnxruntime")
    from ragworks.embed.onnx import OnnxEmbedder

    onnx = OnnxEmbedder("all-MiniLM-L6-v2", cache_dir=tmp_path, quantize=False)
    texts = ["The Fresnel lens was first installed at Cordouan in 1823.", "Keepers trimmed the wicks."]
    ids = onnx.passage_tokenizer.ids(texts)
    assert [x.tolist() for x in ids] == [x.tolist() for x in embedder.passage_tokenizer.ids(texts)]
    assert float((onnx.embed_token_ids(ids) * embedder.embed_documents(texts)).sum(1).min()) > 0.999


def test_dump_embed_runs_without_the_queue_and_server_extras(tmp_path):
    """`ragworks dump embed` imports neither celery nor fastapi (the base install lacks them)."""
    dump = tmp_path / "dump.jsonl"
    dump.write_text("".join(json.dumps({"_id": f"d{i}", "title": "T", "text": f"Passage number {i} about lamps."})
                            + "\n" for i in range(5)))
    blocker = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in ('celery', 'redis', 'fastapi', 'uvicorn', 'kombu'):\n"
        "            raise ImportError(f'{name} is not installed (blocked by the test)')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from ragworks.cli import main\n"
        "sys.argv = ['ragworks', 'dump', 'embed', sys.argv[1], '--shards', sys.argv[2], '--json']\n"
        "main()\n"
    )
    out = subprocess.run([sys.executable, "-c", blocker, str(dump), str(tmp_path / "shards")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout[out.stdout.index("{"):])["chunks"] == 5


def test_pipelined_dump_embed_writes_the_same_shards(tmp_path, embedder):
    """Tokenizing processes feeding the model give the vectors the in-process path gives."""
    from ragworks.config import Settings
    from ragworks.dumps.dump import embed_dump
    from ragworks.dumps.shards import ShardDir

    dump = tmp_path / "dump.jsonl"
    dump.write_text("".join(
        json.dumps({"_id": f"d{i}", "title": f"Station {i}",
                    "text": f"Record {i}. The keeper of lighthouse {i} logged wind force {i % 12}. " * (2 + i % 24)})
        + "\n" for i in range(24)))
    settings = Settings(data_dir=tmp_path / "data")
    a = embed_dump(dump, tmp_path / "a", settings, records_per_shard=8, prep_workers=0, embedder=embedder)
    b = embed_dump(dump, tmp_path / "b", settings, records_per_shard=8, prep_workers=2)
    assert a.chunks == b.chunks > 24 and b.written == 3
    for k in range(3):
        docs_a, vec_a = ShardDir(tmp_path / "a").read(k)
        docs_b, vec_b = ShardDir(tmp_path / "b").read(k)
        assert docs_a == docs_b
        assert float((vec_a * vec_b).sum(1).min()) > 0.9999
    rerun = embed_dump(dump, tmp_path / "b", settings, records_per_shard=8, prep_workers=2)
    assert rerun.skipped == 3 and rerun.written == 0


@pytest.mark.slow
def test_gpu_benchmark_script_runs_on_cpu_on_a_tiny_input(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "bench" / "embed_gpu.py"), "--tiny", "--device", "cpu",
                          "--passages", "96", "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "embed_gpu-tiny.json").read_text())
    phases = result["phases"]
    for phase in ("tokenizer, 1 thread", "prepare (chunk+tokenize), 1 core", "ceiling: model alone, default",
                  "sentence-transformers encode", "ragworks embed_token_ids", "dump embed end to end"):
        assert phases[phase]["per_s"] > 0, phase
    assert phases["agreement_min_cosine"]["value"] > 0.999
    assert phases["dump embed end to end"]["n"] >= 96
