// The traffic capture (dataplane/capture.ts, issue 12 §2) for real: two network namespaces that
// this file makes, joined by a veth pair. "app" is the pod: `wasmesh dataplane capture` installs
// its rules there (through the real bin, as the init container would), a sidecar-like proxy runs
// there as the proxy UID, and the app as another UID. "server" holds a real server at the address
// the app calls, playing a Service's cluster IP. Every proof is which process answered a real
// connection: the app's call is answered by the sidecar (which forwarded it, as the excluded UID,
// straight to the server), the proxy UID's own call by the server, inbound connections by the
// sidecar's inbound listener. Before the rules, the same calls reach the server and the app
// directly, so none of these assertions can pass without the capture.
import { type ChildProcess, execFile, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { captureRules } from "../../dataplane/capture.ts";
import { runCommand, WASMESH_BIN } from "../support/control-plane.ts";

const isRoot = process.getuid?.() === 0;
const hasNetns = spawnSync("ip", ["netns", "list"]).status === 0;
const skipReason = !isRoot
  ? "needs root (network namespaces and iptables)"
  : !hasNetns
    ? "`ip netns` is not available (iproute2)"
    : undefined;
if (skipReason) console.warn(`test/envoy/capture.test.ts skipped: ${skipReason}`);

// Unique per run, so that runs in parallel never share a namespace or an interface (names of
// interfaces are at most 15 characters).
const SUFFIX = randomBytes(3).toString("hex");
const APP_NS = `wasmesh-app-${SUFFIX}`;
const SERVER_NS = `wasmesh-srv-${SUFFIX}`;
// Documentation addresses (TEST-NET-1): they exist only inside these two namespaces.
const APP_IP = "192.0.2.1";
const SERVER_IP = "192.0.2.2";

const PROXY_UID = 1337;
const APP_UID = 1001;
const OUTBOUND_PORT = 15001;
const INBOUND_PORT = 15006;
const APP_PORT = 9080;
/** An app port that connections from outside reach directly (as a probe port would). */
const APP_EXCLUDED_PORT = 9090;
const SERVER_PORT = 8080;
/** A server port the app reaches directly (as the control plane's ports would be). */
const SERVER_EXCLUDED_PORT = 8081;

const CAPTURE_FLAGS = [
  "--outbound-port",
  String(OUTBOUND_PORT),
  "--inbound-port",
  String(INBOUND_PORT),
  "--proxy-uid",
  String(PROXY_UID),
  "--exclude-outbound-ports",
  String(SERVER_EXCLUDED_PORT),
  "--exclude-inbound-ports",
  String(APP_EXCLUDED_PORT),
];

/** Each server answers who it is, on which port, the Host it was sent and the peer's address. */
const SERVER = `
const http = require("node:http");
const [name, ...ports] = process.argv.slice(1);
let open = 0;
for (const port of ports) {
  http.createServer((req, res) => {
    res.end(name + ":" + port + " host=" + req.headers.host + " from=" + req.socket.remoteAddress);
  }).listen(Number(port), "0.0.0.0", () => { if (++open === ports.length) console.log("ready"); });
}`;

/**
 * The sidecar stand-in. Outbound (127.0.0.1:OUTBOUND_PORT, where REDIRECT sends the app's
 * connections): routes by Host as the outbound listener does (the service name to its address),
 * forwards as its own UID, and says so. A request that comes back to it (its own forwarded call
 * captured) is answered 508, so a capture loop shows instead of recursing. Inbound
 * (0.0.0.0:INBOUND_PORT): forwards to the app on loopback, as Envoy's inbound cluster does.
 */
const SIDECAR = `
const http = require("node:http");
const [outboundPort, inboundPort, appPort, routes] = process.argv.slice(1);
const table = JSON.parse(routes);
function forward(target, req, res, label) {
  const [host, port] = target.split(":");
  const upstream = http.request({ host, port: Number(port), path: req.url, method: req.method,
      headers: { ...req.headers, "x-sidecar-hop": "1" } }, (answer) => {
    let body = "";
    answer.on("data", (chunk) => { body += chunk; });
    answer.on("end", () => { res.writeHead(answer.statusCode); res.end(label + " -> " + body); });
  });
  upstream.on("error", (error) => { res.writeHead(502); res.end(label + " -> " + error.message); });
  upstream.end();
}
let open = 0;
const ready = () => { if (++open === 2) console.log("ready"); };
http.createServer((req, res) => {
  if (req.headers["x-sidecar-hop"]) { res.writeHead(508); return res.end("loop: the sidecar's own call came back"); }
  const host = req.headers.host;
  forward(table[host] ?? host, req, res, "sidecar outbound host=" + host);
}).listen(Number(outboundPort), "127.0.0.1", ready);
http.createServer((req, res) => {
  forward("127.0.0.1:" + appPort, req, res, "sidecar inbound");
}).listen(Number(inboundPort), "0.0.0.0", ready);`;

/** One request; prints "<status> <body>". */
const CLIENT = `
const http = require("node:http");
const [url, host] = process.argv.slice(1);
http.get(url, host ? { headers: { host } } : {}, (res) => {
  let body = "";
  res.on("data", (chunk) => { body += chunk; });
  res.on("end", () => console.log(res.statusCode + " " + body));
}).on("error", (error) => { console.log("error " + error.message); });`;

/** `ip netns exec <ns>`, as `uid` (setpriv, no supplementary groups) unless it is root's. */
function nsArgs(ns: string, uid: number, argv: string[]): string[] {
  const user = uid === 0 ? [] : ["setpriv", `--reuid=${uid}`, `--regid=${uid}`, "--clear-groups"];
  return ["netns", "exec", ns, ...user, ...argv];
}

function ip(...args: string[]): void {
  const result = spawnSync("ip", args, { encoding: "utf8" });
  if (result.status !== 0) throw new Error(`ip ${args.join(" ")}: ${result.stderr.trim()}`);
}

const daemons: ChildProcess[] = [];

/** A node script that runs until the end of the file, once it printed "ready". */
async function daemon(ns: string, uid: number, script: string, args: string[]): Promise<void> {
  const child = spawn("ip", nsArgs(ns, uid, [process.execPath, "-e", script, "--", ...args]), {
    stdio: ["ignore", "pipe", "pipe"],
  });
  daemons.push(child);
  let output = "";
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on("data", (chunk: Buffer) => {
      output += chunk;
      if (output.includes("ready")) resolve();
    });
    child.stderr?.on("data", (chunk: Buffer) => {
      output += chunk;
    });
    child.on("exit", (code) => reject(new Error(`exited ${code} before it was ready: ${output}`)));
  });
}

