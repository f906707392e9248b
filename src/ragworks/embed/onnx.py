"""ONNX Runtime bi-encoder: a sentence-transformers model exported once to ONNX (int8 MatMuls), run without torch.

The transformer is exported with `torch.onnx.export` and quantized with per-channel int8 weights on its MatMuls
only (plain dynamic int8 drifts to cosine 0.94 with torch; per-channel MatMul-only stays ≥ 0.99). Mean pooling and
normalization run in numpy. Exported files are cached under `cache_dir/<model>-<key>/`, written atomically under
a lock, so every later process only loads them.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ragworks.embed.base import normalize
from ragworks.embed.local import resolve_model_dir
from ragworks.embed.tokens import PassageTokenizer
from ragworks.errors import ConfigError

EXPORT_VERSION = 1  # bump when the export or quantization recipe changes: old cache entries are then ignored
OPSET = 17


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ragworks" / "onnx"


def model_key(model_dir: Path) -> str:
    """Identifies a model's weights and the export recipe (not the path: a reinstalled package reuses the cache)."""
    h = hashlib.sha256(f"export-v{EXPORT_VERSION}-opset{OPSET}".encode())
    for name in ("config.json", "tokenizer.json", "sentence_bert_config.json"):
        p = model_dir / name
        if p.exists():
            h.update(name.encode() + p.read_bytes())
    for weights in sorted(model_dir.glob("*.safetensors")) + sorted(model_dir.glob("pytorch_model*.bin")):
        st = weights.stat()
        h.update(f"{weights.name}:{st.st_size}".encode())
        with weights.open("rb") as f:  # size plus the header and first tensors tell weight files apart cheaply
            h.update(f.read(1 << 20))
    return h.hexdigest()[:16]


def _export_fp32(model_dir: Path, target: Path) -> None:
    """Export the transformer (token ids → last hidden state) to ONNX at `target`."""
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(model_dir), local_files_only=True).eval()

    class Encoder(torch.nn.Module):  # keyword arguments: transformers' forward() signatures move between releases
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    ids = torch.ones((2, 8), dtype=torch.long)
    inputs = (ids, torch.ones_like(ids), torch.zeros_like(ids))
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["last_hidden_state"] = {0: "batch", 1: "sequence"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent branches fixed at export
        torch.onnx.export(Encoder(), inputs, str(target), input_names=names, output_names=["last_hidden_state"],
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False)


def _quantize(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), per_channel=True, weight_type=QuantType.QInt8,
                     op_types_to_quantize=["MatMul"])


def ensure_onnx_model(model_dir: Path, cache_dir: Path, *, quantize: bool = True) -> Path:
    """The cached ONNX file for `model_dir` (exported, and quantized if asked, on first use; atomic, locked)."""
    folder = cache_dir / f"{model_dir.name}-{model_key(model_dir)}"
    target = folder / ("model-int8.onnx" if quantize else "model.onnx")
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be exporting the same model right now
        if target.exists():
            return target
        fp32 = folder / "model.onnx"
        if not fp32.exists():
            tmp = folder / f".model.onnx.{os.getpid()}.tmp"
            try:
                _export_fp32(model_dir, tmp)
                os.replace(tmp, fp32)
            finally:
                tmp.unlink(missing_ok=True)
        if quantize:
            tmp = folder / f".model-int8.onnx.{os.getpid()}.tmp.onnx"
            try:
                _quantize(fp32, tmp)
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
        (folder / "source.json").write_text(json.dumps({"model_dir": str(model_dir), "version": EXPORT_VERSION}))
    return target


_KNOWN_MODULES = ("Transformer", "Pooling", "Normalize", "Dense")


