#!/usr/bin/env node
// An MCP client that signs in with OAuth, on the official TypeScript SDK (@modelcontextprotocol/sdk,
// pinned and installed into target/node-tools by scripts/setup-node-tools.sh), for Canopy's
// identity-provider tests.
//
//   node oauth_client.mjs URL [--login ACCOUNT] [--call TOOL --args JSON]
//
// Given only the MCP URL, the SDK's auth flow does 401 → protected-resource metadata →
// authorization-server discovery → dynamic client registration → authorization (PKCE, `resource`)
// → token. The browser is played headlessly: the authorization URL's redirects are followed (the
// identity provider of idp.mjs signs in the `login_hint` account without a page) up to the
// redirect URI, whose code goes to `transport.finishAuth`; then the client connects again. The
// redirect URI is never contacted. Prints one JSON document:
//   {ok, tools, call, error, token_claims}
// Exit code 0 whenever it was printed; the caller asserts on it.
import { join, dirname } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const tools = process.env.CANOPY_NODE_TOOLS ?? join(here, "..", "..", "target", "node-tools");
const sdk = (p) => import(pathToFileURL(join(tools, "node_modules/@modelcontextprotocol/sdk/dist/esm", p)).href);
const { Client } = await sdk("client/index.js");
const { StreamableHTTPClientTransport } = await sdk("client/streamableHttp.js");
const { UnauthorizedError } = await sdk("client/auth.js");

const REDIRECT_URI = "http://127.0.0.1:9/callback";

function parseArgs(argv) {
  const out = { url: undefined, login: "alice", call: undefined, args: {} };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === "--login") out.login = next();
    else if (a === "--call") out.call = next();
    else if (a === "--args") out.args = JSON.parse(next());
    else if (!out.url && !a.startsWith("--")) out.url = a;
    else throw new Error(`unknown argument ${a}`);
  }
  if (!out.url) throw new Error("usage: oauth_client.mjs URL [--login ACCOUNT] [--call TOOL --args JSON]");
  return out;
}

/// The SDK's storage and user-agent hooks, in memory; `redirectToAuthorization` is the browser.
class HeadlessProvider {
  constructor(login) {
    this.login = login;
    this.code = undefined;
    this._client = undefined;
    this._tokens = undefined;
    this._verifier = undefined;
  }
  get redirectUrl() {
    return REDIRECT_URI;
  }
  get clientMetadata() {
    return {
      client_name: "canopy-oauth-ts-test",
      redirect_uris: [REDIRECT_URI],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  }
  clientInformation() {
    return this._client;
  }
  saveClientInformation(info) {
    this._client = info;
  }
  tokens() {
    return this._tokens;
  }
  saveTokens(tokens) {
    this._tokens = tokens;
  }
  saveCodeVerifier(v) {
    this._verifier = v;
  }
  codeVerifier() {
    return this._verifier;
  }
  async redirectToAuthorization(authorizationUrl) {
    const url = new URL(authorizationUrl);
    url.searchParams.set("login_hint", this.login);
    let next = url.href;
    const cookies = new Map();
    for (let hop = 0; hop < 20; hop++) {
      if (next.startsWith(REDIRECT_URI)) {
        const params = new URL(next).searchParams;
        if (params.get("error")) throw new Error(`authorization failed: ${params}`);
        this.code = params.get("code");
        return;
      }
      const cookie = [...cookies].map(([k, v]) => `${k}=${v}`).join("; ");
      const r = await fetch(next, { redirect: "manual", headers: cookie ? { cookie } : {} });
      for (const c of r.headers.getSetCookie()) {
        const [pair] = c.split(";");
        const eq = pair.indexOf("=");
        cookies.set(pair.slice(0, eq).trim(), pair.slice(eq + 1));
      }
      const location = r.headers.get("location");
      if (r.status < 300 || r.status >= 400 || !location) {
        throw new Error(`authorization stopped at ${r.status}: ${(await r.text()).slice(0, 300)}`);
      }
      next = new URL(location, next).href;
    }
    throw new Error("too many redirects during authorization");
  }
}

function claimsOf(token) {
  const parts = (token ?? "").split(".");
  if (parts.length !== 3) return null;
  return JSON.parse(Buffer.from(parts[1], "base64url").toString("utf8"));
}

const opts = parseArgs(process.argv.slice(2));
const report = { ok: false, tools: null, call: null, error: null, token_claims: null };
const provider = new HeadlessProvider(opts.login);

async function connect() {
  const transport = new StreamableHTTPClientTransport(new URL(opts.url), { authProvider: provider });
  const client = new Client({ name: "canopy-ts-oauth", version: "1.0.0" });
  try {
    await client.connect(transport);
    return client;
  } catch (e) {
    if (!(e instanceof UnauthorizedError) || !provider.code) throw e;
    // Signed in: hand the code to the SDK (token request), then connect with the token.
    await transport.finishAuth(provider.code);
    const again = new Client({ name: "canopy-ts-oauth", version: "1.0.0" });
    await again.connect(new StreamableHTTPClientTransport(new URL(opts.url), { authProvider: provider }));
    return again;
  }
}

let client;
try {
  client = await connect();
  const listed = await client.listTools();
  report.tools = listed.tools.map((t) => t.name);
  if (opts.call) report.call = await client.callTool({ name: opts.call, arguments: opts.args });
  report.ok = true;
} catch (e) {
  report.error = { message: String(e?.message ?? e), ...(typeof e?.code === "number" ? { code: e.code } : {}) };
} finally {
  await client?.close().catch(() => {});
}
report.token_claims = claimsOf(provider.tokens()?.access_token);
process.stdout.write(JSON.stringify(report) + "\n");
