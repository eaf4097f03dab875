// Issue 10, §2: a route or policy change never touches listeners or clusters and never resets a
// connection. The canary mesh (test/fixtures/canary-mesh.yaml) with every sidecar run by `wasmesh
// dataplane run`; keep-alive clients hold their connections to productpage-1's sidecar open while
// the Route's split changes 100 times in a row (through the API, each push ACKed by every sidecar
// before the next). Observed from outside: the client's own count of answers, failures and
// connections, and each Envoy's counters from its admin.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CanaryMesh, startCanaryMesh } from "../support/canary-mesh.ts";
import { startLoad } from "../support/load.ts";
import { until } from "../support/wait.ts";

const CLIENT = "productpage-1";
const NAMES = [CLIENT, "reviews-v1-1", "reviews-v2-1"];
const PUSHES = 100;
const CONNECTIONS = 8;

let mesh: CanaryMesh;

beforeAll(async () => {
  mesh = await startCanaryMesh();
  await mesh.startAgents([
    { name: CLIENT, service: "productpage" },
    { name: "reviews-v1-1", service: "reviews", labels: { version: "v1" } },
    { name: "reviews-v2-1", service: "reviews", labels: { version: "v2" } },
  ]);
}, 120_000);

afterAll(async () => {
  await mesh?.close();
});

/** Every counter of each sidecar's Envoy, by agent name. */
async function counters(): Promise<Map<string, Map<string, number>>> {
  return new Map(
    await Promise.all(NAMES.map(async (name) => [name, await mesh.agent(name).envoyStats()] as const)),
  );
}

/** Envoy's counters of listener and cluster updates: a push of either moves them. */
const CONFIG_CHANGES = [
  "listener_manager.listener_modified",
  "listener_manager.listener_added",
  "listener_manager.listener_removed",
  "listener_manager.lds.update_attempt",
  "cluster_manager.cluster_modified",
  "cluster_manager.cluster_added",
  "cluster_manager.cluster_removed",
  "cluster_manager.cds.update_attempt",
];
/**
 * Counters of connections closed or requests reset, on either side of each sidecar: its listeners'
 * connections (downstream) and its clusters' (upstream, the client's to the reviews sidecars and
 * each sidecar's to its app and to the agent's xDS proxy). Envoy's admin listener is left out: the
 * test's own reads of the stats come and go on it.
 */
const RESET =
  /^(?!http\.admin\.|listener\.admin\.).*\.(downstream_cx_destroy\w*|downstream_cx_drain_close|downstream_rq_(rx|tx)_reset|upstream_cx_destroy\w*|upstream_cx_connect_fail|upstream_rq_(rx|tx)_reset|upstream_rq_pending_failure_eject)$/;
const ROUTING_RELOADS = "extension_config_discovery.http_filter.wasmesh.outbound.routing.config_reload";

describe("100 consecutive pushes through agent-run sidecars under load", () => {
  it("fail no request, close no connection, and modify no listener or cluster", async () => {
    const { outbound } = await mesh.agent(CLIENT).ports();
    // Keep-alive clients: each of their connections stays open from before the first push to after
    // the last, unless something closes it.
    const load = startLoad({
      url: `http://127.0.0.1:${outbound}/`,
      headers: { host: "reviews" },
      requests: 1_000_000,
      ratePerSecond: 200,
      concurrency: CONNECTIONS,
      timeoutMs: 10_000,
      recordHeader: "x-upstream",
    });
    try {
      await until("100 answers before the pushes", () => load.progress.recorded.length >= 100);
      const before = await counters();
      const connectionsBefore = load.progress.connections;
      const started = performance.now();
      for (let i = 0; i < PUSHES; i++) {
        // Alternating 10/90 and 90/10, each ACKed by all three sidecars before the next.
        const [v1, v2] = i % 2 === 0 ? [10, 90] : [90, 10];
        await mesh.synced(await mesh.split(v1, v2), NAMES);
      }
      const pushMs = performance.now() - started;
      const pushed = load.progress.recorded.length;
      await until("100 answers after the pushes", () => load.progress.recorded.length >= pushed + 100);
      // Read while the load's connections are still open.
      const after = await counters();
      const result = await load.stop();

      const resets: string[] = [];
      for (const name of NAMES) {
        const [b, a] = [before.get(name), after.get(name)] as Map<string, number>[];
        const delta = (key: string) => {
          expect(b?.has(key), `${name}: ${key}`).toBe(true);
          return (a?.get(key) ?? 0) - (b?.get(key) ?? 0);
        };
        // Each push reached the sidecar as ECDS and was applied: one reload of the routing filter
        // each, and nothing else of its configuration moved.
        expect(delta(ROUTING_RELOADS), name).toBe(PUSHES);
        for (const key of CONFIG_CHANGES) expect(delta(key), `${name}: ${key}`).toBe(0);
        const watched = [...(b as Map<string, number>).keys()].filter((key) => RESET.test(key));
        for (const key of watched) expect(delta(key), `${name}: ${key}`).toBe(0);
        resets.push(...watched.map((key) => `${name}: ${key}`));
      }
      // The watched counters include those of the connections the load holds, and of the client's
      // sidecar's to the reviews sidecars.
      expect(resets).toEqual(
        expect.arrayContaining([
          `${CLIENT}: http.outbound.downstream_cx_destroy_remote_active_rq`,
          `${CLIENT}: http.outbound.downstream_cx_destroy_local_active_rq`,
          `${CLIENT}: http.outbound.downstream_rq_rx_reset`,
          `${CLIENT}: cluster.outbound|reviews|version=v1.upstream_cx_destroy_with_active_rq`,
          `${CLIENT}: cluster.outbound|reviews|version=v2.upstream_rq_rx_reset`,
          "reviews-v2-1: http.inbound.downstream_cx_destroy",
        ]),
      );

      // The client's own count: every request answered 2xx, no connection closed under it.
      expect(result.errorMessages).toEqual([]);
      expect(result.errors).toBe(0);
      expect(result.non2xx).toBe(0);
      expect(result.connectionsClosed).toBe(0);
      expect(result.connections).toBeGreaterThanOrEqual(connectionsBefore);
      expect(result.connections).toBeLessThanOrEqual(CONNECTIONS);
      // Both versions answered, as the split swung back and forth.
      expect(result.byUpstream.get("reviews-v1-1")).toBeGreaterThan(0);
      expect(result.byUpstream.get("reviews-v2-1")).toBeGreaterThan(0);
      console.log(
        `${PUSHES} pushes in ${(pushMs / 1000).toFixed(1)} s under load: ${result.ok} answers (v1 ${result.byUpstream.get("reviews-v1-1")}, v2 ${result.byUpstream.get("reviews-v2-1")}), ${result.non2xx} non-2xx, ${result.errors} errors; ${result.connections} keep-alive connections, ${result.connectionsClosed} closed; ${resets.length} reset/close counters unchanged over three sidecars; listener_modified and cluster_modified unchanged; ${PUSHES} routing filter reloads each`,
      );
    } finally {
      await load.stop();
    }
  });
});
