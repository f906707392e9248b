"""`Collection`: the public Python API. It composes the stages; it never reaches inside one.

    import ragworks
    with ragworks.Collection.open("notes") as col:
        col.ingest("docs/")
        print(col.ask("How do I rotate the keys?").text)
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ragworks.config import SearchMode, Settings
from ragworks.documents import Answer, Document, SearchHit
from ragworks.embed import LazyEmbedder, passage_tokenizer
from ragworks.embed.base import Embedder
from ragworks.errors import CollectionNotFound, ConfigError, DocumentNotFound
from ragworks.generate import make_llm
from ragworks.generate.abstain import AbstentionPolicy
from ragworks.generate.answer import AnswerOptions, AnswerStream
from ragworks.generate.base import LLM
from ragworks.ingest.base import LoadOptions
from ragworks.ingest.chunker import Chunker
from ragworks.ingest.pipeline import IngestPipeline, IngestReport, ProgressCallback
from ragworks.ingest.source import Source
from ragworks.retrieve.base import Reranker
from ragworks.retrieve.hybrid import HybridRetriever
from ragworks.store.base import ErasesDeleted, Filter, Store, StoredDocument
from ragworks.store.embedded import DB_NAME, EmbeddedStore

_UNSET: Any = object()


def _postgres_store(settings: Settings, name: str, tenant: str, **kwargs: Any) -> Store:
    """A PostgresStore for collection `name` of `tenant`, on the process's shared pool."""
    if settings.postgres_dsn is None:
        raise ConfigError("store_backend = 'postgres' needs postgres_dsn (RAGWORKS_POSTGRES_DSN)")
    from ragworks.store.postgres import PostgresStore, shared_pool

    pool = shared_pool(settings.postgres_dsn.get_secret_value(), settings.postgres_schema)
    return PostgresStore(pool, tenant=tenant, collection=name, schema=settings.postgres_schema, **kwargs)


