// Each host call's answers, as the probe module sees them.
import { beforeAll, describe, expect, it } from "vitest";
import { type HostOptions, LogLevel, type Plugin, type PluginOptions, SharedData } from "../../host/index.ts";
import { header, messages, probeHost, probeModule, probeRequest } from "./probe.ts";

beforeAll(async () => {
  await probeModule();
}, 120_000);

async function start(options: PluginOptions = {}, hostOptions: Partial<HostOptions> = {}) {
  const host = await probeHost(hostOptions);
  const plugin = await host.createPlugin({ rootId: "probe", ...options });
  return { host, plugin };
}

function run(plugin: Plugin, commands: string, extra: [string, string][] = []) {
  const stream = plugin.newHttpStream();
  const result = stream.requestHeaders(probeRequest(commands, extra), true);
  return { stream, result, r: (name: string) => header(result.headers, `x-r-${name}`) };
}

describe("header maps", () => {
  it("gets (case-insensitively), adds, replaces and removes request headers", async () => {
    const { plugin } = await start();
    const { result, r } = run(plugin, "get,case,missing,add,replace,remove", [
      ["x-in", "v"],
      ["x-multi", "1"],
      ["x-remove", "gone"],
      ["X-Remove", "again"],
    ]);
    expect(r("get")).toBe("0|v");
    expect(r("case")).toBe("v");
    expect(r("missing")).toBe("1"); // NotFound
    expect(r("remove-missing")).toBe("0");
    const names = result.headers.map(([n]) => n);
    expect(names.slice(0, 4)).toEqual([":method", ":path", ":authority", ":probe-pseudo"]);
    expect(result.headers).toContainEqual(["x-added", "a1"]);
    expect(result.headers.filter(([n]) => n === "x-multi")).toEqual([
      ["x-multi", "replaced"],
      ["x-multi", "2"],
    ]);
    expect(result.headers).toContainEqual(["x-fresh", "f"]);
    expect(names).not.toContain("x-remove");
  });

  it("hands maps to the module in the wire format and takes them back", async () => {
    const { plugin } = await start();
    const extra: [string, string][] = [
      ["x-drop", "1"],
      ["X-Keep", "ü"],
    ];
    const input = probeRequest("pairs", extra).map(([n, v]) => [n.toLowerCase(), v]);
    expect(run(plugin, "pairs", extra).r("pairs")).toBe(
      `0|${input.length}${input.map(([n, v]) => `;${n}=${v}`).join("")}`,
    );
    const sized = probeRequest("size", extra);
    const bytes = sized.reduce((sum, [n, v]) => sum + new TextEncoder().encode(n + v).byteLength, 0);
    expect(run(plugin, "size", extra).r("size")).toBe(`0|${bytes}`);

    const { result } = run(plugin, "setpairs", extra);
    expect(result.headers).toEqual([
      ...probeRequest("setpairs").map(([n, v]) => [n, v]),
      ["x-keep", "ü"],
      ["x-set", "yes"],
      ["x-r-setpairs", "0"],
    ]);
  });

  it("empties the map when set_header_map_pairs gets malformed data, as Envoy does", async () => {
    const { plugin } = await start();
    expect(run(plugin, "setpairs-bad").result.headers).toEqual([["x-r-setpairs-bad", "0"]]);
  });

  it("answers BadArgument for maps the callback cannot use and for unknown map types", async () => {
    const { plugin } = await start();
    // response headers during on_request_headers: value BadArgument, pairs Ok and empty,
    // add BadArgument, size BadArgument
    expect(run(plugin, "resp,badmap").r("resp")).toBe("2|0|0|2|2");
    expect(run(plugin, "badmap").r("badmap")).toBe("2");
  });

  it("takes the request headers away once the request continued (Envoy nulls them)", async () => {
    const { plugin } = await start();
    const { stream } = run(plugin, "args");
    const response = stream.responseHeaders([[":status", "200"]], true);
    expect(header(response.headers, "x-r-reqpath")).toBe("2");
    expect(header(response.headers, "x-probe-seen")).toBe("200|1");
  });

  it("passes context id, header count and end_of_stream to on_request_headers", async () => {
    const { plugin } = await start();
    const stream = plugin.newHttpStream();
    const result = stream.requestHeaders(probeRequest("args"), false);
    expect(header(result.headers, "x-r-args")).toBe(`${stream.contextId}|4|0`);
  });

  it("gives on_log read-only final maps (access-log phase)", async () => {
    const { host, plugin } = await start();
    const { stream } = run(plugin, "args");
    stream.responseHeaders([[":status", "201"]], true);
    stream.complete();
    // path and status readable; request trailers NotFound; size and add BadArgument
    expect(messages(host)).toContain(`log ${stream.contextId} /x 201 122`);
  });
});

