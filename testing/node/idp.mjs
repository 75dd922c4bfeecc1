#!/usr/bin/env node
// A real OpenID provider for Canopy's OAuth tests: the npm package `oidc-provider` (pinned and
// installed into target/node-tools by scripts/setup-node-tools.sh), configured as an enterprise
// identity provider would be for an MCP resource server. Test use only.
//
//   node idp.mjs [--port 0] [--keys-file F] [--rotate] [--ttl 300] [--alg RS256]
//
// Binds 127.0.0.1 (port 0 = any free port) and prints one line, `listening on 127.0.0.1:PORT`;
// the issuer is `http://127.0.0.1:PORT`. Features:
//   - resource indicators (RFC 8707): every access token is a JWT (RFC 9068, `typ: at+jwt`)
//     whose `aud` is the requested resource, signed with --alg (RS256, ES256 or EdDSA);
//   - authorization code with PKCE (S256, required), refresh tokens, dynamic client
//     registration (open), the device flow (RFC 8628), client credentials;
//   - a `groups` claim (and `email`) in access tokens and ID tokens;
//   - headless sign-in: no login page. The interaction signs in the account named by the
//     authorization request's `login_hint` (default: --default-account, `alice`) and consent
//     is pre-granted for whatever scopes and resources the client asked for.
// Accounts: any name; groups come from ACCOUNT_GROUPS below (unknown names: no groups).
// Client-credentials tokens have the client id as `sub` and the groups of a client named in
// ACCOUNT_GROUPS, if any. A pre-registered confidential client `canopy-test` (secret
// `canopy-test-secret`) may use client credentials.
//
// Keys: one per algorithm (RS256, ES256, EdDSA), generated at first start; with --keys-file they
// are kept there (private JWKS) so a restart on the same port serves the same keys, and
// --rotate puts a newly generated key of each algorithm in front (the old ones stay published).
//
// Test-only device approval, for `canopy login --sso --device-code`:
//   POST /test/approve-device {"user_code", "login"?} → {"approved": bool}
// plays the user: opens the verification URL, submits the code and the confirmation, and the
// interaction signs in `login`.
//
// Test-only minting, for the refusal cases of the resource server (POST JSON, answers
// {"token": …}):
//   POST /test/mint {"sub", "aud", "iss"?, "exp_in"?: seconds (negative = expired),
//                    "nbf_in"?: seconds, "typ"?: "at+jwt", "alg"?: "RS256"|"ES256"|"EdDSA"|
//                    "none"|"HS256-public", "kid"?, "claims"?: {…}}
// signs with this provider's own keys (or, for `none`, not at all; for `HS256-public`, HMAC keyed
// with the RSA public key's PEM: the algorithm-confusion forgery).
import { createServer } from "node:http";
import { createHmac, createPublicKey, randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const tools = process.env.CANOPY_NODE_TOOLS ?? join(here, "..", "..", "target", "node-tools");
const load = (p) => import(pathToFileURL(join(tools, "node_modules", p)).href);
const { default: Provider } = await load("oidc-provider/lib/index.js");
const jose = await load("jose/dist/webapi/index.js");

const ACCOUNT_GROUPS = {
  alice: ["eng"],
  bob: ["sales"],
  carol: ["eng", "admins"],
  "canopy-test": ["robots"],
};
const ALGS = ["RS256", "ES256", "EdDSA"];

function parseArgs(argv) {
  const out = { port: 0, keysFile: undefined, rotate: false, ttl: 300, alg: "RS256", defaultAccount: "alice" };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === "--port") out.port = Number(next());
    else if (a === "--keys-file") out.keysFile = next();
    else if (a === "--rotate") out.rotate = true;
    else if (a === "--ttl") out.ttl = Number(next());
    else if (a === "--alg") out.alg = next();
    else if (a === "--default-account") out.defaultAccount = next();
    else throw new Error(`unknown argument ${a}`);
  }
  if (!ALGS.includes(out.alg)) throw new Error(`--alg must be one of ${ALGS.join(", ")}`);
  return out;
}

async function newKey(alg) {
  const { privateKey } = await jose.generateKeyPair(alg, { extractable: true, crv: alg === "EdDSA" ? "Ed25519" : undefined });
  const jwk = await jose.exportJWK(privateKey);
  return { ...jwk, alg, use: "sig", kid: `${alg.toLowerCase()}-${randomBytes(6).toString("hex")}` };
}

