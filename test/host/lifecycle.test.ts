// Plugin and stream lifecycles, configuration refusal, module checks.
import { beforeAll, describe, expect, it } from "vitest";
import { compileModule, ManualClock, PluginError, ProxyWasmHost } from "../../host/index.ts";
import { compileSource, messages, probeBytes, probeHost, probeModule, probeRequest } from "./probe.ts";

beforeAll(async () => {
  await probeModule();
}, 120_000);

describe("plugin lifecycle", () => {
  it("creates a root context, starts the VM and configures it, in Envoy's order", async () => {
    const host = await probeHost({ vmConfiguration: "vmc" });
    const plugin = await host.createPlugin({ configuration: "cfg", rootId: "probe" });
    expect(plugin.rootContextId).toBe(1);
    expect(messages(host)).toEqual(["root created 1 probe", "vm start 1 vmc", "configured 1 cfg size 3"]);
    expect(new TextDecoder().decode(plugin.configuration)).toBe("cfg");
  });

  it("runs each stream from context creation to deletion, ids increasing", async () => {
    const host = await probeHost();
    const plugin = await host.createPlugin({ rootId: "probe" });
    host.clearLogs();
    const stream = plugin.newHttpStream();
    expect(stream.contextId).toBe(2);
    stream.requestHeaders(probeRequest(""), true);
    stream.responseHeaders([[":status", "200"]], true);
    stream.complete();
    stream.complete(); // idempotent
    expect(messages(host)).toEqual(["stream created 2 parent 1", "log 2 /x 200 122", "done 2", "delete 2"]);
    expect(plugin.newHttpStream().contextId).toBe(3);
    const other = await host.createPlugin({ rootId: "other" });
    expect(other.rootContextId).toBe(4);
    expect(messages(host)).toContain("root created 4 other");
  });

  it("refuses a configuration the module rejects, explaining why with its logs", async () => {
    const host = await probeHost();
    const result = await host.tryCreatePlugin({ configuration: "reject", rootId: "probe" });
    expect(result).toMatchObject({
      ok: false,
      reason: "configure",
      error: "probe: invalid plugin configuration: reject",
    });
    if (!result.ok) {
      expect(result.logs.map((e) => e.message)).toEqual([
        "root created 1 probe",
        "vm start 1 ",
        "configured 1 reject size 6",
        "probe: a warning first",
        "probe: invalid plugin configuration: reject",
        "probe: a later error",
      ]);
    }
    await expect(host.createPlugin({ configuration: "reject", rootId: "probe" })).rejects.toThrow(
      /probe: invalid plugin configuration: reject/,
    );
    const error = await host.createPlugin({ configuration: "reject" }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PluginError);
    expect((error as PluginError).reason).toBe("configure");
    // the VM is still fine for a good configuration
    expect((await host.tryCreatePlugin({ configuration: "fine" })).ok).toBe(true);
  });

  it("refuses a VM whose on_vm_start fails", async () => {
    const host = await probeHost({ vmConfiguration: "fail-start" });
    expect(await host.tryCreatePlugin({})).toMatchObject({
      ok: false,
      reason: "vm_start",
      error: "probe: vm start refused",
    });
  });

  it("reports a trap while configuring, and the VM stays failed", async () => {
    const host = await probeHost();
    const result = await host.tryCreatePlugin({ configuration: "trap" });
    expect(result.ok).toBe(false);
    if (!result.ok) {
      expect(result.reason).toBe("trap");
      expect(result.error).toMatch(
        /^wasm trap in proxy_on_configure: RuntimeError: unreachable: probe abort: bad configuration at /,
      );
    }
    expect(host.failure?.callback).toBe("proxy_on_configure");
    expect(await host.tryCreatePlugin({ configuration: "fine" })).toMatchObject({
      ok: false,
      reason: "vm_failed",
    });
  });

  it("reconfigures the same root, keeping the old configuration when the new one is refused", async () => {
    const host = await probeHost();
    const plugin = await host.createPlugin({ configuration: "first" });
    expect(plugin.reconfigure("tick:50")).toEqual({ ok: true });
    expect(plugin.tickPeriodMs()).toBe(50);
    const refused = plugin.reconfigure("reject");
    expect(refused).toMatchObject({ ok: false, error: "probe: invalid plugin configuration: reject" });
    expect(new TextDecoder().decode(plugin.configuration)).toBe("tick:50");
  });

  it("shuts a plugin down with on_done and on_delete", async () => {
    const host = await probeHost();
    const plugin = await host.createPlugin({ configuration: "x" });
    host.clearLogs();
    plugin.shutdown();
    expect(messages(host)).toEqual(["done 1", "delete 1"]);
    expect(() => plugin.newHttpStream()).toThrow(/shut down/);
  });

  it("waits for proxy_done when on_done asks for time", async () => {
    const host = await probeHost();
    const plugin = await host.createPlugin({ configuration: "slow-done" });
    host.clearLogs();
    plugin.shutdown();
    expect(messages(host)).toEqual(["done 1"]);
    expect(plugin.shutDown).toBe(true);
    expect(host.advanceTime(10)).toBe(1);
    expect(messages(host)).toEqual(["done 1", "tick 1 root 1", "proxy_done 0", "delete 1"]);
    expect(host.nextTickDelayMs()).toBeUndefined();
  });
});