def dense_layers(model_dir: Path) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """(weight, bias) of each linear `Dense` module after pooling in a sentence-transformers model directory.

    Any other module the ONNX path does not implement is refused: silently skipping it would give query vectors
    that don't match the collection's (e.g. a `ragworks tune` adapter)."""
    spec = model_dir / "modules.json"
    if not spec.exists():
        return []
    layers: list[tuple[np.ndarray, np.ndarray | None]] = []
    for module in json.loads(spec.read_text()):
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        if kind not in _KNOWN_MODULES:
            raise ConfigError(f"{model_dir}: module {kind!r} is not supported by the ONNX backend; "
                              "use embed_backend = 'torch' for this model")
        if kind != "Dense":
            continue
        path = model_dir / module["path"]
        cfg = json.loads((path / "config.json").read_text())
        if not str(cfg.get("activation_function", "")).endswith("Identity"):
            raise ConfigError(f"{path}: the ONNX backend applies linear Dense layers only "
                              f"(activation {cfg.get('activation_function')!r}); use embed_backend = 'torch'")
        from safetensors.numpy import load_file

        weights = load_file(str(path / "model.safetensors"))
        layers.append((np.asarray(weights["linear.weight"], dtype=np.float32),
                       np.asarray(weights["linear.bias"], dtype=np.float32) if cfg.get("bias") else None))
    return layers


