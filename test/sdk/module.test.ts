// The SDK as a module: how it is built, what it imports, how roots are dispatched and refused,
// passthrough streams, and aborts routed to proxyAbort.
import { readFile } from "node:fs/promises";
import { beforeAll, describe, expect, it } from "vitest";
import { ProxyWasmHost } from "../../host/index.ts";
import {
  header,
  moduleMessages,
  opRequest,
  PROBE_FLAGS,
  PROBE_SOURCE,
  probeHost,
  probeModule,
  probePlugin,
  runOp,
  text,
} from "./probe.ts";

beforeAll(async () => {
  await probeModule();
}, 120_000);

const source = (path: string) => readFile(new URL(`../../${path}`, import.meta.url), "utf8");

describe("the module an SDK user builds", () => {
  it("is built from asconfig.json's release target, whose options are the filters'", async () => {
    const config = JSON.parse(await source("asconfig.json"));
    expect(config.options).toMatchObject({
      runtime: "minimal",
      exportStart: "_initialize",
      use: ["abort=assembly/sdk/abort/proxyAbort"],
    });
    expect(config.targets.release).toMatchObject({ optimizeLevel: 3, shrinkLevel: 2, noAssert: false });
    expect(PROBE_FLAGS.join(" ")).toContain("--config asconfig.json --target release");
    const pkg = JSON.parse(await source("package.json"));
    expect(pkg.scripts["build:filters"]).toContain("--target release");
  });

  it("imports nothing but the env.proxy_* functions the SDK declares", async () => {
    const module = await probeModule();
    const imports = WebAssembly.Module.imports(module);
    const declared = new Set(
      [...(await source("assembly/sdk/env.ts")).matchAll(/export declare function (proxy_\w+)/g)].map(
        (m) => m[1],
      ),
    );
    expect(imports.length).toBeGreaterThan(20);
    for (const { module: namespace, name, kind } of imports) {
      expect({ namespace, kind, declared: declared.has(name) }).toEqual({
        namespace: "env",
        kind: "function",
        declared: true,
      });
    }
    // abort is routed into the SDK, so neither env.abort nor env.seed/env.trace appear
    expect(imports.map((i) => i.name)).toContain("proxy_log");
    const check = ProxyWasmHost.check(module);
    expect(check).toEqual({ ok: true, abiVersion: "0.2.1", errors: [], stubbed: [] });
  });

  it("exports the ABI callbacks, the allocator, memory and _initialize (no _start)", async () => {
    const exports = WebAssembly.Module.exports(await probeModule()).map((e) => e.name);
    expect(exports).toEqual(
      expect.arrayContaining([
        "proxy_abi_version_0_2_1",
        "proxy_on_context_create",
        "proxy_on_vm_start",
        "proxy_on_configure",
        "proxy_on_tick",
        "proxy_on_queue_ready",
        "proxy_on_request_headers",
        "proxy_on_request_body",
        "proxy_on_request_trailers",
        "proxy_on_response_headers",
        "proxy_on_response_body",
        "proxy_on_response_trailers",
        "proxy_on_log",
        "proxy_on_done",
        "proxy_on_delete",
        "proxy_on_memory_allocate",
        "memory",
        "_initialize",
      ]),
    );
    expect(exports).not.toContain("_start");
  });
});

describe("registerRootContext dispatch by plugin_root_id", () => {
  it.each([
    ["alpha", "alpha"],
    ["beta", "beta"],
    ["", "fallback"],
    ["gamma", "fallback"], // no registration of its own: the "" registration serves it
  ])("root_id %j is served by the %s root", async (rootId, expected) => {
    const { plugin } = await probePlugin({ rootId, configuration: `cfg-${rootId}` });
    const { r } = runOp(plugin, "whoami");
    expect(r.root).toBe(expected);
    expect(r.config).toBe(`cfg-${rootId}`);
  });

  it("dispatches by root id, not by plugin name", async () => {
    const { plugin } = await probePlugin({ rootId: "alpha", name: "beta" });
    expect(runOp(plugin, "whoami").r.root).toBe("alpha");
  });

  it("gives each plugin of one VM its own root context", async () => {
    const host = await probeHost({ vmConfiguration: "vm-wide" });
    const alpha = await host.createPlugin({ rootId: "alpha", configuration: "a" });
    const fallback = await host.createPlugin({ rootId: "x", configuration: "x" });
    const alpha2 = await host.createPlugin({ rootId: "alpha", configuration: "a2" });
    const seen = [alpha, fallback, alpha2].map((plugin) => runOp(plugin, "whoami").r);
    expect(seen.map((r) => [r.root, r.config, r["vm-config"]])).toEqual([
      ["alpha", "a", "vm-wide"],
      ["fallback", "x", "vm-wide"],
      ["alpha", "a2", "vm-wide"],
    ]);
    expect(seen.map((r) => Number(r["root-context"]))).toEqual([
      alpha.rootContextId,
      fallback.rootContextId,
      alpha2.rootContextId,
    ]);
    expect(new Set(seen.map((r) => r["root-context"])).size).toBe(3);
  });

  it("passes the callback arguments through (header count, end of stream)", async () => {
    const { plugin } = await probePlugin();
    const stream = plugin.newHttpStream();
    const { headers } = stream.requestHeaders(
      opRequest("whoami", undefined, undefined, [["x-y", "1"]]),
      false,
    );
    expect(header(headers, "x-r-header-count")).toBe("5");
    expect(header(headers, "x-r-eos")).toBe("0");
    expect(header(headers, "x-r-context")).toBe(String(stream.contextId));
  });

  it("reconfigures the same root context", async () => {
    const { plugin } = await probePlugin({ rootId: "beta", configuration: "one" });
    const before = runOp(plugin, "whoami").r;
    expect(plugin.reconfigure("two")).toEqual({ ok: true });
    const after = runOp(plugin, "whoami").r;
    expect([before.config, after.config]).toEqual(["one", "two"]);
    expect(after["root-context"]).toBe(before["root-context"]);
  });
});