async function signingKeys(opts) {
  let keys = [];
  if (opts.keysFile && existsSync(opts.keysFile)) keys = JSON.parse(readFileSync(opts.keysFile, "utf8")).keys;
  if (keys.length === 0 || opts.rotate) {
    const fresh = [];
    for (const alg of ALGS) fresh.push(await newKey(alg));
    keys = [...fresh, ...keys];
  }
  if (opts.keysFile) writeFileSync(opts.keysFile, JSON.stringify({ keys }), { mode: 0o600 });
  return keys;
}

const groupsOf = (id) => ACCOUNT_GROUPS[id] ?? [];

const opts = parseArgs(process.argv.slice(2));
const keys = await signingKeys(opts);

// The port must be known before the provider (its issuer names it).
const server = createServer();
await new Promise((resolve, reject) => {
  server.once("error", reject);
  server.listen(opts.port, "127.0.0.1", resolve);
});
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  jwks: { keys },
  clients: [
    {
      client_id: "canopy-test",
      client_secret: "canopy-test-secret",
      grant_types: ["client_credentials"],
      redirect_uris: [],
      response_types: [],
    },
  ],
  async findAccount(_ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: `${id}@example.com`, email_verified: true, groups: groupsOf(id) };
      },
    };
  },
  claims: { openid: ["sub"], email: ["email", "email_verified"], groups: ["groups"] },
  scopes: ["openid", "offline_access", "email", "groups", "mcp"],
  pkce: { required: () => true },
  ttl: { AccessToken: opts.ttl, ClientCredentials: opts.ttl, DeviceCode: 600, Interaction: 600, Session: 3600, Grant: 3600, IdToken: opts.ttl },
  features: {
    devInteractions: { enabled: false },
    registration: { enabled: true },
    clientCredentials: { enabled: true },
    deviceFlow: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: (_ctx, _client, oneOf) => oneOf,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, resource) => ({
        // Every scope the provider knows may be granted for any resource (a test provider).
        scope: "mcp email groups",
        audience: resource,
        accessTokenTTL: opts.ttl,
        accessTokenFormat: "jwt",
        jwt: { sign: { alg: opts.alg } },
      }),
    },
  },
  async extraTokenClaims(_ctx, token) {
    const who = token.accountId ?? token.clientId;
    return { groups: groupsOf(who), ...(token.accountId ? { email: `${who}@example.com` } : {}) };
  },
  // Pre-granted consent: whatever was asked for is granted.
  async loadExistingGrant(ctx) {
    const { client, params, session } = ctx.oidc;
    const grant = new ctx.oidc.provider.Grant({ clientId: client.clientId, accountId: session.accountId });
    const scope = params.scope ?? "";
    grant.addOIDCScope(scope);
    grant.addOIDCClaims(["sub", "email", "email_verified", "groups"]);
    const resources = params.resource ? [].concat(params.resource) : [];
    for (const r of resources) grant.addResourceScope(r, scope);
    await grant.save();
    return grant;
  },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  renderError(ctx, out) {
    ctx.type = "json";
    ctx.body = out;
  },
});
provider.proxy = false;

// Headless sign-in: every interaction signs in the hinted account at once.
provider.use(async (ctx, next) => {
  if (ctx.method === "GET" && ctx.path.startsWith("/interaction/")) {
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    // The device flow's approval (below) names the account on the interaction URL itself.
    const accountId = ctx.query.login_hint || details.params.login_hint || opts.defaultAccount;
    const result = { login: { accountId } };
    if (details.prompt.name === "consent") {
      const grant = new provider.Grant({ clientId: details.params.client_id, accountId });
      grant.addOIDCScope(details.params.scope ?? "");
      const resources = details.params.resource ? [].concat(details.params.resource) : [];
      for (const r of resources) grant.addResourceScope(r, details.params.scope ?? "");
      result.consent = { grantId: await grant.save() };
    }
    ctx.redirect(await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: false }));
    return;
  }
  if (ctx.method === "POST" && ctx.path === "/test/approve-device") {
    const body = await readJson(ctx.req);
    ctx.type = "json";
    ctx.body = { approved: await approveDevice(body.user_code, body.login ?? opts.defaultAccount) };
    return;
  }
  if (ctx.method === "POST" && ctx.path === "/test/mint") {
    const body = await readJson(ctx.req);
    ctx.type = "json";
    ctx.body = { token: await mint(body) };
    return;
  }
  await next();
});

