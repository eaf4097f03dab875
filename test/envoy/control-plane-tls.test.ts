// A control plane serving TLS on its API and xDS ports (wasmesh server --tls, issue 11 §3) with real
// sidecars: agents run by `wasmesh dataplane run --cp https://… --ca-file <data>/ca-bundle.pem` get
// their certificate, module bytes and configuration over TLS and serve a call from web's sidecar to
// api's; an Envoy from `wasmesh bootstrap --ca-file` gets its configuration over TLS (its xDS cluster
// verifies the server), and one whose bootstrap trusts another CA never does.
import { readFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ControlPlane, startControlPlane } from "../../control-plane/server.ts";
import { RELEASE_WASM } from "../support/artifacts.ts";
import { selfSigned } from "../support/ca.ts";
import { type Sidecar, startSidecar } from "../support/control-plane.ts";
import { type AgentProcess, startAgentProcess } from "../support/dataplane.ts";
import { tempDir } from "../support/temp.ts";
import { startUpstream, type Upstream } from "../support/upstreams.ts";
import { until } from "../support/wait.ts";

let plane: ControlPlane;
let api: string;
let caFile: string;
let bundle: string;
let admin: string;
const agents: AgentProcess[] = [];
const sidecars: Sidecar[] = [];
let app: Upstream | undefined;

/** The API over https, trusting the bundle only. */
// biome-ignore lint/suspicious/noExplicitAny: assertions navigate arbitrary JSON
function call(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const text = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      `${api}${path}`,
      {
        method,
        ca: bundle,
        agent: false,
        headers: {
          authorization: `Bearer ${admin}`,
          ...(text !== undefined ? { "content-type": "application/json" } : {}),
        },
      },
      (res) => {
        let answer = "";
        res.on("data", (chunk: Buffer) => {
          answer += chunk.toString("utf8");
        });
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            body: answer.startsWith("{") ? JSON.parse(answer) : answer,
          }),
        );
      },
    );
    req.on("error", reject);
    req.end(text);
  });
}

async function put(kind: string, plural: string, name: string, spec: unknown): Promise<void> {
  const answer = await call("PUT", `/v1/${plural}/${name}`, {
    apiVersion: "wasmesh.io/v1alpha1",
    kind,
    metadata: { name },
    spec,
  });
  if (answer.status >= 300) throw new Error(`PUT ${kind}/${name}: ${JSON.stringify(answer.body)}`);
}

async function dataplaneToken(service: string): Promise<string> {
  const answer = await call("POST", "/v1/tokens", { role: "dataplane", service });
  if (answer.status !== 201) throw new Error(`POST /v1/tokens: ${JSON.stringify(answer.body)}`);
  return answer.body.secret as string;
}

beforeAll(async () => {
  const dataDir = tempDir("cp-tls");
  plane = await startControlPlane({
    dataDir,
    httpPort: 0,
    xdsPort: 0,
    builtinModule: RELEASE_WASM,
    tls: "mesh-ca",
    log: () => {},
    ca: { env: {} },
  });
  api = `https://127.0.0.1:${plane.httpPort}`;
  caFile = join(dataDir, "ca-bundle.pem");
  bundle = readFileSync(caFile, "utf8");
  admin = readFileSync(plane.adminTokenFile, "utf8").trim();
  for (const name of ["web", "api"])
    await put("Service", "services", name, { ports: [{ name: "http", port: 8080, protocol: "http" }] });
}, 60_000);

afterAll(async () => {
  await Promise.all(agents.map((a) => a.stop()));
  await Promise.all(sidecars.map((s) => s.envoy.stop()));
  await app?.close();
  await plane?.close();
});

