// Publishing the edge configuration into a Workers KV key through Cloudflare's REST API.
//
// Cloudflare's API cannot be reached from the test environment, so a local HTTP server stands in
// for it: it records every request (method, path, Authorization, body) and answers as scripted
// (Cloudflare's v4 envelope, a 5xx, a 4xx with Cloudflare's error list, or no answer at all). What it
// checks is our side of the contract: the endpoint and key, the Bearer token, the body being the
// EdgeConfig, publishing only when the version changes, retrying transient failures with backoff.
// The store is real SQLite; the last test runs the whole server (`startControlPlane`) with --edge-kv.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createKvPublisher, type KvPublisherOptions } from "../../control-plane/edge/kv.ts";
import { createEdgeConfigSource } from "../../control-plane/edge/source.ts";
import { parseManifests, type Resource } from "../../control-plane/resources/index.ts";
import { createRevisionSource } from "../../control-plane/revision/index.ts";
import { startControlPlane } from "../../control-plane/server.ts";
import { openSqliteStore, type ResourceStore } from "../../control-plane/store/index.ts";
import { type EdgeConfig, validateEdgeConfig } from "../../schema/edge-config.ts";
import { RELEASE_WASM } from "../support/artifacts.ts";
import { apiFetch, apiOf } from "../support/control-plane.ts";
import { until } from "../support/wait.ts";

const EXAMPLE = readFileSync(new URL("../../deploy/examples/mesh.yaml", import.meta.url), "utf8");
const TOKEN = "test-token-not-a-secret";
const KEY_PATH = "/client/v4/accounts/acct-1/storage/kv/namespaces/ns-1/values/wasmesh-edge-config";

const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Recorded {
  method: string;
  path: string;
  authorization: string | undefined;
  body: string;
}

/** How the fake API answers one request: a status (with a v4 envelope), a raw body, or never. */
type Answer =
  | number
  | { status: number; errors: { code: number; message: string }[] }
  | { status: number; raw: string }
  | "hang";

/** The stand-in for api.cloudflare.com: answers from `script` in turn, then 200. */
async function fakeCloudflare(script: Answer[] = []) {
  const requests: Recorded[] = [];
  const hanging: http.ServerResponse[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      requests.push({
        method: req.method ?? "",
        path: req.url ?? "",
        authorization: req.headers.authorization,
        body: Buffer.concat(chunks).toString("utf8"),
      });
      const answer = script.shift() ?? 200;
      if (answer === "hang") {
        hanging.push(res);
        return;
      }
      const status = typeof answer === "number" ? answer : answer.status;
      if (typeof answer === "object" && "raw" in answer) {
        res.writeHead(status, { "content-type": "text/plain" });
        res.end(answer.raw);
        return;
      }
      const errors = typeof answer === "number" ? [] : answer.errors;
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify({ success: status < 300, errors, messages: [], result: null }));
    });
  });
  server.listen(0, "127.0.0.1");
  await new Promise((resolve) => server.once("listening", resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const res of hanging) res.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  const apiBase = `http://127.0.0.1:${(server.address() as AddressInfo).port}/client/v4`;
  /** The EdgeConfig of each PUT, in order. */
  const published = () => requests.map((r) => JSON.parse(r.body) as EdgeConfig);
  return { requests, apiBase, published, script };
}

function example(): Resource[] {
  const parsed = parseManifests(EXAMPLE);
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
  return parsed.resources;
}

async function put(store: ResourceStore, resources: Resource[]): Promise<void> {
  await store.apply(resources.map((resource) => ({ op: "put", resource })));
}

/** The example's Route with the canary split v1/v2. */
function resplit(v1: number, v2: number): Resource[] {
  return example().flatMap((r) => {
    if (r.kind !== "Route") return [];
    const rules = r.spec.rules.map((rule) =>
      rule.name === "canary"
        ? {
            ...rule,
            destinations: rule.destinations.map((d, i) => ({ ...d, weight: i === 0 ? v1 : v2 })),
          }
        : rule,
    );
    return [{ ...r, spec: { ...r.spec, rules } }];
  });
}

async function setup(script: Answer[] = [], options: Partial<KvPublisherOptions> = {}) {
  const dataDir = mkdtempSync(join(tmpdir(), "wasmesh-edge-kv-"));
  const store = await openSqliteStore({ dataDir });
  cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
  cleanups.push(() => store.close());
  const cloudflare = await fakeCloudflare(script);
  const logs: string[] = [];
  const publisher = createKvPublisher({
    accountId: "acct-1",
    namespaceId: "ns-1",
    token: TOKEN,
    apiBase: cloudflare.apiBase,
    source: createEdgeConfigSource(createRevisionSource({ store })),
    log: (line) => logs.push(line),
    backoff: { initialMs: 5, maxMs: 20 },
    ...options,
  });
  cleanups.push(() => publisher.close());
  return { store, cloudflare, logs, publisher };
}

