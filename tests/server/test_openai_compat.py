"""The real `openai` client against a running ragworks server: chat completions (plain and streamed), embeddings,
models, and errors."""

from __future__ import annotations

import httpx
import numpy as np
import openai
import pytest


@pytest.fixture(scope="module")
def live(tmp_path_factory, embedder, kit):
    """A uvicorn server with tenant `alpha` owning collection `lights` (auth on: the client sends its key)."""
    tenants = kit.make_tenants(tmp_path_factory.mktemp("openai") / "data")
    settings = kit.make_settings(tenants.data_dir, auth="on", rate_limit_per_minute=0)
    with kit.live_server(settings, embedder) as base:
        with httpx.Client(base_url=base, headers=tenants.alpha, timeout=60) as http:
            http.post("/v1/collections", json={"name": "lights"})
            r = http.post("/v1/collections/lights/documents?wait=true", json={"documents": [
                {"source": "keeper.txt", "text": kit.LIGHTHOUSE},
                {"source": "keys.md", "text": kit.KEY_ROTATION}]})
            assert r.json()["state"] == "completed"
        key = tenants.alpha["Authorization"].removeprefix("Bearer ")
        yield openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0), base


def test_chat_completion_answers_from_the_collection_with_citations(live):
    client, _ = live
    resp = client.chat.completions.create(
        model="lights", messages=[{"role": "system", "content": "Be brief."},
                                  {"role": "user", "content": "When did the keeper light the lamp?"}])
    text = resp.choices[0].message.content
    assert "dusk" in text and "[1]" in text and "Sources:\n[1] keeper.txt" in text
    assert resp.choices[0].finish_reason == "stop" and resp.model == "lights" and resp.usage.total_tokens > 0
    citations = resp.model_extra["citations"]
    assert citations[0]["source"] == "keeper.txt" and citations[0]["quote"] in text


def test_streamed_chat_completion_yields_deltas_then_the_citations(live):
    client, _ = live
    stream = client.chat.completions.create(
        model="lights", stream=True, messages=[{"role": "user", "content": "How often are keys rotated?"}])
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert "90 days" in text and "Sources:\n[1] keys.md" in text
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].model_extra["citations"][0]["source"] == "keys.md"


def test_sources_footer_can_be_left_out(live):
    client, _ = live
    resp = client.chat.completions.create(model="lights", messages=[{"role": "user", "content": "Who trims the wick?"}],
                                          extra_body={"append_sources": False})
    assert "Sources:" not in resp.choices[0].message.content and resp.model_extra["citations"]


def test_embeddings_match_the_model_in_float_and_base64(live, embedder):
    client, _ = live
    default = client.embeddings.create(model="anything", input=["lamp at dusk", "key rotation"])  # base64 on the wire
    floats = client.embeddings.create(model="anything", input="lamp at dusk", encoding_format="float")
    expected = embedder.embed_documents(["lamp at dusk", "key rotation"])
    got = np.array([d.embedding for d in default.data], dtype=np.float32)
    assert got.shape == (2, 384) and np.allclose(got, expected, atol=1e-5)
    assert np.allclose(floats.data[0].embedding, expected[0], atol=1e-5)
    assert default.usage.prompt_tokens > 0 and default.model == "all-MiniLM-L6-v2"


def test_models_lists_the_collections(live):
    client, _ = live
    assert [m.id for m in client.models.list()] == ["lights"]


def test_unknown_collection_and_bad_key_raise_the_openai_errors(live):
    client, base = live
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert "no collection 'nope'" in str(err.value)
    bad = openai.OpenAI(base_url=f"{base}/v1", api_key="rwk_bad_key", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
