"""Per-language BM25 analysis: which language a passage or query is in, and how its words become index terms.

One analyzer for every language mangles most of them: an English Snowball stemmer turns Vietnamese "này" into
"nài" and SQLite's `remove_diacritics` makes "bán" (sell), "bàn" (table) and "bạn" (friend) one term. So each
passage is analyzed by its own language's rules, detected from the text itself (a passage carries its document's
title and headings, so it reads as its document does):

- Vietnamese (letters only it uses, such as ă đ ơ ư ạ ả ễ, are ≥ 2% of the letters): NFC-normalized, lower-cased,
  tones and vowel marks kept, no stemmer, a short list of function words dropped;
- other Latin-script languages with a Snowball stemmer (French, German, Spanish, Portuguese, Italian, Dutch),
  told apart from English by their commonest function words: that language's stemmer, marks kept;
- English (the default for Latin script): what the FTS5 leg always did (Snowball English, marks folded,
  `ragworks.store.embedded.STOPWORDS` dropped);
- any other script: lower-cased words as written; Chinese, Japanese and Korean runs (no spaces between words) as
  overlapping character pairs, as Lucene's CJK analyzer does.

A query is analyzed by the rules of its own detected language, so a Vietnamese question meets Vietnamese
passages on their terms and an English one meets English passages stemmed. Both BM25 legs of the embedded store
(in memory and SQLite FTS5) index exactly these terms, so they agree by construction.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Callable
from functools import lru_cache

from ragworks.lexical.analysis import STOPWORDS

# Lower-case letters no other Latin-script language uses: ă đ ơ ư, the dot-below and hook-above tones, tilde on
# e i u y, and every vowel carrying both a quality mark and a tone. (à é ê ô ã... are shared with French or
# Portuguese, so they do not count.)
VIETNAMESE_LETTERS = frozenset(
    "ăđơư"
    "ạặậẹệịọộợụựỵ"
    "ảẳẩẻểỉỏổởủửỷ"
    "ẽĩũỹẵẫễỗỡữ"
    "ằắầấềếồốờớừứỳ"
)
VIETNAMESE_MIN_SHARE = 0.02  # Vietnamese prose: ~10% of its letters; an English text naming "Nguyễn" once: ~0.1%
# Function words: to tell languages apart (detection) and to drop (they carry no BM25 signal).
VIETNAMESE_STOPWORDS = frozenset(
    "và của là có được các những một này cho với trong không để thì đã đang sẽ như khi từ đến theo về ra vào "
    "cũng nên mà hay hoặc nào gì ai đâu sao bao nhiêu ở tại do bởi rằng thế vậy nhé ạ à ư chứ"
    .split()
)
# Detection counts only words that are not also English words (no "a", "die", "son", "come"): a title such as
# "docs/a.md" must not make an English passage Portuguese.
_FUNCTION_WORDS: dict[str, frozenset[str]] = {
    "english": frozenset("the and of to is in that it for was on are with as his they be at have this from or "
                         "by what which who how when where does did a an not but you we were".split()),
    "french": frozenset("le la les des est et une un du dans que qui pour pas sur au avec ce sont".split()),
    "german": frozenset("der das und ist ein eine nicht mit von zu dem sich des auf für wird im".split()),
    "spanish": frozenset("el los las es y en que del un una por para se al está como".split()),
    "portuguese": frozenset("os é em que um uma por com para da não se são como".split()),
    "italian": frozenset("il lo gli è di che un una non del della sono nel".split()),
    "dutch": frozenset("het een en van dat op te zijn niet met voor er aan wordt".split()),
}
LANGUAGES = ("english", "vietnamese", "french", "german", "spanish", "portuguese", "italian", "dutch", "other")

# Runs of letters, digits and combining marks (Python's \w leaves out the marks Indic, Arabic and Hebrew words
# carry, and keeps "_", which SQLite's unicode61 splits on): every term is then one unicode61 token too.
_WORD = re.compile(
    r"(?:[^\W_]|[\u0300-\u036f\u0483-\u0489\u0591-\u05c7\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06ed"
    r"\u0900-\u0963\u0966-\u0dff\u0e31\u0e34-\u0e3a\u0e47-\u0e4e])+"
)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def _is_latin(ch: str) -> bool:
    return ch < "\u0250" or "\u1e00" <= ch <= "\u1eff"


def detect_language(text: str) -> str:
    """The language whose analyzer suits `text`: one of LANGUAGES ("english" when nothing says otherwise)."""
    sample = unicodedata.normalize("NFC", text[:4000]).lower()
    letters = [c for c in sample if c.isalpha()]
    if not letters:
        return "english"
    if sum(map(_is_latin, letters)) < 0.5 * len(letters):
        return "other"
    if sum(c in VIETNAMESE_LETTERS for c in letters) >= VIETNAMESE_MIN_SHARE * len(letters):
        return "vietnamese"
    words = _WORD.findall(sample)
    hits = {lang: sum(w in fw for w in words) for lang, fw in _FUNCTION_WORDS.items()}
    best = max(hits, key=lambda lang: hits[lang])
    # another language wins only clearly: three of its words, and twice as many as English ones
    return best if hits[best] >= 3 and hits[best] > 2 * hits["english"] else "english"


def _fold_marks(text: str) -> str:
    """Drop combining marks (café → cafe), as SQLite's `remove_diacritics 2` did for the English leg."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def _cjk_bigrams(word: str) -> list[str]:
    """A word with CJK characters → its non-CJK runs kept whole, CJK runs as overlapping character pairs."""
    out: list[str] = []
    run: list[str] = []
    rest: list[str] = []

    def flush_run() -> None:
        if len(run) == 1:
            out.append(run[0])
        out.extend(a + b for a, b in itertools.pairwise(run))
        run.clear()

    for ch in word:
        if _CJK.match(ch):
            if rest:
                out.append("".join(rest))
                rest.clear()
            run.append(ch)
        else:
            if run:
                flush_run()
            rest.append(ch)
    if run:
        flush_run()
    if rest:
        out.append("".join(rest))
    return out


