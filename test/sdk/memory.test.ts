// The minimal runtime never collects by itself: assembly/sdk/exports.ts calls __collect() between
// callbacks. Whatever a module's callbacks allocate must be reclaimed, whichever callback made it,
// and what is still reachable (roots, their state, paused streams) must survive the collections.
import { beforeAll, describe, expect, it } from "vitest";
import { LogLevel, type Plugin, type ProxyWasmHost } from "../../host/index.ts";
import { opRequest, probeModule, probePlugin, runOp } from "./probe.ts";

beforeAll(async () => {
  await probeModule();
}, 120_000);

const WARM_UP = 300;
const RUNS = 3_000;
/** Each run below leaves at least 8 KiB of garbage: 3,000 runs would grow memory by over 23 MiB. */
const GARBAGE = 8_192;
/** What the heap may still grow by after the warm-up (TLSF may need a few more blocks). */
const SLACK = 1 << 20;

/** Memory after a warm-up and after many more runs of the same work. */
function growth(host: ProxyWasmHost, work: () => void): { before: number; after: number } {
  for (let i = 0; i < WARM_UP; i++) work();
  const before = host.memoryBytes();
  for (let i = 0; i < RUNS; i++) work();
  return { before, after: host.memoryBytes() };
}

function expectBounded({ before, after }: { before: number; after: number }): void {
  expect(before).toBeGreaterThan(0);
  expect(after - before).toBeLessThanOrEqual(SLACK);
}

const quiet = { logLevel: LogLevel.Warn };

describe("memory stays bounded", () => {
  it("over many streams with HTTP contexts", async () => {
    const { host, plugin } = await probePlugin({ rootId: "alpha" }, quiet);
    const big = "v".repeat(16_384);
    const m = growth(host, () => {
      const stream = plugin.newHttpStream();
      stream.requestHeaders(opRequest("garbage", String(GARBAGE), undefined, [["x-big", big]]), true);
      stream.responseHeaders([[":status", "200"]], true);
      stream.complete();
    });
    expectBounded(m);
    expect(runOp(plugin, "whoami").r.root).toBe("alpha");
  });

  it("over many streams of a root that creates no HTTP context", async () => {
    const { host, plugin } = await probePlugin(
      { rootId: "passthrough", configuration: `garbage=${GARBAGE}` },
      quiet,
    );
    expectBounded(
      growth(host, () => {
        const stream = plugin.newHttpStream();
        stream.requestHeaders(opRequest("whoami"), true);
        stream.complete();
      }),
    );
  });

  it("over many body chunks of one long stream", async () => {
    const { host, plugin } = await probePlugin({ rootId: "alpha" }, quiet);
    const stream = plugin.newHttpStream();
    stream.requestHeaders(opRequest("garbage", String(GARBAGE)), false);
    expectBounded(growth(host, () => stream.requestBody("chunk", false)));
    expect(stream.requestBody("end", true).action).toBe("continue");
  });

  it("over many ticks", async () => {
    const { host, plugin } = await probePlugin(
      { rootId: "alpha", configuration: `tick=1;garbage=${GARBAGE}` },
      quiet,
    );
    expectBounded(growth(host, () => plugin.tick()));
  });

  it("over many queue notifications", async () => {
    const { host } = await probePlugin(
      { rootId: "alpha", configuration: `queue=work;drain-queues;garbage=${GARBAGE}` },
      quiet,
    );
    const id = host.sharedData.resolveQueue("", "work");
    expect(id).toBeGreaterThan(0);
    const item = new Uint8Array(64);
    expectBounded(growth(host, () => host.sharedData.enqueue(id, item)));
  });
});

describe("collections keep what is reachable", () => {
  it("root state and paused streams survive thousands of collections", async () => {
    const { host, plugin } = await probePlugin({ rootId: "alpha" }, quiet);
    const noise: Plugin = await host.createPlugin({
      rootId: "passthrough",
      configuration: `garbage=${GARBAGE}`,
    });
    runOp(plugin, "counter", "sdk.kept", "5");
    const paused = Array.from({ length: 40 }, () => {
      const stream = plugin.newHttpStream();
      expect(
        stream.requestHeaders(opRequest("pause", "10", undefined, [["x-payload", "p".repeat(500)]]), true)
          .action,
      ).toBe("pause");
      return stream;
    });
    // ~100 collections driven by other streams of the same VM
    for (let i = 0; i < RUNS; i++) {
      const stream = (i % 2 === 0 ? noise : plugin).newHttpStream();
      stream.requestHeaders(opRequest("garbage", String(GARBAGE)), true);
      stream.complete();
    }
    expect(host.advanceTime(10)).toBe(1);
    for (const stream of paused) {
      expect(stream.paused).toBe(false);
      expect(stream.requestHeaderPairs).toContainEqual(["x-r-resumed-at", "1700000000010"]);
      expect(stream.requestHeaderPairs).toContainEqual(["x-payload", "p".repeat(500)]);
    }
    // the root's Map of metrics, and the Counter in it, are intact
    expect(runOp(plugin, "counter", "sdk.kept", "1").r.value).toBe("6");
    expect(host.failure).toBeUndefined();
  });
});
