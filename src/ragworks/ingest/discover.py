"""Which files a run reads: `discover` walks paths and globs; `regular_file_stat` says whether one can be read."""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ragworks.errors import LoadError, MissingFile, NotRegularFile, UnreadableFile
from ragworks.ingest.readers import is_sidecar


@dataclass(slots=True)
class Discovery:
    """What `discover` found: the files to read, and the paths it could not list (reported like failed files)."""

    files: list[Path] = field(default_factory=list)
    problems: list[tuple[Path, LoadError]] = field(default_factory=list)


def discover(paths: Sequence[str | Path], include: Sequence[str] = (), exclude: Sequence[str] = ()) -> Discovery:
    """Files under `paths` (recursively, hidden entries skipped), filtered by globs on the relative path.

    Anything that is not a directory is listed as a file, whatever it is (a FIFO, a dangling link): reading it is
    where it fails, as one file of the run. A path that does not exist or a directory that cannot be listed is a
    problem of the discovery, never an exception that stops the run.
    """
    found: list[Path] = []
    problems: list[tuple[Path, LoadError]] = []

    def unlisted(exc: OSError) -> None:
        where = Path(exc.filename or "?")
        problems.append((where, UnreadableFile(f"{where.name}: directory cannot be listed ({exc.strerror or exc})")))

    for p in map(Path, paths):
        if p.is_dir():
            root = p.resolve()
        elif p.exists() or p.is_symlink():  # a dangling link is listed as itself, to be reported when read
            found.append(p.resolve() if p.exists() else p.absolute())
            continue
        else:
            problems.append((p.absolute(), MissingFile(f"{p}: no such file or directory")))
            continue
        for dirpath, dirnames, filenames in os.walk(root, onerror=unlisted):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith(".") or is_sidecar(name):
                    continue
                full = Path(dirpath) / name
                rel = full.relative_to(root).as_posix()
                if include and not any(fnmatch.fnmatch(rel, g) or fnmatch.fnmatch(name, g) for g in include):
                    continue
                if any(fnmatch.fnmatch(rel, g) or fnmatch.fnmatch(name, g) for g in exclude):
                    continue
                found.append(full)
    return Discovery(list(dict.fromkeys(found)), problems)


def regular_file_stat(path: Path) -> os.stat_result:
    """stat() of a file that can be read to its end, or the LoadError saying why not."""
    try:
        st = path.stat()
    except FileNotFoundError as exc:
        if path.is_symlink():
            raise MissingFile(f"{path.name}: dangling symbolic link (to {os.readlink(path)})") from exc
        raise MissingFile(f"{path.name}: gone before it could be read") from exc
    except OSError as exc:
        detail = "symbolic link loop" if exc.errno == errno.ELOOP else exc.strerror or str(exc)
        raise UnreadableFile(f"{path.name}: {detail}") from exc
    if not stat.S_ISREG(st.st_mode):
        kind = ("FIFO" if stat.S_ISFIFO(st.st_mode) else "socket" if stat.S_ISSOCK(st.st_mode)
                else "device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "special file")
        raise NotRegularFile(f"{path.name}: a {kind}, not a regular file")
    if not os.access(path, os.R_OK):
        raise UnreadableFile(f"{path.name}: permission denied")
    return st
