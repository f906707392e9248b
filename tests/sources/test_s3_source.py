"""S3Source against a real S3-compatible server: moto in server mode on 127.0.0.1, driven through boto3."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import boto3
import pytest
from tests.sources.checks import assert_no_stale_chunks, by_status, held

from ragworks.errors import SourceUnavailable
from ragworks.sources.s3 import S3Source
from ragworks.sources.sync import sync_source


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def bucket(endpoint: str, request: pytest.FixtureRequest) -> Iterator[tuple[object, str]]:
    s3 = boto3.client("s3", endpoint_url=endpoint)
    name = "docs-" + request.node.name.replace("_", "-")[:40].lower()
    s3.create_bucket(Bucket=name)
    yield s3, name


def test_sync_follows_bucket_prefix(collection, endpoint: str, bucket) -> None:
    s3, name = bucket
    s3.put_object(Bucket=name, Key="kb/rotate.md", Body=b"# Keys\n\nRotate the vault keys every ninety days.\n")
    s3.put_object(Bucket=name, Key="kb/old.txt", Body=b"The gramophone service shuts down in June.\n")
    s3.put_object(Bucket=name, Key="kb/sub/lamp.md", Body=b"# Lamp\n\nThe keeper lit the lamp at dusk.\n")
    s3.put_object(Bucket=name, Key="other/ignored.md", Body=b"# Outside\n\nNot under the prefix.\n")
    source = S3Source(f"s3://{name}/kb/", endpoint_url=endpoint)
    key = source.key_for

    first = collection.sync(source)
    assert by_status(first) == {"new": {key("kb/rotate.md"), key("kb/old.txt"), key("kb/sub/lamp.md")}}
    assert first.chunks_embedded > 0

    s3.put_object(Bucket=name, Key="kb/rotate.md", Body=b"# Keys\n\nRotate the vault keys every thirty days.\n")
    s3.delete_object(Bucket=name, Key="kb/old.txt")
    s3.put_object(Bucket=name, Key="kb/new.md", Body=b"# Ferry\n\nThe ferry leaves the harbour at seven.\n")
    fetched: list[str] = []
    real_fetch = source.fetch
    source.fetch = lambda item: (fetched.append(item.key), real_fetch(item))[1]  # type: ignore[method-assign]

    second = collection.sync(source)
    assert by_status(second) == {"updated": {key("kb/rotate.md")}, "new": {key("kb/new.md")},
                                 "unchanged": {key("kb/sub/lamp.md")}, "removed": {key("kb/old.txt")}}
    assert sorted(fetched) == sorted([key("kb/rotate.md"), key("kb/new.md")])  # unchanged ETag: not downloaded
    embedded = {f.path: f.embedded for f in second.files}
    assert embedded[key("kb/sub/lamp.md")] == 0
    assert second.chunks_embedded == embedded[key("kb/rotate.md")] + embedded[key("kb/new.md")] > 0

    texts = held(collection)
    assert set(texts) == {key("kb/rotate.md"), key("kb/sub/lamp.md"), key("kb/new.md")}
    assert "thirty" in texts[key("kb/rotate.md")]
    assert_no_stale_chunks(collection, "gramophone")
    assert_no_stale_chunks(collection, "ninety")
    assert collection.search("when does the ferry leave", k=1)[0].source == key("kb/new.md")


def test_outage_and_bad_bucket_delete_nothing(collection, endpoint: str, bucket) -> None:
    s3, name = bucket
    s3.put_object(Bucket=name, Key="a.md", Body=b"# A\n\nThe quarry opens at nine.\n")
    s3.put_object(Bucket=name, Key="b.md", Body=b"# B\n\nThe quarry closes at five.\n")
    collection.sync(S3Source(f"s3://{name}/", endpoint_url=endpoint))
    before = held(collection)
    assert len(before) == 2

    with socket.socket() as s:  # a port nothing listens on: the endpoint is down
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    down = S3Source(f"s3://{name}/", endpoint_url=dead)
    outcome = sync_source(collection, down, retries=1, backoff_s=0.01)
    assert not outcome.ok and outcome.attempts == 2 and "listing failed" in outcome.error
    assert held(collection) == before

    with pytest.raises(SourceUnavailable, match="NoSuchBucket"):  # a bucket that is not there (or no access)
        collection.sync(S3Source(f"s3://{name}-gone/", endpoint_url=endpoint))
    assert held(collection) == before

    # once the source answers again, it is followed again: one object deleted, one kept
    s3.delete_object(Bucket=name, Key="b.md")
    report = collection.sync(S3Source(f"s3://{name}/", endpoint_url=endpoint))
    assert report.count("removed") == 1 and set(held(collection)) == {f"s3://{name}/a.md"}
