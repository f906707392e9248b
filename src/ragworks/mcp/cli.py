"""`ragworks mcp`: serve the MCP tools over stdio (an assistant starts the process) or streamable HTTP."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from ragworks.config import Settings
from ragworks.errors import ConfigError


def mcp(
    transport: Annotated[str, typer.Option(help="stdio (the client starts this process) or http "
                                                "(streamable HTTP at --host/--port, path /mcp).")] = "stdio",
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Where collections live.")] = None,
    host: Annotated[str | None, typer.Option(help="http: address to listen on (default: settings.host).")] = None,
    port: Annotated[int | None, typer.Option(help="http: port (default: settings.port).")] = None,
) -> None:
    """Serve search, cited answers and passages to MCP clients (assistants, IDEs). With auth on, stdio reads the
    tenant's key from RAGWORKS_API_KEY; HTTP clients send it as 'Authorization: Bearer <key>'."""
    try:
        from ragworks.mcp.server import McpBackend, build_server
    except ImportError as exc:
        raise ConfigError("`ragworks mcp` needs the MCP SDK: pip install 'ragworks[mcp]'") from exc
    kw: dict[str, Any] = {}
    if data_dir is not None:
        kw["data_dir"] = data_dir
    settings = Settings(**kw)
    if transport not in ("stdio", "http"):
        raise ConfigError(f"--transport must be stdio or http (got {transport!r})")
    backend = McpBackend(settings, stdio_key=os.environ.get("RAGWORKS_API_KEY") if transport == "stdio" else None)
    server = build_server(backend)
    try:
        if transport == "stdio":
            server.run("stdio")
        else:
            import uvicorn

            bind = host or settings.host
            app = server.streamable_http_app(streamable_http_path="/mcp", host=bind)
            uvicorn.run(app, host=bind, port=settings.port if port is None else port, log_level="warning")
    finally:
        backend.close()
