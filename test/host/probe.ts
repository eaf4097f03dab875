// Builds the probe module (test/fixtures/host-probe) and small variants with the AssemblyScript
// compiler, once per test file.
import { fileURLToPath } from "node:url";
import asc from "assemblyscript/asc";
import { type HeaderPair, type HostOptions, LogLevel, ManualClock, ProxyWasmHost } from "../../host/index.ts";
import { compileAssemblyScript } from "../support/asc.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const PROBE = "test/fixtures/host-probe/probe.ts";

/** The options the brief asks for: incremental runtime, _initialize, abort routed to the probe. */
const PROBE_FLAGS = [
  "--runtime",
  "incremental",
  "--exportStart",
  "_initialize",
  "--use",
  "abort=test/fixtures/host-probe/probe/myAbort",
  "-O2",
];

function compile(entry: string, flags: string[]): Promise<Uint8Array<ArrayBuffer>> {
  return compileAssemblyScript(entry, flags, { baseDir: ROOT, ignoreAsconfig: true });
}

let probe: Promise<WebAssembly.Module> | undefined;

/** The probe module, compiled once per test file. */
export function probeModule(): Promise<WebAssembly.Module> {
  probe ??= compile(PROBE, PROBE_FLAGS).then((bytes) => WebAssembly.compile(bytes));
  return probe;
}

export function probeBytes(): Promise<Uint8Array<ArrayBuffer>> {
  return compile(PROBE, PROBE_FLAGS);
}

/** Compiles a one-file AssemblyScript module from source (for modules the host must refuse). */
export async function compileSource(
  source: string,
  options: asc.CompilerOptions = {},
): Promise<WebAssembly.Module> {
  const result = await asc.compileString(source, { runtime: "stub", exportStart: "_initialize", ...options });
  if (result.error || !result.binary)
    throw new Error(`asc: ${result.error?.message}\n${result.stderr.toString()}`);
  return WebAssembly.compile(new Uint8Array(result.binary));
}

/** A host over the probe with a manual clock and every log level kept. */
export async function probeHost(options: Partial<HostOptions> = {}): Promise<ProxyWasmHost> {
  return new ProxyWasmHost({
    module: await probeModule(),
    clock: new ManualClock(),
    logLevel: LogLevel.Trace,
    ...options,
  });
}

/** Request headers carrying probe commands. */
export function probeRequest(
  commands: string,
  extra: [string, string][] = [],
  path = "/x",
): [string, string][] {
  return [[":method", "GET"], [":path", path], [":authority", "svc"], ["x-probe", commands], ...extra];
}

export function header(pairs: readonly HeaderPair[], name: string): string | undefined {
  return pairs.find(([n]) => n === name)?.[1];
}

export function messages(host: ProxyWasmHost): string[] {
  return host.logs.map((entry) => entry.message);
}
