"""`ragworks mcp` through the official SDK's own client, over streamable HTTP and stdio; tenants stay apart."""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import uvicorn
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from mcp import Client
from ragworks.collection import Collection
from ragworks.config import Settings
from ragworks.mcp.server import McpBackend, build_server
from ragworks.server.keys import KeyStore

REPO = Path(__file__).resolve().parents[2]
ADMIN_KEY = "mcp-test-admin-key-0123456789"
HANDBOOK = {
    "keys.md": "# Key rotation\n\nRotate the API keys every 90 days with the vault command line tool. The old key "
               "keeps working for one day after rotation.\n\n# Backups\n\nBackups run nightly at two o'clock.",
    "lighthouse.md": "# Lighthouse\n\nThe keeper lit the lamp at dusk and trimmed the wick at midnight.",
}
EMAIL = "marta.quist@northwind-example.com"
PAYROLL = f"Payroll note. Marta Quist can be reached at {EMAIL} for payroll questions."


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Iterator[dict[str, Any]]:
    """Tenant acme with a collection `handbook`; tenant globex with nothing; one key each."""
    data = tmp_path_factory.mktemp("mcp") / "data"
    settings = Settings(data_dir=data, llm="extractive", auth="auto", admin_key=ADMIN_KEY, rate_limit_per_minute=0)
    keys = KeyStore(data)
    for t in ("acme", "globex"):
        keys.create_tenant(t)
    acme_key, _ = keys.create_key("acme")
    globex_key, _ = keys.create_key("globex")
    keys.create_tenant("initech")  # PII under the default pii = "redact-answers": one key with the grant, one without
    ann_key, _ = keys.create_key("initech", "ann", user="ann", groups=("staff",))
    pam_key, _ = keys.create_key("initech", "pam", user="pam", groups=("staff", "pii-read"))
    keys.close()
    with Collection.open(str(data / "tenants" / "acme" / "handbook"), settings=settings, embedder=embedder,
                         llm=None) as col:
        for name, text in HANDBOOK.items():
            col.add_text(text, source=name, metadata={"path": f"docs/{name}", "commit": "abc123"})
    with Collection.open(str(data / "tenants" / "initech" / "hr"), settings=settings, embedder=embedder,
                         llm=None) as col:
        col.add_text(PAYROLL, source="payroll.md")
    yield {"settings": settings, "data": data, "acme": acme_key, "globex": globex_key, "ann": ann_key,
           "pam": pam_key}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def http_url(world: dict[str, Any], embedder: Any) -> Iterator[str]:
    backend = McpBackend(world["settings"], embedder=embedder, llm=None)
    app = build_server(backend).streamable_http_app(streamable_http_path="/mcp", host="127.0.0.1")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "MCP HTTP server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/mcp"
    server.should_exit = True
    thread.join(timeout=10)
    backend.close()


async def call(client: Client, tool: str, **args: Any) -> tuple[bool, Any]:
    """(is_error, structured result or the error text)."""
    result = await client.call_tool(tool, args)
    if result.is_error:
        return True, " ".join(getattr(c, "text", "") for c in result.content)
    return False, result.structured_content


def http_client(url: str, key: str | None) -> Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return Client(streamable_http_client(url, http_client=create_mcp_http_client(headers=headers)))


def test_http_tools_answer_with_citations(http_url: str, world: dict[str, Any]) -> None:
    async def main() -> None:
        async with http_client(http_url, world["acme"]) as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            assert tools == {"list_collections", "search", "ask", "fetch_passage"}
            err, listed = await call(client, "list_collections")
            assert not err and listed["collections"] == ["handbook"]
            err, found = await call(client, "search", collection="handbook", query="how often are keys rotated")
            assert not err and found["hits"][0]["source"] == "keys.md"
            assert found["hits"][0]["metadata"]["commit"] == "abc123"
            err, answer = await call(client, "ask", collection="handbook", question="When is the lamp lit?")
            assert not err, answer
            cited = answer["citations"][0]
            assert cited["source"] == "lighthouse.md" and cited["metadata"]["path"] == "docs/lighthouse.md"
            err, passage = await call(client, "fetch_passage", collection="handbook", doc_id=cited["doc_id"],
                                      start=cited["start"], end=cited["end"])
            assert not err and passage["text"] and passage["text"] in HANDBOOK["lighthouse.md"]
            assert "dusk" in passage["before"] + passage["text"] + passage["after"]

    anyio.run(main)


