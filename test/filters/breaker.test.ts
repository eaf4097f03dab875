import { describe, expect, it } from "vitest";
import { ManualClock } from "../../host/index.ts";
import { MeshUnderTest } from "../support/mesh-host.ts";

const breakerConfig = (breaker: object = {}) => ({
  routes: [{ name: "all", destinations: [{ cluster: "v2" }] }],
  breakers: [{ cluster: "v2", consecutiveErrors: 5, intervalMs: 10_000, baseEjectionMs: 30_000, ...breaker }],
});

const GET: [string, string][] = [
  [":method", "GET"],
  [":path", "/"],
  [":authority", "a"],
];

/** An upstream whose status the test sets, counting the requests that reach it. */
class Upstream {
  status = 200;
  hits = 0;
  answer = (): number => {
    this.hits++;
    return this.status;
  };
}

describe("circuit breaker", () => {
  it("opens after N consecutive failures and answers locally while open", async () => {
    const clock = new ManualClock();
    const mesh = await MeshUnderTest.start(breakerConfig(), { clock });
    const upstream = new Upstream();
    upstream.status = 503;
    for (let i = 0; i < 4; i++) expect(mesh.request({ path: "/" }, upstream.answer).status).toBe(503);
    expect(upstream.hits).toBe(4);
    expect(mesh.request({ path: "/" }, upstream.answer).status).toBe(503); // the fifth failure opens it
    expect(upstream.hits).toBe(5);

    for (let i = 0; i < 10; i++) {
      const decision = mesh.request({ path: "/" }, upstream.answer);
      expect(decision.status).toBe(503);
      expect(decision.cluster).toBeNull();
      expect(decision.responseHeaders.get("x-wasmesh-circuit")).toBe("open");
    }
    expect(upstream.hits).toBe(5);
    expect(mesh.metric("wasmesh.breaker.v2.opened")).toBe(1);
    expect(mesh.metric("wasmesh.breaker.v2.rejected")).toBe(10);
  });

  it("lets one probe through after the ejection time; its success closes the circuit", async () => {
    const clock = new ManualClock();
    const mesh = await MeshUnderTest.start(breakerConfig(), { clock });
    const upstream = new Upstream();
    upstream.status = 500;
    for (let i = 0; i < 5; i++) mesh.request({ path: "/" }, upstream.answer);
    clock.advance(29_000);
    expect(mesh.request({ path: "/" }, upstream.answer).responseHeaders.get("x-wasmesh-circuit")).toBe(
      "open",
    );
    clock.advance(1_001);

    upstream.status = 200;
    const probe = mesh.pick().newHttpStream();
    const probeStart = probe.requestHeaders(
      [
        [":method", "GET"],
        [":path", "/"],
        [":authority", "a"],
      ],
      true,
    );
    expect(probeStart.localResponse).toBeUndefined();
    // While the probe is out, everyone else is still turned away.
    expect(mesh.request({ path: "/" }, upstream.answer).status).toBe(503);
    probe.responseHeaders([[":status", "200"]], true);
    probe.complete();

    const hitsBefore = upstream.hits;
    for (let i = 0; i < 20; i++) expect(mesh.request({ path: "/" }, upstream.answer).status).toBe(200);
    expect(upstream.hits).toBe(hitsBefore + 20);
    expect(mesh.metric("wasmesh.breaker.v2.closed")).toBe(1);
  });

  it("re-opens for longer when the probe fails", async () => {
    const clock = new ManualClock();
    const mesh = await MeshUnderTest.start(breakerConfig(), { clock });
    const upstream = new Upstream();
    upstream.status = 502;
    for (let i = 0; i < 5; i++) mesh.request({ path: "/" }, upstream.answer);
    clock.advance(30_001);
    expect(mesh.request({ path: "/" }, upstream.answer).status).toBe(502); // the probe, failing
    const hits = upstream.hits;
    clock.advance(30_001); // the first ejection's length is no longer enough: now 2 × 30 s
    expect(mesh.request({ path: "/" }, upstream.answer).responseHeaders.get("x-wasmesh-circuit")).toBe(
      "open",
    );
    clock.advance(30_000);
    upstream.status = 200;
    expect(mesh.request({ path: "/" }, upstream.answer).status).toBe(200);
    expect(upstream.hits).toBe(hits + 1);
  });

  it("needs the failures within the interval, and a success resets the count", async () => {
    const clock = new ManualClock();
    const mesh = await MeshUnderTest.start(breakerConfig(), { clock });
    const upstream = new Upstream();
    upstream.status = 503;
    for (let i = 0; i < 4; i++) mesh.request({ path: "/" }, upstream.answer);
    clock.advance(10_001);
    for (let i = 0; i < 4; i++) mesh.request({ path: "/" }, upstream.answer); // a new streak of 4
    upstream.status = 200;
    mesh.request({ path: "/" }, upstream.answer);
    upstream.status = 503;
    for (let i = 0; i < 4; i++) mesh.request({ path: "/" }, upstream.answer);
    expect(upstream.hits).toBe(13);
    expect(mesh.request({ path: "/" }, upstream.answer).responseHeaders.has("x-wasmesh-circuit")).toBe(false);
    expect(mesh.request({ path: "/" }, upstream.answer).responseHeaders.get("x-wasmesh-circuit")).toBe(
      "open",
    );
  });

  it("counts failures across worker threads: N in total opens it, not N per thread", async () => {
    const clock = new ManualClock();
    const mesh = await MeshUnderTest.start(breakerConfig(), { clock, vms: 2 });
    const upstream = new Upstream();
    upstream.status = 503;
    for (let i = 0; i < 5; i++) mesh.request({ path: "/" }, upstream.answer, i % 2);
    expect(upstream.hits).toBe(5);
    for (const vm of [0, 1]) {
      expect(mesh.request({ path: "/" }, upstream.answer, vm).responseHeaders.get("x-wasmesh-circuit")).toBe(
        "open",
      );
    }
    expect(upstream.hits).toBe(5);
  });

  it("sends traffic to the fallback cluster while open", async () => {
    const clock = new ManualClock();
    const mesh = await MeshUnderTest.start(breakerConfig({ fallback: "v1" }), { clock });
    for (let i = 0; i < 5; i++) mesh.request({ path: "/" }, () => 503);
    const decision = mesh.request({ path: "/" }, (cluster) => (cluster === "v1" ? 200 : 503));
    expect(decision).toMatchObject({ status: 200, cluster: "v1" });
    expect(mesh.metric("wasmesh.breaker.v2.fallback")).toBe(1);
  });

  it("limits concurrent requests and frees a slot when a request finishes", async () => {
    const mesh = await MeshUnderTest.start(breakerConfig({ maxConcurrent: 2 }), { vms: 2 });
    const start = (vm: number) => {
      const stream = mesh.pick(vm).newHttpStream();
      return {
        stream,
        result: stream.requestHeaders(
          [
            [":method", "GET"],
            [":path", "/"],
            [":authority", "a"],
          ],
          true,
        ),
      };
    };
    const first = start(0);
    const second = start(1);
    const third = start(0);
    expect(first.result.localResponse).toBeUndefined();
    expect(second.result.localResponse).toBeUndefined();
    expect(third.result.localResponse?.status).toBe(503);
    expect(third.result.localResponse?.headers).toContainEqual(["x-wasmesh-circuit", "overflow"]);
    third.stream.complete();
    first.stream.responseHeaders([[":status", "200"]], true);
    first.stream.complete();
    const fourth = start(1);
    expect(fourth.result.localResponse).toBeUndefined();
    for (const s of [second, fourth]) {
      s.stream.responseHeaders([[":status", "200"]], true);
      s.stream.complete();
    }
  });

  it("does not count clients that go away before the response as upstream failures", async () => {
    const mesh = await MeshUnderTest.start(breakerConfig({ consecutiveErrors: 2 }));
    for (let i = 0; i < 10; i++) {
      const stream = mesh.pick().newHttpStream();
      stream.requestHeaders(GET, true);
      stream.complete(); // the downstream reset before any response
    }
    const upstream = new Upstream();
    expect(mesh.request({ path: "/" }, upstream.answer).status).toBe(200);
    expect(upstream.hits).toBe(1);
    expect(mesh.metric("wasmesh.breaker.v2.opened")).toBe(0);
  });

  it("hands the probe to the next request when the probing client goes away", async () => {
    const clock = new ManualClock();
    const mesh = await MeshUnderTest.start(breakerConfig(), { clock });
    for (let i = 0; i < 5; i++) mesh.request({ path: "/" }, () => 503);
    clock.advance(30_001);
    const probe = mesh.pick().newHttpStream();
    expect(probe.requestHeaders(GET, true).localResponse).toBeUndefined();
    probe.complete(); // gone without an answer
    const upstream = new Upstream();
    expect(mesh.request({ path: "/" }, upstream.answer).status).toBe(200); // the new probe
    expect(upstream.hits).toBe(1);
    expect(mesh.metric("wasmesh.breaker.v2.closed")).toBe(1);
  });

  it("keeps breaker state when the plugin is configured again", async () => {
    const clock = new ManualClock();
    const mesh = await MeshUnderTest.start(breakerConfig(), { clock });
    for (let i = 0; i < 5; i++) mesh.request({ path: "/" }, () => 503);
    await mesh.reconfigure(breakerConfig());
    expect(mesh.request({ path: "/" }).responseHeaders.get("x-wasmesh-circuit")).toBe("open");
  });
});
