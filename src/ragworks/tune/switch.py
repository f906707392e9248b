"""Re-embed a collection with another model beside the active one, then switch to it in one transaction.

The new model's vectors go into the same `embeddings` table under their own model id, in committed batches, while
searches keep using the active model; a killed run resumes where it stopped (only chunks without a vector of the
new model are embedded). The final step takes the collection's writer lock, embeds chunks ingested meanwhile,
writes the new model's complete FAISS file, and flips `models.active` with the index position in one SQLite
transaction. So at every instant the collection has one complete active model, and the previous one keeps its
vectors for `rollback`.

    python -m ragworks.tune.switch COLLECTION_DIR MODEL_DIR [BATCH]   # re-embed + switch; resumable
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ragworks.config import Settings
from ragworks.embed import make_embedder, versions
from ragworks.embed.base import Embedder
from ragworks.errors import ConfigError
from ragworks.store.embedded import EmbeddedStore

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(slots=True)
class SwitchReport:
    model_id: int
    model_name: str
    embedded: int  # chunk texts embedded by this run (0 when resuming a finished one)
    seconds: float
    activated: bool
    index_seq: int = 0


def count_missing(store: EmbeddedStore, model_id: int) -> int:
    return len(store.missing_model_vectors(model_id, limit=10**9))


def reembed(store: EmbeddedStore, model_id: int, embedder: Embedder, *, batch: int = 128,
            progress: Progress | None = None) -> int:
    """Embed every chunk text that has no vector of `model_id`, committing each batch; returns how many."""
    total = count_missing(store, model_id)
    done, after = 0, 0
    if progress is not None:
        progress("re-embed", 0, total)
    while True:
        rows = store.missing_model_vectors(model_id, after=after, limit=batch)
        if not rows:
            break
        texts = dict((h, body) for _, h, body in rows)  # repeated texts embed once
        vecs = embedder.embed_documents(list(texts.values()))
        store.write_model_vectors(model_id, dict(zip(texts, vecs, strict=True)))
        after = rows[-1][0]
        done += len(rows)
        if progress is not None:
            progress("re-embed", min(done, total), total)
    return done


def prepare(store: EmbeddedStore, name: str, embedder: Embedder, *, batch: int = 128,
            progress: Progress | None = None) -> tuple[int, int]:
    """Record model `name` (inactive), fill in its vectors and write its index; (model id, chunks embedded).

    The index is written under the writer lock (after a catch-up for chunks ingested meanwhile), so it is complete
    at that log position; later writes are replayed onto it like any index.
    """
    model_id = store.add_model(name, embedder.dimension)
    embedded = reembed(store, model_id, embedder, batch=batch, progress=progress)
    with store.write_lock(wait_s=600):
        embedded += reembed(store, model_id, embedder)
        store.build_model_index(model_id)
    return model_id, embedded


def activate(store: EmbeddedStore, model_id: int, embedder: Embedder, *, rollback: bool = False) -> int:
    """Make `model_id` active: under the writer lock, catch up, write its index, flip in one transaction."""
    with store.write_lock(wait_s=600):
        reembed(store, model_id, embedder)
        seq = store.build_model_index(model_id)
        store.activate_model(model_id, seq, rollback=rollback)
    return seq


def switch_to(collection_path: Path, settings: Settings, model_dir: Path, *, embedder: Embedder | None = None,
              batch: int = 128, progress: Progress | None = None) -> SwitchReport:
    """Re-embed the collection with the model in `model_dir` and make it the active model (resumable)."""
    started = time.perf_counter()
    model_settings = versions.settings_for_model(settings, model_dir)
    embedder = embedder or make_embedder(model_settings)
    store = EmbeddedStore(collection_path, create=False)
    try:
        model_id, embedded = prepare(store, embedder.name, embedder, batch=batch, progress=progress)
        seq = activate(store, model_id, embedder)
    finally:
        store.close()
    return SwitchReport(model_id, embedder.name, embedded, round(time.perf_counter() - started, 1), True, seq)


def rollback(collection_path: Path, settings: Settings, *, progress: Progress | None = None) -> SwitchReport:
    """Return to the model that was active before the current one (catching up chunks ingested since)."""
    started = time.perf_counter()
    store = EmbeddedStore(collection_path, create=False)
    try:
        history = store.model_history()
        if len(history) < 2:
            raise ConfigError(f"collection {collection_path.name!r} has no previous model to roll back to "
                              f"(active: {store.model_name!r})")
        target = history[-2]
        name = next(n for i, n, _, _ in store.models() if i == target)
        target_settings = versions.settings_for_name(collection_path, settings, name)
        if target_settings is None:
            raise ConfigError(f"cannot load the previous model {name!r} of {collection_path.name!r}: set "
                              "embed_model to it (RAGWORKS_EMBED_MODEL) and run the rollback again")
        embedder = make_embedder(target_settings)
        embedded = reembed(store, target, embedder, progress=progress)
        seq = activate(store, target, embedder, rollback=True)
    finally:
        store.close()
    return SwitchReport(target, name, embedded, round(time.perf_counter() - started, 1), True, seq)


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    report = switch_to(Path(argv[0]), Settings(), Path(argv[1]), batch=int(argv[2]) if len(argv) == 3 else 128)
    print(f"active model {report.model_name} (id {report.model_id}); embedded {report.embedded} in {report.seconds} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
