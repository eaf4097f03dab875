// Builds test/fixtures/sdk-probe/probe.ts (AssemblyScript on assembly/sdk) with the options the
// filters are built with (asconfig.json, target "release"), once per test file, in memory.
import { fileURLToPath } from "node:url";
import {
  type HeaderPair,
  type HostOptions,
  type HttpStream,
  LogLevel,
  ManualClock,
  type Plugin,
  type PluginOptions,
  ProxyWasmHost,
} from "../../host/index.ts";
import { compileAssemblyScript } from "../support/asc.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const PROBE_SOURCE = "test/fixtures/sdk-probe/probe.ts";

/**
 * The project's asconfig.json and its release target, exactly as `npm run build:filters` uses
 * them; only the output goes elsewhere (to memory).
 */
export const PROBE_FLAGS = ["--config", "asconfig.json", "--target", "release"];

function compile(): Promise<Uint8Array<ArrayBuffer>> {
  return compileAssemblyScript(PROBE_SOURCE, PROBE_FLAGS, { baseDir: ROOT });
}

let bytes: Promise<Uint8Array<ArrayBuffer>> | undefined;
let module: Promise<WebAssembly.Module> | undefined;

export function probeBytes(): Promise<Uint8Array<ArrayBuffer>> {
  bytes ??= compile();
  return bytes;
}

export function probeModule(): Promise<WebAssembly.Module> {
  module ??= probeBytes().then((b) => WebAssembly.compile(b));
  return module;
}

/** A host over the probe with a manual clock that keeps every log level. */
export async function probeHost(options: Partial<HostOptions> = {}): Promise<ProxyWasmHost> {
  return new ProxyWasmHost({
    module: await probeModule(),
    clock: new ManualClock(),
    logLevel: LogLevel.Trace,
    ...options,
  });
}

export async function probePlugin(
  plugin: PluginOptions = {},
  host: Partial<HostOptions> = {},
): Promise<{ host: ProxyWasmHost; plugin: Plugin }> {
  const h = await probeHost(host);
  return { host: h, plugin: await h.createPlugin(plugin) };
}

/** Request headers for one probe operation. */
export function opRequest(op: string, arg?: string, arg2?: string, extra: HeaderPair[] = []): HeaderPair[] {
  const pairs: HeaderPair[] = [
    [":method", "GET"],
    [":path", "/sdk"],
    [":authority", "probe"],
    ["x-op", op],
  ];
  if (arg !== undefined) pairs.push(["x-arg", arg]);
  if (arg2 !== undefined) pairs.push(["x-arg2", arg2]);
  return [...pairs, ...extra];
}

/** Runs one operation in the request-headers phase and returns the `x-r-*` results. */
export function runOp(
  plugin: Plugin,
  op: string,
  arg?: string,
  arg2?: string,
  extra: HeaderPair[] = [],
): { stream: HttpStream; headers: HeaderPair[]; r: Record<string, string> } {
  const stream = plugin.newHttpStream();
  const { headers } = stream.requestHeaders(opRequest(op, arg, arg2, extra), true);
  return { stream, headers, r: results(headers) };
}

/** The `x-r-*` headers (first value of each) without the prefix. */
export function results(pairs: readonly HeaderPair[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of pairs) {
    if (name.startsWith("x-r-") && !(name.slice(4) in out)) out[name.slice(4)] = value;
  }
  return out;
}

export function header(pairs: readonly HeaderPair[], name: string): string | undefined {
  return pairs.find(([n]) => n === name)?.[1];
}

export function moduleMessages(host: ProxyWasmHost): string[] {
  return host.logs.filter((entry) => entry.source === "module").map((entry) => entry.message);
}

export const text = (bytes: Uint8Array | undefined): string => new TextDecoder().decode(bytes);
