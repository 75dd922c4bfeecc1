"""MCP client CLI for Canopy's data-plane tests, built on the official Python SDK (`mcp` 2.x).

Usage:
  client.py URL [--token T] [--mode legacy|auto|2026-07-28] [--transport streamable-http|sse]
            [--call TOOL] [--args JSON]
            [--no-list] [--prompt NAME] [--prompt-args JSON] [--timeout SECONDS]

`--mode legacy` forces the initialize handshake; `auto` (the SDK default) sends `server/discover`
first and falls back to initialize. Prints ONE JSON document on stdout:

  {"ok": bool, "protocol_version": str|null, "server_info": {...}|null,
   "tools": [Tool...]|null, "prompts": [Prompt...]|null,
   "call": CallToolResult|null, "prompt": GetPromptResult|null,
   "error": {"type": str, "message": str, "code": int|null, "http_status": int|null}|null,
   "http_statuses": [int...]}   (every HTTP response status, in order)

Exit code 0 whenever the JSON was printed (tests assert on the document, not the exit code); a
failure is reported in "error" with whatever was collected before it.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import anyio
import httpx2
from mcp import Client, MCPError
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client


def dump(model: Any) -> Any:
    # by_alias gives the wire names (isError, inputSchema, ...), which is what tests compare.
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def find_http_status(exc: BaseException) -> int | None:
    """Walk the exception chain (and exception groups) for an httpx2 status error."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, httpx2.HTTPStatusError):
            return e.response.status_code
        if isinstance(e, BaseExceptionGroup):
            stack.extend(e.exceptions)
        for nxt in (e.__cause__, e.__context__):
            if nxt is not None:
                stack.append(nxt)
    return None


def leaf(exc: BaseException) -> BaseException:
    # anyio task groups wrap the real failure; report the innermost one.
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


async def run(args: argparse.Namespace, out: dict[str, Any]) -> None:
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    timeout = httpx2.Timeout(args.timeout)

    async def record_status(response: httpx2.Response) -> None:
        # The SDK turns a 401 into a generic -32603; tests need the real HTTP status.
        out["http_statuses"].append(response.status_code)

    hooks = {"response": [record_status]}
    async with httpx2.AsyncClient(headers=headers, timeout=timeout, event_hooks=hooks) as http:
        if args.transport == "sse":
            # The legacy HTTP+SSE transport builds its own httpx client; only headers carry over.
            transport = sse_client(args.url, headers=headers, timeout=args.timeout)
        else:
            transport = streamable_http_client(args.url, http_client=http)
        with anyio.fail_after(args.timeout):
            async with Client(transport, mode=args.mode, read_timeout_seconds=args.timeout, cache=None) as client:
                out["protocol_version"] = client.protocol_version
                info = client.server_info
                out["server_info"] = dump(info) if info is not None else None
                if not args.no_list:
                    tools = await client.list_tools()
                    out["tools"] = [dump(t) for t in tools.tools]
                    if client.server_capabilities.prompts is not None:
                        prompts = await client.list_prompts()
                        out["prompts"] = [dump(p) for p in prompts.prompts]
                if args.call:
                    result = await client.call_tool(args.call, json.loads(args.args))
                    out["call"] = dump(result)
                if args.prompt:
                    result = await client.get_prompt(args.prompt, json.loads(args.prompt_args))
                    out["prompt"] = dump(result)


def main() -> int:
    parser = argparse.ArgumentParser(description="MCP test client (official Python SDK)")
    parser.add_argument("url")
    parser.add_argument("--token", default=None, help="bearer token for the Authorization header")
    parser.add_argument("--mode", default="auto", help="legacy | auto | a modern protocol version")
    parser.add_argument(
        "--transport", choices=["streamable-http", "sse"], default="streamable-http", help="client transport"
    )
    parser.add_argument("--call", default=None, help="tool to call")
    parser.add_argument("--args", default="{}", help="tool arguments as a JSON object")
    parser.add_argument("--no-list", action="store_true", help="skip tools/list and prompts/list")
    parser.add_argument("--prompt", default=None, help="prompt to get")
    parser.add_argument("--prompt-args", default="{}", help="prompt arguments as a JSON object")
    parser.add_argument("--timeout", type=float, default=30.0, help="overall deadline in seconds")
    args = parser.parse_args()

    out: dict[str, Any] = {
        "ok": False,
        "protocol_version": None,
        "server_info": None,
        "tools": None,
        "prompts": None,
        "call": None,
        "prompt": None,
        "error": None,
        "http_statuses": [],
    }
    try:
        anyio.run(run, args, out)
        out["ok"] = True
    except BaseException as exc:  # noqa: BLE001 - every failure must become JSON for the test
        if isinstance(exc, KeyboardInterrupt):
            raise
        inner = leaf(exc)
        code = None
        if isinstance(inner, MCPError):
            code = inner.error.code
        out["error"] = {
            "type": type(inner).__name__,
            "message": str(inner),
            "code": code,
            "http_status": find_http_status(exc),
        }
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
