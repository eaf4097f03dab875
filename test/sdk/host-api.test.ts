// The SDK's host wrappers: properties, logging and logLevel, time, ticks, pausing and resuming,
// closing, foreign functions and clearRouteCache.
import { beforeAll, describe, expect, it } from "vitest";
import { decodePairs, type ForeignCall, LogLevel, ManualClock, Status } from "../../host/index.ts";
import { moduleMessages, opRequest, probeModule, probePlugin, runOp } from "./probe.ts";

beforeAll(async () => {
  await probeModule();
}, 120_000);

const fromHex = (hex: string) => Uint8Array.from(Buffer.from(hex, "hex"));
const toHex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");

describe("getProperty / getPropertyString / setProperty", () => {
  const hostProperties = {
    node: {
      id: "node-1",
      metadata: { region: "eu-west-1", "zone.name": "a", empty: "" },
    },
    listener_direction: 1,
    labels: { app: "reviews", version: "v2" },
  };

  async function plugin() {
    return (
      await probePlugin(
        { rootId: "alpha", name: "probe-plugin", properties: { node: { metadata: { region: "override" } } } },
        { properties: hostProperties },
      )
    ).plugin;
  }

  it("reads nested paths segment by segment (segments may contain dots)", async () => {
    const p = await plugin();
    expect(runOp(p, "prop", "node/id").r).toEqual({ found: "1", value: "node-1" });
    expect(runOp(p, "prop", "node/metadata/zone.name").r).toEqual({ found: "1", value: "a" });
    // plugin-level properties sit above the host's
    expect(runOp(p, "prop", "node/metadata/region").r).toEqual({ found: "1", value: "override" });
    expect(runOp(p, "prop", "plugin_name").r).toEqual({ found: "1", value: "probe-plugin" });
    expect(runOp(p, "prop", "plugin_root_id").r).toEqual({ found: "1", value: "alpha" });
    expect(runOp(p, "prop", "request/path").r).toEqual({ found: "1", value: "/sdk" });
    expect(runOp(p, "prop", "request/headers/x-op").r).toEqual({ found: "1", value: "prop" });
  });

  it("tells an empty value from a missing one", async () => {
    const p = await plugin();
    expect(runOp(p, "prop", "node/metadata/empty").r).toEqual({ found: "1", value: "" });
    expect(runOp(p, "prop", "node/metadata/nope").r).toEqual({ found: "0" });
    expect(runOp(p, "prop", "node/id/deeper").r).toEqual({ found: "0" }); // through a leaf
    expect(runOp(p, "prop", "nothing").r).toEqual({ found: "0" });
    expect(runOp(p, "prop", "node.id").r).toEqual({ found: "0" }); // one segment named "node.id"
  });

  it("returns non-string values as the host serialises them", async () => {
    const p = await plugin();
    expect(runOp(p, "prop-hex", "listener_direction").r).toEqual({ found: "1", hex: "0100000000000000" });
    const map = runOp(p, "prop-hex", "labels").r;
    expect(decodePairs(fromHex(map.hex as string))).toEqual([
      ["app", "reviews"],
      ["version", "v2"],
    ]);
  });

  it("sets a stream property and reads it back", async () => {
    const p = await plugin();
    expect(runOp(p, "prop-set", "filter_state/sdk.value", "v ✓").r).toEqual({ status: "0", value: "v ✓" });
    // per stream: a new stream does not see it
    expect(runOp(p, "prop", "filter_state/sdk.value").r).toEqual({ found: "0" });
  });
});

