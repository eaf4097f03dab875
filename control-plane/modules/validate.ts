// Validation of an uploaded module, before anything is stored: the binary (magic, version,
// WebAssembly.validate), the Proxy-Wasm contract (exports, ABI 0.2.1, imports a host provides),
// then a smoke run in the TypeScript Proxy-Wasm host: start the VM, configure a plugin, and take
// one request and its response through it. Every failure is a FieldError that says what is wrong,
// so the CLI can print it as is.
import {
  compileModule,
  DEFAULT_MEMORY_LIMIT_BYTES,
  mib,
  type Plugin,
  ProxyWasmHost,
  type VmFailure,
} from "../../host/index.ts";
import type { FieldError } from "../resources/index.ts";
import { sha256Hex } from "./blobs.ts";
import { declaredMemories, limitMemory, MEMORY_REQUEST_EXPORT, PAGE_BYTES } from "./memory-limit.ts";

/** The only Proxy-Wasm ABI the mesh's Envoy and the edge host are built for. */
export const ABI_VERSION = "0.2.1";
const ABI_EXPORT = "proxy_abi_version_0_2_1";

/** Uploads above this are refused before they are parsed (Envoy inlines modules in xDS, too). */
export const MAX_MODULE_BYTES = 32 * 1024 * 1024;

const WASM_MAGIC = [0x00, 0x61, 0x73, 0x6d] as const;

export interface ValidateOptions {
  /**
   * The plugin configuration for the smoke run: a string or bytes as is, anything else as JSON.
   * Without it the module is started with an empty configuration, then with `{}` (what a WasmPlugin
   * with no settings hands it); refusing both is not an error, since no real configuration was
   * offered, but then no request can be run through it (see `warnings`).
   */
  configuration?: unknown;
  /** The plugin's root_id for the smoke run (default ""). */
  rootId?: string;
  /**
   * The ceiling of the module's linear memory (default the host's, 128 MiB): a module declaring
   * more, or asking for more in the smoke run, is refused, and the smoke run never holds more.
   */
  memoryLimitBytes?: number;
}

export type ValidateResult =
  | {
      ok: true;
      /** Lower-case hex sha256 of the bytes. */
      sha256: string;
      size: number;
      abiVersion: typeof ABI_VERSION;
      /** What the smoke run could not exercise, e.g. no request when every configuration was refused. */
      warnings: FieldError[];
    }
  | { ok: false; errors: FieldError[] };

/** Checks that `bytes` are a Proxy-Wasm module the mesh can run; nothing is stored. */
export async function validateModule(
  bytes: Uint8Array,
  options: ValidateOptions = {},
): Promise<ValidateResult> {
  const binary = checkBinary(bytes);
  if (binary.length > 0) return { ok: false, errors: binary };

  let configuration: string | Uint8Array | undefined;
  if (options.configuration !== undefined) {
    const encoded = encodeConfiguration(options.configuration);
    if (typeof encoded === "object" && "error" in encoded) {
      return { ok: false, errors: [{ path: "configuration", message: encoded.error }] };
    }
    configuration = encoded;
  }

  let module: WebAssembly.Module;
  try {
    module = await compileModule(bytes);
  } catch (error) {
    // WebAssembly.validate said yes, so this is the engine refusing something it cannot compile.
    return { ok: false, errors: [{ path: "module", message: `could not be compiled: ${describe(error)}` }] };
  }
  const contract = checkContract(module);
  if (contract.length > 0) return { ok: false, errors: contract };

  const limitBytes = options.memoryLimitBytes ?? DEFAULT_MEMORY_LIMIT_BYTES;
  const memory = checkMemory(bytes, limitBytes);
  if (memory.length > 0) return { ok: false, errors: memory };
  // The smoke run executes a copy that cannot grow past the limit and says what it asked for.
  const limited = limitMemory(bytes, Math.floor(limitBytes / PAGE_BYTES));
  let smokeModule: WebAssembly.Module;
  try {
    smokeModule = await compileModule(limited.bytes);
  } catch (error) {
    return smokeFailure(`the smoke run failed in the host: ${describe(error)}`);
  }
  const smoke = await smokeRun(smokeModule, configuration, options.rootId ?? "", limitBytes);
  if (!smoke.ok) return { ok: false, errors: smoke.errors };
  const warnings = [...smoke.warnings];
  if (!limited.observed) {
    warnings.push({
      path: "module.memory",
      message:
        `its memory growth could not be watched (${limited.reason}): the smoke run held its memory to ` +
        `the limit of ${mib(limitBytes)}, so a module that asked for more failed as it would in Envoy with that limit`,
    });
  }
  return {
    ok: true,
    sha256: sha256Hex(bytes),
    size: bytes.byteLength,
    abiVersion: ABI_VERSION,
    warnings,
  };
}

