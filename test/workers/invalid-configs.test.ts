// test/conformance/invalid-configs.json through the edge worker (real workerd through miniflare,
// the bundle that ships): each case is served as the filter of an EdgeConfig, by a stand-in for the
// control plane's endpoint and from a KV namespace. The worker refuses every one of them, saying
// why (its schema, the module, or the body itself), and keeps serving its last good configuration:
// every request sent meanwhile reaches the good configuration's upstream. A good configuration
// afterwards is taken, so the worker was refusing, not stuck.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { INVALID_CONFIG_CASES, type InvalidConfigCase, invalidConfigBytes } from "../support/conformance.ts";
import type { HttpResponse } from "../support/mesh-envoy.ts";
import { startUpstream, type Upstream } from "../support/upstreams.ts";
import { until } from "../support/wait.ts";
import {
  type ConfigServer,
  type EdgeWorker,
  edgeConfig,
  startConfigServer,
  startEdgeWorker,
} from "./harness.ts";

const REFRESH_MS = 100;
const cases = INVALID_CONFIG_CASES;

let v1: Upstream;
let v2: Upstream;
let control: ConfigServer;
let edge: EdgeWorker | undefined;

beforeAll(async () => {
  [v1, v2] = await Promise.all([startUpstream({ name: "v1" }), startUpstream({ name: "v2" })]);
  control = await startConfigServer();
});
afterAll(async () => {
  await Promise.all([v1?.close(), v2?.close(), control?.close()]);
});
afterEach(async () => {
  await edge?.close();
  edge = undefined;
});

const origins = () => ({ v1: [v1.url], v2: [v2.url] });
const allTo = (version: string, cluster: "v1" | "v2") =>
  edgeConfig(version, { routes: [{ name: "all", destinations: [{ cluster }] }] }, origins());

/**
 * An EdgeConfig document whose filter is the case's configuration, as bytes (raw cases as they
 * are). Its origins send every cluster to v2: were the worker to take it, requests would show it.
 */
function document(c: InvalidConfigCase, version: string): Uint8Array {
  const filter = invalidConfigBytes(c);
  return Buffer.concat([
    Buffer.from(`{"version":"${version}","filter":`),
    filter,
    Buffer.from(`,"origins":${JSON.stringify({ v1: [v2.url], v2: [v2.url] })}}`),
  ]);
}

const literally = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** What the worker says when it refuses the case, after "keeping configuration good: ". */
function refusal(c: InvalidConfigCase, version: string): RegExp {
  if (c.rawBase64 !== undefined) return /served a body that is not UTF-8/;
  if (c.raw !== undefined && c.path === "(root)" && c.reason === undefined) return /served invalid JSON/;
  if (c.by === "both") {
    // The edge configuration's schema, which holds the filter's.
    const field = c.path === "(root)" ? "filter" : `filter.${c.path}`;
    return new RegExp(`served an invalid edge configuration: .*${literally(field)}: `);
  }
  return new RegExp(
    `the module refused configuration ${literally(version)}: wasmesh: invalid plugin configuration: ` +
      `${literally(c.path)}: .*${literally(c.reason ?? "")}`,
  );
}

const upstreamOf = (response: HttpResponse) =>
  response.headers.get("x-upstream") ?? `status ${response.status}`;

/**
 * Offers each case in turn through `offer`; for each, requests keep reaching v1 (the good
 * configuration) until the worker has logged its refusal of that case.
 */
async function refusesEvery(worker: EdgeWorker, offer: (body: Uint8Array | string) => Promise<void>) {
  await offer(JSON.stringify(allTo("good", "v1")));
  await until("the good configuration", async () => upstreamOf(await worker.send({ path: "/" })) === "v1");
  for (const [i, c] of cases.entries()) {
    const version = `bad-${i}`;
    const from = worker.logs.length;
    const expected = refusal(c, version);
    await offer(document(c, version));
    await until(
      () =>
        `the worker to refuse "${c.name}" (${expected}); it logged:\n${worker.logs.slice(from).join("\n")}`,
      async () => {
        const response = await worker.send({ path: "/" });
        expect(upstreamOf(response), `${c.name}: ${response.body}`).toBe("v1");
        return worker.logs
          .slice(from)
          .some((line) => line.includes("keeping configuration good: ") && expected.test(line));
      },
    );
  }
  // Still alive: a good configuration is taken.
  await offer(JSON.stringify(allTo("better", "v2")));
  await until("the worker to follow", async () => upstreamOf(await worker.send({ path: "/" })) === "v2");
  expect(worker.logs.filter((line) => line.includes("serving configuration"))).toHaveLength(2);
}

describe("every invalid configuration, refused by the edge worker", () => {
  it("from the control plane's endpoint", async () => {
    edge = await startEdgeWorker({
      vars: { CONFIG_REFRESH_MS: String(REFRESH_MS), CONFIG_URL: control.url },
    });
    const worker = edge;
    await refusesEvery(worker, async (body) => control.serveRaw(200, body));
  }, 120_000);

  it("from a KV namespace", async () => {
    edge = await startEdgeWorker({
      vars: { CONFIG_REFRESH_MS: String(REFRESH_MS), CONFIG_SOURCE: "kv", CONFIG_KEY: "edge" },
      kv: true,
    });
    const worker = edge;
    await refusesEvery(worker, (body) => worker.putKv("edge", body));
  }, 120_000);
});
