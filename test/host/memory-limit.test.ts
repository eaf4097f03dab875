// The host's memory ceiling (HostOptions.memoryLimitBytes): a module's linear memory past it fails
// the VM as a trap does, so the edge worker and the control plane's smoke run never keep serving a
// module that claims more than the ceiling.
import { describe, expect, it } from "vitest";
import { DEFAULT_MEMORY_LIMIT_BYTES, type HeaderPair, ProxyWasmHost } from "../../host/index.ts";
import { compileSource } from "./probe.ts";

const MIB = 1024 * 1024;
const REQUEST: HeaderPair[] = [
  [":method", "GET"],
  [":path", "/"],
  [":authority", "svc"],
];

/** A filter that grows its memory by `start` pages as the VM starts and `request` pages per request. */
function growing(pages: { start?: number; request?: number }, options: { initialMemory?: number } = {}) {
  return compileSource(
    `
    function myAbort(m: string | null, f: string | null, l: u32, c: u32): void { unreachable(); }
    export function proxy_abi_version_0_2_1(): void {}
    export function proxy_on_memory_allocate(size: usize): usize { return heap.alloc(size); }
    export function proxy_on_vm_start(id: u32, size: u32): u32 { memory.grow(${pages.start ?? 0}); return 1; }
    export function proxy_on_configure(id: u32, size: u32): u32 { return 1; }
    export function proxy_on_request_headers(id: u32, headers: u32, end: u32): u32 {
      memory.grow(${pages.request ?? 0});
      return 0;
    }
  `,
    { use: ["abort=input/myAbort"], ...options },
  );
}

describe("the memory limit", () => {
  it("fails the VM when a callback grows the memory past it, and every stream then fails closed", async () => {
    // One page to start with, 127 more on the request: 8 MiB against a 4 MiB limit.
    const host = new ProxyWasmHost({ module: await growing({ request: 127 }), memoryLimitBytes: 4 * MIB });
    const plugin = await host.createPlugin();
    const stream = plugin.newHttpStream();
    const result = stream.requestHeaders(REQUEST, true);
    expect(result.localResponse).toMatchObject({ status: 503, details: "wasm_fail_stream" });
    expect(host.failure).toEqual({
      callback: "proxy_on_request_headers",
      contextId: stream.contextId,
      message:
        "Error: memory limit exceeded: the module's memory grew to 8 MiB, more than the limit of 4 MiB",
      memory: { bytes: 8 * MIB, limitBytes: 4 * MIB },
    });
    expect(plugin.newHttpStream().requestHeaders(REQUEST, true).localResponse?.status).toBe(503);
  });

  it("lets a module grow within it", async () => {
    const host = new ProxyWasmHost({ module: await growing({ request: 10 }), memoryLimitBytes: 4 * MIB });
    const plugin = await host.createPlugin();
    expect(plugin.newHttpStream().requestHeaders(REQUEST, true).localResponse).toBeUndefined();
    expect(host.failure).toBeUndefined();
    expect(host.memoryBytes()).toBe(11 * 64 * 1024);
  });

  it("is 128 MiB by default: a module growing to 4 GiB as the VM starts gets no plugin", async () => {
    expect(DEFAULT_MEMORY_LIMIT_BYTES).toBe(128 * MIB);
    const host = new ProxyWasmHost({ module: await growing({ start: 65535 }) });
    const result = await host.tryCreatePlugin();
    expect(result).toMatchObject({
      ok: false,
      reason: "trap",
      error:
        "wasm trap in proxy_on_vm_start: Error: memory limit exceeded: the module's memory grew to 4096 MiB, more than the limit of 128 MiB",
    });
    expect(host.failure?.memory).toEqual({ bytes: 4096 * MIB, limitBytes: 128 * MIB });
  });

  it("refuses a module whose memory starts above it", async () => {
    const module = await growing({}, { initialMemory: 128 });
    const host = new ProxyWasmHost({ module, memoryLimitBytes: 4 * MIB });
    expect(await host.tryCreatePlugin()).toMatchObject({
      ok: false,
      reason: "module",
      error: "invalid Proxy-Wasm module: its memory starts at 8 MiB, more than the limit of 4 MiB",
    });
  });
});