class OnnxEmbedder:
    """A sentence-transformers mean-pooling bi-encoder (e.g. all-MiniLM-L6-v2) run by ONNX Runtime on the CPU.

    Its `name` is the torch embedder's (`st:<model>`): vectors agree to cosine ≥ 0.99 and SciFact nDCG@10 moves
    by < 0.005, so either backend may query a collection the other built (bench/results/retrieval.md).
    Queries run on their own single-threaded session: one short sequence gains nothing from more threads and on
    a busy machine extra threads only contend.
    """

    def __init__(
        self,
        model: str = "all-MiniLM-L6-v2",
        *,
        cache_dir: Path | None = None,
        quantize: bool = True,
        threads: int = 0,
        query_threads: int = 1,
        batch_size: int = 32,
        query_prefix: str = "",
        passage_prefix: str = "",
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.model_dir = resolve_model_dir(model)
        cfg = self._read_config(self.model_dir)
        self._dense = dense_layers(self.model_dir)  # e.g. `ragworks tune`'s adapter: applied after pooling
        self.max_tokens = int(cfg.get("max_seq_length") or 256)
        self.onnx_path = ensure_onnx_model(self.model_dir, cache_dir or default_cache_dir(), quantize=quantize)
        self._ort = ort
        self._threads = threads
        self._query_threads = query_threads
        self._session = self._new_session(threads)
        self._query_session: Any = None
        self._input_names = {i.name for i in self._session.get_inputs()}
        tok = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        tok.no_padding()
        tok.enable_truncation(max_length=self.max_tokens)
        self._tokenizer = tok
        self._pad_id = int(tok.token_to_id("[PAD]") or 0)
        # Passages and queries are tokenized once, on a private copy without truncation (thread-safe to share).
        self._passages = PassageTokenizer.from_rust(tok, max_tokens=self.max_tokens, pad_id=self._pad_id)
        dim = self._session.get_outputs()[0].shape[-1]
        self.dimension = dim if isinstance(dim, int) else self._probe_dimension()
        if self._dense:
            self.dimension = int(self._dense[-1][0].shape[0])
        self._lock = threading.Lock()
        self.batch_size = batch_size
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        prefixes = f"|q={query_prefix}|p={passage_prefix}" if (query_prefix or passage_prefix) else ""
        self.name = f"st:{Path(model).name}{prefixes}"  # same as the torch embedder's: see the class docstring

    @staticmethod
    def _read_config(model_dir: Path) -> dict[str, Any]:
        pooling = model_dir / "1_Pooling" / "config.json"
        if pooling.exists():
            p = json.loads(pooling.read_text())
            # sentence-transformers < 5 writes pooling_mode_mean_tokens; 5 writes "pooling_mode": "mean"
            if not (p.get("pooling_mode_mean_tokens", False) or p.get("pooling_mode") == "mean"):
                raise ConfigError(f"{model_dir}: the ONNX backend supports mean-pooling models only; "
                                  "use embed_backend = 'torch' for this model")
        if not (model_dir / "tokenizer.json").exists():
            raise ConfigError(f"{model_dir}: no tokenizer.json (a fast tokenizer is needed for the ONNX backend); "
                              "use embed_backend = 'torch'")
        st = model_dir / "sentence_bert_config.json"
        return json.loads(st.read_text()) if st.exists() else {}

    def _new_session(self, threads: int) -> Any:
        opts = self._ort.SessionOptions()
        if threads > 0:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        opts.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return self._ort.InferenceSession(str(self.onnx_path), opts, providers=["CPUExecutionProvider"])

    def _probe_dimension(self) -> int:
        return int(self._run(self._session, ["probe"]).shape[1])

    def _run(self, session: Any, texts: Sequence[str]) -> np.ndarray:
        return self._pool(session, [e.ids for e in self._tokenizer.encode_batch(list(texts))])

    def _pool(self, session: Any, seqs: Sequence[Sequence[int]]) -> np.ndarray:
        """Mean-pooled (then Dense-mapped) output of full sequences (special tokens included)."""
        hidden, mask = self._hidden(session, seqs), self._mask(seqs)
        m = mask[:, :, None].astype(np.float32)
        pooled = np.asarray((hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9), dtype=np.float32)
        for weight, bias in self._dense:
            pooled = pooled @ weight.T if bias is None else pooled @ weight.T + bias
        return pooled

    @staticmethod
    def _mask(seqs: Sequence[Sequence[int]]) -> np.ndarray:
        mask = np.zeros((len(seqs), max(len(x) for x in seqs)), dtype=np.int64)
        for i, x in enumerate(seqs):
            mask[i, : len(x)] = 1
        return mask

    def _hidden(self, session: Any, seqs: Sequence[Sequence[int]]) -> np.ndarray:
        """The transformer's last hidden state for token id sequences, right-padded into one batch."""
        width = max(len(x) for x in seqs)
        ids = np.full((len(seqs), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(seqs), width), dtype=np.int64)
        for i, x in enumerate(seqs):
            ids[i, : len(x)] = x
            mask[i, : len(x)] = 1
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feed["token_type_ids"] = np.zeros_like(ids)
        return np.asarray(session.run(None, feed)[0], dtype=np.float32)

    def _encode(self, texts: Sequence[str], session: Any) -> np.ndarray:
        return self._forward(self._passages.ids(texts), session)

    def _forward(self, ids: Sequence[np.ndarray], session: Any) -> np.ndarray:
        """Ids without special tokens → normalized vectors, batched by token length so little is padded."""
        if not len(ids):
            return np.zeros((0, self.dimension), dtype=np.float32)
        tok = self._passages
        seqs = [tok.head + x[: tok.content_limit].tolist() + tok.tail for x in ids]
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        out = np.empty((len(seqs), self.dimension), dtype=np.float32)
        with self._lock:
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                out[idx] = self._pool(session, [seqs[i] for i in idx])
        return normalize(out)

    @property
    def passage_tokenizer(self) -> PassageTokenizer | None:
        """The tokenizer whose ids `embed_token_ids` takes (None: give texts to `embed_documents`)."""
        if self.passage_prefix and not self.passage_prefix[-1].isspace():
            return None
        return self._passages

    def embed_token_ids(self, ids: Sequence[np.ndarray]) -> np.ndarray:
        if self.passage_prefix:
            prefix = self._passages.ids([self.passage_prefix])[0]
            ids = [np.concatenate([prefix, x]) for x in ids]
        return self._forward(ids, self._session)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode([self.passage_prefix + t for t in texts], self._session)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        session = self._session
        if self._query_threads > 0 and self._query_threads != self._threads and len(texts) <= 4:
            if self._query_session is None:
                self._query_session = self._new_session(self._query_threads)
            session = self._query_session
        return self._encode([self.query_prefix + t for t in texts], session)

    def token_vectors(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Each text's per-token output vectors (no [CLS]/[SEP]), for late-interaction reranking."""
        out: list[np.ndarray] = []
        with self._lock:
            for start in range(0, len(texts), self.batch_size):
                encs = self._tokenizer.encode_batch(list(texts[start : start + self.batch_size]))
                hidden = self._hidden(self._session, [e.ids for e in encs])
                out += [hidden[i, 1 : max(2, len(e.ids) - 1)] for i, e in enumerate(encs)]
        return out

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self._passages.count(texts)

    def __repr__(self) -> str:
        return f"OnnxEmbedder({self.name!r}, file={self.onnx_path.name!r}, dim={self.dimension})"
