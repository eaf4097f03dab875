// The agent's traffic reports (dataplane/stats.ts) against a stand-in Envoy admin and API: what it
// asks Envoy for, what it PUTs and where, with its token; a failing API (any answer but 204) logged
// once per outage, and its end said once; an Envoy that does not answer logged once, nothing sent.
import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { STATS_FILTER, type StatsReporter, startStatsReporter } from "../../dataplane/stats.ts";
import { until } from "../support/wait.ts";

const servers: http.Server[] = [];
let reporter: StatsReporter | undefined;

afterEach(async () => {
  reporter?.stop();
  reporter = undefined;
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

async function serve(handler: http.RequestListener): Promise<number> {
  const server = http.createServer(handler);
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return (server.address() as AddressInfo).port;
}

describe("the agent's traffic reports", () => {
  it("reads Envoy's filtered stats and PUTs the report; an outage is logged once, and its end", async () => {
    const statsPaths: string[] = [];
    const admin = await serve((req, res) => {
      statsPaths.push(req.url ?? "");
      res.end(
        JSON.stringify({
          stats: [
            { name: "cluster.outbound|reviews|version=v1.upstream_rq_total", value: 5 },
            { name: "cluster.outbound|reviews|version=v1.upstream_rq_5xx", value: 1 },
          ],
        }),
      );
    });
    let failing = true;
    const puts: { url: string; auth: string | undefined; body: unknown }[] = [];
    const api = await serve((req, res) => {
      let text = "";
      req.on("data", (chunk: Buffer) => {
        text += chunk.toString();
      });
      req.on("end", () => {
        puts.push({
          url: `${req.method} ${req.url}`,
          auth: req.headers.authorization,
          body: JSON.parse(text),
        });
        if (failing) {
          res.writeHead(503, { "content-type": "application/json" });
          res.end(JSON.stringify({ error: { code: "unavailable", message: "down", details: [] } }));
        } else {
          res.writeHead(204);
          res.end();
        }
      });
    });
    const lines: string[] = [];
    reporter = startStatsReporter({
      node: "productpage-1",
      service: "productpage",
      adminPort: admin,
      api: `http://127.0.0.1:${api}`,
      token: "wsm_test",
      intervalSeconds: 0.05,
      log: (line) => lines.push(line),
    });
    await until("five failed reports", () => puts.length >= 5);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      /reporting traffic figures to .*\/v1\/proxies\/productpage-1\/stats failed \(HTTP 503: down\)/,
    );
    failing = false;
    await until("a report kept", () => (reporter?.sent ?? 0) >= 2);
    expect(lines).toEqual([expect.any(String), "traffic figures reported again"]);

    expect(statsPaths[0]).toBe(`/stats?format=json&filter=${encodeURIComponent(STATS_FILTER)}`);
    const last = puts[puts.length - 1];
    expect(last?.url).toBe("PUT /v1/proxies/productpage-1/stats");
    expect(last?.auth).toBe("Bearer wsm_test");
    expect(last?.body).toMatchObject({
      service: "productpage",
      clusters: { "outbound|reviews|version=v1": { requests: 5, errors5xx: 1 } },
      circuits: {},
      denials: {},
    });
  });

  it("an Envoy that does not answer is logged once too, and nothing is sent", async () => {
    let puts = 0;
    const api = await serve((_req, res) => {
      puts++;
      res.writeHead(204);
      res.end();
    });
    const closed = await serve(() => {});
    await new Promise((r) => servers.pop()?.close(r));
    const lines: string[] = [];
    reporter = startStatsReporter({
      node: "n",
      service: "s",
      adminPort: closed,
      api: `http://127.0.0.1:${api}`,
      token: "t",
      intervalSeconds: 0.05,
      log: (line) => lines.push(line),
    });
    await new Promise((r) => setTimeout(r, 400));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^reading Envoy's stats failed \(connect ECONNREFUSED/);
    expect(puts).toBe(0);
  });
});
