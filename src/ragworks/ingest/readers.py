"""Where a file's readers come from at ingest: its sidecar, the nearest folder rule, or the collection default.

`<file>.readers` names the readers of that one file; `.ragworks-readers` in a folder names the readers of every
file below it that has no sidecar (the nearest folder wins); a file with neither gets the collection's
`default_readers` (empty: public within the tenant). A JSONL record's own `readers` / `acl` field wins over all
of these. Each file names one token per line (`user:ann`, `group:finance`; `#` comments).

The readers are folded into the file's stored fingerprint, so editing a sidecar or a rule makes the next ingest
re-read the file, and a document whose text did not change gets its new readers without a re-embed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from ragworks.access import FOLDER_RULE_FILE, SIDECAR_SUFFIX, normalize_readers, readers_from_lines

_MARK = "+r"  # FileRecord.sha256 = <content sha256>[+r<readers digest>] (hex never holds "+")


class FileReaders:
    """Resolves the readers of files under one ingest run (folder rules read once per folder)."""

    def __init__(self, default: Sequence[str] = ()) -> None:
        self.default = normalize_readers(list(default))
        self._folders: dict[Path, tuple[str, ...] | None] = {}

    def of(self, path: Path) -> tuple[str, ...]:
        """The file's readers; raises InvalidReaders (naming the rule file) when a rule is malformed."""
        sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
        if sidecar.is_file():
            return readers_from_lines(sidecar.read_text(encoding="utf-8", errors="replace"), sidecar.name)
        folder = self._folder_rule(path.parent)
        return self.default if folder is None else folder

    def _folder_rule(self, folder: Path) -> tuple[str, ...] | None:
        if folder in self._folders:
            return self._folders[folder]
        rule = folder / FOLDER_RULE_FILE
        if rule.is_file():
            found: tuple[str, ...] | None = readers_from_lines(
                rule.read_text(encoding="utf-8", errors="replace"), str(rule))
        else:
            found = None if folder.parent == folder else self._folder_rule(folder.parent)
        self._folders[folder] = found
        return found


def fingerprint(content_sha: str, readers: Sequence[str]) -> str:
    """The file record's sha256 field: the content hash, marked with a digest of the readers when there are any."""
    if not readers:
        return content_sha
    return content_sha + _MARK + hashlib.sha256("\n".join(readers).encode()).hexdigest()[:16]


def readers_mark(recorded: str) -> str:
    """The readers part of a recorded fingerprint ("" for a public file or a record made before permissions)."""
    return recorded.partition(_MARK)[2]


def content_sha(recorded: str) -> str:
    return recorded.partition(_MARK)[0]


def is_sidecar(name: str) -> bool:
    """Readers files are rules, not documents: discovery skips them."""
    return name.endswith(SIDECAR_SUFFIX) or name == FOLDER_RULE_FILE
