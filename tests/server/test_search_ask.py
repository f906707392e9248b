"""Search and ask over HTTP: modes, k, filters, source globs; answers as JSON and as Server-Sent Events."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from ragworks.server import create_app

FOG = "A diaphone fog signal sounds two blasts every minute in thick weather, audible five miles away."


@pytest.fixture(scope="module")
def team(tmp_path_factory, embedder, kit):
    """One collection, read by every test of this module."""
    settings = kit.make_settings(tmp_path_factory.mktemp("search") / "data")
    with TestClient(create_app(settings, embedder=embedder, llm=None)) as client:
        client.post("/v1/collections", json={"name": "team"})
        r = client.post("/v1/collections/team/documents?wait=true", json={"documents": [
            {"source": "ops/keys.md", "text": kit.KEY_ROTATION, "title": "Keys", "metadata": {"team": "infra"}},
            {"source": "history/lighthouse.txt", "text": kit.LIGHTHOUSE, "metadata": {"team": "museum"}},
            {"source": "history/fog.txt", "text": FOG, "metadata": {"team": "museum"}}]})
        assert r.json()["state"] == "completed"
        yield client


def sse_events(body: str) -> list[tuple[str, dict]]:
    events = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_each_search_mode_finds_the_passage(team, mode):
    r = team.post("/v1/collections/team/search", json={"query": "how often are API keys rotated", "mode": mode})
    assert r.status_code == 200
    hits = r.json()["hits"]
    assert hits[0]["source"] == "ops/keys.md" and "took_ms" in r.json()
    assert hits[0]["text"] in team.get(f"/v1/collections/team/documents/{hits[0]['doc_id']}").json()["text"]


def test_search_k_filters_and_source_glob(team):
    one = team.post("/v1/collections/team/search", json={"query": "lamp light signal", "k": 1}).json()["hits"]
    assert len(one) == 1
    museum = team.post("/v1/collections/team/search",
                       json={"query": "keys rotation", "filters": {"team": "museum"}}).json()["hits"]
    assert museum and {h["source"] for h in museum} <= {"history/lighthouse.txt", "history/fog.txt"}
    globbed = team.post("/v1/collections/team/search", json={"query": "signal", "source": "history/f*"}).json()["hits"]
    assert [h["source"] for h in globbed] == ["history/fog.txt"]


def test_ask_returns_an_extractive_answer_whose_citations_point_into_the_document(team):
    r = team.post("/v1/collections/team/ask", json={"question": "How often should the API keys be rotated?"})
    assert r.status_code == 200
    answer = r.json()
    assert "90 days" in answer["answer"] and answer["model"] == "extractive" and "extractive" in answer["notice"]
    c = answer["citations"][0]
    assert c["source"] == "ops/keys.md" and answer["sources"][c["number"] - 1]["number"] == c["number"]
    text = team.get(f"/v1/collections/team/documents/{c['doc_id']}").json()["text"]
    assert text[c["start"]:c["end"]] == c["quote"]
    sentence = answer["sentences"][0]  # the JSON carries per-sentence support with the supporting span
    assert sentence["supported"] and text[sentence["span_start"]:sentence["span_end"]] == sentence["quote"]


def test_ask_streams_sources_then_tokens_then_done_with_citations(team):
    r = team.post("/v1/collections/team/ask", json={"question": "What sounds two blasts every minute?",
                                                    "stream": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    names = [e for e, _ in events]
    assert names[0] == "sources" and names[-2:] == ["verification", "done"] and set(names[1:-2]) == {"token"}
    verification = events[-2][1]  # claim-level support of every sentence, before `done`
    assert verification["sentences"] and verification["unsupported"] == []
    assert all(s["status"] == "supported" and s["doc_id"] for s in verification["sentences"])
    assert verification["abstained"] is False and "p_answerable" in verification["abstention"]
    sources = events[0][1]["sources"]
    assert [s["number"] for s in sources] == list(range(1, len(sources) + 1))
    done = events[-1][1]
    assert "".join(d["text"] for e, d in events if e == "token") == done["answer"]
    assert done["citations"] and done["citations"][0]["source"] == "history/fog.txt"
    assert "extractive" in done["notice"]


def test_a_question_nothing_matches_still_answers_cleanly(team):
    r = team.post("/v1/collections/team/ask", json={"question": "zzzqx", "mode": "bm25"})
    assert r.status_code == 200 and r.json()["citations"] == []


@pytest.mark.parametrize("body", [
    {"query": ""}, {"query": "x", "k": 0}, {"query": "x", "k": 1000}, {"query": "x", "mode": "fuzzy"},
    {"query": "x", "filters": {"a": [1, 2]}}, {"query": "x", "unknown": 1}, {"query": "x" * 5000},
])
def test_bad_search_requests_are_422_with_a_clear_message(team, body):
    r = team.post("/v1/collections/team/search", json=body)
    assert r.status_code == 422
    assert r.json()["error"]["type"] == "invalid_request" and r.json()["error"]["message"]


def test_malformed_json_is_422_not_500(team):
    r = team.post("/v1/collections/team/search", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422


def test_multi_step_answers_log_their_steps_in_json_and_in_the_done_event(tmp_path, embedder, kit):
    settings = kit.make_settings(tmp_path / "data", retrieval_steps=2)
    docs = [{"source": "people/dubois.txt", "text": "Marie Dubois, the glassmaker, was born in Velmora in 1921."},
            {"source": "places/velmora.txt", "text": "Velmora is a river port. Its main export is blue salt, "
                                                     "harvested from the tidal flats each autumn."},
            {"source": "places/kestrel.txt", "text": "Kestrel Bay is a fishing village known for its regatta."}]
    question = "What is the main export of the town where Marie Dubois was born?"
    with TestClient(create_app(settings, embedder=embedder, llm=None)) as client:
        client.post("/v1/collections", json={"name": "towns"})
        assert client.post("/v1/collections/towns/documents?wait=true",
                           json={"documents": docs}).json()["state"] == "completed"
        plain = client.post("/v1/collections/towns/ask", json={"question": question, "k": 4}).json()
        assert [s["step"] for s in plain["steps"]] == [1, 2] and "Velmora" in plain["steps"][1]["query"]
        assert {s["step"] for s in plain["sources"]} == {1, 2}
        events = sse_events(client.post("/v1/collections/towns/ask",
                                        json={"question": question, "k": 4, "stream": True}).text)
        done = events[-1][1]
        assert events[-1][0] == "done" and done["steps"] == plain["steps"]
        assert {c["source"] for c in done["citations"]} >= {"people/dubois.txt", "places/velmora.txt"}
