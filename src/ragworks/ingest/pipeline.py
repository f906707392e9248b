"""load → chunk → dedup → embed → write, batched and resumable: the one way documents get into a store.

A reader thread walks the files, skips unchanged ones (size + mtime, then content hash), loads and chunks the
rest; the calling thread embeds only chunk texts that have no cached vector and commits a batch of whole
documents in one transaction. A file's record (what makes it "unchanged" next time) is committed with its last
document, so a run killed half-way redoes only the files it had not finished, and never duplicates a chunk.

The same loop takes its input from other places:
- `run_source`: a `Source` (bucket, website, Git repository): an item whose version is stored is skipped unfetched,
  a fetched one is loaded from a scratch file under its key, and keys the source no longer lists are deleted;
- `run_uploads`: files clients uploaded (`Upload`), and `add_documents`: documents given directly — both compared
  with the stored documents by content hash, one report entry per upload or document.
A `check` hook, called between files and before each commit, stops a run by raising (a job cancelled or its server
stopping); what was committed stays, and a re-run skips it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragworks.access import READERS_KEY, normalize_readers
from ragworks.documents import Chunk, ContentKind, Document, SpanKind
from ragworks.embed.base import Embedder, TokenIdEmbedder
from ragworks.errors import FileTooLarge, InvalidReaders, LoadError, MissingFile, SourceUnavailable, UnreadableFile
from ragworks.guard.screen import DocumentGuard
from ragworks.ingest.base import LoadOptions, LoadReport
from ragworks.ingest.chunker import Chunker
from ragworks.ingest.discover import Discovery, discover, regular_file_stat
from ragworks.ingest.loaders import loader_for
from ragworks.ingest.readers import FileReaders, fingerprint, readers_mark
from ragworks.ingest.report import FileResult, IngestReport, Progress, ProgressCallback
from ragworks.ingest.source import Source, SourceItem, Upload
from ragworks.store.base import DocumentWrite, FileRecord, Store, WriteBatch

# re-exported: callers import the run's report and discovery from here
__all__ = ["Discovery", "FileResult", "IngestPipeline", "IngestReport", "Progress", "ProgressCallback", "counted",
           "discover"]

STREAMING_SUFFIXES = (".jsonl", ".ndjson", ".jsonl.gz", ".parquet")


def counted(doc: Document) -> Document:
    """`doc` with its tables counted (one per TABLE span) unless its loader counted them itself."""
    if ContentKind.TABLES not in doc.counts:
        tables = sum(1 for sp in doc.spans if sp.kind is SpanKind.TABLE)
        if tables:
            doc.count(ContentKind.TABLES, tables)
    return doc


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(slots=True)
class _Doc:
    write: DocumentWrite
    result: FileResult


@dataclass(slots=True)
class _FileDone:
    result: FileResult
    record: FileRecord | None
    delete_doc_ids: list[str]


_END = object()


class IngestPipeline:
    """Ingests files or documents into a store with one embedder and one chunker."""

    def __init__(
        self,
        store: Store,
        embedder: Embedder,
        chunker: Chunker | Callable[[], Chunker],
        *,
        options: LoadOptions | None = None,
        batch_chunks: int = 512,
        max_file_bytes: int = 100 * 2**20,
        progress: ProgressCallback | None = None,
        guard: DocumentGuard | None = None,
        default_readers: Sequence[str] = (),
        check: Callable[[], None] | None = None,
        files_per_commit: int | None = None,
        write_lock: Callable[[], AbstractContextManager[Any]] | None = None,
    ) -> None:
        """`check` is called on the calling thread between files and before each commit, and raises to stop the run.
        `files_per_commit` commits at least that often, and progress then counts committed files only (1: a file
        reported done is stored). `write_lock`, when the caller holds no lock for the whole run, is taken around
        each write, so that other writers take turns."""
        self.store = store
        self.guard = guard  # None: documents are stored as loaded (no invisible-text removal, PII or injection)
        self.embedder = embedder
        self._chunker = chunker
        self.options = options or LoadOptions()
        self.batch_chunks = batch_chunks
        self.max_file_bytes = max_file_bytes
        self.progress = progress or (lambda p: None)
        self.file_readers = FileReaders(default_readers)
        self.check = check or (lambda: None)
        self.files_per_commit = files_per_commit
        self._write_lock = write_lock or contextlib.nullcontext

    @property
    def chunker(self) -> Chunker:
        """Built on first use: the chunker needs the model's tokenizer, which unchanged files never do."""
        if not isinstance(self._chunker, Chunker):
            self._chunker = self._chunker()
        return self._chunker

    def _stored_hash(self, doc: Document) -> str:
        """The content hash `doc` is stored under: the guard's (text + policy) when screening, else the text's."""
        return self.guard.change_hash(doc) if self.guard is not None else doc.content_hash

    def _screen(self, doc: Document) -> Document:
        return self.guard.screen(doc) if self.guard is not None else doc

    def _units(self, unit: str, n: float) -> None:
        self.progress(Progress("units", unit=unit, units=n))

    # --- producer side (reader thread)

    def _read_file(self, path: Path) -> Iterator[_Doc | _FileDone]:
        key = str(path)
        try:
            st = regular_file_stat(path)
        except LoadError as exc:
            result = FileResult(key, "failed", reason=exc.reason, error=str(exc))
            yield _FileDone(result, FileRecord(key, -1, 0, "", "failed", str(exc)), [])
            return
        prev = self.store.file_record(key)
        unchanged = FileResult(key, "unchanged")
        try:
            readers = self.file_readers.of(path)
        except (InvalidReaders, OSError) as exc:  # a private file is never ingested public by mistake
            yield self._failed(key, st.st_size, st.st_mtime_ns, "", FileResult(key, "new"), "invalid-readers",
                               str(exc))
            return
        mark = readers_mark(fingerprint("", readers))
        if (prev and prev.status == "ok" and prev.size == st.st_size and prev.mtime_ns == st.st_mtime_ns
                and readers_mark(prev.sha256) == mark):
            unchanged.documents, unchanged.chunks = prev.documents, prev.chunks
            yield _FileDone(unchanged, None, [])
            return
        result = FileResult(key, "updated" if prev and prev.status == "ok" else "new")
        sha = ""
        try:
            streaming = path.name.lower().endswith(STREAMING_SUFFIXES)
            if st.st_size > self.max_file_bytes and not streaming:
                raise FileTooLarge(
                    f"{path.name}: {st.st_size / 2**20:.0f} MiB is over the {self.max_file_bytes / 2**20:.0f} MiB "
                    "limit (raise max_file_mb to ingest it)"
                )
            sha = fingerprint(_sha256_file(path), readers)
            if prev and prev.status == "ok" and prev.sha256 == sha:  # touched, not changed
                unchanged.documents, unchanged.chunks = prev.documents, prev.chunks
                record = FileRecord(key, st.st_size, st.st_mtime_ns, sha, "ok", "", prev.documents, prev.chunks)
                yield _FileDone(unchanged, record, [])
                return
            yield from self._load(path, key, result, FileRecord(key, st.st_size, st.st_mtime_ns, sha),
                                  readers=readers)
        except LoadError as exc:
            yield self._failed(key, st.st_size, st.st_mtime_ns, sha, result, exc.reason, str(exc))
        except OSError as exc:  # vanished, or unreadable, between listing and reading
            error: LoadError = (MissingFile if isinstance(exc, FileNotFoundError) else UnreadableFile)(
                f"{path.name}: {exc.strerror or exc}")
            yield self._failed(key, st.st_size, st.st_mtime_ns, sha, result, error.reason, str(error))
        except Exception as exc:  # a loader bug or an OS error must not stop the run
            yield self._failed(key, st.st_size, st.st_mtime_ns, sha, result, "error",
                               f"{path.name}: {exc.__class__.__name__}: {exc}")

    def _load(self, path: Path, key: str, result: FileResult, record: FileRecord,
              metadata: dict[str, Any] | None = None, readers: Sequence[str] | None = None
              ) -> Iterator[_Doc | _FileDone]:
        """Load `path` as the documents of `key`: yield the changed ones, then the record and the ids it lost."""
        loader = loader_for(path)
        old = self.store.documents_from(key)
        seen: set[str] = set()
        same_text: dict[str, tuple[str, ...]] = {}  # unchanged documents → their readers now
        report = LoadReport(on_progress=self._units)
        for doc in loader(path, key, self.options, report):
            doc.source_path = key
            if metadata:
                doc.metadata = {**metadata, **doc.metadata}
            if READERS_KEY not in doc.metadata:  # a record's own readers win over the file's and the default
                doc.metadata[READERS_KEY] = list(self.file_readers.default if readers is None else readers)
            if doc.id in seen:
                report.warnings.append(f"duplicate record {doc.source!r}: later one kept")
            seen.add(doc.id)
            try:
                doc.metadata[READERS_KEY] = list(normalize_readers(doc.metadata[READERS_KEY]))
            except InvalidReaders as exc:  # skipped, and a stored earlier version is kept as it was
                report.skipped += 1
                report.warnings.append(f"{doc.source}: {exc}")
                continue
            result.documents += 1
            if old.get(doc.id) == self._stored_hash(doc):
                same_text[doc.id] = normalize_readers(doc.metadata[READERS_KEY])
                continue  # this record did not change
            doc = self._screen(doc)
            result.kinds.update(counted(doc).counts)
            chunks = self.chunker.chunk(doc)
            result.chunks += len(chunks)
            yield _Doc(DocumentWrite(doc, chunks), result)
        self._update_readers(same_text)
        result.warnings = report.warnings
        result.low_confidence_pages = report.low_confidence_pages
        if report.skipped:
            result.warnings.insert(0, f"{report.skipped} record(s) skipped")
        kept = [d for d in old if d in seen]
        record.documents = result.documents
        record.chunks = result.chunks + sum(self.store.chunk_counts(kept).values())
        yield _FileDone(result, record, [d for d in old if d not in seen])

    def _read_item(self, source: Source, item: SourceItem, scratch: Path) -> Iterator[_Doc | _FileDone]:
        """One listed item of a source: skipped unfetched when its version is stored, else fetched and loaded."""
        if item.local_path is not None:
            yield from self._read_file(item.local_path)
            return
        prev = self.store.file_record(item.key)
        if prev and prev.status == "ok" and prev.sha256 == item.version:
            yield _FileDone(FileResult(item.key, "unchanged", prev.documents, prev.chunks), None, [])
            return
        result = FileResult(item.key, "updated" if prev and prev.status == "ok" else "new")
        size = item.size or 0
        try:
            if item.size is not None and item.size > self.max_file_bytes:
                raise FileTooLarge(f"{item.key}: {item.size / 2**20:.0f} MiB is over the "
                                   f"{self.max_file_bytes / 2**20:.0f} MiB limit (raise max_file_mb to ingest it)")
            fetched = source.fetch(item)
            size = len(fetched.data)
            folder = scratch / hashlib.sha256(item.key.encode()).hexdigest()[:16]
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / (Path(fetched.filename).name or "item")
            path.write_bytes(fetched.data)  # loaders read files (PDF, DOCX need seekable input)
            try:
                # the version is the item's stored "hash": the next sync compares it without fetching
                yield from self._load(path, item.key, result, FileRecord(item.key, size, 0, item.version),
                                      item.metadata)
            finally:
                path.unlink(missing_ok=True)
        except LoadError as exc:
            yield self._failed(item.key, size, 0, "", result, exc.reason, str(exc))
        except SourceUnavailable as exc:  # the source went away mid-sync: this item keeps its documents
            yield self._failed(item.key, size, 0, "", result, "unavailable", str(exc))
        except Exception as exc:
            yield self._failed(item.key, size, 0, "", result, "error",
                               f"{item.key}: {exc.__class__.__name__}: {exc}")

    def _by_content(self, doc: Document, result: FileResult) -> tuple[str, _Doc | None]:
        """A document known by its id alone (given directly, or read from an upload): its status, and its write when
        it is new or changed; an unchanged one only gets its readers brought up to date. Raises InvalidReaders."""
        readers = normalize_readers(doc.metadata.get(READERS_KEY, list(self.file_readers.default)))
        doc.metadata[READERS_KEY] = list(readers)
        result.documents += 1
        existing = self.store.content_hash_of(doc.id)
        if existing == self._stored_hash(doc):
            self._update_readers({doc.id: readers})
            return "unchanged", None
        doc = self._screen(doc)
        chunks = self.chunker.chunk(doc)
        result.chunks += len(chunks)
        result.kinds.update(counted(doc).counts)
        return "updated" if existing is not None else "new", _Doc(DocumentWrite(doc, chunks), result)

    def _read_document(self, doc: Document) -> Iterator[_Doc | _FileDone]:
        result = FileResult(doc.source, "new")
        try:
            result.status, write = self._by_content(doc, result)
        except InvalidReaders as exc:  # this document only: the others of the call go in
            result.status, result.reason, result.error = "failed", "invalid-readers", f"{doc.source}: {exc}"
            write = None
        if write is not None:
            yield write
        yield _FileDone(result, None, [])

    def _read_upload(self, upload: Upload) -> Iterator[_Doc | _FileDone]:
        """An uploaded file: loaded by its name's loader, each document compared by content hash (`_by_content`)."""
        result, statuses = FileResult(upload.source, "new"), list[str]()
        report = LoadReport(on_progress=self._units)
        try:
            for doc in loader_for(upload.path)(upload.path, upload.source, self.options, report):
                doc.metadata = {**upload.metadata, **doc.metadata}
                if "media" in doc.metadata:  # a recording: the web page plays the cited clip from the upload
                    doc.metadata["upload_sha256"] = upload.sha256
                try:
                    status, write = self._by_content(doc, result)
                except InvalidReaders as exc:  # skipped, and a stored earlier version is kept as it was
                    report.skipped += 1
                    report.warnings.append(f"{doc.source}: {exc}")
                    continue
                statuses.append(status)
                if write is not None:
                    yield write
            result.status = ("unchanged" if statuses and all(s == "unchanged" for s in statuses)
                             else "updated" if "updated" in statuses else "new")
            result.warnings, result.low_confidence_pages = report.warnings, report.low_confidence_pages
        except LoadError as exc:
            result.status, result.reason, result.error = "failed", exc.reason, str(exc)
        except FileNotFoundError:
            result.status, result.reason = "failed", "missing"
            result.error = f"{upload.source}: the uploaded file is gone from the server"
        except Exception as exc:  # a loader bug must not fail the other files
            result.status, result.reason = "failed", "error"
            result.error = f"{upload.source}: {exc.__class__.__name__}: {exc}"
        yield _FileDone(result, None, [])

    def _update_readers(self, wanted: dict[str, tuple[str, ...]]) -> None:
        """Give unchanged documents their new readers: a permission change rewrites one column, embeds nothing."""
        if not wanted:
            return
        stored = self.store.readers_of(list(wanted))
        by_readers: dict[tuple[str, ...], list[str]] = {}
        for doc_id, readers in wanted.items():
            if stored.get(doc_id, readers) != readers:
                by_readers.setdefault(readers, []).append(doc_id)
        for readers, ids in by_readers.items():
            with self._write_lock():
                self.store.set_readers(ids, readers)

    def _failed(self, key: str, size: int, mtime_ns: int, sha: str, result: FileResult, reason: str,
                msg: str) -> _FileDone:
        result.status, result.reason, result.error = "failed", reason, msg
        record = FileRecord(key, size, mtime_ns, sha, "failed", msg)
        # A file that no longer loads keeps its previous documents: losing data on a bad write is worse.
        return _FileDone(result, record, [])

    def _produce(self, readers: Iterable[Callable[[], Iterator[_Doc | _FileDone]]], out: queue.Queue[Any],
                 stop: threading.Event) -> None:
        try:
            for read in readers:
                if stop.is_set():
                    return
                for item in read():
                    while not stop.is_set():
                        try:
                            out.put(item, timeout=0.5)
                            break
                        except queue.Full:
                            continue
        except BaseException as exc:  # surfaced in the consumer
            out.put(exc)
        finally:
            out.put(_END)

    # --- consumer side (calling thread)

    def run(self, paths: Sequence[str | Path], *, include: Sequence[str] = (), exclude: Sequence[str] = (),
            prune: bool = False) -> IngestReport:
        """Ingest files and directories; with `prune`, also remove documents whose files are gone."""

        def work(report: IngestReport) -> None:
            found = discover(paths, include, exclude)
            for where, problem in found.problems:
                report.files.append(FileResult(str(where), "failed", reason=problem.reason, error=str(problem)))
            self._read_all([functools.partial(self._read_file, p) for p in found.files], report)
            if prune:
                self._prune(report)

        return self._timed(work)

    def run_source(self, source: Source, *, delete_missing: bool = True) -> IngestReport:
        """Bring the collection in line with `source`: new and changed items are loaded (unchanged versions are not
        even fetched), and the documents of items it no longer lists are deleted. A failed listing raises
        SourceUnavailable before anything is written."""

        def work(report: IngestReport) -> None:
            items = source.list_items()
            if not items and delete_missing:
                owned = sum(1 for r in self.store.file_records() if source.owns(r.path))
                if owned:  # an empty mount point, a mistyped prefix: far likelier than every document deleted at once
                    raise SourceUnavailable(
                        f"{source.uri} lists nothing while {owned} of its items are stored; nothing was deleted "
                        "(to empty the collection on purpose: `ragworks delete` the documents)")
            with tempfile.TemporaryDirectory(prefix="ragworks-source-") as scratch:
                self._read_all([functools.partial(self._read_item, source, item, Path(scratch)) for item in items],
                               report)
            if delete_missing:
                listed = {i.key if i.local_path is None else str(i.local_path) for i in items}
                gone = [r.path for r in self.store.file_records() if source.owns(r.path) and r.path not in listed]
                self._remove(gone, report)

        return self._timed(work)

    def run_uploads(self, uploads: Sequence[Upload]) -> IngestReport:
        """Ingest uploaded files, one report entry each: 'unchanged' when none of its documents changed."""
        return self._timed(lambda report: self._read_all([functools.partial(self._read_upload, u) for u in uploads],
                                                         report))

    def add_documents(self, docs: Iterable[Document]) -> IngestReport:
        """Ingest documents given directly (API uploads of text), one report entry each; unchanged ones are skipped
        by content hash."""
        return self._timed(lambda report: self._read_all([functools.partial(self._read_document, d) for d in docs],
                                                         report))

    def _timed(self, work: Callable[[IngestReport], None]) -> IngestReport:
        started = time.perf_counter()
        report = IngestReport()
        work(report)
        with self._write_lock():
            self.store.flush()
        report.seconds = time.perf_counter() - started
        return report

    def _read_all(self, readers: Sequence[Callable[[], Iterator[_Doc | _FileDone]]], report: IngestReport) -> None:
        """Run the readers on the reader thread and commit what they yield on this one."""
        self.progress(Progress("start", files_total=len(readers)))
        q: queue.Queue[Any] = queue.Queue(maxsize=4 * self.batch_chunks)
        stop = threading.Event()
        reader = threading.Thread(target=self._produce, args=(readers, q, stop), daemon=True, name="ragworks-reader")
        reader.start()
        try:
            _Consumer(self, report, len(readers)).run(q)
        finally:
            stop.set()
            reader.join(timeout=5)

    def _commit(self, batch: WriteBatch, owners: list[FileResult], report: IngestReport) -> None:
        self.check()
        chunks = [c for dw in batch.documents for c in dw.chunks]
        cached = self.store.cached_vectors([c.text_hash for c in chunks])
        todo: dict[str, str] = {}
        for c in chunks:
            if c.text_hash not in cached and c.text_hash not in todo:
                todo[c.text_hash] = c.index_text
        if todo:
            batch.vectors = dict(zip(todo.keys(), self._embed(chunks, todo), strict=True))
        with self._write_lock():
            self.store.write(batch)
        report.chunks_written += len(chunks)
        report.chunks_embedded += len(todo)
        unclaimed = set(todo)  # a text embedded once is credited to the first file that needed it
        for dw, owner in zip(batch.documents, owners, strict=True):
            for c in dw.chunks:
                if c.text_hash in unclaimed:
                    unclaimed.discard(c.text_hash)
                    owner.embedded += 1

    def _embed(self, chunks: list[Chunk], todo: dict[str, str]) -> np.ndarray:
        """Vectors for `todo` (text hash → index text), from the chunker's token ids when every chunk has them."""
        ids = {c.text_hash: c.token_ids for c in chunks if c.text_hash in todo and c.token_ids is not None}
        if len(ids) == len(todo) and isinstance(self.embedder, TokenIdEmbedder) and self.embedder.passage_tokenizer:
            return self.embedder.embed_token_ids([ids[h] for h in todo])
        return self.embedder.embed_documents(list(todo.values()))

    def _prune(self, report: IngestReport) -> None:
        # keys with a scheme (s3://, https://, git+file://) belong to sources: their sync decides what is gone
        gone = [rec.path for rec in self.store.file_records() if "://" not in rec.path and not Path(rec.path).exists()]
        self._remove(gone, report)

    def _remove(self, gone: Iterable[str], report: IngestReport) -> None:
        for path in gone:
            doc_ids = list(self.store.documents_from(path))
            with self._write_lock():
                self.store.write(WriteBatch(delete_doc_ids=doc_ids, delete_files=[path]))
            report.documents_removed += len(doc_ids)
            report.files.append(FileResult(path, "removed", documents=len(doc_ids)))


