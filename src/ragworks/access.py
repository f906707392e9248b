"""Document permissions: who may read a document, as principal tokens (`user:ann`, `group:finance`).

A document stores the tokens of its readers; an empty list means public within the tenant. A caller presents its
own tokens (its user and groups) as `Filter.readers`; a store returns a document's chunks only when the two lists
intersect or the document is public. `None` instead of the caller's tokens means unrestricted (the local CLI, an
admin key, an API key made before keys had users).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from ragworks.errors import InvalidReaders

READERS_KEY = "readers"  # Document.metadata key the ingest path fills; stores keep it in a column of its own
PRINCIPAL_KINDS = ("user", "group")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+\-]{0,127}$")
FOLDER_RULE_FILE = ".ragworks-readers"  # one token per line, for every file under the folder (nearest wins)
SIDECAR_SUFFIX = ".readers"  # `<file>.readers`: one token per line, for that file alone


def principal_token(kind: str, name: str) -> str:
    """`user:ann` from ("user", "ann"); raises InvalidReaders for an unknown kind or a name with odd characters."""
    if kind not in PRINCIPAL_KINDS:
        raise InvalidReaders(f"unknown principal kind {kind!r} (use one of {', '.join(PRINCIPAL_KINDS)})")
    if not _NAME.match(name):
        raise InvalidReaders(f"bad {kind} name {name!r}: letters, digits and . _ @ + - only, up to 128")
    return f"{kind}:{name}"


def parse_token(token: str) -> str:
    """A reader token, validated: `user:<name>` or `group:<name>` (surrounding blanks ignored)."""
    kind, sep, name = token.strip().partition(":")
    if not sep:
        raise InvalidReaders(f"reader {token!r} has no kind: write user:<name> or group:<name>")
    return principal_token(kind.strip(), name.strip())


def normalize_readers(value: Any) -> tuple[str, ...]:
    """A readers value (list of tokens, or one comma-separated string) → sorted unique tokens; () = public.

    Anything else (a number, a list holding a non-string, a malformed token) raises InvalidReaders, so a typo never
    silently turns a private document public.
    """
    if value is None:
        return ()
    if isinstance(value, str):
        items: list[Any] = [t for t in value.split(",") if t.strip()]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise InvalidReaders(f"readers must be a list of tokens, not {type(value).__name__}")
    tokens = set()
    for item in items:
        if not isinstance(item, str):
            raise InvalidReaders(f"reader {item!r} is not a string")
        tokens.add(parse_token(item))
    return tuple(sorted(tokens))


def readers_from_lines(text: str, where: str) -> tuple[str, ...]:
    """Tokens of a sidecar or folder rule file: one per line, `#` comments and blank lines ignored."""
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    try:
        return normalize_readers([line for line in lines if line])
    except InvalidReaders as exc:
        raise InvalidReaders(f"{where}: {exc}") from None


def caller_readers(user: str | None, groups: Iterable[str] = ()) -> tuple[str, ...] | None:
    """The tokens a caller reads as (`Filter.readers`): None (unrestricted) when there is no user."""
    if not user:
        return None
    return tuple(sorted({principal_token("user", user), *(principal_token("group", g) for g in groups)}))


def may_read(doc_readers: Iterable[str], caller: tuple[str, ...] | None) -> bool:
    """The rule every store applies in its queries, for code that holds a document in hand (jobs, citations)."""
    allowed = tuple(doc_readers)
    return caller is None or not allowed or bool(set(allowed) & set(caller))
