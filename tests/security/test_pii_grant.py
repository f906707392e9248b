"""The pii:read grant over HTTP (issue 14, items 1 and 2 together): under the default `pii = "redact-answers"`, a key
whose user is not in a `pii_read_groups` group gets search hits, answers (JSON and SSE) and chat completions with
PII masked; a key in the `pii-read` group, and a key without a user, see the stored text."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ragworks.server import create_app
from ragworks.server.keys import make_key_store

ADMIN = "pii-grant-admin-key-0123456789"
EMAIL = "marta.quist@northwind-example.com"
IBAN = "DE89 3704 0044 0532 0130 00"
LETTER = (f"Payroll note. Marta Quist can be reached at {EMAIL} for payroll questions. "
          f"Her salary is paid to IBAN {IBAN} at the end of each month.")
QUESTION = "What is the email address of Marta Quist for payroll questions?"


@pytest.fixture
def server(tmp_path: Path, embedder: Any) -> Iterator[tuple[TestClient, dict[str, dict[str, str]]]]:
    from ragworks.config import Settings

    settings = Settings(data_dir=tmp_path / "data", llm="extractive", auth="on", admin_key=ADMIN,
                        request_timeout_s=120.0)
    assert settings.pii == "redact-answers" and settings.pii_read_groups == ["pii-read"]  # the defaults
    tenant = f"acme-{uuid.uuid4().hex[:6]}"
    keys = make_key_store(settings)
    keys.create_tenant(tenant)
    heads = {}
    for who, user, groups in (("ann", "ann", ("staff",)), ("pam", "pam", ("staff", "pii-read")),
                              ("owner", None, ())):
        key, _ = keys.create_key(tenant, who, user=user, groups=groups)
        heads[who] = {"Authorization": f"Bearer {key}"}
    keys.close()
    with TestClient(create_app(settings, embedder=embedder, llm=None), raise_server_exceptions=False) as client:
        assert client.post("/v1/collections", json={"name": "hr"}, headers=heads["owner"]).status_code in (200, 201)
        r = client.post("/v1/collections/hr/documents?wait=true", headers=heads["owner"],
                        json={"documents": [{"source": "payroll.md", "text": LETTER, "title": f"Payroll: {EMAIL}"}]})
        assert r.status_code == 200 and r.json()["state"] == "completed", r.text
        yield client, heads


def test_only_granted_keys_see_pii_in_search_answers_streams_and_chat(server):
    client, heads = server
    seen: dict[str, list[str]] = {}
    for who in ("ann", "pam", "owner"):
        h = heads[who]
        search = client.post("/v1/collections/hr/search", headers=h, json={"query": QUESTION, "k": 3})
        ask = client.post("/v1/collections/hr/ask", headers=h, json={"question": QUESTION})
        sse = client.post("/v1/collections/hr/ask", headers=h, json={"question": QUESTION, "stream": True})
        chat = client.post("/v1/chat/completions", headers=h,
                           json={"model": "hr", "messages": [{"role": "user", "content": QUESTION}]})
        for r in (search, ask, sse, chat):
            assert r.status_code == 200, r.text
        assert search.json()["hits"] and "event: done" in sse.text
        seen[who] = [search.text, ask.text, sse.text, chat.text]
    for body in seen["ann"]:  # no grant: masked everywhere, the placeholder instead
        assert EMAIL not in body and IBAN not in body
    assert "<EMAIL>" in seen["ann"][0]
    for who in ("pam", "owner"):  # the pii-read group, and a key without a user: the stored text
        assert EMAIL in seen[who][0] and EMAIL in seen[who][1], who


def test_document_get_is_masked_without_the_grant_and_offsets_index_what_is_returned(server):
    client, heads = server
    got = {}
    for who in ("ann", "pam"):
        r = client.get("/v1/collections/hr/documents/payroll.md", headers=heads[who])
        assert r.status_code == 200, r.text
        got[who] = r.json()
    ann, pam = got["ann"], got["pam"]
    assert EMAIL in pam["text"] and not pam.get("pii_masked")
    assert EMAIL not in ann["text"] and IBAN not in ann["text"] and "<EMAIL>" in ann["text"] and ann["pii_masked"]
    found = ann["metadata"]["pii"]  # the recorded findings' offsets index the masked text too
    cut = [ann["text"][r["start"]:r["end"]] for r in found]
    assert "<EMAIL>" in cut and all(re.fullmatch(r"<[A-Z_]+>", x) for x in cut), cut
    for c in ann["chunk_list"]:  # chunk offsets were mapped into the masked text: each chunk is a slice of it
        assert EMAIL not in c["text"]
        assert ann["text"][c["start"]:c["end"]] == c["text"]
    listed = {who: client.get("/v1/collections/hr/documents", headers=heads[who]).json()["documents"][0]["title"]
              for who in ("ann", "pam")}
    assert listed["ann"] == "Payroll: <EMAIL>" and listed["pam"] == f"Payroll: {EMAIL}"
    assert ann["title"] == "Payroll: <EMAIL>" and pam["title"] == f"Payroll: {EMAIL}"
