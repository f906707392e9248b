"""Text a reader never sees: zero-width and tag characters, CSS-hidden HTML, DOCX hidden (vanish) and white runs.

A prompt-injection carrier hides its instructions where a person reviewing the document cannot see them; the
loaders drop such text (HTML, DOCX) and every document passes through `invisible_edits` before chunking.
"""

from __future__ import annotations

import re
from typing import Any

from ragworks.guard.base import Edit

# zero-width space, word joiner, BOM, Mongolian vowel separator, invisible math operators, soft hyphen,
# and the Unicode tag block (U+E0000–E007F: "ASCII smuggling" of invisible instructions)
_ALWAYS_INVISIBLE = re.compile("[\u200b\u2060\ufeff\u180e\u2061-\u2064\u00ad\U000e0000-\U000e007f]+")
# ZWJ / ZWNJ shape Persian, Indic and emoji text; between ASCII characters they only hide a word from a reader's
# eye while splitting it for a model's tokenizer
_JOINERS = re.compile("(?<=[\x00-\x7f])[\u200c\u200d]+(?=[\x00-\x7f])")

_HIDDEN_STYLE = re.compile(
    r"display\s*:\s*none|visibility\s*:\s*(?:hidden|collapse)|opacity\s*:\s*0(?:\.0+)?\s*(?:;|$)"
    r"|font-size\s*:\s*0(?:\.0+)?(?:px|pt|em|rem|%)?\s*(?:;|$)"
    r"|(?<![-\w])color\s*:\s*(?:#fff(?:fff)?|white|rgba?\(\s*255\s*,\s*255\s*,\s*255)\b",
    re.IGNORECASE,
)
# selectolax CSS selectors of elements a browser does not show
HIDDEN_SELECTORS = '[aria-hidden="true"], [hidden], [style]'


def invisible_edits(text: str) -> list[Edit]:
    """Edits that delete invisible characters from `text`."""
    edits = [Edit(m.start(), m.end()) for m in _ALWAYS_INVISIBLE.finditer(text)]
    edits += [Edit(m.start(), m.end()) for m in _JOINERS.finditer(text)]
    return sorted(edits, key=lambda e: e.start)


def strip_invisible(text: str) -> str:
    """`text` without invisible characters."""
    text = _ALWAYS_INVISIBLE.sub("", text)
    return _JOINERS.sub("", text)


def hidden_style(style: str | None) -> bool:
    """True when an inline CSS style hides its element (display:none, visibility:hidden, zero size or opacity,
    white text: white-on-white is the common trick, and a white-on-dark page is rare in documents)."""
    return bool(style) and _HIDDEN_STYLE.search(style or "") is not None


def html_node_hidden(node: Any) -> bool:
    """A selectolax node a browser would not show: `hidden`, `aria-hidden="true"`, or a hiding inline style."""
    attrs = node.attributes or {}
    if "hidden" in attrs or (attrs.get("aria-hidden") or "").lower() == "true":
        return True
    return hidden_style(attrs.get("style"))


_WHITE = {"FFFFFF", "FEFEFE", "FDFDFD"}


def docx_run_hidden(run: Any) -> bool:
    """A python-docx run Word does not show: hidden (`w:vanish`, `w:specVanish`), white, or under 2 pt."""
    font = run.font
    if font.hidden:
        return True
    rpr = run._element.rPr
    if rpr is not None and any(c.tag.endswith("}specVanish") or c.tag.endswith("}webHidden") for c in rpr):
        return True
    try:
        rgb = font.color.rgb if font.color is not None and font.color.type is not None else None
    except (AttributeError, ValueError):
        rgb = None
    if rgb is not None and str(rgb).upper() in _WHITE:
        return True
    return font.size is not None and font.size.pt < 2


def docx_paragraph_text(paragraph: Any) -> tuple[str, int]:
    """A paragraph's visible text and the number of hidden characters left out."""
    runs = list(paragraph.runs)
    if not runs:
        return paragraph.text, 0
    visible: list[str] = []
    dropped = 0
    for run in runs:
        if docx_run_hidden(run):
            dropped += len(run.text)
        else:
            visible.append(run.text)
    if not dropped:
        return paragraph.text, 0  # hyperlinks' runs are not in `runs`: keep the full text when nothing was hidden
    return "".join(visible), dropped
