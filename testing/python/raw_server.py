"""A tiny hand-written MCP upstream for Canopy's pass-through tests (standard library only).

Usage: raw_server.py [--port N] [--modern]

Stateless JSON-RPC over HTTP POST at `/mcp`, JSON responses, no sessions. It exists because the SDK
servers never emit fields outside the MCP schema, and the gateway must relay such fields untouched:

- every tool definition carries `"x-unknown": {...}` (and the `echo` schema an unknown keyword);
- every `tools/call` result carries `"x-unknown": {...}` next to `content`.

Handshake era (default, 2025-11-25): `initialize`, notifications (202), `ping`, `tools/list`,
`tools/call`; `server/discover` → -32601, so clients fall back to the handshake.
`--modern`: speaks 2026-07-28 instead: `server/discover` lists it, and every request must carry
`params._meta` with the protocol version and the `MCP-Protocol-Version` / `Mcp-Method` (/ `Mcp-Name`)
headers matching the body, else HTTP 400 / -32020 (or -32602 for `_meta`).

Tools: `echo {message}`, `whoami` (the Authorization header and the MCP headers this request
carried, plus the `_meta` it saw, as JSON text). Prints exactly one line `listening on
127.0.0.1:<port>` once the socket listens; logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HANDSHAKE_VERSION = "2025-11-25"
MODERN_VERSION = "2026-07-28"
SERVER_INFO = {"name": "canopy-raw-fixture", "version": "0.1.0"}

UNKNOWN_IN_TOOL = {"nested": {"keep": [1, 2.50, "three", None, True]}, "order": "b-then-a"}
UNKNOWN_IN_RESULT = {"echoed": True, "deep": {"list": [{"k": "v"}], "n": 1.250}}

TOOLS: list[dict[str, Any]] = [
    {
        "name": "echo",
        "description": "Echo the message back as text",
        "inputSchema": {
            "type": "object",
            "properties": {"message": {"type": "string"}},
            "required": ["message"],
            "x-schema-extension": "kept",
        },
        "x-unknown": UNKNOWN_IN_TOOL,
    },
    {
        "name": "whoami",
        "description": "The Authorization and MCP headers and the _meta this request carried",
        "inputSchema": {"type": "object", "properties": {}},
        "x-unknown": {"tool": "whoami"},
    },
]


class Rpc(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def make_handler(modern: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            sys.stderr.write("raw_server: " + (format % args) + "\n")

        def send_json(self, status: int, doc: Any) -> None:
            body = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - stdlib naming
            self.send_response(405)
            self.send_header("Allow", "POST")
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_DELETE = do_GET  # noqa: N815

        def do_POST(self) -> None:  # noqa: N802 - stdlib naming
            if self.path.split("?")[0] != "/mcp":
                self.send_json(404, {"error": "not found"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                msg = json.loads(raw)
            except ValueError:
                self.send_json(400, {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "Parse error"}})
                return
            if not isinstance(msg, dict) or "method" not in msg or "id" not in msg:
                # Notifications and responses.
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            rid = msg["id"]
            try:
                result = self.dispatch(msg["method"], msg.get("params") or {})
            except Rpc as e:
                self.send_json(e.status, {"jsonrpc": "2.0", "id": rid, "error": {"code": e.code, "message": e.message}})
                return
            self.send_json(200, {"jsonrpc": "2.0", "id": rid, "result": result})

        def check_modern(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
            meta = params.get("_meta")
            if not isinstance(meta, dict) or meta.get("io.modelcontextprotocol/protocolVersion") != MODERN_VERSION:
                raise Rpc(400, -32602, "params._meta with the protocol version is required")
            if (self.headers.get("MCP-Protocol-Version") or "").strip() != MODERN_VERSION:
                raise Rpc(400, -32020, "MCP-Protocol-Version header missing or mismatched")
            if (self.headers.get("Mcp-Method") or "").strip() != method:
                raise Rpc(400, -32020, "Mcp-Method header missing or mismatched")
            if method == "tools/call" and (self.headers.get("Mcp-Name") or "").strip() != params.get("name"):
                raise Rpc(400, -32020, "Mcp-Name header missing or mismatched")
            return meta

        def dispatch(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
            meta: dict[str, Any] | None = None
            if modern:
                meta = self.check_modern(method, params)
                stamp = {"resultType": "complete"}
            else:
                stamp = {}
            if method == "server/discover":
                if not modern:
                    raise Rpc(200, -32601, "Method not found: server/discover")
                return {
                    "supportedVersions": [MODERN_VERSION],
                    "capabilities": {"tools": {}},
                    "resultType": "complete",
                    "ttlMs": 0,
                    "cacheScope": "public",
                    "_meta": {"io.modelcontextprotocol/serverInfo": SERVER_INFO},
                }
            if method == "initialize" and not modern:
                return {"protocolVersion": HANDSHAKE_VERSION, "capabilities": {"tools": {}}, "serverInfo": SERVER_INFO}
            if method == "ping" and not modern:
                return {}
            if method == "tools/list":
                return {"tools": TOOLS, **stamp}
            if method == "tools/call":
                name = params.get("name")
                args = params.get("arguments") or {}
                if name == "echo":
                    text = str(args.get("message", ""))
                elif name == "whoami":
                    seen = {
                        "authorization": self.headers.get("Authorization") or "none",
                        "mcp-protocol-version": self.headers.get("MCP-Protocol-Version"),
                        "mcp-method": self.headers.get("Mcp-Method"),
                        "mcp-name": self.headers.get("Mcp-Name"),
                        "meta": meta if meta is not None else params.get("_meta"),
                    }
                    text = json.dumps(seen, sort_keys=True)
                else:
                    raise Rpc(200, -32602, f"Unknown tool: {name}")
                return {
                    "content": [{"type": "text", "text": text}],
                    "isError": False,
                    "x-unknown": UNKNOWN_IN_RESULT,
                    **stamp,
                }
            raise Rpc(404 if modern else 200, -32601, f"Method not found: {method}")

    return Handler


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--modern", action="store_true", help="speak 2026-07-28 instead of the handshake era")
    args = parser.parse_args()
    httpd = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args.modern))
    httpd.daemon_threads = True
    print(f"listening on 127.0.0.1:{httpd.server_address[1]}", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