/** What the module declares: one 32-bit memory, starting within the limit. */
function checkMemory(bytes: Uint8Array, limitBytes: number): FieldError[] {
  const fail = (message: string): FieldError[] => [{ path: "module.memory", message }];
  const memories = declaredMemories(bytes);
  if (memories.length > 1) {
    return fail(
      `defines ${memories.length} memories; a Proxy-Wasm module has one linear memory, exported as "memory"`,
    );
  }
  const memory = memories[0];
  if (memory === undefined) return []; // an imported memory is refused with the imports
  if (memory.memory64)
    return fail("is a 64-bit memory (memory64): the Proxy-Wasm ABI passes 32-bit pointers");
  if (memory.pageSizeLog2 !== undefined && memory.pageSizeLog2 !== 16) {
    return fail(`uses ${2 ** memory.pageSizeLog2}-byte pages; Proxy-Wasm hosts run 64 KiB pages`);
  }
  const initial = memory.initialPages * PAGE_BYTES;
  if (initial > limitBytes) {
    return fail(
      `uses too much memory: it declares an initial memory of ${mib(initial)} (${memory.initialPages} pages); ` +
        `the limit is ${mib(limitBytes)}`,
    );
  }
  return [];
}

/** Size, magic, version, then the engine's own validation (which says only yes or no). */
function checkBinary(bytes: Uint8Array): FieldError[] {
  const fail = (message: string): FieldError[] => [{ path: "module", message }];
  if (bytes.byteLength === 0) return fail("empty upload: no bytes were sent");
  if (bytes.byteLength > MAX_MODULE_BYTES) {
    return fail(
      `too large: ${mib(bytes.byteLength)} (${bytes.byteLength} bytes); the limit is ${mib(MAX_MODULE_BYTES)}`,
    );
  }
  if (WASM_MAGIC.some((b, i) => bytes[i] !== b)) {
    const head = new TextDecoder().decode(bytes.subarray(0, 64)).trimStart();
    const hint = head.startsWith("(module")
      ? ": this is WebAssembly text (.wat); compile it to a binary first (e.g. wat2wasm)"
      : ": a module starts with \\0asm";
    return fail(`not a WebAssembly binary (bad magic)${hint}`);
  }
  if (bytes.byteLength < 8) {
    return fail(
      `invalid WebAssembly binary (truncated): ${bytes.byteLength} bytes, less than its 8-byte header`,
    );
  }
  const version =
    (bytes[4] ?? 0) | ((bytes[5] ?? 0) << 8) | ((bytes[6] ?? 0) << 16) | ((bytes[7] ?? 0) << 24);
  if (bytes[6] === 1 && bytes[7] === 0) {
    return fail("a WebAssembly component, not a core module: Proxy-Wasm hosts run core modules");
  }
  if (version !== 1) {
    return fail(`unsupported WebAssembly binary version ${version >>> 0} (expected 1)`);
  }
  if (!WebAssembly.validate(ownBytes(bytes))) {
    return fail(`invalid WebAssembly binary (truncated or corrupt): ${compileErrorOf(bytes)}`);
  }
  return [];
}

/** The engine's reason for refusing bytes that WebAssembly.validate rejected. */
function compileErrorOf(bytes: Uint8Array): string {
  try {
    new WebAssembly.Module(ownBytes(bytes));
    return "rejected by the WebAssembly engine";
  } catch (error) {
    return error instanceof Error ? error.message.replace(/^WebAssembly\.Module\(\): /, "") : String(error);
  }
}

