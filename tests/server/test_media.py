"""An uploaded recording is transcribed by the job, cited by its time range, and played back from its upload."""

from __future__ import annotations

import shutil
import subprocess

import pytest

pytestmark = pytest.mark.skipif(not all(shutil.which(p) for p in ("ffmpeg", "espeak-ng")),
                                reason="needs Debian ffmpeg and espeak-ng (scripts/test installs them)")


def test_an_uploaded_recording_is_cited_by_time_and_its_clip_can_be_fetched(client, tmp_path):
    wav = tmp_path / "harbour.wav"
    subprocess.run(["espeak-ng", "-v", "en", "-s", "130", "-w", str(wav),
                    "The harbour master opens the lock gates two hours before high water."], check=True)
    body = wav.read_bytes()
    client.post("/v1/collections", json={"name": "team"})
    r = client.post("/v1/collections/team/files?wait=true", files=[("files", ("audio/harbour.wav", body, "audio/wav"))])
    assert r.json()["state"] == "completed" and r.json()["report"]["new"] == 1, r.text
    assert r.json()["report"]["kinds"]["audio_minutes"] > 0 and "text" not in r.json()["report"]["kinds"]
    answer = client.post("/v1/collections/team/ask", json={"question": "When are the lock gates opened?"}).json()
    (citation,) = [c for c in answer["citations"] if c["source"] == "audio/harbour.wav"]
    assert 0 <= citation["time_start"] < citation["time_end"] <= 10 and "lock gate" in citation["quote"].lower()
    media = client.get(f"/v1/collections/team/media/{citation['doc_id']}")
    assert media.status_code == 200 and media.content == body and media.headers["content-type"].startswith("audio/")
    part = client.get(f"/v1/collections/team/media/{citation['doc_id']}", headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and part.content == body[:100]  # the browser seeks to the clip by ranges


def test_a_text_document_has_no_media_to_play(client):
    client.post("/v1/collections", json={"name": "team"})
    client.post("/v1/collections/team/documents?wait=true",
                json={"source": "note.md", "text": "Buoys mark the channel."})
    r = client.get("/v1/collections/team/media/note.md")
    assert r.status_code == 404 and "no uploaded recording" in r.json()["error"]["message"]
