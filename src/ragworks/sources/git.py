"""GitSource: the files of one branch of a Git repository (a local path or a URL this machine can reach).

Read with the `git` command line from the branch's commit, never from a working tree: uncommitted edits are not
synced. A URL (`file://` included) is cloned once (bare) into a cache directory and fetched at each sync; a
path is read in place. The blob id is the version,
so a file unchanged between two commits is not read again; each document carries the commit it was read at and
its path in the repository (metadata `commit`, `path`), which citations show.
"""

from __future__ import annotations

import fnmatch
import hashlib
import posixpath
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from ragworks.errors import ConfigError, SourceItemError, SourceUnavailable
from ragworks.ingest.source import FetchedItem, SourceItem

GIT_TIMEOUT_S = 120


def _matches(rel: str, globs: Sequence[str]) -> bool:
    return any(fnmatch.fnmatch(rel, g) or fnmatch.fnmatch(posixpath.basename(rel), g) for g in globs)


def repository_url(location: str) -> str:
    """A stable URL for the repository: `file://` for a local path (what keys and citations show)."""
    location = location.removeprefix("git+")
    if "://" in location or location.startswith("git@"):
        return location
    return Path(location).expanduser().resolve().as_uri()


class GitSource:
    def __init__(self, location: str, *, branch: str = "main", include: Sequence[str] = (),
                 exclude: Sequence[str] = (), cache_dir: Path | None = None) -> None:
        if shutil.which("git") is None:
            raise ConfigError("Git sources need the git command line (apt-get install git)")
        self.url = repository_url(location)
        self.branch = branch
        self.include, self.exclude = tuple(include), tuple(exclude)
        plain = location.removeprefix("git+")
        local = None if "://" in plain or plain.startswith("git@") else Path(plain).expanduser().resolve()
        if local is not None:
            if not ((local / ".git").exists() or (local / "HEAD").is_file()):
                raise ConfigError(f"{local}: not a Git repository")
            self.git_dir: Path = local  # a repository path on this machine: read its refs in place
            self._mirror = False
        else:
            if cache_dir is None:
                raise ConfigError(f"{self.url}: a remote repository needs a cache directory to clone into")
            self.git_dir = cache_dir / hashlib.sha256(self.url.encode()).hexdigest()[:16]
            self._mirror = True
        self.commit = ""

    @property
    def uri(self) -> str:
        return f"git+{self.url}#{self.branch}"

    def key_for(self, path: str) -> str:
        return f"{self.uri}:{path}"

    def _git(self, *args: str, binary: bool = False) -> bytes:
        try:
            done = subprocess.run(["git", "-C", str(self.git_dir), *args], capture_output=True,
                                  timeout=GIT_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SourceUnavailable(f"{self.uri}: git {args[0]} failed: {exc}") from exc
        if done.returncode != 0:
            raise SourceUnavailable(f"{self.uri}: git {args[0]} failed: {done.stderr.decode(errors='replace').strip()}")
        return done.stdout

    def _update_mirror(self) -> None:
        ref = f"+refs/heads/{self.branch}:refs/heads/{self.branch}"
        if not (self.git_dir / "HEAD").is_file():
            self.git_dir.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.git_dir.with_name(self.git_dir.name + ".partial")
            shutil.rmtree(tmp, ignore_errors=True)
            done = subprocess.run(["git", "init", "--quiet", "--bare", str(tmp)], capture_output=True, check=False)
            if done.returncode != 0:
                raise SourceUnavailable(f"{self.uri}: git init failed: {done.stderr.decode(errors='replace')}")
            tmp.rename(self.git_dir)
        self._git("fetch", "--quiet", "--no-tags", self.url, ref)

    def list_items(self) -> list[SourceItem]:
        if self._mirror:
            self._update_mirror()
        ref = f"refs/heads/{self.branch}^{{commit}}"
        self.commit = self._git("rev-parse", "--verify", "--quiet", ref).decode().strip()
        items = []
        # -z: paths verbatim (no quoting of unusual names); -l: blob sizes
        for entry in self._git("ls-tree", "-r", "-l", "-z", self.commit).split(b"\0"):
            if not entry:
                continue
            meta, _, raw_path = entry.partition(b"\t")
            mode, kind, blob, size = meta.split()
            if kind != b"blob" or mode == b"120000":  # submodules and symlinks have no content here
                continue
            path = raw_path.decode("utf-8", "surrogateescape")
            if self.include and not _matches(path, self.include):
                continue
            if self.exclude and _matches(path, self.exclude):
                continue
            items.append(SourceItem(self.key_for(path), blob.decode(), posixpath.basename(path), int(size),
                                    {"repository": self.url, "branch": self.branch, "commit": self.commit,
                                     "path": path}))
        return items

    def fetch(self, item: SourceItem) -> FetchedItem:
        try:
            return FetchedItem(self._git("cat-file", "blob", item.version), item.filename)
        except SourceUnavailable as exc:
            raise SourceItemError(str(exc)) from exc

    def owns(self, key: str) -> bool:
        return key.startswith(self.uri + ":")

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"GitSource({self.url!r}, branch={self.branch!r})"