describe("refusals", () => {
  it("on_configure returning false refuses the plugin, with the module's reason", async () => {
    const host = await probeHost();
    const refused = await host.tryCreatePlugin({ rootId: "refuse", configuration: "bad-config" });
    expect(refused).toMatchObject({
      ok: false,
      reason: "configure",
      error: "sdk-probe: refusing configuration 'bad-config'",
    });
    expect(host.plugins()).toHaveLength(0);
    // the VM itself is fine: another root of the module still configures
    const plugin = await host.createPlugin({ rootId: "alpha" });
    expect(runOp(plugin, "whoami").r.root).toBe("alpha");
    expect(host.failure).toBeUndefined();
  });

  it("on_vm_start returning false refuses the plugin", async () => {
    const host = await probeHost({ vmConfiguration: "refuse-vm" });
    const refused = await host.tryCreatePlugin({ rootId: "alpha" });
    expect(refused).toMatchObject({ ok: false, reason: "vm_start" });
  });
});

describe("a root whose createHttpContext returns null", () => {
  it("lets requests and responses pass untouched", async () => {
    const { host, plugin } = await probePlugin({ rootId: "passthrough" });
    const stream = plugin.newHttpStream();
    const request = opRequest("set", "x-added", "1");
    const result = stream.requestHeaders(request, false);
    expect(result.action).toBe("continue");
    expect(result.headers).toEqual(request);
    const body = stream.requestBody("payload", true);
    expect([body.action, text(body.body)]).toEqual(["continue", "payload"]);
    const response = stream.responseHeaders([[":status", "200"]], true);
    expect(response).toMatchObject({ action: "continue", headers: [[":status", "200"]] });
    stream.complete();
    expect(host.failure).toBeUndefined();

    // the same request through a root that does create contexts is changed
    const { plugin: active } = await probePlugin({ rootId: "alpha" });
    const changed = active.newHttpStream().requestHeaders(request, false);
    expect(changed.headers).toContainEqual(["x-added", "1"]);
  });
});

describe("abort routed to proxyAbort", () => {
  const line = async (needle: string) =>
    (await source(PROBE_SOURCE)).split("\n").findIndex((l) => l.includes(needle)) + 1;

  it("an assertion logs 'wasmesh: abort: ...' and traps, failing the VM closed", async () => {
    const { host, plugin } = await probePlugin({ rootId: "alpha" });
    expect(runOp(plugin, "whoami").r.root).toBe("alpha"); // healthy before
    const { stream } = runOp(plugin, "abort");
    const at = await line('"sdk-probe: assertion failed on purpose"');
    expect(at).toBeGreaterThan(0);
    const message = `wasmesh: abort: sdk-probe: assertion failed on purpose at ${PROBE_SOURCE}:${at}:`;

    expect(stream.failure).toMatchObject({
      callback: "proxy_on_request_headers",
      contextId: stream.contextId,
      message: expect.stringMatching(/unreachable/),
    });
    expect(stream.failure?.moduleMessage?.startsWith(message)).toBe(true);
    expect(stream.localResponse).toMatchObject({ status: 503, details: "wasm_fail_stream" });
    const logged = host.logs.find((e) => e.source === "module" && e.message.startsWith("wasmesh: abort:"));
    expect(logged).toMatchObject({ levelName: "critical", contextId: stream.contextId });
    expect(logged?.message).toMatch(new RegExp(`^${message.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\d+$`));
    expect(host.failure?.callback).toBe("proxy_on_request_headers");
    // every later stream fails closed
    const next = runOp(plugin, "whoami");
    expect(next.stream.localResponse?.status).toBe(503);
    expect(next.r.root).toBeUndefined();
  });

  it("an out-of-range index aborts with the standard library's message", async () => {
    const { host, plugin } = await probePlugin();
    const { stream } = runOp(plugin, "abort-index", "7");
    expect(stream.failure?.moduleMessage).toMatch(
      /^wasmesh: abort: Index out of range at ~lib\/array\.ts:\d+:\d+$/,
    );
    expect(moduleMessages(host).filter((m) => m.startsWith("wasmesh: abort:"))).toHaveLength(1);
  });

  it("a thrown error aborts with its message", async () => {
    const { plugin } = await probePlugin();
    const at = await line('"sdk-probe: thrown on purpose"');
    const { stream } = runOp(plugin, "throw");
    expect(stream.failure?.moduleMessage).toMatch(
      new RegExp(
        `^wasmesh: abort: sdk-probe: thrown on purpose at test/fixtures/sdk-probe/probe\\.ts:${at}:\\d+$`,
      ),
    );
  });

  it("does not abort when the asserted condition holds", async () => {
    const { host, plugin } = await probePlugin();
    const { stream } = runOp(plugin, "abort", "no-abort");
    expect(stream.failure).toBeUndefined();
    expect(host.failure).toBeUndefined();
  });
});