class _Consumer:
    """The calling thread's side of a run: gathers what the reader yields into batches, commits them, and reports
    progress (files done, documents read, chunks written)."""

    def __init__(self, pipeline: IngestPipeline, report: IngestReport, files_total: int) -> None:
        self.pipeline, self.report, self.files_total = pipeline, report, files_total
        self.batch, self.owners = WriteBatch(), list[FileResult]()  # owners: the file of each document in `batch`
        self.done = self.finished = 0  # files done in all, and since the last commit
        self.documents = 0
        self.read: dict[int, int] = {}  # id(a file's result) → its documents counted so far

    def run(self, q: queue.Queue[Any]) -> None:
        while True:
            item = q.get()
            if item is _END:
                break
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, _Doc):
                self.batch.documents.append(item.write)
                self.owners.append(item.result)
                self.documents += 1
                self.read[id(item.result)] = self.read.get(id(item.result), 0) + 1
                if len(self.batch) >= self.pipeline.batch_chunks:
                    self.commit()
                continue
            self.file_done(item)
        if self.batch.documents or self.batch.files or self.batch.delete_doc_ids:
            self.commit()

    def file_done(self, item: _FileDone) -> None:
        self.pipeline.check()
        result, batch = item.result, self.batch
        self.done += 1
        self.documents += result.documents - self.read.pop(id(result), 0)
        self.report.files.append(result)
        if item.record is not None:
            batch.files.append(item.record)
        batch.delete_doc_ids.extend(item.delete_doc_ids)
        self.report.documents_removed += len(item.delete_doc_ids)
        if result.status in ("unchanged", "failed") and not batch.documents and not batch.files:
            self.tell("file", result.path)
            return
        self.finished += 1
        every = self.pipeline.files_per_commit
        if len(batch) >= self.pipeline.batch_chunks or len(batch.files) >= 256 or (every and self.finished >= every):
            self.commit()
        elif every is None:  # a job (committing every few files) reports only what is committed
            self.tell("file", result.path)

    def commit(self) -> None:
        self.pipeline._commit(self.batch, self.owners, self.report)
        self.batch, self.owners, self.finished = WriteBatch(), [], 0
        self.tell("batch")

    def tell(self, event: str, current: str = "") -> None:
        r = self.report
        self.pipeline.progress(Progress(event, self.files_total, self.done, r.chunks_written, r.chunks_embedded,
                                        current, documents=self.documents))
