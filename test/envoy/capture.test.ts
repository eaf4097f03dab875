// The traffic capture (dataplane/capture.ts, issue 12 §2) for real: two network namespaces that
// this file makes, joined by a veth pair. "app" is the pod: `wasmesh dataplane capture` installs
// its rules there (through the real bin, as the init container would), a sidecar-like proxy runs
// there as the proxy UID, and the app as another UID. "server" holds a real server at the address
// the app calls, playing a Service's cluster IP. Every proof is which process answered a real
// connection: the app's call is answered by the sidecar (which forwarded it, as the excluded UID,
// straight to the server), the proxy UID's own call by the server, inbound connections by the
// sidecar's inbound listener. Before the rules, the same calls reach the server and the app
// directly, so none of these assertions can pass without the capture. A second pair of namespaces
// puts the real sidecar behind the rules: `wasmesh server` and the agent with its Envoy, the agent
// as the proxy UID. Skipped (saying why) only when not root or without `ip netns`; iptables
// missing is a failure (./dev installs it).
import { type ChildProcess, execFile, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chownSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { captureRules } from "../../dataplane/capture.ts";
import { runCommand, WASMESH_BIN } from "../support/control-plane.ts";
import { envoyExecutable } from "../support/envoy.ts";
import { tempDir } from "../support/temp.ts";
import { until } from "../support/wait.ts";

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
    // Envoy gives every request it routes an x-request-id: "via-envoy" says a real Envoy forwarded it.
    res.end(name + ":" + port + " host=" + req.headers.host + " from=" + req.socket.remoteAddress +
      (req.headers["x-request-id"] ? " via-envoy" : ""));
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

/** Two new namespaces joined by a veth pair, lo up in each: the pod at APP_IP, the server at SERVER_IP. */
function joinNamespaces(app: string, server: string, tag: string): void {
  ip("netns", "add", app);
  ip("netns", "add", server);
  const [appLink, serverLink] = [`wa${tag}${SUFFIX}`, `ws${tag}${SUFFIX}`];
  ip("link", "add", appLink, "netns", app, "type", "veth", "peer", "name", serverLink, "netns", server);
  for (const [ns, link, address] of [
    [app, appLink, APP_IP],
    [server, serverLink, SERVER_IP],
  ] as const) {
    ip("-n", ns, "link", "set", "lo", "up");
    ip("-n", ns, "addr", "add", `${address}/24`, "dev", link);
    ip("-n", ns, "link", "set", link, "up");
  }
}

/** Deleting a namespace removes its veth end, which removes the pair, and its rules. */
function deleteNamespaces(...names: string[]): void {
  for (const ns of names) spawnSync("ip", ["netns", "del", ns]);
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

/** `wasmesh ARGS` in a namespace, as root (the init container runs `dataplane capture` so). */
function wasmeshIn(ns: string, args: string[], env: NodeJS.ProcessEnv = process.env) {
  return runCommand("ip", nsArgs(ns, 0, [process.execPath, WASMESH_BIN, ...args]), { env });
}

/** `wasmesh dataplane capture ARGS` in the first describe's pod. */
function capture(...args: string[]) {
  return wasmeshIn(APP_NS, ["dataplane", "capture", ...args]);
}

function natTable(ns = APP_NS): string {
  const result = spawnSync("ip", nsArgs(ns, 0, ["iptables-save", "-t", "nat"]), { encoding: "utf8" });
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
    joinNamespaces(APP_NS, SERVER_NS, "s");
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
    deleteNamespaces(APP_NS, SERVER_NS);
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

// The same capture in front of the real sidecar: the control plane and the agent (which runs a
// real Envoy from .tools) in the pod's namespace, the agent as the proxy UID, as the injected
// sidecar container runs. The app's call to the cluster IP, with the service's name as its Host,
// goes through Envoy's outbound listener, whose route (by Host) sends it to the service's
// endpoint, the server; inbound, Envoy's inbound listener calls the app.
const ENVOY_APP_NS = `wasmesh-app-e${SUFFIX}`;
const ENVOY_SERVER_NS = `wasmesh-srv-e${SUFFIX}`;
const API_PORT = 5681;
const XDS_PORT = 5678;
const ADMIN_PORT = 15000;
const READY_PORT = 15020;

describe.skipIf(skipReason !== undefined)("traffic capture in front of the agent's Envoy", () => {
  let cpDir = "";
  let agentDir = "";
  let cp: ChildProcess | undefined;
  let agent: ChildProcess | undefined;
  let agentOutput = "";
  const api = `http://127.0.0.1:${API_PORT}`;

  /** `wasmesh ARGS` against the pod's control plane, with its admin token. */
  const admin = async (...args: string[]) => {
    const token = readFileSync(join(cpDir, "admin-token"), "utf8").trim();
    const result = await wasmeshIn(ENVOY_APP_NS, args, {
      ...process.env,
      WASMESH_API: api,
      WASMESH_TOKEN: token,
    });
    if (result.code !== 0) throw new Error(`wasmesh ${args.join(" ")}: ${result.stderr}`);
    return result.stdout;
  };

  beforeAll(async () => {
    joinNamespaces(ENVOY_APP_NS, ENVOY_SERVER_NS, "e");
    cpDir = tempDir("capture-cp");
    // The agent's files, its user's (the run's temp folder is open to every user, as /tmp is).
    agentDir = tempDir("capture-agent");
    await daemon(ENVOY_SERVER_NS, 0, SERVER, ["reviews", String(SERVER_PORT)]);
    await daemon(ENVOY_APP_NS, APP_UID, SERVER, ["web", String(APP_PORT)]);

    cp = spawn(
      "ip",
      nsArgs(ENVOY_APP_NS, 0, [
        process.execPath,
        WASMESH_BIN,
        "server",
        "--data",
        cpDir,
        "--http-port",
        String(API_PORT),
        "--xds-port",
        String(XDS_PORT),
      ]),
      { stdio: "ignore" },
    );
    await until("the control plane's admin token", () => existsSync(join(cpDir, "admin-token")), 60_000);
    await until(
      "the control plane's API",
      async () => (await call(ENVOY_APP_NS, 0, `${api}/healthz`)).startsWith("200"),
      60_000,
      200,
    );
    const mesh = join(cpDir, "mesh.yaml");
    writeFileSync(
      mesh,
      [
        service("reviews", SERVER_PORT),
        service("web", APP_PORT),
        // The Service's endpoint: the server, at the address the app calls.
        `apiVersion: wasmesh.io/v1alpha1\nkind: Workload\nmetadata:\n  name: reviews-1\nspec:\n  service: reviews\n  address: ${SERVER_IP}\n  port: ${SERVER_PORT}\n`,
      ].join("---\n"),
    );
    await admin("apply", "-f", mesh);
    writeFileSync(
      join(agentDir, "web.token"),
      `${(await admin("token", "dataplane", "--service", "web")).trim()}\n`,
    );
    chownSync(agentDir, PROXY_UID, PROXY_UID);
    chownSync(join(agentDir, "web.token"), PROXY_UID, PROXY_UID);

    agent = spawn(
      "ip",
      nsArgs(ENVOY_APP_NS, PROXY_UID, [
        process.execPath,
        WASMESH_BIN,
        "dataplane",
        "run",
        ...["--name", "web-1", "--service", "web", "--app-port", String(APP_PORT)],
        ...["--token-file", join(agentDir, "web.token"), "--address", APP_IP],
        ...["--inbound-port", String(INBOUND_PORT), "--outbound-port", String(OUTBOUND_PORT)],
        ...["--admin-port", String(ADMIN_PORT), "--ready-port", String(READY_PORT)],
        ...["--cp", api, "--xds", `127.0.0.1:${XDS_PORT}`, "--envoy", envoyExecutable()],
        ...["--data", join(agentDir, "data"), "--drain-seconds", "0"],
        ...["--", "--concurrency", "1", "--log-level", "warning"],
      ]),
      {
        stdio: ["ignore", "pipe", "pipe"],
        env: { ...process.env, HOME: agentDir, XDG_CONFIG_HOME: agentDir },
      },
    );
    agent.stdout?.on("data", (chunk: Buffer) => {
      agentOutput += chunk;
    });
    agent.stderr?.on("data", (chunk: Buffer) => {
      agentOutput += chunk;
    });
    await until(
      () => `the agent to be ready; its output:\n${agentOutput}`,
      async () => {
        if (agent?.exitCode !== null) throw new Error(`the agent exited: ${agentOutput}`);
        return (await call(ENVOY_APP_NS, PROXY_UID, `http://127.0.0.1:${READY_PORT}/ready`)).startsWith(
          "200",
        );
      },
      90_000,
      250,
    );
  });

  afterAll(async () => {
    // SIGTERM: the agent deregisters and stops its Envoy (--drain-seconds 0); SIGKILL if it hangs.
    if (agent && agent.exitCode === null && agent.signalCode === null) {
      const exited = new Promise((resolve) => agent?.once("exit", resolve));
      agent.kill("SIGTERM");
      const timer = setTimeout(() => agent?.kill("SIGKILL"), 20_000);
      await exited;
      clearTimeout(timer);
    }
    for (const child of [cp, ...daemons]) child?.kill("SIGKILL");
    deleteNamespaces(ENVOY_APP_NS, ENVOY_SERVER_NS);
  });

  const appCall = () =>
    call(ENVOY_APP_NS, APP_UID, `http://${SERVER_IP}:${SERVER_PORT}/`, `reviews:${SERVER_PORT}`);
  const inboundCall = () => call(ENVOY_SERVER_NS, 0, `http://${APP_IP}:${APP_PORT}/`);

  it("without the rules, the app's call and the inbound one bypass Envoy", async () => {
    expect(await appCall()).toBe(`200 reviews:${SERVER_PORT} host=reviews:${SERVER_PORT} from=${APP_IP}`);
    expect(await inboundCall()).toBe(`200 web:${APP_PORT} host=${APP_IP}:${APP_PORT} from=${SERVER_IP}`);
  });

  it("with them, Envoy routes the app's call by its Host to the server, and the inbound call to the app", async () => {
    const installed = await wasmeshIn(ENVOY_APP_NS, ["dataplane", "capture", ...CAPTURE_FLAGS.slice(0, 6)]);
    expect(installed.code, installed.stderr).toBe(0);
    // Envoy's own connection to the server (the proxy UID) was not captured: it reached it.
    expect(await appCall()).toBe(
      `200 reviews:${SERVER_PORT} host=reviews:${SERVER_PORT} from=${APP_IP} via-envoy`,
    );
    expect(await inboundCall()).toBe(
      `200 web:${APP_PORT} host=${APP_IP}:${APP_PORT} from=127.0.0.1 via-envoy`,
    );
    // The outbound listener routes by Host alone: an address there is no service's name.
    expect(await call(ENVOY_APP_NS, APP_UID, `http://${SERVER_IP}:${SERVER_PORT}/`)).toBe(
      "404 wasmesh: no service matches this request's authority",
    );
  });
});

function service(name: string, port: number): string {
  return `apiVersion: wasmesh.io/v1alpha1\nkind: Service\nmetadata:\n  name: ${name}\nspec:\n  ports:\n    - name: http\n      port: ${port}\n      protocol: http\n`;
}
