// mTLS between sidecars and access by verified identity (issue 11, §2 and §4), end to end with real
// components: the control plane (startControlPlane: its CA, the CSR endpoint, xDS), and every
// sidecar run by the data-plane agent, which makes its key, gets its certificate against a CSR and
// serves it to its Envoy over SDS. The mesh: web calls api; ratings is denied api by an AccessRule.
//
// First `wasmesh dataplane run` (the real bin) in strict mode: a call through web's sidecar succeeds
// over mTLS and api's app is told web's SPIFFE ID (x-forwarded-client-cert), Envoy's TLS counters
// moving on both ends; plain text to api's inbound port is refused (the handshake fails, the
// connection is closed); a caller that skips its sidecar with a valid mesh certificate of ratings is
// refused by api's sidecar (403 naming the rule), one with web's certificate is served, one with a
// certificate of another CA is refused at the handshake; permissive takes both plain text and mTLS.
// Then the agent library (for its renew() hook): a certificate renewal and a whole CA rotation
// (next, promote, retire) under continuous bounded load lose no request and restart no Envoy.
import { request as httpRequest, type IncomingHttpHeaders } from "node:http";
import { request as httpsRequest } from "node:https";
import type { PeerCertificate } from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ControlPlane, startControlPlane } from "../../control-plane/server.ts";
import { type Agent, startAgent } from "../../dataplane/agent.ts";
import { RELEASE_WASM } from "../support/artifacts.ts";
import { openTestCa, workloadRequest } from "../support/ca.ts";
import { apiFetch, apiOf, dataplaneToken, startSidecar, waitForStatus } from "../support/control-plane.ts";
import { type AgentProcess, startAgentProcess } from "../support/dataplane.ts";
import { findEnvoy, parseStats, statsPath } from "../support/envoy.ts";
import { type LoadResult, type RunningLoad, startLoad } from "../support/load.ts";
import { tempDir } from "../support/temp.ts";
import { startUpstream, type Upstream } from "../support/upstreams.ts";
import { until } from "../support/wait.ts";

const TD = "wasmesh.local";
const spiffe = (service: string) => `spiffe://${TD}/ns/default/sa/${service}`;
const API_VERSION = "wasmesh.io/v1alpha1";
const resource = (kind: string, name: string, spec: unknown) => ({
  apiVersion: API_VERSION,
  kind,
  metadata: { name },
  spec,
});
const service = (name: string) =>
  resource("Service", name, { ports: [{ name: "http", port: 8080, protocol: "http" }] });
const policy = (mode: string) =>
  resource("MeshPolicy", "default", { defaultAccess: "allow", mtls: { mode } });

let plane: ControlPlane;
let api: string;
const apps = new Map<string, Upstream>();
const tokens = new Map<string, string>();

async function put(doc: { kind: string; metadata: { name: string } }): Promise<number> {
  const plural = doc.kind === "MeshPolicy" ? "meshpolicies" : `${doc.kind.toLowerCase()}s`;
  const response = await apiFetch(`${api}/v1/${plural}/${doc.metadata.name}`, {
    method: "PUT",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(doc),
  });
  const body = (await response.json()) as { metadata?: { resourceVersion?: string } };
  if (response.status >= 300)
    throw new Error(`PUT ${doc.kind}/${doc.metadata.name}: ${JSON.stringify(body)}`);
  return Number(body.metadata?.resourceVersion);
}

async function currentRevision(): Promise<number> {
  return ((await (await apiFetch(`${api}/healthz`)).json()) as { revision: number }).revision;
}

/** Waits until every named proxy has ACKed `revision`. */
async function synced(revision: number, nodeIds: string[]): Promise<void> {
  await waitForStatus(
    api,
    (proxies) =>
      nodeIds.every((id) => Number(proxies.find((p) => p.nodeId === id)?.syncedVersion ?? -1) >= revision),
    30_000,
  );
}

async function appOf(name: string): Promise<Upstream> {
  let app = apps.get(name);
  if (app === undefined) {
    app = await startUpstream({ name });
    apps.set(name, app);
  }
  return app;
}

