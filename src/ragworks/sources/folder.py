"""FolderSource: a directory on this machine (a mounted shared drive included), read in place."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ragworks.errors import SourceItemError, SourceUnavailable
from ragworks.ingest.discover import discover
from ragworks.ingest.source import FetchedItem, SourceItem


class FolderSource:
    """Every file under `root` matching the globs. Items are read in place, so a folder synced here and the same
    folder given to `ragworks ingest` are the same documents (keyed by absolute path, skipped by size + mtime)."""

    def __init__(self, root: str | Path, *, include: Sequence[str] = (), exclude: Sequence[str] = ()) -> None:
        self.root = Path(root).expanduser().resolve()
        self.include, self.exclude = tuple(include), tuple(exclude)

    @property
    def uri(self) -> str:
        return str(self.root)

    def list_items(self) -> list[SourceItem]:
        if not self.root.is_dir():  # an unmounted drive looks like an empty folder: refuse rather than delete
            raise SourceUnavailable(f"{self.root}: not a directory (unmounted or moved?); nothing was deleted")
        try:
            found = discover([self.root], self.include, self.exclude)
        except OSError as exc:
            raise SourceUnavailable(f"{self.root}: cannot be listed: {exc}") from exc
        if found.problems:  # a folder that could not be listed would look deleted: refuse the whole listing
            where, problem = found.problems[0]
            raise SourceUnavailable(f"{self.root}: {where} cannot be listed ({problem}); nothing was deleted")
        items = []
        for path in found.files:
            try:
                st = path.stat()
            except FileNotFoundError:  # deleted while listing: it is gone
                continue
            items.append(SourceItem(str(path), f"{st.st_size}:{st.st_mtime_ns}", path.name, st.st_size,
                                    local_path=path))
        return items

    def fetch(self, item: SourceItem) -> FetchedItem:
        try:
            return FetchedItem(Path(item.key).read_bytes(), item.filename)
        except OSError as exc:
            raise SourceItemError(f"{item.key}: {exc}") from exc

    def owns(self, key: str) -> bool:
        return key.startswith(str(self.root) + "/")

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"FolderSource({str(self.root)!r})"