class Collection:
    """A named set of documents (on disk, or in PostgreSQL for one tenant), searchable and answerable.

    Models load lazily on first need.
    """

    def __init__(
        self,
        path: Path,
        settings: Settings,
        store: Store | None,
        *,
        embedder: Embedder | None = None,
        llm: LLM | None = _UNSET,
        reranker: Reranker | None = None,
        tenant: str | None = None,
    ) -> None:
        self.path = path
        self.settings = settings
        self.tenant = tenant or settings.tenant  # postgres backend: the store is scoped to it
        self._store = store
        self._embedder = embedder
        self._llm = llm
        self.reranker = reranker
        self._reranker_lock = threading.Lock()  # concurrent first searches must not each load a reranker model

    @classmethod
    def open(
        cls,
        name_or_path: str | Path | None = None,
        *,
        settings: Settings | None = None,
        create: bool = True,
        embedder: Embedder | None = None,
        llm: LLM | None = _UNSET,
        reranker: Reranker | None = None,
        tenant: str | None = None,
    ) -> Collection:
        """Open a collection by name (under `settings.data_dir`) or path; create it on first ingest if allowed.

        With `store_backend = "postgres"` the collection is a name in `settings.postgres_dsn`'s database, scoped to
        `tenant` (default `settings.tenant`); a path's last component is taken as the name.

        Pass `embedder` / `llm` to share already-loaded models between collections (the server does).
        `llm=None` forces the extractive answerer.
        """
        settings = settings or Settings()
        store: Store | None = None
        if settings.store_backend == "postgres":
            path = Path(str(name_or_path) if name_or_path is not None else settings.collection)
            tenant = tenant or settings.tenant
            try:
                store = _postgres_store(settings, path.name, tenant, create=False)
            except CollectionNotFound:
                if not create:
                    raise
            col = cls(path, settings, store, embedder=embedder, llm=llm, reranker=reranker, tenant=tenant)
            if store is not None and embedder is not None:
                store.check_model(embedder.name, embedder.dimension)
            return col
        path = settings.collection_path(str(name_or_path) if name_or_path is not None else None)
        if (path / DB_NAME).exists():
            store = EmbeddedStore(path, create=False)
            from ragworks.embed.versions import active_model_settings

            # after `ragworks tune` switched, the base model's settings open the collection with its tuned model
            tuned = active_model_settings(path, settings, store.model_name)
            if tuned is not settings:
                settings = tuned
                if embedder is not None and embedder.name != store.model_name:
                    embedder = None  # a shared base-model embedder (the server's) can't query the tuned vectors
        elif not create:
            raise CollectionNotFound(f"no collection {path.name!r} at {path} (run `ragworks ingest` first)")
        col = cls(path, settings, store, embedder=embedder, llm=llm, reranker=reranker)
        if store is not None and embedder is not None:
            store.check_model(embedder.name, embedder.dimension)
        return col

    # --- lazily built stages

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            lazy = LazyEmbedder(self.settings, on_load=self._check_embedder)
            if self._store is not None and lazy.name != self._store.model_name:
                lazy.loaded  # noqa: B018 - loading raises the mismatch with both models named
            self._embedder = lazy
        return self._embedder

    def _check_embedder(self, embedder: Embedder) -> None:
        if self._store is not None:
            self._store.check_model(embedder.name, embedder.dimension)

    @property
    def store(self) -> Store:
        if self._store is None and self.settings.store_backend == "postgres":
            emb = self.embedder  # creating a collection records its model
            self._store = _postgres_store(self.settings, self.path.name, self.tenant, model_name=emb.name,
                                          dimension=emb.dimension, create=True)
        if self._store is None:
            if not (self.path / DB_NAME).exists():
                emb = self.embedder  # creating a collection records its model
                self._store = EmbeddedStore(self.path, model_name=emb.name, dimension=emb.dimension, create=True)
            else:
                self._store = EmbeddedStore(self.path, create=False)
        return self._store

    @property
    def exists(self) -> bool:
        if self._store is None and self.settings.store_backend == "postgres":
            try:
                self._store = _postgres_store(self.settings, self.path.name, self.tenant, create=False)
            except CollectionNotFound:
                return False
        return self._store is not None or (self.path / DB_NAME).exists()

    def _require(self) -> Store:
        if not self.exists:
            raise CollectionNotFound(f"no collection {self.path.name!r} at {self.path} (run `ragworks ingest` first)")
        return self.store

    @property
    def llm(self) -> LLM | None:
        if self._llm is _UNSET:
            self._llm = make_llm(self.settings)
        return self._llm

    def retriever(self) -> HybridRetriever:
        s = self.settings
        store = self._require()
        if isinstance(store, EmbeddedStore):
            store.configure_lexical(s.lexical_backend, s.lexical_memory_max_chunks)
        return HybridRetriever(
            store, self.embedder, fusion=s.fusion, rrf_k=s.rrf_k, dense_weight=s.dense_weight,
            candidates=s.candidates, collapse_duplicates=s.collapse_duplicates,
        )

    def _pipeline(self, progress: ProgressCallback | None) -> IngestPipeline:
        s = self.settings
        emb = self.embedder

        def chunker() -> Chunker:
            return Chunker(emb.count_tokens, chunk_tokens=s.chunk_tokens, overlap=s.chunk_overlap,
                           model_max_tokens=emb.max_tokens, with_context=s.chunk_context,
                           tokenizer=passage_tokenizer(emb))

        options = LoadOptions.from_settings(s)
        store = self.store
        # RAGWORKS_INDEX_TYPE applies to ordinary ingest too (it is remembered by the collection)
        if s.index_type is not None and isinstance(store, EmbeddedStore) and store.index_type() != s.index_type:
            store.set_index_type(s.index_type)
        return IngestPipeline(
            self.store, emb, chunker, options=options, batch_chunks=s.ingest_batch_chunks,
            max_file_bytes=int(s.max_file_mb * 2**20), progress=progress, default_readers=s.default_readers,
        )

    # --- the verbs

    def ingest(
        self,
        *paths: str | Path,
        prune: bool = False,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        progress: ProgressCallback | None = None,
    ) -> IngestReport:
        """Ingest files and directories. Unchanged files are skipped; failures are reported per file."""
        missing = [str(p) for p in paths if not Path(p).exists() and not Path(p).is_symlink()]
        if missing:  # a mistyped argument: before anything is created or loaded (a dangling link is reported)
            raise FileNotFoundError(f"no such file or directory: {', '.join(missing)}")
        pipeline = self._pipeline(progress)
        with self.store.write_lock(wait_s=5):
            return pipeline.run(
                paths,
                include=self.settings.include if include is None else include,
                exclude=self.settings.exclude if exclude is None else exclude,
                prune=prune,
            )

    def sync(self, source: Source, *, progress: ProgressCallback | None = None, delete_missing: bool = True
             ) -> IngestReport:
        """Make the collection follow `source`: changed items re-loaded, unchanged ones not even fetched, items gone
        from it deleted. A source that cannot be listed raises SourceUnavailable and changes nothing."""
        pipeline = self._pipeline(progress)
        with self.store.write_lock(wait_s=30):
            return pipeline.run_source(source, delete_missing=delete_missing)

    def add_documents(self, documents: Iterable[Document]) -> IngestReport:
        """Ingest documents built in code (or uploaded as text); a document with the same source is replaced."""
        pipeline = self._pipeline(None)
        with self.store.write_lock(wait_s=30):
            return pipeline.add_documents(documents)

    def add_text(self, text: str, *, source: str, title: str = "", metadata: dict[str, Any] | None = None
                 ) -> IngestReport:
        from ragworks.ingest.loaders import markdown_spans

        doc = Document(source=source, text=text, title=title, metadata=metadata or {}, spans=markdown_spans(text))
        return self.add_documents([doc])

    def search(
        self,
        query: str,
        *,
        k: int | None = None,
        mode: SearchMode | None = None,
        filters: Filter | dict[str, Any] | None = None,
        source: str | None = None,
        rerank: bool = True,
    ) -> list[SearchHit]:
        """Top-k hits for `query`. `filters` is a Filter or {metadata key: value}; `source` a glob on sources."""
        flt = filters if isinstance(filters, Filter) else Filter(metadata=dict(filters or {}))
        if source:
            flt = dataclasses.replace(flt, source_glob=source)
        k = k or self.settings.top_k
        mode = mode or self.settings.search_mode
        from ragworks.retrieve.pipeline import SearchPipeline
        from ragworks.retrieve.rerank import make_reranker

        if self.reranker is None and rerank and self.settings.reranker != "none":  # built once, then kept
            with self._reranker_lock:
                if self.reranker is None:
                    self.reranker = make_reranker(self.settings, embedder=self.embedder,
                                                  llm=self.llm if self.settings.reranker == "llm" else None)
        pipeline = SearchPipeline.from_settings(
            self.settings, self.retriever(), store=self._require(), embedder=self.embedder,
            reranker=self.reranker if rerank else None, llm=lambda: self.llm,
        )
        return pipeline.search(query, k=k, mode=mode, flt=flt or None)

    def ask_stream(self, question: str, **search_kwargs: Any) -> AnswerStream:
        """Retrieve, then stream a cited answer: iterate for text pieces, then read `.answer`."""
        hits = self.search(question, **search_kwargs)
        s = self.settings
        return AnswerStream(question, hits, self.llm, self.embedder,
                            AnswerOptions(s.max_answer_tokens, s.temperature, s.context_budget_tokens,
                                          s.llm_max_sources, grounding=s.grounding,
                                          support_threshold=s.support_threshold,
                                          abstention=self.abstention_policy()))

    def abstention_policy(self) -> AbstentionPolicy | None:
        """The policy deciding when to abstain: `abstention_policy` file > the collection's answering.json > the
        built-in one; None when `abstention = "off"`. Read per question, so a re-tuned policy applies at once."""
        from ragworks.generate.abstain import DEFAULT_POLICY, load_policy, policy_path

        if self.settings.abstention == "off":
            return None
        model = self.llm.name if self.llm is not None else "extractive"
        if self.settings.abstention_policy is not None:
            policy = load_policy(self.settings.abstention_policy, model=model)
            if policy is None:
                raise ConfigError(f"abstention_policy file not found: {self.settings.abstention_policy}")
            return policy
        return load_policy(policy_path(self.path), model=model) or DEFAULT_POLICY

    def ask(self, question: str, **search_kwargs: Any) -> Answer:
        """Retrieve and answer with citations (extractively when no LLM is available)."""
        return self.ask_stream(question, **search_kwargs).result()

    def delete(self, ref: str, *, readers: tuple[str, ...] | None = None) -> int:
        """Delete documents by id, exact source, source glob or file path; returns how many were removed.
        With `readers` (a caller's tokens), only documents it may read are matched."""
        from ragworks.access import may_read

        store = self._require()
        ids = store.resolve_documents(ref)
        if readers is not None:
            current = store.readers_of(ids)
            ids = [i for i in ids if may_read(current.get(i, ()), readers)]
        if not ids:
            raise DocumentNotFound(f"no document matches {ref!r} in collection {self.path.name!r}")
        with store.write_lock(wait_s=30):
            n = store.delete_documents(ids)
            store.flush()
            if self.settings.erase_on_delete and isinstance(store, ErasesDeleted):
                store.purge_deleted()
        return n

    def documents(self, *, limit: int = 100, offset: int = 0, after: str | None = None,
                  readers: tuple[str, ...] | None = None) -> list[StoredDocument]:
        """Documents ordered by source; pass the last source of a page as `after` to get the next one. With
        `readers` (a caller's principal tokens), only those it may read."""
        return self._require().list_documents(limit=limit, offset=offset, after=after, readers=readers)

    def document(self, ref: str, *, readers: tuple[str, ...] | None = None) -> tuple[StoredDocument, str, list[Any]]:
        """A document, its text and chunks; DocumentNotFound for one `readers` may not read (never "forbidden")."""
        return self._require().get_document(ref, readers)

    def set_readers(self, ref: str, readers: Sequence[str], *, as_readers: tuple[str, ...] | None = None) -> int:
        """Replace who may read the documents `ref` names (id, source, glob or file path); nothing is re-embedded.

        `as_readers`: the caller's own tokens, who may only change documents it can read. Returns how many
        documents changed; raises DocumentNotFound when none matches and InvalidReaders for a malformed token.
        """
        from ragworks.access import may_read, normalize_readers

        tokens = normalize_readers(list(readers))
        store = self._require()
        ids = store.resolve_documents(ref)
        if as_readers is not None:
            current = store.readers_of(ids)
            ids = [i for i in ids if may_read(current.get(i, ()), as_readers)]
        if not ids:
            raise DocumentNotFound(f"no document matches {ref!r} in collection {self.path.name!r}")
        with store.write_lock(wait_s=30):
            return store.set_readers(ids, tokens)

    def stats(self) -> dict[str, Any]:
        return self._require().stats()

    def model_switched(self) -> bool:
        """True once `ragworks tune` (another process) switched or rolled back this collection's model after it was
        opened here: searches still use the old model and writes are refused until the collection is reopened."""
        return isinstance(self._store, EmbeddedStore) and self._store.active_model_changed()

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Collection({str(self.path)!r})"
