"""S3Source: objects under `s3://bucket/prefix` of any S3-compatible store (AWS, MinIO, Ceph, R2, moto) via boto3.

Credentials and region come from the usual places (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE,
~/.aws); the endpoint from `endpoint_url` or AWS_ENDPOINT_URL. The ETag is the version: an object whose ETag is
stored is not downloaded again.
"""

from __future__ import annotations

import fnmatch
import posixpath
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlparse

from ragworks.errors import ConfigError, SourceItemError, SourceUnavailable
from ragworks.ingest.source import FetchedItem, SourceItem


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` → ("bucket", "some/prefix")."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ConfigError(f"{uri!r} is not an S3 URI: write s3://bucket/prefix")
    return parsed.netloc, parsed.path.lstrip("/")


def _matches(rel: str, globs: Sequence[str]) -> bool:
    return any(fnmatch.fnmatch(rel, g) or fnmatch.fnmatch(posixpath.basename(rel), g) for g in globs)


class S3Source:
    def __init__(self, uri: str, *, endpoint_url: str | None = None, include: Sequence[str] = (),
                 exclude: Sequence[str] = (), client: Any = None) -> None:
        self.bucket, self.prefix = parse_s3_uri(uri)
        self.endpoint_url = endpoint_url
        self.include, self.exclude = tuple(include), tuple(exclude)
        self._client = client

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    @property
    def client(self) -> Any:
        if self._client is None:
            try:
                import boto3
                from botocore.config import Config
            except ImportError as exc:
                raise ConfigError("S3 sources need boto3: pip install 'ragworks[sources]'") from exc
            # few, quick retries: sync has its own backoff, and a dead endpoint must not hang a watch loop
            config = Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=30)
            self._client = boto3.client("s3", endpoint_url=self.endpoint_url, config=config)
        return self._client

    def key_for(self, object_key: str) -> str:
        return f"s3://{self.bucket}/{object_key}"

    def list_items(self) -> list[SourceItem]:
        from botocore.exceptions import BotoCoreError, ClientError

        items = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix)
            for page in pages:
                for obj in page.get("Contents", []):
                    name: str = obj["Key"]
                    if name.endswith("/"):
                        continue  # a "folder" marker
                    rel = name[len(self.prefix):].lstrip("/")
                    if self.include and not _matches(rel, self.include):
                        continue
                    if self.exclude and _matches(rel, self.exclude):
                        continue
                    items.append(SourceItem(self.key_for(name), obj["ETag"].strip('"'), posixpath.basename(name),
                                            int(obj["Size"]), {"bucket": self.bucket, "object": name}))
        except (ClientError, BotoCoreError) as exc:
            raise SourceUnavailable(f"{self.uri}: listing failed: {exc}") from exc
        return items

    def fetch(self, item: SourceItem) -> FetchedItem:
        from botocore.exceptions import BotoCoreError, ClientError

        name = item.metadata["object"]
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=name)["Body"]
            return FetchedItem(body.read(), item.filename)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404"):
                raise SourceItemError(f"{item.key}: deleted while syncing") from exc
            raise SourceUnavailable(f"{item.key}: {exc}") from exc
        except BotoCoreError as exc:
            raise SourceUnavailable(f"{item.key}: {exc}") from exc

    def owns(self, key: str) -> bool:
        return key.startswith(self.key_for(self.prefix))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __repr__(self) -> str:
        return f"S3Source({self.uri!r}, endpoint_url={self.endpoint_url!r})"
