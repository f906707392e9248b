"""`Collection`: the public Python API. It composes the stages; it never reaches inside one.

    import ragworks
    with ragworks.Collection.open("notes") as col:
        col.ingest("docs/")
        print(col.ask("How do I rotate the keys?").text)
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ragworks.cache import digest, filter_key, shared_cache
from ragworks.config import SearchMode, Settings
from ragworks.documents import Answer, Document, SearchHit
from ragworks.embed import LazyEmbedder, passage_tokenizer
from ragworks.embed.base import Embedder
from ragworks.errors import CollectionNotFound, ConfigError, DocumentNotFound
from ragworks.generate import make_llm
from ragworks.generate.abstain import AbstentionPolicy
from ragworks.generate.answer import AnswerOptions, AnswerStream
from ragworks.generate.base import LLM
from ragworks.guard.output import PiiMasker
from ragworks.guard.pii import PiiDetector, require_pii_extra, shared_detector
from ragworks.guard.screen import DocumentGuard
from ragworks.ingest.base import LoadOptions
from ragworks.ingest.chunker import Chunker
from ragworks.ingest.pipeline import IngestPipeline, IngestReport, ProgressCallback
from ragworks.ingest.source import Source, Upload
from ragworks.retrieve.base import Reranker
from ragworks.retrieve.hybrid import HybridRetriever
from ragworks.store.base import (
    ErasesDeleted,
    Filter,
    SelectableIndex,
    Store,
    StoredDocument,
    SwitchableModel,
    TunableLexical,
)
from ragworks.store.catalog import Catalog, make_catalog

_UNSET: Any = object()


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
        pii_detector: PiiDetector | None = None,
    ) -> None:
        self.path = path
        self.settings = settings
        self.tenant = tenant or settings.tenant  # postgres backend: the store is scoped to it
        self._store = store
        self._catalog: Catalog | None = None
        self._embedder = embedder
        self._llm = llm
        self.reranker = reranker
        self._reranker_lock = threading.Lock()  # concurrent first searches must not each load a reranker model
        self._answer_rerankers: dict[str, Reranker | None] = {}  # `answer_reranker` when it differs from `reranker`
        self._pii_detector = pii_detector  # Presidio + spaCy, loaded on first use; the server shares one
        self._settings_digest: tuple[Settings, str] | None = None  # the result cache's hash of `settings`, and of which

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

        With `store_backend = "postgres"` (or "qdrant") the collection is a name in `postgres_dsn`'s database
        (the Qdrant server or directory), scoped to `tenant` (default `settings.tenant`); a path's last component
        is taken as the name.

        Pass `embedder` / `llm` to share already-loaded models between collections (the server does).
        `llm=None` forces the extractive answerer.
        """
        settings = settings or Settings()
        catalog = make_catalog(settings)
        path = catalog.location(settings, str(name_or_path) if name_or_path is not None else None)
        tenant = tenant or settings.tenant
        store: Store | None = None
        if catalog.exists(path, tenant):
            store = catalog.open(path, tenant)
            if isinstance(store, SwitchableModel):
                from ragworks.embed.versions import active_model_settings

                # after `ragworks tune` switched, the base model's settings open the collection with its tuned model
                tuned = active_model_settings(path, settings, store.model_name)
                if tuned is not settings:
                    settings = tuned
                    if embedder is not None and embedder.name != store.model_name:
                        embedder = None  # a shared base-model embedder (the server's) can't query the tuned vectors
        elif not create:
            raise CollectionNotFound(f"no collection {path.name!r} at {path} (run `ragworks ingest` first)")
        col = cls(path, settings, store, embedder=embedder, llm=llm, reranker=reranker, tenant=tenant)
        col._catalog = catalog
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
    def catalog(self) -> Catalog:
        """Where this collection's backend keeps it (`settings.store_backend`)."""
        if self._catalog is None:
            self._catalog = make_catalog(self.settings)
        return self._catalog

    @property
    def store(self) -> Store:
        if self._store is None:
            if self.catalog.exists(self.path, self.tenant):
                self._store = self.catalog.open(self.path, self.tenant)
            else:
                emb = self.embedder  # creating a collection records its model
                self._store = self.catalog.open(self.path, self.tenant, model_name=emb.name, dimension=emb.dimension)
        return self._store

    @property
    def exists(self) -> bool:
        return self._store is not None or self.catalog.exists(self.path, self.tenant)

    def _require(self) -> Store:
        if not self.exists:
            raise CollectionNotFound(f"no collection {self.path.name!r} at {self.path} (run `ragworks ingest` first)")
        return self.store

    @property
    def pii_detector(self) -> PiiDetector:
        if self._pii_detector is None:
            self._pii_detector = shared_detector()
        return self._pii_detector

    def document_guard(self) -> DocumentGuard:
        """The ingest screen the settings ask for (invisible text is always dropped)."""
        if self.settings.pii != "off":
            require_pii_extra()  # before anything is written: every file would fail on it
        return DocumentGuard.from_settings(self.settings, detector=self.pii_detector)

    def pii_masker(self, pii_read: bool) -> PiiMasker | None:
        """What masks PII in output for a caller without the pii:read grant (None: nothing to mask)."""
        if pii_read or self.settings.pii != "redact-answers":
            return None
        require_pii_extra()
        return PiiMasker(self.pii_detector)

    @property
    def llm(self) -> LLM | None:
        if self._llm is _UNSET:
            self._llm = make_llm(self.settings)
        return self._llm

    def retriever(self) -> HybridRetriever:
        s = self.settings
        store = self._require()
        if isinstance(store, TunableLexical):
            store.configure_lexical(s.lexical_backend, s.lexical_memory_max_chunks)
        return HybridRetriever(
            store, self.embedder, fusion=s.fusion, rrf_k=s.rrf_k, dense_weight=s.dense_weight,
            candidates=s.candidates, collapse_duplicates=s.collapse_duplicates,
        )

    def _pipeline(self, progress: ProgressCallback | None, *, check: Callable[[], None] | None = None,
                  files_per_commit: int | None = None) -> IngestPipeline:
        """The ingest pipeline for this collection; with `files_per_commit` it takes the write lock per commit (the
        caller holds none), so other writers take turns with a long job as they did between its files."""
        s = self.settings
        guard = self.document_guard()  # a missing extra fails before the collection is created
        emb = self.embedder

        def chunker() -> Chunker:
            return Chunker.from_settings(s, emb.count_tokens, emb.max_tokens, passage_tokenizer(emb))

        options = LoadOptions.from_settings(s)
        store = self.store
        # RAGWORKS_INDEX_TYPE applies to ordinary ingest too (it is remembered by the collection)
        if s.index_type is not None and isinstance(store, SelectableIndex) and store.index_type() != s.index_type:
            store.set_index_type(s.index_type)
        return IngestPipeline(
            self.store, emb, chunker, options=options, batch_chunks=s.ingest_batch_chunks,
            max_file_bytes=int(s.max_file_mb * 2**20), progress=progress, guard=guard,
            default_readers=s.default_readers, check=check, files_per_commit=files_per_commit,
            write_lock=None if files_per_commit is None else functools.partial(store.write_lock, wait_s=30),
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

    def add_documents(self, documents: Iterable[Document], *, progress: ProgressCallback | None = None,
                      check: Callable[[], None] | None = None, per_commit: int | None = None) -> IngestReport:
        """Ingest documents built in code (or uploaded as text); a document with the same source is replaced.

        `check` raises to stop between documents (a job cancelled). With `per_commit` (a job), at least every that
        many documents are committed, each commit under the write lock; without, the call holds the lock."""
        pipeline = self._pipeline(progress, check=check, files_per_commit=per_commit)
        if per_commit is not None:
            return pipeline.add_documents(documents)
        with self.store.write_lock(wait_s=30):
            return pipeline.add_documents(documents)

    def add_uploads(self, uploads: Sequence[Upload], *, progress: ProgressCallback | None = None,
                    check: Callable[[], None] | None = None) -> IngestReport:
        """Ingest files clients uploaded (the server's jobs), one report entry each. Each finished file is committed
        at once, under the write lock, so a stopped job keeps every file it reported done."""
        return self._pipeline(progress, check=check, files_per_commit=1).run_uploads(uploads)

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
        pii_read: bool = True,
        for_answer: bool = False,
    ) -> list[SearchHit]:
        """Top-k hits for `query`. `filters` is a Filter or {metadata key: value}; `source` a glob on sources.
        `for_answer` reranks with `answer_reranker` (the passages `ask` answers from) instead of `reranker`.

        `pii_read=False` (a caller without the pii:read grant) masks PII in the hits under `pii = "redact-answers"`.
        Served from the result cache (`cache_backend`) when the same search ran since the collection's last write
        (the cache holds what the store returned; masking applies per caller after it).
        """
        flt = filters if isinstance(filters, Filter) else Filter(metadata=dict(filters or {}))
        if source:
            flt = dataclasses.replace(flt, source_glob=source)
        k = k or self.settings.top_k
        mode = mode or self.settings.search_mode
        cache = shared_cache(self.settings)
        reranker = self._reranker(for_answer) if rerank else None
        if cache is None:
            hits = self._search(query, k, mode, flt, reranker)
        else:
            # which reranker follows from the settings (in the scope) and `for_answer`
            scope = self._cache_scope("search", flt, k=k, mode=mode, rerank=rerank,
                                      **({"for_answer": True} if for_answer else {}))
            vec = self._query_vector(query)
            cached: list[SearchHit] | None = cache.get(scope, query, vec)
            if cached is None:
                cached = self._search(query, k, mode, flt, reranker)
                cache.put(scope, query, cached, vec)
            hits = cached
        masker = self.pii_masker(pii_read)
        return [masker.hit(h) for h in hits] if masker is not None else hits

    def _reranker(self, for_answer: bool) -> Reranker | None:
        """The reranker for plain search (`reranker`, or one given to the collection) or for the passages of an
        answer (`answer_reranker`); each is built once, then kept (models load when built)."""
        from ragworks.retrieve.rerank import make_reranker, token_encoder_for

        s = self.settings
        kind = s.answer_reranker if for_answer else s.reranker
        if kind == "auto":  # search's reranker when there is one, else MaxSim if the model has token vectors
            kind = s.reranker
            if s.reranker == "none" and self.reranker is None:
                try:
                    token_encoder_for(self.embedder)
                    kind = "maxsim"
                except ConfigError:  # a remote model: no token vectors
                    pass
        elif for_answer and kind == "none":
            return None
        with self._reranker_lock:  # concurrent first searches must not each load a reranker model
            if kind == s.reranker:  # search's own
                if self.reranker is None and kind != "none":
                    self.reranker = make_reranker(s, embedder=self.embedder, llm=self.llm if kind == "llm" else None)
                return self.reranker
            if kind not in self._answer_rerankers:
                self._answer_rerankers[kind] = make_reranker(s.model_copy(update={"reranker": kind}),
                                                             embedder=self.embedder,
                                                             llm=self.llm if kind == "llm" else None)
            return self._answer_rerankers[kind]

    def _search(self, query: str, k: int, mode: SearchMode, flt: Filter, reranker: Reranker | None
                ) -> list[SearchHit]:
        from ragworks.retrieve.pipeline import SearchPipeline

        pipeline = SearchPipeline.from_settings(
            self.settings, self.retriever(), store=self._require(), embedder=self.embedder,
            reranker=reranker, llm=lambda: self.llm,
        )
        return pipeline.search(query, k=k, mode=mode, flt=flt or None)

    def _cache_scope(self, op: str, flt: Filter, **args: Any) -> dict[str, Any]:
        """Everything but the query that a cached result depends on (cache/results.py): read per lookup, the
        store's write version makes any committed write, in any process, a miss."""
        store = self._require()
        if self._settings_digest is None or self._settings_digest[0] is not self.settings:  # settings replaced
            self._settings_digest = (self.settings, digest(self.settings.model_dump(mode="json")))
        return {"op": op, "tenant": self.tenant, "collection": str(self.path), "backend": self.settings.store_backend,
                "version": store.write_version(), "model": store.model_name, "settings": self._settings_digest[1],
                "filter": filter_key(flt), **args}

    def _query_vector(self, query: str) -> Callable[[], np.ndarray] | None:
        """The query's embedding, computed at most once and only if the semantic cache asks for it."""
        if not self.settings.cache_semantic:
            return None
        memo: list[np.ndarray] = []

        def vec() -> np.ndarray:
            if not memo:
                memo.append(self.embedder.embed_queries([query])[0])
            return memo[0]

        return vec

    def ask_stream(self, question: str, *, pii_read: bool = True, **search_kwargs: Any) -> AnswerStream:
        """Retrieve, then stream a cited answer: iterate for text pieces, then read `.answer`.

        The answerer reads the passages as stored; `pii_read=False` masks PII in what comes out (text, quotes,
        sources) under `pii = "redact-answers"`, and then the text arrives in one piece, once masked.
        With `retrieval_steps` > 1 a follow-up query may be searched after the first retrieval (see
        retrieve/multistep.py); the answer's `steps` logs each query and its hits.
        A question answered since the collection's last write is replayed from the result cache (one piece).
        """
        cache = shared_cache(self.settings)
        if cache is not None:
            flt = search_kwargs.get("filters")
            flt = flt if isinstance(flt, Filter) else Filter(metadata=dict(flt or {}))
            args = {k: v for k, v in search_kwargs.items() if k != "filters"}
            # the cached answer is what this caller was shown: masked or not, so pii_read is part of the key
            scope = self._cache_scope("ask", flt, policy=self._policy_stamp(), pii_read=pii_read,
                                      **args)  # before retrieving
            vec = self._query_vector(question)
            cached: Answer | None = cache.get(scope, question, vec)
            if cached is not None:
                return AnswerStream.replay(cached)
        s = self.settings
        steps: list[dict[str, Any]] = []
        if s.retrieval_steps > 1:
            from ragworks.retrieve.multistep import multi_step_search

            k = search_kwargs.pop("k", None) or s.top_k
            hits, done = multi_step_search(question, lambda q: self.search(q, k=k, for_answer=True, **search_kwargs),
                                           steps=s.retrieval_steps, k=k, llm=self.llm)
            steps = [st.to_dict() for st in done]
        else:
            hits = self.search(question, for_answer=True, **search_kwargs)
        stream = AnswerStream(question, hits, self.llm, self.embedder, self.answer_options(pii_read=pii_read),
                              steps=steps)
        if cache is not None:
            stream.on_complete = lambda answer: cache.put(scope, question, answer, vec)
        return stream

    def answer_options(self, *, pii_read: bool = True, max_tokens: int | None = None,
                       temperature: float | None = None) -> AnswerOptions:
        """How this collection answers (settings, abstention policy, the guard): one place for every answer path,
        the OpenAI-compatible endpoint's included."""
        s = self.settings
        return AnswerOptions(max_tokens or s.max_answer_tokens, s.temperature if temperature is None else temperature,
                             s.context_budget_tokens, s.llm_max_sources, grounding=s.grounding,
                             support_threshold=s.support_threshold, abstention=self.abstention_policy(),
                             injection=s.injection, pii_masker=self.pii_masker(pii_read))

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

    def ask(self, question: str, *, pii_read: bool = True, **search_kwargs: Any) -> Answer:
        """Retrieve and answer with citations (extractively when no LLM is available)."""
        return self.ask_stream(question, pii_read=pii_read, **search_kwargs).result()

    def _policy_stamp(self) -> list[int]:
        """When the abstention policy files last changed (a re-tuned policy applies at once, cache or not)."""
        from ragworks.generate.abstain import policy_path

        paths = [policy_path(self.path), *([self.settings.abstention_policy] if self.settings.abstention_policy
                                           else [])]
        return [p.stat().st_mtime_ns if p.exists() else 0 for p in map(Path, paths)]

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

    def stats(self, readers: tuple[str, ...] | None = None) -> dict[str, Any]:
        """Counts and model. With `readers` (a key that may read only some documents) `documents` and `chunks`
        count what those principals may read, and the totals that describe the rest (files, vectors, bytes,
        kinds) are left out."""
        stats = self._require().stats()
        if readers is None:
            return stats
        documents = chunks = 0
        after: str | None = None
        while True:  # keyset pages over the permitted documents (the store filters them in its query)
            page = self.documents(limit=1000, after=after, readers=readers)
            documents += len(page)
            chunks += sum(d.chunks for d in page)
            if len(page) < 1000:
                break
            after = page[-1].source
        hidden = ("files", "failed_files", "vectors", "disk_bytes", "kinds")
        return {k: v for k, v in stats.items() if k not in hidden} | {"documents": documents, "chunks": chunks}

    def model_switched(self) -> bool:
        """True once `ragworks tune` (another process) switched or rolled back this collection's model after it was
        opened here: searches still use the old model and writes are refused until the collection is reopened."""
        return isinstance(self._store, SwitchableModel) and self._store.active_model_changed()

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Collection({str(self.path)!r})"