describe("the Workers KV publisher", () => {
  it("PUTs the configuration with the token, on change only", async () => {
    const { store, cloudflare, publisher } = await setup();
    await put(store, example());
    publisher.notify();
    await publisher.idle();
    expect(cloudflare.requests).toHaveLength(1);
    const [first] = cloudflare.requests;
    expect(first).toMatchObject({ method: "PUT", path: KEY_PATH, authorization: `Bearer ${TOKEN}` });
    const config = cloudflare.published()[0] as EdgeConfig;
    expect(validateEdgeConfig(config).ok).toBe(true);
    expect(publisher.published).toBe(config.version);

    // Nothing new, or a new revision the edge does not see: no request.
    publisher.notify();
    await publisher.idle();
    const reviews = example().find((r) => r.kind === "Service" && r.metadata.name === "reviews") as Resource;
    await put(store, [
      { ...reviews, spec: { ...(reviews.spec as object), description: "changed" } } as Resource,
    ]);
    publisher.notify();
    await publisher.idle();
    expect(cloudflare.requests).toHaveLength(1);

    await put(store, resplit(50, 50));
    publisher.notify();
    await publisher.idle();
    expect(cloudflare.requests).toHaveLength(2);
    const second = cloudflare.published()[1] as EdgeConfig;
    expect(second.version).not.toBe(config.version);
    expect(second.filter.routes?.find((r) => r.name === "reviews/canary")?.destinations).toEqual([
      { cluster: "outbound|reviews|version=v1", weight: 50 },
      { cluster: "outbound|reviews|version=v2", weight: 50 },
    ]);
  });

  it("retries a 5xx, a 429 and an unreachable API with backoff until it succeeds", async () => {
    let refused = false;
    const flaky: typeof fetch = (input, init) => {
      if (!refused) {
        refused = true;
        return Promise.reject(new TypeError("fetch failed", { cause: { code: "ECONNREFUSED" } }));
      }
      return fetch(input, init);
    };
    const { store, cloudflare, logs, publisher } = await setup([503, 429, 502], { fetch: flaky });
    await put(store, example());
    publisher.notify();
    await publisher.idle();
    // The refused connection never reached the server; then 503, 429, 502 and the 200.
    expect(cloudflare.requests).toHaveLength(4);
    expect(new Set(cloudflare.requests.map((r) => r.body)).size).toBe(1);
    expect(publisher.published).toBe(cloudflare.published()[3]?.version);
    expect(logs.filter((l) => l.includes("retrying in")).map((l) => l.replace(/.*: /, ""))).toEqual([
      "ECONNREFUSED",
      "HTTP 503",
      "HTTP 429",
      "HTTP 502",
    ]);
    // Exponential from 5 ms, capped at 20 ms, each delay jittered into its upper half.
    const delays = logs.flatMap((l) => /retrying in (\d+) ms/.exec(l)?.[1] ?? []).map(Number);
    delays.forEach((delay, i) => {
      const full = Math.min(20, 5 * 2 ** i);
      expect(delay).toBeGreaterThanOrEqual(Math.floor(full / 2));
      expect(delay).toBeLessThanOrEqual(full);
    });
    expect(logs.join("\n")).not.toContain(TOKEN);
  });

  it("publishes the newest configuration when it changed during a retry", async () => {
    const { store, cloudflare, publisher } = await setup([503], { backoff: { initialMs: 200, maxMs: 200 } });
    await put(store, example());
    publisher.notify();
    await until("the first PUT", () => cloudflare.requests.length === 1);
    await put(store, resplit(0, 100));
    publisher.notify();
    await publisher.idle();
    expect(cloudflare.requests).toHaveLength(2);
    const canary = cloudflare.published()[1]?.filter.routes?.find((r) => r.name === "reviews/canary");
    expect(canary?.destinations.map((d) => d.weight)).toEqual([0, 100]);
  });

  it("does not retry a 4xx, logs Cloudflare's reason, and tries again on the next change", async () => {
    const { store, cloudflare, logs, publisher } = await setup([
      { status: 403, errors: [{ code: 10000, message: "Authentication error" }] },
    ]);
    await put(store, example());
    publisher.notify();
    await publisher.idle();
    expect(cloudflare.requests).toHaveLength(1);
    expect(publisher.published).toBeUndefined();
    expect(logs).toContainEqual(expect.stringMatching(/not retrying: HTTP 403: 10000 Authentication error$/));

    await put(store, resplit(80, 20));
    publisher.notify();
    await publisher.idle();
    expect(cloudflare.requests).toHaveLength(2);
    expect(publisher.published).toBe(cloudflare.published()[1]?.version);
  });

  it("never logs the token, even when the API's answer echoes it back", async () => {
    // Cloudflare quoting the header it refused, and a proxy in between echoing the request.
    const { store, cloudflare, logs, publisher } = await setup([
      {
        status: 400,
        errors: [{ code: 6003, message: `Invalid request headers: Authorization: Bearer ${TOKEN}` }],
      },
    ]);
    await put(store, example());
    publisher.notify();
    await publisher.idle();
    cloudflare.script.push({ status: 502, raw: `bad gateway; request had authorization: bearer ${TOKEN}` });
    await put(store, resplit(80, 20));
    publisher.notify();
    await publisher.idle();
    expect(cloudflare.requests).toHaveLength(3);
    expect(logs.filter((l) => l.includes("failed"))).toEqual([
      expect.stringMatching(
        /not retrying: HTTP 400: 6003 Invalid request headers: Authorization: Bearer \[redacted\]$/,
      ),
      expect.stringMatching(
        /retrying in \d+ ms: HTTP 502: bad gateway; request had authorization: bearer \[redacted\]$/,
      ),
    ]);
    expect(logs.join("\n")).not.toContain(TOKEN);
  });

  it("publishes nothing while the store cannot be read, and the next change after it recovers", async () => {
    const { store, cloudflare, logs, publisher } = await setup();
    await put(store, example());
    // Every mesh has an edge configuration (a cluster without Workloads is a per-request 503), so
    // only a failing store leaves nothing to publish; the key keeps what it had.
    const list = store.list.bind(store);
    store.list = () => Promise.reject(new Error("disk I/O error"));
    publisher.notify();
    await publisher.idle();
    expect(cloudflare.requests).toHaveLength(0);
    expect(logs).toContainEqual(expect.stringContaining("not publishing"));
    expect(logs).toContainEqual(expect.stringContaining("disk I/O error"));

    store.list = list;
    publisher.notify();
    await publisher.idle();
    expect(cloudflare.requests).toHaveLength(1);
  });

  it("returns from notify() at once and aborts a hanging request on close()", async () => {
    const { store, cloudflare, publisher } = await setup(["hang"]);
    await put(store, example());
    const started = performance.now();
    publisher.notify();
    expect(performance.now() - started).toBeLessThan(50);
    await until("the PUT", () => cloudflare.requests.length === 1);
    await publisher.close();
    expect(publisher.published).toBeUndefined();
  });
});