/** A request made from `ns` as `uid`: "<status> <body>", or "error <why>". */
function call(ns: string, uid: number, url: string, host?: string): Promise<string> {
  const args = nsArgs(ns, uid, [process.execPath, "-e", CLIENT, "--", url, ...(host ? [host] : [])]);
  return new Promise((resolve, reject) => {
    execFile("ip", args, { encoding: "utf8", timeout: 30_000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${url} from ${ns}: ${stderr || error.message}`));
      else resolve(stdout.trim());
    });
  });
}

/** `wasmesh dataplane capture ARGS` in the app's namespace, as the init container runs it (root). */
async function capture(...args: string[]) {
  return runCommand(
    "ip",
    nsArgs(APP_NS, 0, [process.execPath, WASMESH_BIN, "dataplane", "capture", ...args]),
  );
}

function natTable(): string {
  const result = spawnSync("ip", nsArgs(APP_NS, 0, ["iptables-save", "-t", "nat"]), { encoding: "utf8" });
  if (result.status !== 0) throw new Error(`iptables-save: ${result.stderr}`);
  return result.stdout;
}

/** The app's calls and the inbound ones, each with who answered. */
async function observe() {
  const service = `http://${SERVER_IP}:${SERVER_PORT}/`;
  return {
    // An app calls a Service's cluster IP with the service's name as its Host.
    app: await call(APP_NS, APP_UID, service, `reviews:${SERVER_PORT}`),
    proxyUid: await call(APP_NS, PROXY_UID, service, `reviews:${SERVER_PORT}`),
    excludedPort: await call(APP_NS, APP_UID, `http://${SERVER_IP}:${SERVER_EXCLUDED_PORT}/`),
    loopback: await call(APP_NS, APP_UID, `http://127.0.0.1:${APP_PORT}/`),
    inbound: await call(SERVER_NS, 0, `http://${APP_IP}:${APP_PORT}/`),
    inboundExcluded: await call(SERVER_NS, 0, `http://${APP_IP}:${APP_EXCLUDED_PORT}/`),
  };
}

/** What every call gets without the capture: the server or the app, directly. */
const DIRECT = {
  app: `200 server:${SERVER_PORT} host=reviews:${SERVER_PORT} from=${APP_IP}`,
  proxyUid: `200 server:${SERVER_PORT} host=reviews:${SERVER_PORT} from=${APP_IP}`,
  excludedPort: `200 server:${SERVER_EXCLUDED_PORT} host=${SERVER_IP}:${SERVER_EXCLUDED_PORT} from=${APP_IP}`,
  loopback: `200 app:${APP_PORT} host=127.0.0.1:${APP_PORT} from=127.0.0.1`,
  inbound: `200 app:${APP_PORT} host=${APP_IP}:${APP_PORT} from=${SERVER_IP}`,
  inboundExcluded: `200 app:${APP_EXCLUDED_PORT} host=${APP_IP}:${APP_EXCLUDED_PORT} from=${SERVER_IP}`,
};

describe.skipIf(skipReason !== undefined)("traffic capture in network namespaces", () => {
  beforeAll(async () => {
    ip("netns", "add", APP_NS);
    ip("netns", "add", SERVER_NS);
    ip(
      "link",
      "add",
      `wa${SUFFIX}`,
      "netns",
      APP_NS,
      "type",
      "veth",
      "peer",
      "name",
      `ws${SUFFIX}`,
      "netns",
      SERVER_NS,
    );
    for (const [ns, link, address] of [
      [APP_NS, `wa${SUFFIX}`, APP_IP],
      [SERVER_NS, `ws${SUFFIX}`, SERVER_IP],
    ] as const) {
      ip("-n", ns, "link", "set", "lo", "up");
      ip("-n", ns, "addr", "add", `${address}/24`, "dev", link);
      ip("-n", ns, "link", "set", link, "up");
    }
    await daemon(SERVER_NS, 0, SERVER, ["server", String(SERVER_PORT), String(SERVER_EXCLUDED_PORT)]);
    await daemon(APP_NS, APP_UID, SERVER, ["app", String(APP_PORT), String(APP_EXCLUDED_PORT)]);
    await daemon(APP_NS, PROXY_UID, SIDECAR, [
      String(OUTBOUND_PORT),
      String(INBOUND_PORT),
      String(APP_PORT),
      JSON.stringify({ [`reviews:${SERVER_PORT}`]: `${SERVER_IP}:${SERVER_PORT}` }),
    ]);
  });

  afterAll(() => {
    for (const child of daemons) child.kill("SIGKILL");
    // Deleting a namespace removes its veth end, which removes the pair, and its rules.
    for (const ns of [APP_NS, SERVER_NS]) spawnSync("ip", ["netns", "del", ns]);
  });

  it("without the rules, every call reaches the server or the app directly", async () => {
    expect(await observe()).toEqual(DIRECT);
  });

  it("captures the app's outbound and the pod's inbound connections; the proxy UID, excluded ports and loopback pass", async () => {
    const installed = await capture(...CAPTURE_FLAGS);
    expect(installed.stderr).toBe("");
    expect(installed.code).toBe(0);
    expect(await observe()).toEqual({
      // The sidecar answered, having seen the Host; its own forwarded call (as the proxy UID)
      // reached the server, which saw the pod's address: it was not captured again.
      app: `200 sidecar outbound host=reviews:${SERVER_PORT} -> ${DIRECT.app.slice(4)}`,
      proxyUid: DIRECT.proxyUid,
      excludedPort: DIRECT.excludedPort,
      loopback: DIRECT.loopback,
      // Redirected to the inbound listener, which called the app on loopback.
      inbound: `200 sidecar inbound -> app:${APP_PORT} host=${APP_IP}:${APP_PORT} from=127.0.0.1`,
      inboundExcluded: DIRECT.inboundExcluded,
    });
  });

  it("a second run leaves one set of rules, and they are the builder's", async () => {
    const again = await capture(...CAPTURE_FLAGS);
    expect(again.code).toBe(0);
    const ours = natTable()
      .split("\n")
      .filter((line) => line.includes("WASMESH_") && line.startsWith("-A "));
    const expected = captureRules({
      outboundPort: OUTBOUND_PORT,
      inboundPort: INBOUND_PORT,
      proxyUid: PROXY_UID,
      excludeOutboundPorts: [SERVER_EXCLUDED_PORT],
      excludeInboundPorts: [APP_EXCLUDED_PORT],
    }).filter((line) => line.startsWith("-A "));
    expect(ours.sort()).toEqual([...expected].sort());
    expect((await observe()).app).toMatch(/^200 sidecar outbound /);
  });

  it("--remove takes the rules away, and the calls go direct again", async () => {
    const removed = await capture("--remove");
    expect(removed.code).toBe(0);
    expect(natTable()).not.toContain("WASMESH_");
    expect(await observe()).toEqual(DIRECT);
  });
});