describe("modules", () => {
  it("refuses a module importing env functions no proxy provides, saying which", async () => {
    const module = await compileSource(`
      export function proxy_abi_version_0_2_1(): void {}
      export function proxy_on_memory_allocate(size: usize): usize { return heap.alloc(size); }
      export function proxy_on_vm_start(id: u32, size: u32): u32 { return Math.random() < 2 ? 1 : 0; }
    `);
    const check = ProxyWasmHost.check(module);
    expect(check.ok).toBe(false);
    expect(check.errors.join("\n")).toMatch(/import env\.seed is not provided by Proxy-Wasm hosts/);
    const host = new ProxyWasmHost({ module });
    const result = await host.tryCreatePlugin({});
    expect(result).toMatchObject({ ok: false, reason: "module" });
    if (!result.ok) expect(result.error).toMatch(/env\.seed.*Math\.random/);
    await expect(host.createPlugin({})).rejects.toThrow(/env\.seed/);
  });

  it("refuses a module without the ABI version export or an allocator", async () => {
    const module = await compileSource(
      `export function proxy_on_vm_start(id: u32, size: u32): u32 { return 1; }`,
    );
    const check = ProxyWasmHost.check(module);
    expect(check.errors).toEqual([
      "missing or unknown Proxy-Wasm ABI version: the module must export proxy_abi_version_0_2_1",
      "the module is missing its allocator: export proxy_on_memory_allocate(size) -> ptr",
    ]);
  });

  it("accepts the probe, listing the proxy_* imports it will stub", async () => {
    const check = ProxyWasmHost.check(await probeModule());
    expect(check).toEqual({
      ok: true,
      abiVersion: "0.2.1",
      errors: [],
      stubbed: ["env.proxy_future_feature"],
    });
  });

  it("gives WASI modules Envoy's small WASI subset and stubs the rest", async () => {
    const module = await compileSource(
      `
      @external("env", "proxy_log") declare function proxy_log(level: u32, ptr: usize, size: usize): u32;
      @external("wasi_snapshot_preview1", "fd_write")
      declare function fd_write(fd: u32, iovs: usize, count: usize, written: usize): u32;
      @external("wasi_snapshot_preview1", "clock_time_get")
      declare function clock_time_get(id: u32, precision: u64, out: usize): u32;
      @external("wasi_snapshot_preview1", "poll_oneoff")
      declare function poll_oneoff(a: usize, b: usize, c: usize, d: usize): u32;
      function myAbort(m: string | null, f: string | null, l: u32, c: u32): void { unreachable(); }
      export function proxy_abi_version_0_2_1(): void {}
      export function proxy_on_memory_allocate(size: usize): usize { return heap.alloc(size); }
      export function proxy_on_vm_start(id: u32, size: u32): u32 {
        const text = String.UTF8.encode("hello from stdout\\n");
        const iov = memory.data(8);
        store<u32>(iov, changetype<usize>(text));
        store<u32>(iov, text.byteLength, 4);
        const written = memory.data(8);
        const w = fd_write(1, iov, 1, written);
        const clock = memory.data(8);
        const c = clock_time_get(0, 1, clock);
        const p = poll_oneoff(0, 0, 0, 0);
        const msg = String.UTF8.encode(
          w.toString() + "|" + load<u32>(written).toString() + "|" + c.toString() + "|" +
          load<u64>(clock).toString() + "|" + p.toString());
        proxy_log(2, changetype<usize>(msg), msg.byteLength);
        return 1;
      }
    `,
      { use: ["abort=input/myAbort"] },
    );
    const check = ProxyWasmHost.check(module);
    expect(check).toMatchObject({ ok: true, stubbed: ["wasi_snapshot_preview1.poll_oneoff"] });
    const clock = new ManualClock();
    const host = new ProxyWasmHost({ module, clock });
    expect((await host.tryCreatePlugin({})).ok).toBe(true);
    expect(messages(host)).toEqual([
      "hello from stdout",
      "the module called wasi_snapshot_preview1.poll_oneoff, which this host does not implement",
      `0|18|0|${clock.now()}|52`,
    ]);
  });

  it("loads from bytes in Node", async () => {
    const bytes = await probeBytes();
    const host = await ProxyWasmHost.fromBytes(bytes, { clock: new ManualClock() });
    expect((await host.tryCreatePlugin({})).ok).toBe(true);
    expect(ProxyWasmHost.check(await compileModule(bytes)).ok).toBe(true);
  });
});