/** The exports every Proxy-Wasm module needs, and imports this host (like Envoy) can provide. */
function checkContract(module: WebAssembly.Module): FieldError[] {
  const errors: FieldError[] = [];
  const exports = new Map(WebAssembly.Module.exports(module).map((e) => [e.name, e.kind]));
  const fail = (message: string) => errors.push({ path: "module.exports", message });
  const needFunction = (name: string, why: string) => {
    const kind = exports.get(name);
    if (kind === undefined) fail(`missing export ${name}${why}`);
    else if (kind !== "function") fail(`export ${name} must be a function (it is a ${kind})`);
  };

  if (!exports.has(ABI_EXPORT)) {
    const others = [...exports.keys()].filter((name) => name.startsWith("proxy_abi_version_"));
    if (others.length > 0) {
      fail(
        `wrong Proxy-Wasm ABI version: the module exports ${others.join(", ")}, ` +
          `but wasmesh runs ABI ${ABI_VERSION} (missing export ${ABI_EXPORT}); rebuild it with an SDK for ABI ${ABI_VERSION}`,
      );
    } else {
      fail(`missing export ${ABI_EXPORT}: not a Proxy-Wasm module, or one built for another ABI`);
    }
  } else {
    needFunction(ABI_EXPORT, "");
  }
  const memory = exports.get("memory");
  if (memory === undefined)
    fail('missing export memory: the module must export its linear memory as "memory"');
  else if (memory !== "memory") fail(`export memory must be a memory (it is a ${memory})`);
  if (exports.get("proxy_on_memory_allocate") !== "function" && exports.get("malloc") !== "function") {
    fail(
      "missing export proxy_on_memory_allocate (or malloc): the host needs the module's allocator to pass it data",
    );
  }
  needFunction("proxy_on_context_create", ": the host creates every root and HTTP context through it");

  // The host's own check also covers exports; take what it says about imports, which it knows.
  const check = ProxyWasmHost.check(module);
  for (const message of check.errors) {
    if (message.startsWith("import ")) errors.push({ path: "module.imports", message });
  }
  if (!check.ok && errors.length === 0) {
    for (const message of check.errors) errors.push({ path: "module", message });
  }
  return errors;
}

type SmokeResult = { ok: true; warnings: FieldError[] } | { ok: false; errors: FieldError[] };

/**
 * Envoy's sequence in a fresh VM per attempt (a trap fails the VM for good): _initialize,
 * proxy_on_context_create + proxy_on_vm_start + proxy_on_configure, then one request.
 */
async function smokeRun(
  module: WebAssembly.Module,
  configuration: string | Uint8Array | undefined,
  rootId: string,
  memoryLimitBytes: number,
): Promise<SmokeResult> {
  const given = configuration !== undefined;
  const attempts: (string | Uint8Array)[] = given ? [configuration] : ["", "{}"];
  const refusals: string[] = [];
  try {
    for (const attempt of attempts) {
      const host = new ProxyWasmHost({ module, memoryLimitBytes });
      const created = await host.tryCreatePlugin({ configuration: attempt, rootId, name: "wasmesh-smoke" });
      if (created.ok) {
        const errors = runRequest(host, created.plugin, memoryLimitBytes);
        return errors.length > 0 ? { ok: false, errors } : { ok: true, warnings: [] };
      }
      // Whatever the callback, memory past the limit is the module's fault, never a refusal.
      const memory = memoryError(host, memoryLimitBytes);
      if (memory) return { ok: false, errors: [memory] };
      const failure = host.failure;
      const label = describeConfiguration(attempt, given);
      switch (created.reason) {
        case "module":
          return smokeFailure(
            `could not be instantiated: ${created.error.replace(/^invalid Proxy-Wasm module: /, "")}`,
          );
        case "vm_failed":
        case "trap":
          if (failure && failure.callback !== "proxy_on_configure") return smokeFailure(trapped(failure));
          // A trap while configuring is a verdict on that configuration (a crash rather than a refusal).
          if (given) return configurationFailure(failure ? trapped(failure) : created.error);
          refusals.push(`${label}: ${failure ? trapped(failure) : created.error}`);
          continue;
        case "vm_start":
          return smokeFailure(`refused to start: ${created.error}`);
        case "configure":
          if (given) return configurationFailure(`refused by the module: ${created.error}`);
          refusals.push(`${label}: ${created.error}`);
          continue;
      }
    }
  } catch (error) {
    // The host throws only on misuse or a bug of its own; say so rather than blame the module.
    return smokeFailure(`the smoke run failed in the host: ${describe(error)}`);
  }
  return {
    ok: true,
    warnings: [
      {
        path: "module.smoke",
        message:
          `the module refused every default configuration (${refusals.join("; ")}), so no request was run through it; ` +
          "push it with a configuration to test one",
      },
    ],
  };
}

