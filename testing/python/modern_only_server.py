"""An upstream MCP server that speaks ONLY protocol 2026-07-28 (standard library only).

Usage: modern_only_server.py [--port N]

Stateless JSON-RPC over HTTP POST at `/mcp`, JSON responses, no sessions, no handshake. Every
request is validated in the order of the 2026-07-28 Streamable HTTP transport:

1. `params._meta` with `io.modelcontextprotocol/protocolVersion` and
   `io.modelcontextprotocol/clientCapabilities` (an object) → else HTTP 400, -32602;
2. `MCP-Protocol-Version` (= the `_meta` version), `Mcp-Method` (= `method`) and, for
   `tools/call` / `prompts/get`, `Mcp-Name` (= `params.name`) → else HTTP 400, -32020;
3. a version other than 2026-07-28 → HTTP 400, -32022 with `data: {supported, requested}`;
4. unknown or removed methods (`initialize`, `ping`, …) → HTTP 404, -32601.

So a handshake-era `initialize` (no `_meta`) gets 400 / -32602, and an enveloped one 404 / -32601.
Notifications (no `id`) get 202 with no body. GET and DELETE → 405.

Methods: `server/discover`, `tools/list`, `tools/call`, `prompts/list`, `prompts/get`; every
result carries `resultType: "complete"` (lists also `ttlMs` / `cacheScope`).
Tools: `echo {message}` (text), `seen` (what this request carried: the MCP headers, the
Authorization header and `_meta`, as `structuredContent` and as JSON text), `stats` (requests
per method and rejections so far, as `structuredContent`), `fail` (`isError: true`).
Unknown tool → -32602 (HTTP 200). Prompt `greeting {name}`.

Prints exactly one line `listening on 127.0.0.1:<port>` once the socket listens; logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

VERSION = "2026-07-28"
SERVER_INFO = {"name": "canopy-modern-only-fixture", "version": "0.1.0"}
STAMP = {"resultType": "complete", "_meta": {"io.modelcontextprotocol/serverInfo": SERVER_INFO}}
LIST_TAIL = {"ttlMs": 0, "cacheScope": "public"}

TOOLS: list[dict[str, Any]] = [
    {
        "name": "echo",
        "description": "Echo the message back as text",
        "inputSchema": {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]},
    },
    {
        "name": "seen",
        "description": "The MCP headers, Authorization and _meta this request carried",
        "inputSchema": {"type": "object", "properties": {}},
    },
    {
        "name": "stats",
        "description": "Requests per method and rejections so far",
        "inputSchema": {"type": "object", "properties": {}},
    },
    {
        "name": "fail",
        "description": "Always a tool error (isError)",
        "inputSchema": {"type": "object", "properties": {}},
    },
]
PROMPTS = [
    {
        "name": "greeting",
        "description": "Greet someone by name",
        "arguments": [{"name": "name", "required": True}],
    }
]

LOCK = threading.Lock()
METHODS: dict[str, int] = {}
REJECTED: dict[str, int] = {}


class Rpc(Exception):
    def __init__(self, status: int, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.data = data


def header(handler: BaseHTTPRequestHandler, name: str) -> str | None:
    value = handler.headers.get(name)
    return value.strip() if value is not None else None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        sys.stderr.write("modern_only_server: " + (format % args) + "\n")

    def send_json(self, status: int, doc: Any) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_empty(self, status: int) -> None:
        self.send_response(status)
        if status == 405:
            self.send_header("Allow", "POST")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self.send_empty(405)

    do_DELETE = do_GET  # noqa: N815

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        if self.path.split("?")[0] != "/mcp":
            self.send_json(404, {"error": "not found"})
            return
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            msg = json.loads(raw)
        except ValueError:
            self.send_json(400, {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "Parse error"}})
            return
        if not isinstance(msg, dict) or "method" not in msg or "id" not in msg:
            self.send_empty(202)
            return
        rid = msg["id"]
        method = msg["method"]
        params = msg.get("params")
        with LOCK:
            METHODS[method] = METHODS.get(method, 0) + 1
        try:
            result = self.dispatch(method, params if isinstance(params, dict) else {})
        except Rpc as e:
            with LOCK:
                REJECTED[method] = REJECTED.get(method, 0) + 1
            error: dict[str, Any] = {"code": e.code, "message": e.message}
            if e.data is not None:
                error["data"] = e.data
            self.send_json(e.status, {"jsonrpc": "2.0", "id": rid, "error": error})
            return
        self.send_json(200, {"jsonrpc": "2.0", "id": rid, "result": result})

    def validate(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        meta = params.get("_meta")
        version = meta.get("io.modelcontextprotocol/protocolVersion") if isinstance(meta, dict) else None
        if (
            not isinstance(meta, dict)
            or not isinstance(version, str)
            or not isinstance(meta.get("io.modelcontextprotocol/clientCapabilities"), dict)
        ):
            raise Rpc(400, -32602, "params._meta with protocolVersion and clientCapabilities is required")
        if header(self, "MCP-Protocol-Version") != version:
            raise Rpc(400, -32020, "MCP-Protocol-Version header missing or not the _meta version")
        if header(self, "Mcp-Method") != method:
            raise Rpc(400, -32020, "Mcp-Method header missing or not the body's method")
        if method in ("tools/call", "prompts/get") and header(self, "Mcp-Name") != params.get("name"):
            raise Rpc(400, -32020, "Mcp-Name header missing or not params.name")
        if version != VERSION:
            raise Rpc(400, -32022, "Unsupported protocol version", {"supported": [VERSION], "requested": version})
        return meta

    def dispatch(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        meta = self.validate(method, params)
        if method == "server/discover":
            return {
                "supportedVersions": [VERSION],
                "capabilities": {"tools": {}, "prompts": {}},
                **LIST_TAIL,
                **STAMP,
            }
        if method == "tools/list":
            return {"tools": TOOLS, **LIST_TAIL, **STAMP}
        if method == "prompts/list":
            return {"prompts": PROMPTS, **LIST_TAIL, **STAMP}
        if method == "prompts/get":
            if params.get("name") != "greeting":
                raise Rpc(200, -32602, f"Unknown prompt: {params.get('name')}")
            who = (params.get("arguments") or {}).get("name", "")
            return {
                "messages": [{"role": "user", "content": {"type": "text", "text": f"Hello, {who}!"}}],
                **STAMP,
            }
        if method == "tools/call":
            return {**self.call(params, meta), **STAMP}
        raise Rpc(404, -32601, f"Method not found: {method}")

    def call(self, params: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        name = params.get("name")
        args = params.get("arguments") or {}
        if name == "echo":
            return {"content": [{"type": "text", "text": str(args.get("message", ""))}]}
        if name == "seen":
            seen = {
                "mcp-protocol-version": header(self, "MCP-Protocol-Version"),
                "mcp-method": header(self, "Mcp-Method"),
                "mcp-name": header(self, "Mcp-Name"),
                "authorization": header(self, "Authorization"),
                "meta": meta,
            }
            return {"content": [{"type": "text", "text": json.dumps(seen, sort_keys=True)}], "structuredContent": seen}
        if name == "stats":
            with LOCK:
                stats = {"methods": dict(METHODS), "rejected": dict(REJECTED)}
            return {"content": [{"type": "text", "text": json.dumps(stats, sort_keys=True)}], "structuredContent": stats}
        if name == "fail":
            return {"content": [{"type": "text", "text": "this tool always fails"}], "isError": True}
        raise Rpc(200, -32602, f"Unknown tool: {name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    httpd = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    httpd.daemon_threads = True
    print(f"listening on 127.0.0.1:{httpd.server_address[1]}", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