async function tokenOf(svc: string): Promise<string> {
  let token = tokens.get(svc);
  if (token === undefined) {
    token = await dataplaneToken(api, svc);
    tokens.set(svc, token);
  }
  return token;
}

/** A certificate of `svc` from the mesh CA, through the API as an admin asks for one. */
async function meshCertificate(svc: string): Promise<{ key: string; cert: string; bundle: string }> {
  const request = await workloadRequest();
  const response = await apiFetch(`${api}/v1/certificates?service=${svc}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ csr: request.csr }),
  });
  const body = (await response.json()) as { certificateChain: string; trustBundle: string };
  if (response.status !== 200) throw new Error(`POST /v1/certificates: ${JSON.stringify(body)}`);
  return { key: request.privateKeyPem, cert: body.certificateChain, bundle: body.trustBundle };
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  /** The server's certificate, for an mTLS call. */
  peer?: PeerCertificate;
}

/** A plain-text request straight to a port (an inbound listener, bypassing the caller's sidecar). */
function plainCall(port: number, path = "/"): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: "127.0.0.1", port, path, headers: { host: "api" }, agent: false },
      (res) => {
        let body = "";
        res.on("data", (chunk: Buffer) => {
          body += chunk.toString("utf8");
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on("error", reject);
    req.end();
  });
}

/** An mTLS request straight to an inbound listener with a client certificate, as a caller skipping its sidecar. */
function mtlsCall(port: number, credentials: { key: string; cert: string; bundle: string }): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: "127.0.0.1",
        port,
        path: "/direct",
        headers: { host: "api" },
        agent: false,
        key: credentials.key,
        cert: credentials.cert,
        ca: credentials.bundle,
        // The server's identity is its SPIFFE ID, not a host name: checked below.
        checkServerIdentity: () => undefined,
      },
      (res) => {
        const peer = (res.socket as import("node:tls").TLSSocket).getPeerCertificate();
        let body = "";
        res.on("data", (chunk: Buffer) => {
          body += chunk.toString("utf8");
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, peer }));
      },
    );
    req.on("error", reject);
    req.end();
  });
}

/** Counts of a load, for the test output. */
const tally = (name: string, result: LoadResult) =>
  `${name}: ${result.ok + result.non2xx + result.errors} requests tried, ${result.non2xx + result.errors} failed` +
  (result.errorMessages.length > 0 ? ` (${result.errorMessages.slice(0, 3).join("; ")})` : "");

beforeAll(async () => {
  plane = await startControlPlane({
    dataDir: tempDir("cp"),
    httpPort: 0,
    xdsPort: 0,
    builtinModule: RELEASE_WASM,
    log: () => {},
    ca: { env: {} },
  });
  api = apiOf(plane).api;
}, 60_000);

afterAll(async () => {
  await plane?.close();
  await Promise.all([...apps.values()].map((app) => app.close()));
});

describe("mTLS between sidecars run by wasmesh dataplane run", () => {
  const agents = new Map<string, AgentProcess>();
  const agent = (name: string) => agents.get(name) as AgentProcess;

  async function run(name: string, svc: string): Promise<void> {
    const app = await appOf(name);
    agents.set(
      name,
      startAgentProcess({
        token: await tokenOf(svc),
        args: [
          ...["--name", name, "--service", svc, "--app-port", String(app.port)],
          ...["--cp", api, "--xds", `127.0.0.1:${plane.xdsPort}`],
        ],
      }),
    );
  }

  beforeAll(async () => {
    for (const svc of ["web", "api", "ratings"]) await put(service(svc));
    await put(
      resource("AccessRule", "no-ratings-to-api", { source: "ratings", destination: "api", action: "deny" }),
    );
    await put(policy("strict"));
    for (const [name, svc] of [
      ["web-1", "web"],
      ["api-1", "api"],
      ["ratings-1", "ratings"],
    ] as const) {
      await run(name, svc);
    }
    await Promise.all([...agents.values()].map((a) => a.waitReady(90_000)));
    // Each agent registers its Workload once ready: every sidecar must have all three.
    await until("the three workloads registered", async () => {
      for (const name of agents.keys())
        if ((await apiFetch(`${api}/v1/workloads/${name}`)).status !== 200) return false;
      return true;
    });
    await synced(await currentRevision(), ["web-1", "api-1", "ratings-1"]);
  }, 180_000);

  afterAll(async () => {
    await Promise.all([...agents.values()].map((a) => a.stop()));
  });

  it("strict: a call through the caller's sidecar is mTLS, and the app is told the caller's SPIFFE ID", async () => {
    const web = await agent("web-1").ports();
    const apiPorts = await agent("api-1").ports();
    const app = await appOf("api-1");
    app.reset();
    const answer = await plainCall(web.outbound, "/through-the-mesh");
    expect(answer.status, answer.body).toBe(200);
    expect(answer.headers["x-upstream"]).toBe("api-1");
    const seen = app.requests.find((r) => r.path === "/through-the-mesh");
    // Envoy's x-forwarded-client-cert: By = the server's identity, URI = the verified caller's.
    expect(seen?.headers["x-forwarded-client-cert"]).toMatch(
      new RegExp(`^By=${spiffe("api")};Hash=[0-9a-f]{64};URI=${spiffe("web")}$`),
    );
    const clientStats = await agent("web-1").envoyStats("ssl");
    expect(clientStats.get("cluster.outbound|api.ssl.handshake")).toBeGreaterThan(0);
    const serverStats = await agent("api-1").envoyStats("ssl");
    expect(serverStats.get(`listener.0.0.0.0_${apiPorts.inbound}.ssl.handshake`)).toBeGreaterThan(0);
    console.log(
      `strict: web -> api through the sidecars: ${answer.status}; app saw ${seen?.headers["x-forwarded-client-cert"]}`,
    );
  });

  it("strict: plain text straight to the inbound port is refused, the connection closed in the handshake", async () => {
    const { inbound } = await agent("api-1").ports();
    const app = await appOf("api-1");
    const before = app.count;
    const errorsBefore =
      (await agent("api-1").envoyStats("ssl.connection_error")).get(
        `listener.0.0.0.0_${inbound}.ssl.connection_error`,
      ) ?? 0;
    let refused = 0;
    for (let i = 0; i < 5; i++) {
      await expect(plainCall(inbound, "/plain")).rejects.toThrow(/socket hang up|ECONNRESET/);
      refused++;
    }
    expect(app.count).toBe(before);
    const errorsAfter =
      (await agent("api-1").envoyStats("ssl.connection_error")).get(
        `listener.0.0.0.0_${inbound}.ssl.connection_error`,
      ) ?? 0;
    expect(errorsAfter - errorsBefore).toBe(5);
    console.log(
      `strict: plain text to api's inbound port: 5 tried, ${refused} refused (connection closed in the TLS handshake)`,
    );
  });

  it("a deny rule holds against a caller that skips its sidecar with a valid mesh certificate", async () => {
    const { inbound } = await agent("api-1").ports();
    const app = await appOf("api-1");
    app.reset();
    // Through ratings' own sidecar: refused early, at the source.
    const ratings = await agent("ratings-1").ports();
    const early = await plainCall(ratings.outbound, "/from-ratings");
    expect(early.status).toBe(403);
    expect(early.headers["x-wasmesh-denied"]).toBe("no-ratings-to-api");
    // Skipping it, with a certificate the mesh CA issued to ratings: refused by api's sidecar.
    const asRatings = await meshCertificate("ratings");
    const denied = await mtlsCall(inbound, asRatings);
    expect(denied.status).toBe(403);
    expect(denied.body).toContain("rbac_access_denied_matched_policy[no-ratings-to-api]");
    // The server proved itself as api.
    expect(denied.peer?.subjectaltname).toBe(`URI:${spiffe("api")}`);
    // The same call with web's certificate is served: it is the identity that is refused.
    const asWeb = await mtlsCall(inbound, await meshCertificate("web"));
    expect(asWeb.status).toBe(200);
    expect(app.requests.map((r) => r.path)).toEqual(["/direct"]);
    expect(app.requests[0]?.headers["x-forwarded-client-cert"]).toContain(`URI=${spiffe("web")}`);
    // A certificate for web from another CA: refused in the handshake.
    const other = await openTestCa({ dataDir: tempDir("other-ca") });
    try {
      const request = await workloadRequest();
      const issued = await other.ca.issue({
        csr: request.csr,
        identity: { namespace: "default", serviceAccount: "web" },
      });
      await expect(
        mtlsCall(inbound, {
          key: request.privateKeyPem,
          cert: issued.certificateChain,
          bundle: asRatings.bundle,
        }),
      ).rejects.toThrow(/socket hang up|ECONNRESET|alert|certificate/i);
    } finally {
      await other.close();
    }
    const rbac = await agent("api-1").envoyStats("rbac");
    expect(
      rbac.get("extension_config_discovery.http_filter.wasmesh.inbound.access.rbac.rbac.denied"),
    ).toBeGreaterThanOrEqual(1);
    console.log(
      "deny rule, caller skipping its sidecar: ratings' certificate 403 (rule no-ratings-to-api), web's 200, another CA's refused in the handshake",
    );
  });

  it("a sidecar from wasmesh bootstrap (no agent, so no certificate) is refused by a strict destination, and served by a permissive one", async () => {
    const app = await appOf("api-1");
    const sidecar = await startSidecar({
      controlPlane: { api, xds: `127.0.0.1:${plane.xdsPort}` },
      nodeId: "web-bootstrap",
      service: "web",
    });
    try {
      await synced(await currentRevision(), ["web-bootstrap", "api-1"]);
      const before = app.count;
      let refused = 0;
      for (let i = 0; i < 5; i++) {
        const answer = await plainCall(sidecar.outboundPort, "/from-bootstrap");
        // Its Envoy speaks plain text to api's inbound listener, which takes mTLS only: the
        // connection ends in the handshake and the caller's Envoy answers 503.
        expect(answer.status, answer.body).toBe(503);
        refused++;
      }
      expect(app.count).toBe(before);

      const revision = await put(policy("permissive"));
      await synced(revision, ["web-bootstrap", "api-1"]);
      app.reset();
      await until("api's inbound listener taking the bootstrap sidecar's plain text", async () => {
        return (await plainCall(sidecar.outboundPort, "/from-bootstrap")).status === 200;
      });
      // Plain text: the app learns nothing of the caller's identity.
      expect(app.requests.at(-1)?.headers["x-forwarded-client-cert"]).toBeUndefined();
      console.log(
        `a bootstrap sidecar (no certificate) calling api: strict 5 tried, ${refused} refused (503), app reached 0 times; permissive: served`,
      );
    } finally {
      await put(policy("strict"));
      await sidecar.envoy.stop();
    }
  });

  it("permissive: the inbound port takes plain text and mTLS alike", async () => {
    const revision = await put(policy("permissive"));
    await synced(revision, ["web-1", "api-1", "ratings-1"]);
    const { inbound } = await agent("api-1").ports();
    const web = await agent("web-1").ports();
    const app = await appOf("api-1");
    app.reset();
    await until("api's inbound listener taking plain text", async () => {
      try {
        return (await plainCall(inbound, "/plain")).status === 200;
      } catch {
        return false;
      }
    });
    const plain = app.requests.find((r) => r.path === "/plain");
    // Plain text tells the app nothing about the caller, and a forged header does not get through.
    expect(plain?.headers["x-forwarded-client-cert"]).toBeUndefined();
    const mesh = await plainCall(web.outbound, "/mtls");
    expect(mesh.status).toBe(200);
    expect(app.requests.find((r) => r.path === "/mtls")?.headers["x-forwarded-client-cert"]).toContain(
      `URI=${spiffe("web")}`,
    );
    // The destination still checks identities on its mTLS chain.
    const denied = await mtlsCall(inbound, await meshCertificate("ratings"));
    expect(denied.status).toBe(403);
    await put(policy("strict"));
  });
});

