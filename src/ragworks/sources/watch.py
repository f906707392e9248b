"""Watch: keep a collection current. Folder sources sync within about a second of a change (filesystem events
through watchdog — inotify, FSEvents, ReadDirectoryChangesW — or, where those are unavailable, watchdog's polling
observer); remote sources sync every `interval_s`. A source that fails is retried with exponential backoff
(2 s doubling, capped at its interval) and loses nothing meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragworks.collection import Collection
from ragworks.errors import ConfigError, RagworksError
from ragworks.ingest.source import Source
from ragworks.sources.config import SourceList, SourceSpec, make_source
from ragworks.sources.sync import SyncOutcome, sync_source

log = logging.getLogger("ragworks.sources.watch")
DEBOUNCE_S = 0.3  # an editor's save is several events: sync once they settle
FIRST_RETRY_S = 2.0


def observe_folder(root: str, on_change: Callable[[], None], *, events: bool = True, poll_s: float = 1.0) -> Any:
    """A started watchdog observer calling `on_change` for every change under `root` (stop() and join() it).
    Filesystem events where the platform has them, else (or with `events=False`) watchdog's polling observer."""
    try:
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer
        from watchdog.observers.polling import PollingObserver
    except ImportError as exc:
        raise ConfigError("watching folders needs watchdog: pip install 'ragworks[sources]'") from exc

    class Changed(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            if event.event_type not in ("opened", "closed_no_write"):  # reads are not changes
                on_change()

    observer: Any = Observer() if events else PollingObserver(timeout=poll_s)
    try:
        observer.schedule(Changed(), root, recursive=True)
        observer.start()
    except OSError as exc:  # inotify watch limit, a filesystem without events: poll instead
        log.warning("%s: filesystem events unavailable (%s); polling every %.1f s", root, exc, poll_s)
        observer = PollingObserver(timeout=poll_s)
        observer.schedule(Changed(), root, recursive=True)
        observer.start()
    return observer


@dataclass(slots=True)
class _Watched:
    spec: SourceSpec
    source: Source
    due: float = 0.0  # monotonic time of the next sync (0: now)
    failures: int = 0
    changed_at: float | None = None  # last filesystem event not yet synced
    observer: Any = None


@dataclass(slots=True)
class Watcher:
    """Runs in the calling thread until `stop` is set; `on_outcome` hears of every sync."""

    collection: Collection
    specs: Sequence[SourceSpec]
    on_outcome: Callable[[SyncOutcome], None] = lambda o: None
    events: bool = True  # False: polling observer even where inotify works
    poll_s: float = 1.0
    _watched: list[_Watched] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _observe(self, w: _Watched) -> None:
        def changed() -> None:
            with self._lock:
                w.changed_at = time.monotonic()

        w.observer = observe_folder(str(w.source.uri), changed, events=self.events, poll_s=self.poll_s)

    def _sync(self, w: _Watched) -> None:
        # retries=0: the watch loop's own backoff retries, without holding up the other sources
        try:
            outcome = sync_source(self.collection, w.source, name=w.spec.name, retries=0)
        except RagworksError as exc:  # e.g. CollectionLocked by a long `ragworks ingest`: back off, keep watching
            outcome = SyncOutcome(w.spec.name, w.source.uri, None, str(exc))
        now = time.monotonic()
        if outcome.ok:
            if w.spec.kind == "folder" and (w.failures or w.observer is None):
                # the folder was gone (unmounted, moved away): its watches went with it, so watch it afresh
                if w.observer is not None:
                    w.observer.stop()
                    w.observer.join(timeout=5)
                self._observe(w)
            w.failures = 0
            w.due = now + w.spec.interval_s
        else:
            w.failures += 1
            w.due = now + min(w.spec.interval_s, FIRST_RETRY_S * 2 ** (w.failures - 1))
            log.warning("%s: %s (retry in %.0f s)", w.spec.name, outcome.error, w.due - now)
        self.on_outcome(outcome)

    def run(self, stop: threading.Event) -> None:
        cache_dir = SourceList(self.collection.path).cache_dir
        self._watched = [_Watched(s, make_source(s, cache_dir=cache_dir)) for s in self.specs]
        try:
            for w in self._watched:
                if w.spec.kind == "folder" and Path(w.source.uri).is_dir():
                    self._observe(w)
            while not stop.is_set():
                now = time.monotonic()
                for w in self._watched:
                    with self._lock:
                        settled = w.changed_at is not None and now - w.changed_at >= DEBOUNCE_S
                        if settled:
                            w.changed_at = None
                    if settled or now >= w.due:
                        self._sync(w)
                stop.wait(0.1)
        finally:
            for w in self._watched:
                if w.observer is not None:
                    w.observer.stop()
                    w.observer.join(timeout=5)
                w.source.close()


def watch_collection(collection: Collection, stop: threading.Event, *, events: bool = True,
                     on_outcome: Callable[[SyncOutcome], None] = lambda o: None) -> None:
    """Watch every configured source of `collection` until `stop` is set."""
    Watcher(collection, SourceList(collection.path).load(), on_outcome, events=events).run(stop)
