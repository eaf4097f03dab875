// npm run bench:mtls — what the two sidecars of a call cost, with mTLS and without, against a direct
// call, written to bench-results/mtls.{json,md} (issue 11, §2: under 0.2 ms added at p90 for the two
// hops with mTLS; Istio 1.20 publishes 0.228 ms for its two proxies).
//
// One control plane (in this process, idle while measuring) and four sidecars, each run by the
// data-plane agent library as `wasmesh dataplane run` runs it (its Envoy with --concurrency 1, the
// routing Wasm filter on the outbound listener, certificates over SDS):
//   mtls    client-m → server-m, mTLS (MeshPolicy strict; the server's RBAC filter runs, with no rule)
//   plain   client-p → server-p, plain text (server-p's own mode: disabled)
//   envoy   two bare Envoys chained (static listeners and clusters, no Wasm, no TLS, --concurrency 1):
//           the floor two proxies cost on this machine, whatever the mesh puts in them
//   direct  the same app, called straight
// The apps are one loopback HTTP server answering a few bytes. The load is open-loop at a bounded
// rate (BENCH_RATE requests/s, default 500, for BENCH_SECONDS, default 10; keep-alive connections,
// up to BENCH_CONCURRENCY in flight), and every latency is kept, so p50/p90/p99 are exact. Setups run
// interleaved, round by round (BENCH_ROUNDS, default 3), after a warm-up; the "added" figures pair a
// setup with the direct call within each round (setup minus direct), then take the median, so that a
// round in which the machine was busy moves both sides.
import { mkdirSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { type ControlPlane, startControlPlane } from "../../control-plane/server.ts";
import { type Agent, startAgent } from "../../dataplane/agent.ts";
import { RELEASE_WASM } from "../support/artifacts.ts";
import { BENCH_RESULTS_DIR, median, percentile } from "../support/bench.ts";
import { apiFetch, apiOf, dataplaneToken, waitForStatus } from "../support/control-plane.ts";
import {
  type EnvoyProcess,
  findEnvoy,
  freePort,
  httpListener,
  loopbackCluster,
  startEnvoy,
  staticBootstrap,
} from "../support/envoy.ts";
import { type LoadResult, runLoad } from "../support/load.ts";
import { removeTempDirs, tempDir } from "../support/temp.ts";
import { startUpstream, type Upstream } from "../support/upstreams.ts";
import { until } from "../support/wait.ts";

const RATE = Number(process.env.BENCH_RATE ?? 500);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 8);
const GOAL_ADDED_P90_MS = 0.2;

type Setup = "direct" | "envoy" | "plain" | "mtls";
const SETUPS: readonly Setup[] = ["direct", "envoy", "plain", "mtls"];
const LABELS: Record<Setup, string> = {
  direct: "direct call",
  envoy: "two bare Envoys (no Wasm, no TLS)",
  plain: "two sidecars, plain text",
  mtls: "two sidecars, mTLS",
};

interface Figures {
  p50: number;
  p90: number;
  p99: number;
  requests: number;
  failed: number;
}

const resource = (kind: string, name: string, spec: unknown) => ({
  apiVersion: "wasmesh.io/v1alpha1",
  kind,
  metadata: { name },
  spec,
});

function figures(result: LoadResult): Figures {
  const sorted = [...result.latenciesMs].sort((a, b) => a - b);
  return {
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    requests: result.ok + result.non2xx + result.errors,
    failed: result.non2xx + result.errors,
  };
}