function readJson(req) {
  return new Promise((resolve, reject) => {
    let s = "";
    req.on("data", (c) => (s += c));
    req.on("end", () => {
      try {
        resolve(s ? JSON.parse(s) : {});
      } catch (e) {
        reject(e);
      }
    });
    req.on("error", reject);
  });
}

// The user's side of the device flow, without a person: opens the verification URL with the code
// and submits each page's form (the code, then the confirmation), following redirects with a
// cookie jar; the interaction signs in `login`. True when the success page was reached.
async function approveDevice(userCode, login) {
  const jar = new Map();
  let url = `${issuer}/device?user_code=${encodeURIComponent(userCode)}`;
  let init = {};
  for (let step = 0; step < 20; step++) {
    const headers = { ...(init.headers ?? {}) };
    if (jar.size) headers.cookie = [...jar].map(([k, v]) => `${k}=${v}`).join("; ");
    const r = await fetch(url, { ...init, headers, redirect: "manual" });
    for (const c of r.headers.getSetCookie()) {
      const [pair] = c.split(";");
      const eq = pair.indexOf("=");
      jar.set(pair.slice(0, eq).trim(), pair.slice(eq + 1));
    }
    const location = r.headers.get("location");
    if (r.status >= 300 && r.status < 400 && location) {
      url = new URL(location, url).href;
      if (url.includes("/interaction/")) url += (url.includes("?") ? "&" : "?") + `login_hint=${encodeURIComponent(login)}`;
      init = {};
      continue;
    }
    const html = await r.text();
    const form = html.match(/<form[^>]*action="([^"]+)"/);
    if (!form) return r.status === 200 && !/error/i.test(html);
    const fields = new URLSearchParams();
    for (const m of html.matchAll(/<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"/g)) fields.set(m[1], m[2]);
    if (/name="confirm"/.test(html)) fields.set("confirm", "yes");
    url = new URL(form[1], url).href;
    init = { method: "POST", body: fields.toString(), headers: { "content-type": "application/x-www-form-urlencoded" } };
  }
  return false;
}

const b64 = (v) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url");

async function mint(req) {
  const now = Math.floor(Date.now() / 1000);
  const claims = {
    iss: req.iss ?? issuer,
    sub: req.sub ?? opts.defaultAccount,
    aud: req.aud,
    iat: now,
    exp: now + (req.exp_in ?? opts.ttl),
    client_id: "canopy-test",
    scope: "mcp",
    jti: randomBytes(8).toString("hex"),
    groups: groupsOf(req.sub ?? opts.defaultAccount),
    ...(req.nbf_in !== undefined ? { nbf: now + req.nbf_in } : {}),
    ...(req.claims ?? {}),
  };
  const alg = req.alg ?? opts.alg;
  const typ = req.typ ?? "at+jwt";
  if (alg === "none") return `${b64({ alg: "none", typ })}.${b64(claims)}.`;
  if (alg === "HS256-public") {
    const rsa = keys.find((k) => k.alg === "RS256");
    const { d, p, q, dp, dq, qi, ...pub } = rsa;
    const pem = createPublicKey({ key: pub, format: "jwk" }).export({ type: "spki", format: "pem" });
    const input = `${b64({ alg: "HS256", typ, kid: rsa.kid })}.${b64(claims)}`;
    return `${input}.${createHmac("sha256", pem).update(input).digest("base64url")}`;
  }
  const jwk = keys.find((k) => k.alg === alg);
  if (!jwk) throw new Error(`no key for ${alg}`);
  const key = await jose.importJWK(jwk, alg);
  return new jose.CompactSign(new TextEncoder().encode(JSON.stringify(claims)))
    .setProtectedHeader({ alg, typ, kid: req.kid ?? jwk.kid })
    .sign(key);
}

server.on("request", provider.callback());
console.log(`listening on 127.0.0.1:${port}`);
