"""PII: detection per type (real Presidio + the packaged spaCy model), stable placeholders with offsets kept true,
and the three policies through real collections (SQLite/FAISS, the real embedder)."""

from __future__ import annotations

import pytest

from ragworks.collection import Collection
from ragworks.config import Settings
from ragworks.documents import Document
from ragworks.guard.pii import PiiDetector, redact, require_pii_extra, shared_detector
from ragworks.guard.screen import DocumentGuard
from ragworks.ingest.loaders import paragraph_spans
from ragworks.store.embedded import DB_NAME

PLANTED = {
    "EMAIL": "marta.quist@northwind-example.com",
    "PHONE": "+1 415-555-0199",
    "CARD": "4539 1488 0343 6467",
    "IBAN": "DE89 3704 0044 0532 0130 00",
    "NATIONAL_ID": "536-22-8071",
    "IP": "203.0.113.77",
}
LETTER = (
    "Payroll note\n\n"
    f"Marta Quist moved to Lisbon in March. Reach her at {PLANTED['EMAIL']} or {PLANTED['PHONE']}.\n\n"
    f"Her reimbursement card is {PLANTED['CARD']} and salary goes to IBAN {PLANTED['IBAN']}.\n\n"
    f"For the benefits file her SSN is {PLANTED['NATIONAL_ID']}; she logs in from {PLANTED['IP']}.\n\n"
    f"Marta Quist asked that {PLANTED['EMAIL']} stay the contact address. The travel allowance is 40 euros a day."
)


@pytest.fixture(scope="module")
def detector() -> PiiDetector:
    return shared_detector()


def test_every_identifier_type_and_names_are_found(detector):
    found = {(f.type, LETTER[f.start:f.end]) for f in detector.find(LETTER)}
    for kind, value in PLANTED.items():
        assert (kind, value) in found, (kind, value, found)
    assert ("PERSON", "Marta Quist") in found and ("LOCATION", "Lisbon") in found


def test_a_card_number_failing_luhn_is_not_a_card(detector):
    text = "Order reference 4539 1488 0343 6468 was shipped."
    assert not [f for f in detector.find(text) if f.type == "CARD"]


def test_redaction_gives_the_same_value_the_same_placeholder(detector):
    out = redact(LETTER, detector.find(LETTER))
    assert out.count("<EMAIL_1>") == 2 and "<EMAIL_2>" not in out
    assert out.count("<PERSON_1>") == 2
    assert not any(v in out for v in PLANTED.values())


def test_redact_ingest_keeps_spans_and_findings_on_the_redacted_text(detector):
    doc = Document(source="n.txt", text=LETTER, spans=paragraph_spans(LETTER))
    out = DocumentGuard(pii="redact-ingest", detector=detector).screen(doc)
    assert out.text[out.spans[0].start:out.spans[0].end] == "Payroll note"
    assert all(out.text[s.start:s.end].strip() == out.text[s.start:s.end] for s in out.spans)
    assert out.text[out.spans[-1].start:].startswith("<PERSON_1> asked")
    for f in out.metadata["pii"]:
        assert out.text[f["start"]:f["end"]].startswith("<" + f["type"])
        assert set(f) == {"type", "start", "end", "score"}  # never the value


def test_flag_records_findings_without_values_and_keeps_the_text(detector):
    doc = Document(source="n.txt", text=LETTER, spans=paragraph_spans(LETTER))
    out = DocumentGuard(pii="flag", detector=detector).screen(doc)
    assert out.text == LETTER
    types = {f["type"] for f in out.metadata["pii"]}
    assert {"EMAIL", "PHONE", "CARD", "IBAN", "NATIONAL_ID", "IP", "PERSON"} <= types
    assert not any(v in str(out.metadata) for v in PLANTED.values())


def test_redact_ingest_leaves_no_planted_identifier_in_any_file_of_the_collection(tmp_path, embedder):
    corpus = tmp_path / "in"
    corpus.mkdir()
    (corpus / "payroll.md").write_text(LETTER)
    (corpus / "other.txt").write_text("The canteen opens at eight. " * 20)
    settings = Settings(data_dir=tmp_path / "data", collection="c", pii="redact-ingest")
    with Collection.open(settings=settings, embedder=embedder, llm=None) as col:
        report = col.ingest(corpus)
        assert report.ok
        hits = col.search("where does the salary go?")
        assert any("<IBAN_1>" in h.chunk.text for h in hits)
        answer = col.ask("Which IBAN does the salary go to?")
        for c in answer.citations:  # citations point into the stored (redacted) text
            _, text, _ = col.document(c.doc_id)
            assert text[c.start:c.end] == c.quote
    files = [p for p in (tmp_path / "data").rglob("*") if p.is_file()]
    assert files
    needles = [v.encode() for v in PLANTED.values()] + [b"Marta Quist", b"Marta"]
    for p in files:
        data = p.read_bytes()
        for needle in needles:
            assert needle not in data, (p.name, needle)


def test_redact_answers_masks_output_for_callers_without_pii_read(tmp_path, embedder):
    settings = Settings(data_dir=tmp_path / "data", collection="c", pii="redact-answers")
    with Collection.open(settings=settings, embedder=embedder, llm=None) as col:
        col.add_text(LETTER, source="payroll.md")
        granted = col.search("Marta's email address", k=3)
        assert any(PLANTED["EMAIL"] in h.chunk.text for h in granted)  # stored intact, shown to pii:read
        masked = col.search("Marta's email address", k=3, pii_read=False)
        assert masked and not any(v in h.chunk.text for h in masked for v in PLANTED.values())
        assert any("<EMAIL>" in h.chunk.text for h in masked)
        answer = col.ask("What is the email address of Marta Quist?", pii_read=False)
        blob = str(answer.to_dict())
        assert not any(v in blob for v in PLANTED.values()) and "Marta Quist" not in answer.text
        assert answer.guard["pii_masked"] is True
        assert PLANTED["EMAIL"] in col.ask("What is the email address of Marta Quist?").text


def test_a_missing_pii_extra_is_a_clear_config_error(monkeypatch, tmp_path, embedder):
    import importlib.util

    from ragworks.errors import ConfigError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "presidio_analyzer" else real(name, *a))
    with pytest.raises(ConfigError, match=r"ragworks\[pii\]"):
        require_pii_extra()
    settings = Settings(data_dir=tmp_path / "data", collection="c", pii="flag")
    with Collection.open(settings=settings, embedder=embedder, llm=None) as col, \
            pytest.raises(ConfigError, match="pii = 'off'"):
        col.add_text("Some text.", source="a.md")
    assert not (tmp_path / "data" / "c" / DB_NAME).exists()  # nothing was created


def test_offset_map_keeps_a_placeholder_whole_when_a_cut_ends_inside_a_masked_value():
    from ragworks.guard.base import Edit, apply_edits

    text = "call 555-1234 now"  # the number is characters 5..13
    masked, at = apply_edits(text, [Edit(5, 13, "<PHONE>")])
    assert masked == "call <PHONE> now"
    assert masked[at(0):at.end(8)] == "call <PHONE>"  # a cut ending mid-number keeps the whole placeholder
    assert masked[at(8):at.end(17)] == "<PHONE> now"  # a cut starting mid-number begins at it
    assert at.end(5) == at(5) == 5 and at.end(13) == at(13) == 12 and at.end(17) == len(masked)