describe("wasmesh server with --edge-kv-*", () => {
  it("publishes at start and after changes, not after no-op writes, and never holds up a write", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "wasmesh-edge-kv-server-"));
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const cloudflare = await fakeCloudflare([500]);
    const logs: string[] = [];
    const plane = await startControlPlane({
      dataDir,
      httpPort: 0,
      xdsPort: 0,
      builtinModule: RELEASE_WASM,
      edgeKv: {
        accountId: "acct-1",
        namespaceId: "ns-1",
        token: TOKEN,
        apiBase: cloudflare.apiBase,
        backoff: { initialMs: 5, maxMs: 20 },
      },
      log: (line) => logs.push(line),
    });
    cleanups.push(() => plane.close());
    const { api } = apiOf(plane);
    const apply = async (yaml: string) => {
      const response = await apiFetch(`${api}/v1/apply`, {
        method: "POST",
        headers: { "content-type": "application/yaml" },
        body: yaml,
      });
      expect(response.status).toBe(200);
    };

    // At start: the empty mesh's configuration, after one retried 500.
    await until("the first publish", () => cloudflare.requests.length === 2);
    expect(cloudflare.published()[1]).toMatchObject({ filter: {}, origins: {} });
    expect(cloudflare.requests.every((r) => r.authorization === `Bearer ${TOKEN}`)).toBe(true);

    await apply(EXAMPLE);
    await until("the publish of the example", () => cloudflare.requests.length === 3);
    const served = (await (await apiFetch(`${api}/v1/edge/config`)).json()) as EdgeConfig;
    expect(cloudflare.published()[2]).toEqual(served);

    // The same documents again commit nothing; a hanging KV API does not hold up the next write.
    await apply(EXAMPLE);
    cloudflare.script.push("hang");
    const resplitYaml = EXAMPLE.replace("weight: 90", "weight: 70").replace("weight: 10", "weight: 30");
    const started = performance.now();
    await apply(resplitYaml);
    expect(performance.now() - started).toBeLessThan(2_000);
    await until("the publish of the new split", () => cloudflare.requests.length === 4);
    const health = (await (await apiFetch(`${api}/healthz`)).json()) as { revision: number };
    expect(health.revision).toBe(2);
    expect(cloudflare.requests.slice(0, 3).every((r) => r.path === KEY_PATH)).toBe(true);
  });
});
