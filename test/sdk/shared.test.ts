// State across VMs: shared data with compare-and-swap, shared queues with on_queue_ready, metrics.
import { beforeAll, describe, expect, it } from "vitest";
import { MetricType, type Plugin, SharedData, Status } from "../../host/index.ts";
import { moduleMessages, probeHost, probeModule, probePlugin, runOp } from "./probe.ts";

beforeAll(async () => {
  await probeModule();
}, 120_000);

/** Two VMs (Envoy worker threads) of one plugin over one SharedData. */
async function twoVms(configuration = "", rootId = "alpha") {
  const sharedData = new SharedData();
  const hostA = await probeHost({ sharedData });
  const hostB = await probeHost({ sharedData });
  const a = await hostA.createPlugin({ rootId, configuration });
  const b = await hostB.createPlugin({ rootId, configuration });
  return { sharedData, hostA, hostB, a, b };
}

const get = (p: Plugin, key: string) => runOp(p, "shared-get", key).r;
const set = (p: Plugin, key: string, value: string, cas: number) =>
  runOp(p, "shared-set", key, value, [["x-cas", String(cas)]]).r.status;

describe("getSharedData / setSharedData", () => {
  it("a fresh key reads as missing with cas 0, and a write with cas 0 creates it", async () => {
    const { plugin } = await probePlugin();
    expect(get(plugin, "fresh")).toEqual({ found: "0", cas: "0" });
    expect(set(plugin, "fresh", "v1", 0)).toBe("0");
    const first = get(plugin, "fresh");
    expect(first).toMatchObject({ found: "1", value: "v1" });
    expect(Number(first.cas)).toBeGreaterThan(0);
    // cas 0 writes unconditionally, and every write moves the cas on
    expect(set(plugin, "fresh", "v2", 0)).toBe("0");
    const second = get(plugin, "fresh");
    expect(second.value).toBe("v2");
    expect(second.cas).not.toBe(first.cas);
  });

  it("tells an empty value from a missing key, and keeps non-ASCII bytes", async () => {
    const { plugin } = await probePlugin();
    expect(set(plugin, "empty", "", 0)).toBe("0");
    expect(get(plugin, "empty")).toMatchObject({ found: "1", value: "" });
    expect(set(plugin, "ключ ✓", "значение \u{1F680}", 0)).toBe("0");
    expect(get(plugin, "ключ ✓")).toMatchObject({ found: "1", value: "значение \u{1F680}" });
  });

  it("sees what another VM (or the host) wrote", async () => {
    const { sharedData, a, b } = await twoVms();
    sharedData.set("from-host", "h");
    expect(get(a, "from-host")).toMatchObject({ found: "1", value: "h" });
    expect(set(b, "from-b", "b", 0)).toBe("0");
    expect(get(a, "from-b")).toMatchObject({ found: "1", value: "b" });
    expect(new TextDecoder().decode(sharedData.get("from-b")?.value)).toBe("b");
  });

  it("refuses a write with a stale cas after another VM wrote (CasMismatch), then succeeds on re-read", async () => {
    const { sharedData, a, b } = await twoVms();
    expect(set(a, "counter", "0", 0)).toBe("0");
    const readA = get(a, "counter");
    const readB = get(b, "counter");
    expect(readB.cas).toBe(readA.cas);

    expect(set(b, "counter", "1 (b)", Number(readB.cas))).toBe("0");
    expect(set(a, "counter", "1 (a)", Number(readA.cas))).toBe(String(Status.CasMismatch));
    expect(get(b, "counter").value).toBe("1 (b)"); // the refused write changed nothing

    const again = get(a, "counter");
    expect(again.value).toBe("1 (b)");
    expect(again.cas).not.toBe(readA.cas);
    expect(set(a, "counter", "2 (a)", Number(again.cas))).toBe("0");
    expect(get(b, "counter").value).toBe("2 (a)");
    expect(new TextDecoder().decode(sharedData.get("counter")?.value)).toBe("2 (a)");
  });
});