describe("certificate renewal and CA rotation under load (the agent library)", () => {
  const agents = new Map<string, { agent: Agent; lines: string[] }>();

  async function library(name: string, svc: string): Promise<Agent> {
    const app = await appOf(name);
    const lines: string[] = [];
    const agent = await startAgent({
      name,
      service: svc,
      labels: {},
      appPort: app.port,
      address: "127.0.0.1",
      zone: undefined,
      ports: {},
      api,
      token: await tokenOf(svc),
      xds: `127.0.0.1:${plane.xdsPort}`,
      envoyBin: findEnvoy(),
      dataDir: tempDir(`agent-${name}`),
      leaseSeconds: 30,
      drainSeconds: 0,
      envoyArgs: ["--concurrency", "1", "--log-level", "warning"],
      // Short-lived certificates, renewed by the test through renew().
      certValiditySeconds: 600,
      bundleRefreshMs: 500,
      log: (line) => lines.push(line),
      envoyOutput: () => {},
    });
    agents.set(name, { agent, lines });
    return agent;
  }

  const admin = async (name: string, path: string) => {
    const { ports } = (agents.get(name) as { agent: Agent }).agent;
    return (await fetch(`http://127.0.0.1:${ports.admin}${path}`)).text();
  };
  /** The serial numbers of the certificates Envoy uses now (admin /certs), lower-case hex. */
  const servingSerials = async (name: string) => {
    const certs = JSON.parse(await admin(name, "/certs")) as {
      certificates: { cert_chain: { serial_number: string }[] }[];
    };
    return new Set(certs.certificates.flatMap((c) => c.cert_chain.map((x) => x.serial_number.toLowerCase())));
  };
  const envoyPids = (name: string) =>
    [...(agents.get(name)?.lines.join("\n") ?? "").matchAll(/Envoy started (?:again )?\(pid (\d+)\)/g)].map(
      (m) => m[1],
    );
  const stat = async (name: string, key: string) =>
    parseStats(await admin(name, statsPath(key))).get(key) ?? 0;

  let load: RunningLoad;
  const ready = async (name: string) =>
    until(
      `${name} ready`,
      async () => {
        const { ports } = (agents.get(name) as { agent: Agent }).agent;
        return (await fetch(`http://127.0.0.1:${ports.ready}/ready`)).status === 200;
      },
      90_000,
    );

  beforeAll(async () => {
    await put(service("shop"));
    await put(service("stock"));
    await library("shop-1", "shop");
    await library("stock-1", "stock");
    await Promise.all([ready("shop-1"), ready("stock-1")]);
    await until(
      "both workloads registered",
      async () => (await apiFetch(`${api}/v1/workloads/stock-1`)).status === 200,
    );
    await synced(await currentRevision(), ["shop-1", "stock-1"]);
  }, 180_000);

  afterAll(async () => {
    await load?.stop();
    await Promise.all([...agents.values()].map(({ agent }) => agent.shutdown()));
  });

  const startShopLoad = async () => {
    const { outbound } = (agents.get("shop-1") as { agent: Agent }).agent.ports;
    load = startLoad({
      url: `http://127.0.0.1:${outbound}/`,
      headers: { host: "stock" },
      requests: 1_000_000,
      ratePerSecond: 100,
      concurrency: 4,
      timeoutMs: 10_000,
    });
    await until("load flowing", () => load.progress.ok >= 20);
  };

  it("renews both certificates under load: Envoy serves the new ones, restarts nothing, loses no request", async () => {
    await startShopLoad();
    const shop = (agents.get("shop-1") as { agent: Agent }).agent;
    const stock = (agents.get("stock-1") as { agent: Agent }).agent;
    const pids = { shop: envoyPids("shop-1"), stock: envoyPids("stock-1") };
    const updatesBefore = await stat(
      "stock-1",
      `listener.0.0.0.0_${stock.ports.inbound}.server_ssl_socket_factory.ssl_context_update_by_sds`,
    );
    const serials = [
      shop.identity.certificates.current?.serialNumber,
      stock.identity.certificates.current?.serialNumber,
    ];

    await shop.identity.certificates.renew();
    await stock.identity.certificates.renew();
    const renewed = [
      shop.identity.certificates.current?.serialNumber,
      stock.identity.certificates.current?.serialNumber,
    ];
    expect(renewed[0]).not.toBe(serials[0]);
    expect(renewed[1]).not.toBe(serials[1]);
    await until(
      "Envoy serving the renewed certificates",
      async () =>
        (await servingSerials("shop-1")).has((renewed[0] ?? "").toLowerCase()) &&
        (await servingSerials("stock-1")).has((renewed[1] ?? "").toLowerCase()),
    );
    // A new connection is handed the renewed certificate.
    const fresh = await mtlsCall(stock.ports.inbound, await meshCertificate("shop"));
    expect(fresh.status).toBe(200);
    expect(fresh.peer?.serialNumber.toLowerCase()).toBe(renewed[1]?.toLowerCase());
    const okAtRenewal = load.progress.ok;
    await until("traffic after the renewal", () => load.progress.ok >= okAtRenewal + 300, 20_000);
    const result = await load.stop();
    console.log(tally("renewal under load", result));
    expect(result.errors).toBe(0);
    expect(result.non2xx).toBe(0);
    expect(
      await stat(
        "stock-1",
        `listener.0.0.0.0_${stock.ports.inbound}.server_ssl_socket_factory.ssl_context_update_by_sds`,
      ),
    ).toBeGreaterThan(updatesBefore);
    // The same Envoys: no restart.
    expect(envoyPids("shop-1")).toEqual(pids.shop);
    expect(envoyPids("stock-1")).toEqual(pids.stock);
    expect(pids.shop).toHaveLength(1);
  });

  it("rotates the CA (next, promote, retire) under load without losing a request", async () => {
    const ca = plane.ca as NonNullable<ControlPlane["ca"]>;
    await startShopLoad();
    const all = [...agents.values()].map(({ agent }) => agent);
    const bundleEverywhere = async (what: string) => {
      const { version } = await ca.trustBundle();
      await until(`${what}: every agent's bundle at ${version}`, () =>
        all.every((a) => a.identity.certificates.bundleVersion === version),
      );
    };
    const oldRoot = (await ca.status()).authorities.find((a) => a.status === "active");

    // 1. The next root, trusted everywhere before it signs anything.
    await ca.addNext();
    await bundleEverywhere("next root added");
    // 2. It signs from now on; every workload renews onto it.
    await ca.promote();
    await bundleEverywhere("promoted");
    for (const a of all) await a.identity.certificates.renew();
    const newRoot = (await ca.status()).authorities.find((a) => a.status === "active");
    expect(newRoot?.id).not.toBe(oldRoot?.id);
    for (const a of all) expect(a.identity.certificates.current?.issuer).toBe(newRoot?.subject);
    await until("Envoy serving the new root's certificates", async () => {
      for (const [name, { agent }] of agents) {
        if (
          !(await servingSerials(name)).has(
            (agent.identity.certificates.current?.serialNumber ?? "").toLowerCase(),
          )
        )
          return false;
      }
      return true;
    });
    // 3. The old root retires from the bundle (forced: its certificates would live 10 more minutes,
    // and none is in use any more).
    await ca.remove(oldRoot?.id as string, { force: true });
    await bundleEverywhere("old root removed");
    const okAfter = load.progress.ok;
    await until("traffic after the rotation", () => load.progress.ok >= okAfter + 300, 20_000);
    // A new connection now verifies with the new bundle alone, both ways.
    const stock = (agents.get("stock-1") as { agent: Agent }).agent;
    const direct = await mtlsCall(stock.ports.inbound, await meshCertificate("shop"));
    expect(direct.status).toBe(200);
    const result = await load.stop();
    console.log(tally("CA rotation under load", result));
    expect(result.errors).toBe(0);
    expect(result.non2xx).toBe(0);
    expect((await ca.trustBundle()).pem.match(/BEGIN CERTIFICATE/g)).toHaveLength(1);
  });
});
