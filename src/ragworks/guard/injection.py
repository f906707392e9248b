"""Prompt injection: instruction-like text in passages (ingest) and what an attack wants in answers (output).

The flagger is heuristics: patterns of text addressed to an assistant rather than to a reader — overriding earlier
instructions, assigning a role, chat-template role tags, talking about the system prompt, telling the reader or
the model to visit a URL — in English and the languages the engine detects. DESIGN.md found no packaged
prompt-injection classifier with weights; bench/injection.py measures these rules on a corpus written here.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

_I = re.IGNORECASE | re.UNICODE

# (rule, pattern, weight): a passage is flagged when one stretch's weights reach 1
_RULES: list[tuple[str, str, float]] = [
    ("override", r"\b(?:ignore|disregard|forget)\b[^.\n]{0,40}?\b(?:previous|prior|above|earlier|preceding|all|"
                 r"any|your|the|system)\b[^.\n]{0,30}?\b(?:instructions?|prompts?|rules?|directions?|guidelines?|"
                 r"context|messages?)\b", 1.0),
    ("override", r"\b(?:override|bypass)\b[^.\n]{0,20}?\b(?:your|previous|prior|system|safety)\b[^.\n]{0,20}?"
                 r"\b(?:instructions?|prompts?|rules?|guidelines?|filters?)\b", 1.0),
    ("prompt-leak", r"\b(?:repeat|reveal|print|show|output|disclose|leak|tell\s+me)\b[^.\n]{0,30}?\b(?:your|the)\s+"
                    r"(?:system\s+prompt|initial\s+prompt|hidden\s+instructions|instructions\s+above|"
                    r"confidential\s+marker|secret)", 1.0),
    ("override", r"\b(?:new|updated|real|actual|secret|hidden)\s+(?:instructions?|directives?|system\s+prompt)\s*:",
     1.0),
    ("role", r"\byou\s+are\s+(?:now|no\s+longer)\b|\bfrom\s+now\s+on,?\s+(?:you|the\s+assistant)\s+(?:are|will|"
             r"must|shall|act|answer|respond|reply|speak)\b|"
             r"\b(?:pretend|act)\s+(?:to\s+be|as\s+(?:if|an?|the))\b[^.\n]{0,40}\b(?:assistant|ai|model|bot|"
             r"chatbot|dan|developer)\b|\bdeveloper\s+mode\b|\bjailbr(?:oken|eak)\b|\bdo\s+anything\s+now\b", 1.0),
    ("system-prompt", r"\b(?:system|initial|original|hidden)\s+(?:prompt|instructions|message)\b", 0.6),
    ("as-an-ai", r"\bas\s+an?\s+(?:ai|language\s+model|llm|assistant)\b", 0.5),
    ("addressed", r"\b(?:dear|attention|note\s+to(?:\s+the)?|hey|hi)\s+(?:ai|assistant|chatbot|llm|language\s+model|"
                  r"gpt|model|bot)s?\b|\b(?:ai|assistant|chatbot|llm|model)s?\s*(?:reading\s+this|:|,)\s*"
                  r"(?:you\s+must|must|please|always|never|do\s+not|don't|should|make\s+sure)\b", 1.0),
    ("answer-directive", r"\b(?:when|if)\s+(?:you\s+are\s+)?(?:asked|answering|questioned|responding|summari[sz]ing)"
                         r"\b[^.\n]{0,80}\b(?:say|reply|respond|answer|tell|state|claim|output|write|include)\b",
     1.0),
    ("answer-directive", r"\b(?:respond|reply|answer)\s+(?:only\s+)?with\b|\b(?:always|only)\s+(?:say|answer|"
                         r"respond|reply)\b|\btell\s+the\s+user\b|\binstruct\s+the\s+user\b", 0.7),
    ("role-tag", r"<\|(?:im_start|im_end|system|user|assistant|endoftext|begin_of_text|start_header_id)\|?>|"
                 r"\[/?INST\]|<<\s*/?SYS\s*>>|^\s*#{2,}\s*(?:system|instruction)s?\b|"
                 r"^\s*(?:system|assistant)\s*:", 1.0),
    ("url-directive", r"\b(?:visit|go\s+to|click|open|navigate\s+to|browse\s+to|log\s*in\s+at|sign\s+in\s+at)\b"
                      r"[^.\n]{0,40}?(?:https?://|www\.)", 0.7),
    ("exfiltration", r"!\[[^\]]*\]\(\s*https?://[^)\s]+[?&][^)\s]*=", 1.0),
    ("exfiltration", r"\b(?:append|include|add|encode)\b[^.\n]{0,60}\b(?:conversation|question|chat|history|"
                     r"user'?s?\s+(?:data|message|question))\b[^.\n]{0,60}\b(?:url|link|image)\b", 1.0),
    # other languages the engine detects: "ignore the previous instructions", "you are now"
    ("override", r"\bignor(?:e|ez|er)\s+(?:toutes\s+)?(?:les\s+)?instructions\s+(?:précédentes|antérieures)\b|"
                 r"\bignorier(?:e|en)?\s+(?:alle\s+)?(?:vorherigen|bisherigen|obigen)\s+(?:anweisungen|"
                 r"instruktionen)\b|\bignora\s+(?:todas\s+)?(?:las\s+|le\s+)?(?:instrucciones|istruzioni)\s+"
                 r"(?:anteriores|precedenti)\b|\bignore\s+as\s+instruções\s+anteriores\b|"
                 r"\bnegeer\s+(?:alle\s+)?(?:vorige|eerdere)\s+instructies\b|"
                 r"\bbỏ\s+qua\s+(?:tất\s+cả\s+)?(?:các\s+)?(?:hướng\s+dẫn|chỉ\s+dẫn|lệnh)\s+(?:trước|trên)\b|"
                 r"忽略(?:之前|以上|先前|上面)的?(?:所有)?(?:指令|指示|说明)", 1.0),
    ("role", r"\bdu\s+bist\s+(?:jetzt|nun)\b|\btu\s+es\s+maintenant\b|\bahora\s+eres\b|\bora\s+sei\b|"
             r"\bbây\s+giờ\s+bạn\s+là\b", 1.0),
]
_COMPILED = [(name, re.compile(p, _I | re.MULTILINE), w) for name, p, w in _RULES]
_SENTENCE_END = re.compile(r"(?<=[.!?。])\s+|\n\s*\n")


@dataclass(frozen=True, slots=True)
class InjectionFlag:
    """A stretch of text that reads as instructions to an assistant: [start, end) and the rules that matched."""

    start: int
    end: int
    rules: tuple[str, ...]
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "rule": ",".join(self.rules), "score": round(self.score, 2)}


def _sentence_bounds(text: str, start: int, end: int) -> tuple[int, int]:
    """The sentence(s) holding [start, end): the flagged stretch a fence or the extractive answerer steps around."""
    s = 0
    for m in _SENTENCE_END.finditer(text, 0, start):
        s = m.end()
    nxt = _SENTENCE_END.search(text, end)
    e = nxt.start() if nxt else len(text)
    return s, e


def flag_injection(text: str) -> list[InjectionFlag]:
    """Stretches (whole sentences) of `text` whose instruction-like rules add up to at least 1."""
    hits: dict[tuple[int, int], tuple[list[str], float]] = {}
    for name, rx, weight in _COMPILED:
        for m in rx.finditer(text):
            bounds = _sentence_bounds(text, m.start(), m.end())
            rules, score = hits.get(bounds, ([], 0.0))
            if name not in rules:
                rules.append(name)
                score += weight
            hits[bounds] = (rules, score)
    flags = [InjectionFlag(s, e, tuple(r), sc) for (s, e), (r, sc) in sorted(hits.items()) if sc >= 1.0]
    merged: list[InjectionFlag] = []
    for f in flags:  # overlapping sentence stretches (a paragraph break inside one) → one flag
        if merged and f.start < merged[-1].end:
            last = merged[-1]
            merged[-1] = InjectionFlag(last.start, max(last.end, f.end), tuple(dict.fromkeys(last.rules + f.rules)),
                                       max(last.score, f.score))
        else:
            merged.append(f)
    return merged


# --- answer time ---------------------------------------------------------------------------------------------

_URL = re.compile(r"(?:https?://|www\.)[^\s<>()\[\]\"'`]+", _I)
_MD_IMAGE = re.compile(r"!\[[^\]]*\]\(\s*([^)\s]+)[^)]*\)")
_MD_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(\s*([^)\s]+)[^)]*\)")
_VISIT = re.compile(r"\b(?:visit|go\s+to|click|open|navigate\s+to|browse\s+to|log\s*in\s+at|sign\s+in\s+at|"
                    r"call|email|contact)\b", _I)


def new_canary() -> str:
    """A secret the system prompt carries per request: an answer that repeats it leaked the prompt."""
    return "rw-canary-" + secrets.token_hex(6)


def _norm_url(url: str) -> str:
    return url.rstrip(".,;:!?").lower().removeprefix("https://").removeprefix("http://").removeprefix("www.")


def check_answer(answer: str, trusted_text: str, *, canary: str = "") -> list[str]:
    """What in `answer` serves an attack rather than the question, as reasons (empty: nothing found).

    `trusted_text` is the sources' text outside flagged stretches: a URL the answer shows or sends the user to
    must appear there. Markdown images are never needed in an answer and are how a rendered answer leaks data
    (the browser fetches the URL, query string and all).
    """
    reasons: list[str] = []
    if canary and canary.lower() in answer.lower():
        reasons.append("the answer repeats the system prompt's canary")
    trusted = {_norm_url(u) for u in _URL.findall(trusted_text)}
    trusted_blob = trusted_text.lower()
    for m in _MD_IMAGE.finditer(answer):
        reasons.append(f"markdown image to {m.group(1)[:80]}")
    for m in _MD_LINK.finditer(answer):
        if _norm_url(m.group(1)) not in trusted:
            reasons.append(f"markdown link to a URL no trusted source contains: {m.group(1)[:80]}")
    for m in _URL.finditer(answer):
        url = _norm_url(m.group(0))
        if url in trusted or url in trusted_blob:
            continue
        before = answer[max(0, m.start() - 80):m.start()]
        if _VISIT.search(before) or "?" in m.group(0):
            reasons.append(f"sends the user to a URL no trusted source contains: {m.group(0)[:80]}")
        else:
            reasons.append(f"a URL no trusted source contains: {m.group(0)[:80]}")
    return list(dict.fromkeys(reasons))