def test_http_pii_is_masked_for_a_key_without_the_grant(http_url: str, world: dict[str, Any]) -> None:
    """search, ask and fetch_passage follow /v1's pii:read rule (tests/security/test_pii_grant.py)."""
    question = "What is the email address of Marta Quist?"

    async def seen(key: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        async with http_client(http_url, key) as client:
            err, found = await call(client, "search", collection="hr", query=question)
            assert not err and found["hits"], found
            err, answer = await call(client, "ask", collection="hr", question=question)
            assert not err, answer
            hit = found["hits"][0]
            err, passage = await call(client, "fetch_passage", collection="hr", doc_id=hit["doc_id"],
                                      start=hit["start"], end=hit["end"])
            assert not err, passage
            return found, answer, passage

    async def main() -> None:
        found, answer, passage = await seen(world["ann"])
        assert EMAIL not in str(found) + str(answer) + str(passage)
        assert "<EMAIL>" in found["hits"][0]["text"] and "<EMAIL>" in passage["text"]
        found, answer, passage = await seen(world["pam"])
        assert EMAIL in found["hits"][0]["text"] and EMAIL in passage["text"]

    anyio.run(main)


def test_http_tenant_b_cannot_reach_tenant_a(http_url: str, world: dict[str, Any]) -> None:
    async def main() -> None:
        async with http_client(http_url, world["globex"]) as client:
            err, listed = await call(client, "list_collections")
            assert not err and listed["collections"] == []
            for tool, args in (("search", {"query": "keys"}), ("ask", {"question": "When is the lamp lit?"}),
                               ("fetch_passage", {"doc_id": "x"})):
                err, text = await call(client, tool, collection="handbook", **args)
                assert err and "no collection 'handbook'" in text, text
        async with http_client(http_url, None) as client:
            err, text = await call(client, "list_collections")
            assert err and "missing API key" in text
        async with http_client(http_url, "rwk_bogus_key") as client:
            err, text = await call(client, "search", collection="handbook", query="keys")
            assert err and "invalid or revoked API key" in text
        async with http_client(http_url, ADMIN_KEY) as client:
            err, text = await call(client, "list_collections")
            assert err and "admin key" in text

    anyio.run(main)


def stdio_params(world: dict[str, Any], key: str) -> StdioServerParameters:
    env = {"PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "RAGWORKS_API_KEY": key, "RAGWORKS_LLM": "extractive", "RAGWORKS_ADMIN_KEY": ADMIN_KEY,
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "HOME": os.environ.get("HOME", "/root")}
    return StdioServerParameters(command=sys.executable, args=["-m", "ragworks.cli", "mcp", "--data-dir",
                                                               str(world["data"])], env=env)


def test_stdio_tools_and_tenants(world: dict[str, Any]) -> None:
    async def main() -> None:
        async with Client(stdio_params(world, world["acme"]), read_timeout_seconds=120) as client:
            err, listed = await call(client, "list_collections")
            assert not err and listed["collections"] == ["handbook"]
            err, answer = await call(client, "ask", collection="handbook", question="How often are keys rotated?")
            assert not err and answer["citations"][0]["source"] == "keys.md"
            assert "90 days" in answer["citations"][0]["quote"]
        async with Client(stdio_params(world, world["globex"]), read_timeout_seconds=120) as client:
            err, listed = await call(client, "list_collections")
            assert not err and listed["collections"] == []
            err, text = await call(client, "search", collection="handbook", query="keys")
            assert err and "no collection 'handbook'" in text

    anyio.run(main)
