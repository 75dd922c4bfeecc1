"""An MCP client that signs in with OAuth, built on the official Python SDK (`mcp` 2.x) and its
`OAuthClientProvider`, for Canopy's identity-provider tests.

Usage:
  oauth_client.py URL [--login ACCOUNT] [--mode legacy|auto|2026-07-28] [--call TOOL] [--args JSON]
                  [--timeout SECONDS]

Given only the MCP URL, the SDK does the whole MCP authorization flow: 401 → protected-resource
metadata → authorization-server discovery → dynamic client registration → authorization (PKCE,
`resource`) → token → the MCP requests with the access token. The browser is replaced by a
headless redirect handler: it follows the authorization request's redirects (the identity
provider of testing/node/idp.mjs signs in the `login_hint` account without a page) up to the
redirect URI, whose `code`, `state` and `iss` it hands to the SDK. The redirect URI is never
contacted. Prints ONE JSON document on stdout:

  {"ok": bool, "tools": [name...]|null, "call": CallToolResult|null,
   "error": {"type": str, "message": str, "code": int|null}|null,
   "http": [[method, url, status]...],   (every HTTP exchange, in order; no tokens)
   "token_claims": {...}|null}            (the access token's claims, decoded without checks)

Exit code 0 whenever the JSON was printed; the tests assert on the document.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlparse

import anyio
import httpx2
from mcp import Client, MCPError
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)

REDIRECT_URI = "http://127.0.0.1:9/callback"


class MemoryStorage:
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


class HeadlessBrowser:
    """Plays the user's browser: follows redirects from the authorization URL to the redirect URI."""

    def __init__(self, login: str, timeout: float) -> None:
        self.login = login
        self.timeout = timeout
        self.result: AuthorizationCodeResult | None = None

    async def redirect(self, authorization_url: str) -> None:
        sep = "&" if "?" in authorization_url else "?"
        url = f"{authorization_url}{sep}{urlencode({'login_hint': self.login})}"
        async with httpx2.AsyncClient(follow_redirects=False, timeout=self.timeout) as browser:
            for _ in range(20):
                if url.startswith(REDIRECT_URI):
                    query = parse_qs(urlparse(url).query)
                    if "error" in query:
                        raise RuntimeError(f"authorization failed: {query}")
                    first = lambda k: query.get(k, [None])[0]  # noqa: E731
                    self.result = AuthorizationCodeResult(code=first("code"), state=first("state"), iss=first("iss"))
                    return
                response = await browser.get(url)
                location = response.headers.get("location")
                if response.status_code not in (302, 303) or not location:
                    raise RuntimeError(f"authorization stopped at {response.status_code}: {response.text[:300]}")
                url = urljoin(url, location)
        raise RuntimeError("too many redirects during authorization")

    async def callback(self) -> AuthorizationCodeResult:
        if self.result is None:
            raise RuntimeError("no authorization result")
        return self.result


def claims_of(token: str) -> dict[str, Any] | None:
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    return json.loads(base64.urlsafe_b64decode(payload))


def leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


async def run(args: argparse.Namespace, out: dict[str, Any], storage: MemoryStorage) -> None:
    browser = HeadlessBrowser(args.login, args.timeout)
    auth = OAuthClientProvider(
        server_url=args.url,
        client_metadata=OAuthClientMetadata(
            client_name="canopy-oauth-test",
            redirect_uris=[REDIRECT_URI],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
        ),
        storage=storage,
        redirect_handler=browser.redirect,
        callback_handler=browser.callback,
    )

    async def record(response: httpx2.Response) -> None:
        request = response.request
        out["http"].append([request.method, str(request.url), response.status_code])

    timeout = httpx2.Timeout(args.timeout)
    async with httpx2.AsyncClient(auth=auth, timeout=timeout, event_hooks={"response": [record]}) as http:
        transport = streamable_http_client(args.url, http_client=http)
        with anyio.fail_after(args.timeout):
            async with Client(transport, mode=args.mode, read_timeout_seconds=args.timeout, cache=None) as client:
                tools = await client.list_tools()
                out["tools"] = [t.name for t in tools.tools]
                if args.call:
                    result = await client.call_tool(args.call, json.loads(args.args))
                    out["call"] = result.model_dump(mode="json", by_alias=True, exclude_none=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url")
    p.add_argument("--login", default="alice", help="the account the identity provider signs in")
    p.add_argument("--mode", default="legacy", help="legacy, auto or a modern protocol version")
    p.add_argument("--call", help="a tool to call after listing")
    p.add_argument("--args", default="{}", help="the tool's arguments (JSON)")
    p.add_argument("--timeout", type=float, default=30.0)
    args = p.parse_args()
    out: dict[str, Any] = {"ok": False, "tools": None, "call": None, "error": None, "http": [], "token_claims": None}
    storage = MemoryStorage()
    try:
        anyio.run(run, args, out, storage)
        out["ok"] = True
    except BaseException as e:  # noqa: BLE001 - reported in the document
        err = leaf(e)
        if isinstance(err, KeyboardInterrupt):
            raise
        code = err.error.code if isinstance(err, MCPError) else None
        out["error"] = {"type": type(err).__name__, "message": str(err), "code": code}
    if storage.tokens is not None:
        out["token_claims"] = claims_of(storage.tokens.access_token)
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