async function main(): Promise<void> {
  const plane: ControlPlane = await startControlPlane({
    dataDir: tempDir("bench-mtls-cp"),
    httpPort: 0,
    xdsPort: 0,
    builtinModule: RELEASE_WASM,
    log: () => {},
    ca: { env: {} },
  });
  const { api } = apiOf(plane);
  const app: Upstream = await startUpstream({ name: "app" });
  const agents: Agent[] = [];
  const bareEnvoys: EnvoyProcess[] = [];
  try {
    const put = async (doc: ReturnType<typeof resource>) => {
      const plural = doc.kind === "MeshPolicy" ? "meshpolicies" : `${doc.kind.toLowerCase()}s`;
      const response = await apiFetch(`${api}/v1/${plural}/${doc.metadata.name}`, {
        method: "PUT",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(doc),
      });
      if (response.status >= 300) throw new Error(`PUT ${doc.kind}: ${await response.text()}`);
    };
    const http = (mtls?: string) => ({
      ports: [{ name: "http", port: 8080, protocol: "http" }],
      ...(mtls ? { mtls: { mode: mtls } } : {}),
    });
    await put(resource("MeshPolicy", "default", { defaultAccess: "allow", mtls: { mode: "strict" } }));
    await put(resource("Service", "client-m", http()));
    await put(resource("Service", "server-m", http()));
    await put(resource("Service", "client-p", http("disabled")));
    await put(resource("Service", "server-p", http("disabled")));

    const start = async (service: string) => {
      const agent = await startAgent({
        name: `${service}-1`,
        service,
        labels: {},
        appPort: app.port,
        address: "127.0.0.1",
        zone: undefined,
        ports: {},
        api,
        token: await dataplaneToken(api, service),
        xds: `127.0.0.1:${plane.xdsPort}`,
        envoyBin: findEnvoy(),
        dataDir: tempDir(`bench-mtls-${service}`),
        leaseSeconds: 60,
        drainSeconds: 0,
        envoyArgs: ["--concurrency", "1", "--log-level", "error"],
        log: () => {},
        envoyOutput: () => {},
      });
      agents.push(agent);
      await until(
        `${service} ready`,
        async () => {
          const response = await fetch(`http://127.0.0.1:${agent.ports.ready}/ready`);
          return response.status === 200;
        },
        90_000,
      );
      return agent;
    };
    const [clientM, , clientP] = [
      await start("client-m"),
      await start("server-m"),
      await start("client-p"),
      await start("server-p"),
    ];
    await until("the four workloads registered", async () => {
      const body = (await (await apiFetch(`${api}/v1/workloads`)).json()) as { items: unknown[] };
      return body.items.length === 4;
    });
    const revision = ((await (await apiFetch(`${api}/healthz`)).json()) as { revision: number }).revision;
    await waitForStatus(
      api,
      (proxies) => proxies.length === 4 && proxies.every((p) => Number(p.syncedVersion ?? -1) >= revision),
      30_000,
    );

    // The floor: two Envoys with a listener and a cluster each, the second in front of the app.
    const bare = async (name: string, listenPort: number, upstreamPort: number) => {
      const envoy = await startEnvoy({
        name,
        logLevel: "error",
        bootstrap: staticBootstrap({
          adminPort: await freePort(),
          listeners: [
            httpListener({
              name,
              port: listenPort,
              routeConfig: {
                name,
                virtual_hosts: [
                  { name, domains: ["*"], routes: [{ match: { prefix: "/" }, route: { cluster: "next" } }] },
                ],
              },
            }),
          ],
          clusters: [loopbackCluster("next", upstreamPort)],
        }),
      });
      bareEnvoys.push(envoy);
    };
    const [firstPort, secondPort] = [await freePort(), await freePort()];
    await bare("bare-server", secondPort, app.port);
    await bare("bare-client", firstPort, secondPort);

    const target: Record<Setup, { url: string; host: string }> = {
      direct: { url: `http://127.0.0.1:${app.port}/`, host: "app" },
      envoy: { url: `http://127.0.0.1:${firstPort}/`, host: "app" },
      plain: { url: `http://127.0.0.1:${clientP?.ports.outbound}/`, host: "server-p" },
      mtls: { url: `http://127.0.0.1:${clientM?.ports.outbound}/`, host: "server-m" },
    };
    const measure = (setup: Setup, seconds: number) =>
      runLoad({
        url: target[setup].url,
        headers: { host: target[setup].host },
        requests: Math.round(RATE * seconds),
        ratePerSecond: RATE,
        concurrency: CONCURRENCY,
        timeoutMs: 10_000,
      });

    // The calls really take the paths named: the mTLS one is mTLS, the plain one is not.
    const checkPath = async (setup: Setup) => {
      app.reset();
      const result = await measure(setup, 0.2);
      if (result.ok !== result.latenciesMs.length)
        throw new Error(`${setup}: ${result.errorMessages.join("; ")}`);
      return app.requests[0]?.headers["x-forwarded-client-cert"];
    };
    if (!String(await checkPath("mtls")).includes("URI=spiffe://"))
      throw new Error("the mtls setup is not mTLS");
    if ((await checkPath("plain")) !== undefined)
      throw new Error("the plain setup carries a client certificate");

    console.log(`warm-up: ${SETUPS.join(", ")} for 2 s each`);
    for (const setup of SETUPS) await measure(setup, 2);

    const rounds: Record<Setup, Figures>[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      const row = {} as Record<Setup, Figures>;
      for (const setup of SETUPS) {
        row[setup] = figures(await measure(setup, SECONDS));
        const f = row[setup];
        console.log(
          `round ${round} ${setup}: p50 ${f.p50.toFixed(3)} p90 ${f.p90.toFixed(3)} p99 ${f.p99.toFixed(3)} ms (${f.requests} requests, ${f.failed} failed)`,
        );
      }
      rounds.push(row);
    }

    const med = (setup: Setup, p: "p50" | "p90" | "p99") => median(rounds.map((r) => r[setup][p]));
    const added = (setup: Setup, p: "p50" | "p90" | "p99", base: Setup = "direct") =>
      median(rounds.map((r) => r[setup][p] - r[base][p]));
    const failed = SETUPS.reduce((sum, s) => sum + rounds.reduce((n, r) => n + r[s].failed, 0), 0);
    const results = {
      date: new Date().toISOString(),
      loadAverage: loadavg(),
      settings: { ratePerSecond: RATE, seconds: SECONDS, rounds: ROUNDS, concurrency: CONCURRENCY },
      rounds,
      medians: Object.fromEntries(
        SETUPS.map((s) => [s, { p50: med(s, "p50"), p90: med(s, "p90"), p99: med(s, "p99") }]),
      ),
      added: {
        mtls: { p50: added("mtls", "p50"), p90: added("mtls", "p90"), p99: added("mtls", "p99") },
        plain: { p50: added("plain", "p50"), p90: added("plain", "p90"), p99: added("plain", "p99") },
        envoy: { p50: added("envoy", "p50"), p90: added("envoy", "p90"), p99: added("envoy", "p99") },
        plainOverBareEnvoys: {
          p50: added("plain", "p50", "envoy"),
          p90: added("plain", "p90", "envoy"),
          p99: added("plain", "p99", "envoy"),
        },
        mtlsOverPlain: {
          p50: added("mtls", "p50", "plain"),
          p90: added("mtls", "p90", "plain"),
          p99: added("mtls", "p99", "plain"),
        },
      },
      goal: { addedP90Ms: GOAL_ADDED_P90_MS, met: added("mtls", "p90") < GOAL_ADDED_P90_MS },
      failed,
    };
    const ms = (v: number) => v.toFixed(3);
    const md = [
      `# bench:mtls (${results.date})`,
      "",
      `${RATE} requests/s for ${SECONDS} s per setup and round, ${ROUNDS} rounds, up to ${CONCURRENCY} in flight; load average ${loadavg()
        .map((l) => l.toFixed(2))
        .join(" ")}.`,
      "",
      "| setup | p50 ms | p90 ms | p99 ms | added p50 | added p90 | added p99 |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
      ...SETUPS.map((s) =>
        [
          LABELS[s],
          ms(med(s, "p50")),
          ms(med(s, "p90")),
          ms(med(s, "p99")),
          s === "direct" ? "" : ms(added(s, "p50")),
          s === "direct" ? "" : ms(added(s, "p90")),
          s === "direct" ? "" : ms(added(s, "p99")),
        ].join(" | "),
      ).map((line) => `| ${line} |`),
      "",
      `The mesh's sidecars over two bare Envoys (plain text): p50 ${ms(results.added.plainOverBareEnvoys.p50)}, p90 ${ms(results.added.plainOverBareEnvoys.p90)}, p99 ${ms(results.added.plainOverBareEnvoys.p99)} ms.`,
      `mTLS over plain text: p50 ${ms(results.added.mtlsOverPlain.p50)}, p90 ${ms(results.added.mtlsOverPlain.p90)}, p99 ${ms(results.added.mtlsOverPlain.p99)} ms.`,
      `Goal: under ${GOAL_ADDED_P90_MS} ms added at p90 for the two hops with mTLS: ${results.goal.met ? "met" : "not met"} (${ms(results.added.mtls.p90)} ms). Failed requests: ${failed}.`,
      "",
    ].join("\n");
    mkdirSync(BENCH_RESULTS_DIR, { recursive: true });
    writeFileSync(join(BENCH_RESULTS_DIR, "mtls.json"), `${JSON.stringify(results, null, 2)}\n`);
    writeFileSync(join(BENCH_RESULTS_DIR, "mtls.md"), md);
    console.log(`\n${md}`);
    if (failed > 0) process.exitCode = 1;
  } finally {
    await Promise.all(agents.map((agent) => agent.shutdown()));
    await Promise.all(bareEnvoys.map((envoy) => envoy.stop()));
    await app.close();
    await plane.close();
    removeTempDirs();
  }
}

await main();