describe("shared queues", () => {
  it("registers, resolves, enqueues and dequeues, and calls onQueueReady on the registering root", async () => {
    const { host, plugin } = await probePlugin({ rootId: "beta" });
    const id = Number(runOp(plugin, "queue-register", "jobs").r.queue);
    expect(id).toBeGreaterThan(0);
    expect(runOp(plugin, "queue-register", "jobs").r.queue).toBe(String(id)); // idempotent
    expect(runOp(plugin, "queue-resolve", "", "jobs").r.queue).toBe(String(id));
    expect(runOp(plugin, "queue-resolve", "", "unknown").r.queue).toBe("0");

    host.clearLogs();
    expect(runOp(plugin, "queue-enqueue", String(id), "first ✓").r.status).toBe("0");
    expect(runOp(plugin, "queue-enqueue", String(id), "").r.status).toBe("0");
    expect(moduleMessages(host)).toEqual([
      `sdk-probe: beta queue ready ${id}`,
      `sdk-probe: beta queue ready ${id}`,
    ]);
    expect(host.logs.filter((e) => e.message.includes("queue ready")).map((e) => e.contextId)).toEqual([
      plugin.rootContextId,
      plugin.rootContextId,
    ]);

    expect(runOp(plugin, "queue-dequeue", String(id)).r).toEqual({ found: "1", value: "first ✓" });
    expect(runOp(plugin, "queue-dequeue", String(id)).r).toEqual({ found: "1", value: "" }); // empty item
    expect(runOp(plugin, "queue-dequeue", String(id)).r).toEqual({ found: "0" }); // empty queue
  });

  it("refuses unknown queue ids", async () => {
    const { plugin } = await probePlugin();
    expect(runOp(plugin, "queue-enqueue", "9999", "x").r.status).toBe(String(Status.NotFound));
    expect(runOp(plugin, "queue-dequeue", "9999").r).toEqual({ found: "0" });
  });

  it("delivers items enqueued by another VM to the VM and root that registered the queue", async () => {
    const sharedData = new SharedData();
    const hostA = await probeHost({ sharedData });
    const hostB = await probeHost({ sharedData });
    const other = await hostA.createPlugin({ rootId: "beta" }); // same VM, other root
    const consumer = await hostA.createPlugin({ rootId: "alpha", configuration: "queue=jobs;drain-queues" });
    const producer = await hostB.createPlugin({ rootId: "alpha" });
    const id = sharedData.resolveQueue("", "jobs");
    expect(id).toBeGreaterThan(0);
    expect(moduleMessages(hostA)).toContain(`sdk-probe: alpha registered queue jobs as ${id}`);

    expect(runOp(producer, "queue-resolve", "", "jobs").r.queue).toBe(String(id));
    expect(runOp(producer, "queue-enqueue", String(id), "job-1").r.status).toBe("0");
    expect(runOp(producer, "queue-enqueue", String(id), "job-2").r.status).toBe("0");

    const ready = hostA.logs.filter(
      (e) => e.message.includes("queue ready") || e.message.includes("dequeued"),
    );
    expect(ready.map((e) => [e.message, e.contextId])).toEqual([
      [`sdk-probe: alpha queue ready ${id}`, consumer.rootContextId],
      [`sdk-probe: alpha dequeued ${id} 'job-1'`, consumer.rootContextId],
      [`sdk-probe: alpha queue ready ${id}`, consumer.rootContextId],
      [`sdk-probe: alpha dequeued ${id} 'job-2'`, consumer.rootContextId],
    ]);
    expect(other.rootContextId).not.toBe(consumer.rootContextId);
    expect(moduleMessages(hostB).some((m) => m.includes("queue ready"))).toBe(false);
    expect(sharedData.dequeue(id).status).toBe(Status.Empty); // drained by the consumer
  });
});

describe("metrics", () => {
  it("Counter increments and reads back, visible in the host's stats", async () => {
    const { host, plugin } = await probePlugin();
    const first = runOp(plugin, "counter", "sdk.requests").r;
    expect(first.value).toBe("1");
    expect(Number(first.id) & 3).toBe(MetricType.Counter);
    const second = runOp(plugin, "counter", "sdk.requests", "41").r;
    expect(second).toEqual({ id: first.id, value: "42" });
    expect(host.metric("sdk.requests")).toBe(42);
    expect(host.metrics()).toContainEqual({ name: "sdk.requests", type: "counter", value: 42 });
    expect(host.prometheus()).toContain("sdk_requests 42\n");
  });

  it("Gauge sets, adds and subtracts", async () => {
    const { host, plugin } = await probePlugin();
    const set = runOp(plugin, "gauge-set", "sdk.inflight", "10").r;
    expect(set.value).toBe("10");
    expect(Number(set.id) & 3).toBe(MetricType.Gauge);
    expect(runOp(plugin, "gauge-add", "sdk.inflight", "-3").r.value).toBe("7");
    expect(runOp(plugin, "gauge-add", "sdk.inflight", "5").r.value).toBe("12");
    expect(host.metrics()).toContainEqual({ name: "sdk.inflight", type: "gauge", value: 12 });
    // u64 values beyond 2^32 survive
    expect(runOp(plugin, "gauge-set", "sdk.inflight", "8589934592").r.value).toBe("8589934592");
  });

  it("Histogram records values", async () => {
    const { host, plugin } = await probePlugin();
    const { r } = runOp(plugin, "histogram", "sdk.latency_ms", "1,7,300");
    expect(Number(r.id) & 3).toBe(MetricType.Histogram);
    runOp(plugin, "histogram", "sdk.latency_ms", "4000");
    const snapshot = host.metrics().find((m) => m.name === "sdk.latency_ms");
    expect(snapshot).toMatchObject({ type: "histogram", value: 4, histogram: { count: 4, sum: 4308 } });
    const bucket = (le: number) => snapshot?.histogram?.buckets.find((b) => b.le === le)?.count;
    expect([bucket(1), bucket(10), bucket(500), bucket(5000)]).toEqual([1, 2, 3, 4]);
  });

  it("counters of one name add up across VMs sharing the stats store", async () => {
    const { hostA, a, b } = await twoVms();
    runOp(a, "counter", "sdk.shared", "2");
    expect(runOp(b, "counter", "sdk.shared", "3").r.value).toBe("5"); // value() reads the shared stat
    expect(hostA.metric("sdk.shared")).toBe(5);
  });
});