describe("logging", () => {
  const levels = ["trace", "debug", "info", "warn", "error", "critical"];

  it("logs at each level, from the context that logged", async () => {
    const { host, plugin } = await probePlugin({ rootId: "alpha" });
    host.clearLogs();
    const { stream, r } = runOp(plugin, "log", "hello ✓");
    expect(r["log-level"]).toBe(String(LogLevel.Trace));
    const logged = host.logs.filter((e) => e.source === "module");
    expect(logged.map((e) => [e.levelName, e.message])).toEqual(
      levels.map((level) => [level, `sdk-probe: ${level} hello ✓`]),
    );
    expect(logged.map((e) => e.level)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(new Set(logged.map((e) => e.contextId))).toEqual(new Set([stream.contextId]));
    expect(new Set(logged.map((e) => e.plugin))).toEqual(new Set(["alpha"]));
  });

  it.each([
    [LogLevel.Warn, ["warn", "error", "critical"]],
    [LogLevel.Error, ["error", "critical"]],
    [LogLevel.Debug, ["debug", "info", "warn", "error", "critical"]],
  ])("logLevel() reports the proxy's level %i, below which messages are dropped", async (level, kept) => {
    const { host, plugin } = await probePlugin({}, { logLevel: level });
    host.clearLogs();
    expect(runOp(plugin, "log", "x").r["log-level"]).toBe(String(level));
    expect(host.logs.filter((e) => e.source === "module").map((e) => e.levelName)).toEqual(kept);
  });
});

describe("nowNanos / nowMillis", () => {
  it("read the host's clock to the nanosecond", async () => {
    const clock = new ManualClock(1_700_000_000_123);
    const { plugin } = await probePlugin({}, { clock });
    expect(runOp(plugin, "time").r).toEqual({ nanos: "1700000000123000000", millis: "1700000000123" });
    clock.advance(1.999_999); // 1,999,999 ns: the milliseconds round down
    expect(runOp(plugin, "time").r).toEqual({ nanos: "1700000000124999999", millis: "1700000000124" });
    clock.advance(0.000_001);
    expect(runOp(plugin, "time").r).toEqual({ nanos: "1700000000125000000", millis: "1700000000125" });
  });

  it("keep 64 bits: times past 2^53 ns and 2^32 ms", async () => {
    const clock = new ManualClock(4_102_444_800_000); // 2100-01-01
    const { plugin } = await probePlugin({}, { clock });
    expect(runOp(plugin, "time").r).toEqual({ nanos: "4102444800000000000", millis: "4102444800000" });
  });
});

describe("setTickPeriod and onTick", () => {
  const start = 1_700_000_000_000;

  it("ticks at the period set in on_configure, reading the clock in onTick", async () => {
    const { host, plugin } = await probePlugin({ rootId: "beta", configuration: "tick=10" });
    expect(plugin.tickPeriodMs()).toBe(10);
    expect(host.advanceTime(9)).toBe(0);
    expect(host.advanceTime(26)).toBe(3);
    expect(moduleMessages(host).filter((m) => m.includes(" tick "))).toEqual([
      `sdk-probe: beta tick 1 at ${start + 10}`,
      `sdk-probe: beta tick 2 at ${start + 20}`,
      `sdk-probe: beta tick 3 at ${start + 30}`,
    ]);
  });

  it("changes and stops the root's period from an HTTP context", async () => {
    const { host, plugin } = await probePlugin({});
    expect(plugin.tickPeriodMs()).toBe(0);
    expect(host.advanceTime(100)).toBe(0);
    runOp(plugin, "tick-period", "25");
    expect(plugin.tickPeriodMs()).toBe(25);
    expect(host.advanceTime(50)).toBe(2);
    runOp(plugin, "tick-period", "0");
    expect(plugin.tickPeriodMs()).toBe(0);
    expect(host.advanceTime(1000)).toBe(0);
  });

  it("delivers each plugin's ticks to its own root", async () => {
    const { host, plugin: alpha } = await probePlugin({ rootId: "alpha", configuration: "tick=10" });
    const beta = await host.createPlugin({ rootId: "beta", configuration: "tick=15" });
    expect([alpha.tickPeriodMs(), beta.tickPeriodMs()]).toEqual([10, 15]);
    host.advanceTime(30);
    const ticks = moduleMessages(host).filter((m) => m.includes(" tick "));
    expect(ticks).toEqual([
      `sdk-probe: alpha tick 1 at ${start + 10}`,
      `sdk-probe: beta tick 1 at ${start + 15}`,
      `sdk-probe: alpha tick 2 at ${start + 20}`,
      `sdk-probe: alpha tick 3 at ${start + 30}`,
      `sdk-probe: beta tick 2 at ${start + 30}`,
    ]);
  });
});

describe("pausing and resuming from a tick", () => {
  it("resumeRequest continues requests paused in on_request_headers", async () => {
    const { host, plugin } = await probePlugin();
    const first = plugin.newHttpStream();
    const second = plugin.newHttpStream();
    expect(first.requestHeaders(opRequest("pause", "15"), true).action).toBe("pause");
    expect(second.requestHeaders(opRequest("pause", "15"), true).action).toBe("pause");
    expect([first.paused, second.paused]).toEqual([true, true]);
    expect(host.advanceTime(14)).toBe(0);
    expect(first.paused).toBe(true);
    expect(host.advanceTime(1)).toBe(1);
    for (const stream of [first, second]) {
      expect(stream.paused).toBe(false);
      expect(stream.resumed).toBe(1);
      // edited through the effective context before resuming
      expect(stream.requestHeaderPairs).toContainEqual(["x-r-resumed-at", "1700000000015"]);
      expect(moduleMessages(host)).toContain(`sdk-probe: resumed request ${stream.contextId} status 0`);
    }
    expect(plugin.tickPeriodMs()).toBe(0); // the root stopped ticking
    // the resumed stream goes on normally
    const response = first.responseHeaders([[":status", "200"]], true);
    expect(response.headers).toContainEqual(["x-sdk-root", "fallback"]);
    first.complete();
    expect(host.failure).toBeUndefined();
  });

  it("resumeRequest targets its own stream from the root's tick (no effective context set by the caller)", async () => {
    const { host, plugin } = await probePlugin();
    const stream = plugin.newHttpStream();
    const other = plugin.newHttpStream();
    stream.requestHeaders(opRequest("pause", "10", "plain"), true);
    other.requestHeaders(opRequest("whoami"), false);
    expect(stream.paused).toBe(true);
    expect(host.advanceTime(10)).toBe(1);
    expect(stream.paused).toBe(false);
    expect(stream.resumed).toBe(1);
    expect(stream.requestHeaderPairs.some(([n]) => n === "x-r-resumed-at")).toBe(false);
    expect(moduleMessages(host)).toContain(`sdk-probe: resumed request ${stream.contextId} status 0`);
  });

  it("resumeResponse continues a response paused in on_response_headers", async () => {
    const { host, plugin } = await probePlugin();
    const stream = plugin.newHttpStream();
    stream.requestHeaders(opRequest("pause-response", "5"), true);
    const paused = stream.responseHeaders([[":status", "200"]], true);
    expect(paused.action).toBe("pause");
    expect(stream.responsePaused).toBe(true);
    expect(host.advanceTime(5)).toBe(1);
    expect(stream.responsePaused).toBe(false);
    expect(stream.responseHeaderPairs).toEqual([
      [":status", "200"],
      ["x-sdk-root", "fallback"],
      ["x-r-resumed-at", "1700000000005"],
    ]);

    const plain = plugin.newHttpStream();
    plain.requestHeaders(opRequest("pause-response", "5", "plain"), true);
    expect(plain.responseHeaders([[":status", "200"]], true).action).toBe("pause");
    expect(host.advanceTime(5)).toBe(1);
    expect(plain.responsePaused).toBe(false);
    expect(plain.responseHeaderPairs).toEqual([
      [":status", "200"],
      ["x-sdk-root", "fallback"],
    ]);
  });

  it("closeRequest resets the stream", async () => {
    const { plugin } = await probePlugin();
    const stream = plugin.newHttpStream();
    const result = stream.requestHeaders(opRequest("close"), true);
    expect(result).toMatchObject({ action: "pause", reset: true });
    expect(stream.reset).toBe(true);
  });
});

describe("callForeignFunction and clearRouteCache", () => {
  function withForeign() {
    const calls: { name: string; args: string; call: ForeignCall }[] = [];
    const record = (name: string, args: Uint8Array, call: ForeignCall) =>
      calls.push({ name, args: toHex(args), call });
    const foreignFunctions = {
      reverse: (args: Uint8Array, call: ForeignCall) => {
        record("reverse", args, call);
        return args.slice().reverse();
      },
      nothing: () => undefined,
      failing: () => ({ status: Status.ParseFailure, data: Uint8Array.of(1, 2) }),
      throwing: () => {
        throw new Error("foreign boom");
      },
    };
    return { calls, foreignFunctions };
  }

  it("passes argument bytes in and result bytes out", async () => {
    const { calls, foreignFunctions } = withForeign();
    const { plugin } = await probePlugin({}, { foreignFunctions });
    const { stream, r } = runOp(plugin, "foreign", "reverse", "00ff10807f");
    expect(r).toEqual({ status: "0", data: "7f8010ff00" });
    expect(calls).toEqual([
      { name: "reverse", args: "00ff10807f", call: { name: "reverse", contextId: stream.contextId } },
    ]);
    expect(stream.foreignCalls("reverse")).toBe(1);
  });

  it("passes 64 KiB each way", async () => {
    const { foreignFunctions } = withForeign();
    const { plugin } = await probePlugin({}, { foreignFunctions });
    const args = Uint8Array.from({ length: 65_536 }, (_, i) => (i * 7) & 0xff);
    const { r } = runOp(plugin, "foreign", "reverse", toHex(args));
    expect(r.status).toBe("0");
    expect(r.data).toBe(toHex(args.slice().reverse()));
  });

  it("gives empty results as empty data and failures as no data", async () => {
    const { foreignFunctions } = withForeign();
    const { host, plugin } = await probePlugin({}, { foreignFunctions });
    expect(runOp(plugin, "foreign", "reverse", "").r).toEqual({ status: "0", data: "" });
    expect(runOp(plugin, "foreign", "nothing", "01").r).toEqual({ status: "0", data: "" });
    expect(runOp(plugin, "foreign", "failing", "01").r).toEqual({
      status: String(Status.ParseFailure),
      data: "<null>",
    });
    expect(runOp(plugin, "foreign", "throwing", "01").r).toEqual({
      status: String(Status.InternalFailure),
      data: "<null>",
    });
    expect(runOp(plugin, "foreign", "no_such_function", "01").r).toEqual({
      status: String(Status.NotFound),
      data: "<null>",
    });
    expect(host.failure).toBeUndefined();
  });

  it("clearRouteCache calls the host's clear_route_cache", async () => {
    const { plugin } = await probePlugin();
    const { stream, r, headers } = runOp(plugin, "clear-route-cache", "v2");
    expect(r.status).toBe("0");
    expect(stream.foreignCalls("clear_route_cache")).toBe(1);
    expect(headers).toContainEqual(["x-route", "v2"]);
  });

  it("clearRouteCache reaches an overriding foreign function, with no arguments, and reports its status", async () => {
    const seen: string[] = [];
    const { plugin } = await probePlugin(
      {},
      {
        foreignFunctions: {
          clear_route_cache: (args) => {
            seen.push(toHex(args));
            return { status: Status.Unimplemented };
          },
        },
      },
    );
    expect(runOp(plugin, "clear-route-cache", "v1").r.status).toBe(String(Status.Unimplemented));
    expect(seen).toEqual([""]);
  });
});