/** One GET through the plugin and a 200 back, as Envoy drives a filter; any VM failure is an error. */
function runRequest(host: ProxyWasmHost, plugin: Plugin, memoryLimitBytes: number): FieldError[] {
  const failed = () => {
    if (!host.failure) return undefined;
    return [memoryError(host, memoryLimitBytes) ?? { path: "module.smoke", message: trapped(host.failure) }];
  };
  const stream = plugin.newHttpStream();
  const request = stream.requestHeaders(
    [
      [":method", "GET"],
      [":scheme", "http"],
      [":authority", "smoke.wasmesh.invalid"],
      [":path", "/wasmesh/smoke"],
      ["user-agent", "wasmesh-module-validation"],
      ["accept", "*/*"],
    ],
    true,
  );
  let errors = failed();
  if (errors) return errors;
  // A local reply went through the response callbacks already; a paused request (waiting on a
  // timer or a call out) is legitimate and would get its response only once resumed.
  if (!request.localResponse && request.action === "continue" && !request.reset) {
    stream.responseHeaders(
      [
        [":status", "200"],
        ["content-type", "text/plain"],
        ["content-length", "0"],
      ],
      true,
    );
    errors = failed();
    if (errors) return errors;
  }
  stream.complete();
  return failed() ?? [];
}

/**
 * The refusal of a module whose memory went past the limit: what the grow function added by
 * limitMemory recorded (the size asked for), else what the host saw after a callback.
 */
export function memoryError(host: ProxyWasmHost, limitBytes: number): FieldError | undefined {
  const failure = host.failure;
  const where = failure ? ` in ${failure.callback}` : "";
  const asked = host.exportedGlobal(MEMORY_REQUEST_EXPORT);
  let what: string;
  if (typeof asked === "bigint" && asked > 0n) {
    const pages = Number(asked);
    what = `it asked to grow its memory to ${mib(pages * PAGE_BYTES)} (${pages} pages)${where}`;
  } else if (failure?.memory) {
    what = `its memory grew to ${mib(failure.memory.bytes)}${where}`;
  } else {
    return undefined;
  }
  return { path: "module.memory", message: `uses too much memory: ${what}; the limit is ${mib(limitBytes)}` };
}

function smokeFailure(message: string): { ok: false; errors: FieldError[] } {
  return { ok: false, errors: [{ path: "module.smoke", message }] };
}

function configurationFailure(message: string): { ok: false; errors: FieldError[] } {
  return { ok: false, errors: [{ path: "configuration", message }] };
}

/** "trapped in proxy_on_vm_start: unreachable (the module logged: ...)". */
export function trapped(failure: VmFailure): string {
  const message = failure.message.replace(/^RuntimeError: /, "");
  const said = failure.moduleMessage !== undefined ? ` (the module logged: ${failure.moduleMessage})` : "";
  return `trapped in ${failure.callback}: ${message}${said}`;
}

function describeConfiguration(configuration: string | Uint8Array, given: boolean): string {
  if (given) return "the configuration";
  return configuration.length === 0 ? "empty configuration" : `configuration ${String(configuration)}`;
}

function encodeConfiguration(value: unknown): string | Uint8Array | { error: string } {
  if (typeof value === "string" || value instanceof Uint8Array) return value;
  try {
    const json = JSON.stringify(value);
    if (json === undefined) return { error: "must be JSON-serialisable (got a function or a symbol)" };
    return json;
  } catch (error) {
    return { error: `must be JSON-serialisable: ${describe(error)}` };
  }
}

/** A copy backed by a plain ArrayBuffer: Node's Buffer may sit on a shared pool. */
function ownBytes(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return new Uint8Array(bytes);
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
