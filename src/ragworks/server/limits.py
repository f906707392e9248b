"""Request limits: the body-size cap (413 before the body is read, when Content-Length says so) and the
per-request time limit for blocking work (504)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ragworks.server.errors import RequestTimeout, error_body

T = TypeVar("T")


class _TooLarge(Exception):
    pass


class BodySizeLimit:
    """Refuses request bodies over `max_bytes` with 413, whether announced (Content-Length) or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _message(self) -> str:
        return f"request body over the {self.max_bytes / 2**20:g} MiB limit (max_upload_mb)"

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(error_body("payload_too_large", self._message())).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._refuse(send)
            return
        seen = 0
        exceeded = False
        started = False

        async def counting_receive() -> Message:
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    exceeded = True
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:  # the app turned our exception into its own error: answer 413 instead
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await self._refuse(send)
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _TooLarge:
            if not started:
                await self._refuse(send)


async def run_blocking(timeout_s: float, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run blocking `fn` in the thread pool; past `timeout_s` the client gets 504 (the thread finishes alone)."""
    try:
        with anyio.fail_after(timeout_s):
            return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs), abandon_on_cancel=True)
    except TimeoutError:
        raise RequestTimeout(f"the request took longer than {timeout_s:g} s (request_timeout_s)") from None
