"""Bytes → text: UTF-8, UTF-16 with a BOM, legacy code pages, and damaged UTF-8 read with its few bad bytes replaced.

A file with a handful of flipped or truncated bytes is still text: losing the whole file for three bad bytes is
worse than three U+FFFD characters, so such a file is read with replacements and a warning. What decides between
"damaged UTF-8" and "another encoding" is the share of undecodable bytes and whether valid multi-byte UTF-8
sequences occur at all (a cp1252 file has none).
"""

from __future__ import annotations

from typing import Any

from ragworks.errors import BinaryFile, DecodeError

SNIFF_BYTES = 8192
# At most this share of bytes may be undecodable for a file to count as damaged UTF-8 rather than something else.
MAX_BAD_UTF8_FRACTION = 0.01
# Text with a few stray NUL bytes (a flipped bit) is damaged text; binary formats have NULs everywhere.
MAX_NUL_FRACTION = 0.001
REPLACEMENT = "\ufffd"


def decode_text(data: bytes, name: str, warnings: list[str] | None = None) -> str:
    """Bytes → str: UTF-8 (with or without BOM), UTF-16 with BOM, else the most plausible legacy encoding, else
    damaged UTF-8 with its bad bytes replaced (a warning is appended to `warnings`)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise DecodeError(f"{name}: invalid UTF-16: {exc.reason}") from exc
    sniff = data[:SNIFF_BYTES]
    nuls = sniff.count(0)
    if nuls > max(1, len(sniff) * MAX_NUL_FRACTION):
        raise BinaryFile(f"{name}: binary content (NUL bytes), not text")
    if nuls:  # stray NULs are damage; they would also end the text early in C libraries and PostgreSQL
        nuls = data.count(0)
        data = data.replace(b"\x00", REPLACEMENT.encode())
        if warnings is not None:
            warnings.append(f"{name}: {nuls} NUL byte(s) replaced with U+FFFD")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass

    repaired, bad, multibyte = _replace_bad_utf8(data)
    mostly_utf8 = bad <= max(1, len(data) * MAX_BAD_UTF8_FRACTION)
    if mostly_utf8 and multibyte:  # real UTF-8 sequences around a few bad bytes: damage, not another encoding
        return _warned(repaired, bad, name, warnings)
    legacy = _legacy_text(data)
    if legacy is not None:
        return legacy
    if mostly_utf8:  # ASCII with a few high bytes no code page explains
        return _warned(repaired, bad, name, warnings)
    raise DecodeError(f"{name}: not valid UTF-8 ({bad} bad bytes) and no plausible text encoding detected")


def _replace_bad_utf8(data: bytes) -> tuple[str, int, int]:
    """(text with U+FFFD for each invalid sequence, how many were invalid, how many valid non-ASCII characters)."""
    genuine = data.count(REPLACEMENT.encode())  # U+FFFD already in the file is not damage
    text = data.decode("utf-8-sig", errors="replace")
    replaced = text.count(REPLACEMENT)
    non_ascii = sum(1 for ch in text if ord(ch) > 127)
    return text, replaced - genuine, non_ascii - replaced


def _warned(text: str, bad: int, name: str, warnings: list[str] | None) -> str:
    if warnings is not None:
        warnings.append(f"{name}: {bad} byte(s) not valid UTF-8, replaced with U+FFFD")
    return text


def _legacy_text(data: bytes) -> str | None:
    """The text in the most plausible legacy encoding, or None when no encoding reads it as text."""
    from charset_normalizer import from_bytes

    matches = from_bytes(data)
    best = matches.best()
    if best is None or best.chaos > 0.2:
        return None
    western = _as_western(data, best.chaos, matches)
    return western if western is not None else str(best)


# Non-ASCII characters of Western European text (plus typographic punctuation). Icelandic ð þ ý are left out on
# purpose: they are what Turkish (cp1254) bytes look like when read as cp1252.
_WESTERN_CHARS = frozenset(
    "àáâãäåæçèéêëìíîïñòóôõöøùúûüÿœšžÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÑÒÓÔÕÖØÙÚÛÜŒŠŽŸß"
    "“”‘’‚„–—…€«»°©®™·•¡¿§£¥¢ªº±×÷½¼¾²\u00a0"
)


def _as_western(data: bytes, best_chaos: float, matches: Any) -> str | None:
    """The cp1252 reading of `data` when it is as plausible as the detector's pick and reads as Western text.

    charset_normalizer often ranks a Baltic or Central European code page (cp1257, cp1250) first for French or
    Portuguese Latin-1 text, turning "è" into "č"; cp1252 is by far the most common legacy encoding, so it wins
    ties.
    """
    if not any(m.encoding == "cp1252" and m.chaos <= best_chaos + 0.05 for m in matches):
        return None
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        return None
    if all(ch in _WESTERN_CHARS for ch in text if ord(ch) > 127):
        return text
    return None
