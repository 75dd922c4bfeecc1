"""Upstream MCP server for Canopy's tests, built on the official Python SDK (`mcp` 2.x).

Usage: server.py [--transport streamable-http|sse|stdio] [--port N] [--stateless] [--name NAME]

Over HTTP it binds 127.0.0.1 itself (port 0 = any free port) before starting uvicorn, then prints
exactly one line `listening on 127.0.0.1:<port>` to stdout: the socket is already listening, so a
test that reads the line can connect at once. Endpoints: `/mcp` (streamable-http), `/sse` and
`/messages/` (sse). Logs go to stderr.
"""

from __future__ import annotations

import argparse
import socket
import sys

import anyio
import uvicorn
from mcp.server.mcpserver import MCPServer


def build_server(name: str) -> MCPServer:
    server = MCPServer(name=name, version="0.1.0")

    @server.tool(description="Echo the message back as text")
    def echo(message: str) -> str:
        return message

    @server.tool(description="Add two integers")
    def add(a: int, b: int) -> str:
        # Text, not a number, so the result reads the same as the Rust fixture's `add`.
        return str(a + b)

    @server.prompt(description="Greet someone by name")
    def greeting(name: str) -> str:
        return f"Hello, {name}!"

    return server


def bind(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    return sock


async def serve_http(server: MCPServer, transport: str, port: int, stateless: bool) -> None:
    if transport == "sse":
        app = server.sse_app(host="127.0.0.1")
    else:
        app = server.streamable_http_app(host="127.0.0.1", stateless_http=stateless, json_response=stateless)
    sock = bind(port)
    actual_port = sock.getsockname()[1]
    print(f"listening on 127.0.0.1:{actual_port}", flush=True)
    config = uvicorn.Config(app, log_level="warning")
    await uvicorn.Server(config).serve(sockets=[sock])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transport", choices=["streamable-http", "sse", "stdio"], default="streamable-http")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--stateless", action="store_true")
    parser.add_argument("--name", default="canopy-python-fixture")
    args = parser.parse_args()

    server = build_server(args.name)
    if args.transport == "stdio":
        # stdout is the protocol channel here: print nothing else.
        anyio.run(server.run_stdio_async)
    else:
        anyio.run(serve_http, server, args.transport, args.port, args.stateless)
    return 0


if __name__ == "__main__":
    sys.exit(main())