describe("memory access", () => {
  it("answers InvalidMemoryAccess for pointers outside the memory, after the argument checks, and runs on", async () => {
    const { host, plugin } = await start();
    const { result, r } = run(plugin, "oob,get", [["x-in", "v"]]);
    // log, header key, header value's return slot, replace value, bad map type (BadArgument comes
    // first), set pairs, shared data key, time slot, foreign result slot, status slot, local reply
    expect(r("oob")).toBe("6|6|6|6|2|6|6|6|6|6|6");
    expect(result.action).toBe("continue");
    expect(result.localResponse).toBeUndefined();
    expect(r("get")).toBe("0|v");
    expect(host.failure).toBeUndefined();
  });
});

describe("buffers", () => {
  it("clips reads, refuses writes to configuration and knows which buffers exist when", async () => {
    const { host, plugin } = await start(
      { configuration: "the-config" },
      { vmConfiguration: "vm-conf-bytes" },
    );
    expect(messages(host)).toContain(`configured ${plugin.rootContextId} the-config size 10`);
    // plugin config outside on_configure: NotFound; vm config; slice [2,5); start past the end:
    // Ok and empty; request body outside its callback: Ok and empty; writes: BadArgument
    expect(run(plugin, "buffers").r("buffers")).toBe("1:|0:vm-conf-bytes|-co|0:|0:|2|2");
  });
});

describe("properties", () => {
  it("layers stream, derived request, plugin and host properties", async () => {
    const { plugin } = await start(
      { name: "probe-plugin" },
      { properties: { node: { metadata: { region: "eu-west" } } } },
    );
    const stream = plugin.newHttpStream({ properties: { source: { address: "10.0.0.1:5555" } } });
    const result = stream.requestHeaders(probeRequest("props", [["x-in", "v"]]), true);
    expect(header(result.headers, "x-r-props")).toBe(
      "0:/x;0:v;0:probe-plugin;0:probe;0:eu-west;0:10.0.0.1:5555;1:;1:",
    );
  });

  it("stores properties the stream sets", async () => {
    const { plugin } = await start();
    expect(run(plugin, "setprop").r("setprop")).toBe("0|v1");
  });
});

describe("foreign functions", () => {
  it("calls registered functions, counts them per stream, and answers NotFound for others", async () => {
    const { plugin } = await start({}, { foreignFunctions: { echo: (args) => args.slice().reverse() } });
    const { stream, r } = run(plugin, "foreign");
    expect(r("foreign")).toBe("0:|1:|0:cba");
    expect(stream.foreignCalls("clear_route_cache")).toBe(1);
    expect(stream.foreignCalls("echo")).toBe(1);
    expect(stream.foreignCalls("no_such_function")).toBe(0);
  });
});

describe("metrics", () => {
  it("defines, increments, records and reads metrics with Envoy's rules", async () => {
    const { host, plugin } = await start();
    // same id twice; type in the low bits; bad type; counter +0 and -1 refused; counter 1+2;
    // gauge set 10 then -3; histogram recorded, not incrementable, not readable; unknown id
    expect(run(plugin, "metrics").r("metrics")).toBe("same|012|2|2|2|0:3|0:7|0|2|2:0|1:0");
    expect(host.metric("probe.requests")).toBe(3);
    expect(host.metric("probe.gauge")).toBe(7);
    expect(host.metrics().find((m) => m.name === "probe.latency")).toMatchObject({
      type: "histogram",
      histogram: { count: 1, sum: 42 },
    });
    expect(host.prometheus()).toContain("# TYPE probe_requests counter\nprobe_requests 3\n");
  });

  it("adds up across VMs that share a store, like Envoy's stats across workers", async () => {
    const sharedData = new SharedData();
    const a = await start({}, { sharedData });
    const b = await start({}, { sharedData });
    run(a.plugin, "metrics");
    run(b.plugin, "metrics");
    expect(a.host.metric("probe.requests")).toBe(6);
    expect(b.host.metric("probe.requests")).toBe(6);
  });
});