describe("agents with --ca-file against wasmesh server --tls", () => {
  it("get their configuration over TLS and serve a call through two sidecars", async () => {
    app = await startUpstream({ name: "api-app" });
    const run = async (name: string, service: string, appPort: number) => {
      const agent = startAgentProcess({
        token: await dataplaneToken(service),
        args: [
          ...["--name", name, "--service", service, "--app-port", String(appPort)],
          ...["--cp", api, "--xds", `127.0.0.1:${plane.xdsPort}`, "--ca-file", caFile],
        ],
      });
      agents.push(agent);
      return agent;
    };
    const apiAgent = await run("api-1", "api", app.port);
    const web = await run("web-1", "web", app.port);
    await Promise.all([apiAgent.waitReady(60_000), web.waitReady(60_000)]);
    // Both got their workload certificate (over https) and their configuration (xDS over TLS).
    expect(
      plane.xds
        .status()
        .map((p) => p.nodeId)
        .sort(),
    ).toEqual(["api-1", "web-1"]);

    const { outbound } = await web.ports();
    // Once web's sidecar knows api's endpoint (the Workload api's agent registered).
    let last = "";
    await until(
      () =>
        `a call through web's sidecar to api to be served (last: ${last})\n${apiAgent.stdout()}\n${apiAgent.stderr().slice(-3000)}`,
      async () => {
        const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
          const req = httpRequest(
            { host: "127.0.0.1", port: outbound, path: "/through", headers: { host: "api" }, agent: false },
            (res) => {
              let body = "";
              res.on("data", (chunk: Buffer) => {
                body += chunk.toString("utf8");
              });
              res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
            },
          );
          req.on("error", reject);
          req.end();
        });
        last = `${answer.status} ${answer.body}`;
        return answer.status === 200 && answer.body === "api-app";
      },
      30_000,
      200,
    );
    expect(app.requests.some((r) => r.path === "/through")).toBe(true);
  }, 120_000);

  it("an agent without the CA file never gets its certificate, and says why", async () => {
    const agent = startAgentProcess({
      token: await dataplaneToken("web"),
      args: [
        ...["--name", "web-untrusting", "--service", "web", "--app-port", "1"],
        ...["--cp", api, "--xds", `127.0.0.1:${plane.xdsPort}`],
      ],
    });
    agents.push(agent);
    await agent.waitForOutput(
      /certificates: .*(self-signed certificate|unable to verify|certificate)/i,
      30_000,
    );
    expect((await agent.ready()).status).not.toBe(200);
    await agent.stop();
  }, 60_000);
});

describe("Envoy from wasmesh bootstrap --ca-file", () => {
  it("gets its configuration over TLS; one trusting another CA never does", async () => {
    const token = await dataplaneToken("web");
    const trusted = await startSidecar({
      controlPlane: { xds: `127.0.0.1:${plane.xdsPort}` },
      token,
      nodeId: "web-bootstrap",
      service: "web",
      caFile,
    });
    sidecars.push(trusted);
    await trusted.envoy.waitForListener("outbound", 30_000);
    const stats = await trusted.envoy.stats("cluster.wasmesh-xds.ssl");
    expect(stats.get("cluster.wasmesh-xds.ssl.handshake")).toBeGreaterThan(0);

    const other = selfSigned("/CN=Other").certFile;
    const untrusting = await startSidecar({
      controlPlane: { xds: `127.0.0.1:${plane.xdsPort}` },
      token,
      nodeId: "web-untrusting-envoy",
      service: "web",
      caFile: other,
      // An Envoy that gets no configuration goes LIVE after 1 s (15 s by default), with none.
      envoyArgs: [
        "--drain-time-s",
        "2",
        "--config-yaml",
        "{dynamic_resources: {cds_config: {initial_fetch_timeout: 1s}, lds_config: {initial_fetch_timeout: 1s}}}",
      ],
    });
    sidecars.push(untrusting);
    await until(
      () => "the untrusting Envoy's handshakes with the control plane to fail",
      async () =>
        ((await untrusting.envoy.stats("cluster.wasmesh-xds.ssl")).get(
          "cluster.wasmesh-xds.ssl.fail_verify_error",
        ) ?? 0) >= 1,
      30_000,
      200,
    );
    expect(await untrusting.envoy.listeners()).toEqual([]);
    expect(plane.xds.status().map((p) => p.nodeId)).not.toContain("web-untrusting-envoy");
  }, 90_000);
});
