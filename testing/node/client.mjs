#!/usr/bin/env node
// An MCP client on the official TypeScript SDK (@modelcontextprotocol/sdk, pinned and installed
// into target/node-tools by scripts/setup-node-tools.sh), for Canopy's interop tests.
//
//   node client.mjs URL [--token T] [--call TOOL --args JSON] [--progress] [--bad-call TOOL]
//
// Connects over streamable HTTP (bearer token in the Authorization header when given), lists the
// tools, optionally calls one (with a progress callback under --progress) and calls --bad-call
// expecting a JSON-RPC error. Prints one JSON document:
//   {ok, protocol_version, server_info, tools, call, progress, bad_call, error}
// `error` is {message, code?} of the first failure (connect/list/call); the exit code is 0 even
// then, so the caller can assert on the failure it expects.
import { join, dirname } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const tools = process.env.CANOPY_NODE_TOOLS ?? join(here, "..", "..", "target", "node-tools");
const sdk = (p) => import(pathToFileURL(join(tools, "node_modules/@modelcontextprotocol/sdk/dist/esm", p)).href);
const { Client } = await sdk("client/index.js");
const { StreamableHTTPClientTransport } = await sdk("client/streamableHttp.js");

function parseArgs(argv) {
  const out = { url: undefined, token: undefined, call: undefined, args: {}, progress: false, badCall: undefined };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === "--token") out.token = next();
    else if (a === "--call") out.call = next();
    else if (a === "--args") out.args = JSON.parse(next());
    else if (a === "--progress") out.progress = true;
    else if (a === "--bad-call") out.badCall = next();
    else if (!out.url && !a.startsWith("--")) out.url = a;
    else throw new Error(`unknown argument ${a}`);
  }
  if (!out.url) throw new Error("usage: client.mjs URL [--token T] [--call TOOL --args JSON] [--progress] [--bad-call TOOL]");
  return out;
}

function errorInfo(e) {
  const info = { message: String(e?.message ?? e) };
  if (typeof e?.code === "number") info.code = e.code;
  return info;
}

const opts = parseArgs(process.argv.slice(2));
const report = { ok: false, protocol_version: null, server_info: null, tools: [], call: null, progress: 0, bad_call: null, error: null };
const headers = opts.token ? { Authorization: `Bearer ${opts.token}` } : {};
const transport = new StreamableHTTPClientTransport(new URL(opts.url), { requestInit: { headers } });
const client = new Client({ name: "canopy-ts-interop", version: "1.0.0" });

try {
  await client.connect(transport);
  report.protocol_version = transport.protocolVersion ?? null;
  report.server_info = client.getServerVersion() ?? null;
  const listed = await client.listTools();
  report.tools = listed.tools.map((t) => t.name);
  if (opts.call) {
    const options = opts.progress ? { onprogress: () => { report.progress += 1; } } : undefined;
    report.call = await client.callTool({ name: opts.call, arguments: opts.args }, undefined, options);
  }
  if (opts.badCall) {
    try {
      report.bad_call = { result: await client.callTool({ name: opts.badCall, arguments: {} }) };
    } catch (e) {
      report.bad_call = errorInfo(e);
    }
  }
  report.ok = true;
} catch (e) {
  report.error = errorInfo(e);
} finally {
  await client.close().catch(() => {});
}
process.stdout.write(JSON.stringify(report) + "\n");