@lru_cache(maxsize=16)
def _stemmer(language: str) -> Callable[[list[str]], list[str]] | None:
    try:
        import Stemmer
    except ImportError:  # degrade to unstemmed terms, never fail to index
        return None
    return Stemmer.Stemmer(language).stemWords


@lru_cache(maxsize=1)
def _english_stopwords() -> frozenset[str]:
    return STOPWORDS


def analyze(text: str, language: str) -> list[str]:
    """`text` → index terms under `language`'s rules (see the module doc)."""
    text = unicodedata.normalize("NFC", text).lower()
    if language == "english":
        words = [w for w in _WORD.findall(_fold_marks(text)) if w not in _english_stopwords()]
        stem = _stemmer("english")
        return list(stem(words)) if stem is not None else words
    words = _WORD.findall(text)
    if language == "vietnamese":
        return [w for w in words if w not in VIETNAMESE_STOPWORDS]
    if language == "other":
        if _CJK.search(text):
            return [t for w in words for t in (_cjk_bigrams(w) if _CJK.search(w) else [w])]
        return words
    stop = _FUNCTION_WORDS.get(language, frozenset())
    words = [w for w in words if w not in stop]
    stem = _stemmer(language)
    return list(stem(words)) if stem is not None else words


class LanguageAnalyzer:
    """Passages and queries → BM25 terms, each by the rules of its detected language (or of a fixed one).

    `language`: "auto" detects per text; a name from LANGUAGES applies that language's rules to everything.
    """

    def __init__(self, language: str = "auto") -> None:
        if language != "auto" and language not in LANGUAGES:
            raise ValueError(f"unknown text language {language!r}: auto or one of {', '.join(LANGUAGES)}")
        self.language = language

    def language_of(self, text: str) -> str:
        return detect_language(text) if self.language == "auto" else self.language

    def __call__(self, text: str) -> list[str]:
        return analyze(text, self.language_of(text))

    def query(self, text: str) -> list[str]:
        return self(text)

    def indexed_text(self, text: str) -> str:
        """The terms as one space-separated string: what the FTS5 table indexes (with no stemmer of its own)."""
        return " ".join(self(text))

    def __repr__(self) -> str:
        return f"LanguageAnalyzer(language={self.language!r})"
