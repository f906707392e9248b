"""The guard stage: PII detection and redaction, hidden-text removal, prompt-injection screening.

A floor beside ingest/ and generate/ (both import it); it imports only documents, config and errors. Presidio and
spaCy load on first use (`PiiDetector`).
"""

from ragworks.guard.base import (
    HIDDEN_KEY,
    INJECTION_KEY,
    PII_KEY,
    Finding,
    InjectionPolicy,
    PiiPolicy,
    overlapping,
)
from ragworks.guard.injection import InjectionFlag, check_answer, flag_injection, new_canary
from ragworks.guard.pii import PiiDetector, redact
from ragworks.guard.screen import DocumentGuard

__all__ = ["HIDDEN_KEY", "INJECTION_KEY", "PII_KEY", "DocumentGuard", "Finding", "InjectionFlag", "InjectionPolicy",
           "PiiDetector", "PiiPolicy", "check_answer", "flag_injection", "new_canary", "overlapping", "redact"]
