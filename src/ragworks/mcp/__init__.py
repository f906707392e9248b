"""`ragworks mcp`: the Model Context Protocol server (server.py) over stdio or streamable HTTP (cli.py)."""