describe("logging, time and the rest", () => {
  it("collects logs with levels and passes them to the sink", async () => {
    const seen: string[] = [];
    const { host, plugin } = await start({}, { logSink: (e) => seen.push(`${e.levelName}:${e.message}`) });
    expect(run(plugin, "log").r("log-bad")).toBe("2");
    const entries = host.logs.filter((e) => e.message.startsWith("probe log"));
    expect(entries.map((e) => [e.level, e.levelName, e.source, e.plugin])).toEqual(
      ["trace", "debug", "info", "warn", "error", "critical"].map((name, level) => [
        level,
        name,
        "module",
        "probe",
      ]),
    );
    expect(seen).toContain("critical:probe log 5");
  });

  it("keeps the VM alive when the log sink throws", async () => {
    const { host, plugin } = await start(
      {},
      {
        logSink: () => {
          throw new Error("sink down");
        },
      },
    );
    expect(run(plugin, "log").result.localResponse).toBeUndefined();
    expect(host.failure).toBeUndefined();
  });

  it("reports the VM's memory size", async () => {
    const host = await probeHost();
    expect(host.memoryBytes()).toBe(0);
    await host.createPlugin({});
    expect(host.memoryBytes()).toBeGreaterThanOrEqual(65536);
    expect(host.memoryBytes() % 65536).toBe(0);
  });

  it("drops messages below the log level and reports the level", async () => {
    const { host, plugin } = await start({}, { logLevel: LogLevel.Warn });
    const { r } = run(plugin, "loglevel,log");
    expect(r("loglevel")).toBe("3");
    expect(messages(host).filter((m) => m.startsWith("probe log"))).toEqual([
      "probe log 3",
      "probe log 4",
      "probe log 5",
    ]);
  });

  it("reads the injected clock", async () => {
    const { host, plugin } = await start();
    expect(run(plugin, "time").r("time")).toBe(String(host.clock.now()));
  });

  it("stubs unknown proxy_* imports with Unimplemented and says so once", async () => {
    const { host, plugin } = await start();
    expect(run(plugin, "unknown").r("unknown")).toBe("12");
    run(plugin, "unknown");
    expect(messages(host).filter((m) => m.includes("env.proxy_future_feature"))).toHaveLength(1);
  });

  it("answers get_status, proxy_done, bad effective contexts and bad stream types like Envoy", async () => {
    const { plugin } = await start();
    const { r } = run(plugin, "status,done,effective-bad,stream-bad");
    expect(r("status")).toBe("0|0|");
    expect(r("done")).toBe("1"); // NotFound: only a root whose on_done returned false may call it
    expect(r("effective-bad")).toBe("2");
    expect(r("stream-bad")).toBe("2|2");
  });
});

describe("shared data through the ABI", () => {
  const shared = (plugin: Plugin, command: string, key: string, value = "", cas = 0) =>
    run(plugin, command, [
      ["x-key", key],
      ["x-value", value],
      ["x-cas", String(cas)],
    ]).r(command);

  it("detects a CAS mismatch between two VMs over one SharedData (--concurrency 2)", async () => {
    const sharedData = new SharedData();
    const a = (await start({}, { sharedData })).plugin;
    const b = (await start({}, { sharedData })).plugin;
    expect(shared(a, "shared-get", "k")).toBe("1||0");
    expect(shared(a, "shared-set", "k", "v1")).toBe("0");
    const [, , cas1] = (shared(a, "shared-get", "k") ?? "").split("|");
    expect(Number(cas1)).toBeGreaterThan(0);
    expect(shared(b, "shared-get", "k")).toBe(`0|v1|${cas1}`);
    expect(shared(b, "shared-set", "k", "v2", Number(cas1))).toBe("0");
    expect(shared(a, "shared-set", "k", "v3", Number(cas1))).toBe("8"); // CasMismatch
    const [status, value, cas2] = (shared(a, "shared-get", "k") ?? "").split("|");
    expect([status, value]).toEqual(["0", "v2"]);
    expect(cas2).not.toBe(cas1);
    expect(shared(a, "shared-set", "k", "v4", 0)).toBe("0"); // cas 0 always writes
  });

  it("keeps VMs with another vm_id apart", async () => {
    const sharedData = new SharedData();
    const a = (await start({}, { sharedData, vmId: "one" })).plugin;
    const b = (await start({}, { sharedData, vmId: "two" })).plugin;
    shared(a, "shared-set", "k", "v1");
    expect(shared(b, "shared-get", "k")).toBe("1||0");
    expect(sharedData.get("k", "one")).toBeDefined();
  });
});

describe("shared queues", () => {
  it("registers, resolves, enqueues and dequeues, and tells the root when data arrives", async () => {
    const { host, plugin } = await start();
    // same id; resolve Ok; enqueue Ok; dequeue "hello"; then Empty; unknown name and id NotFound
    expect(run(plugin, "queue").r("queue")).toBe("same|0|0|0:hello|7|1|1");
    const ready = messages(host).filter((m) => m.startsWith("queue ready"));
    expect(ready).toHaveLength(2);
    expect(ready[0]).toMatch(new RegExp(`^queue ready ${plugin.rootContextId} \\d+ 0 later$`));
    expect(ready[1]).toMatch(/ 7 $/);
  });

  it("delivers to the registering VM when another VM enqueues", async () => {
    const sharedData = new SharedData();
    const a = await start({}, { sharedData });
    const b = await start({}, { sharedData });
    run(a.plugin, "queue");
    expect(run(b.plugin, "queue-send").r("queue-send")).toBe("0|0");
    expect(messages(a.host).at(-1)).toMatch(/queue ready 1 \d+ 0 from-other-vm$/);
  });
});
