// The functions a module imports from the host: the Proxy-Wasm ABI under "env", one file per ABI
// area, and WASI (wasi.ts). Each mirrors proxy-wasm-cpp-host's src/exports.cc and Envoy's Context:
// argument checks, then memory reads (InvalidMemoryAccess), then the operation; the checks they
// share are in calls.ts.
import { Status } from "../abi.ts";
import type { AbiVm } from "../interfaces.ts";
import type { HostFunction } from "../memory.ts";
import { buffers } from "./buffers.ts";
import { type AbiArea, guarded, HostCalls } from "./calls.ts";
import { contexts } from "./contexts.ts";
import { foreign } from "./foreign.ts";
import { headers } from "./headers.ts";
import { httpCall } from "./http-call.ts";
import { logging } from "./logging.ts";
import { metrics } from "./metrics.ts";
import { properties } from "./properties.ts";
import { sharedData } from "./shared-data.ts";
import { stream } from "./stream.ts";
import { time } from "./time.ts";
import { WASI_ENOSYS, WASI_FUNCTIONS, WASI_MODULES, wasiFunctions } from "./wasi.ts";

/** Proxy-Wasm imports this host implements (0.2.1, plus 0.1.0 names that are trivial), by area. */
const AREAS: readonly AbiArea<string>[] = [
  logging,
  time,
  buffers,
  headers,
  properties,
  sharedData,
  stream,
  httpCall,
  contexts,
  foreign,
  metrics,
];

const PROXY_FUNCTIONS = new Set(AREAS.flatMap((area) => area.names));

/** Sorts a module's imports into provided, stubbed (unknown proxy_* and WASI) and refused. */
export function checkImports(imports: WebAssembly.ModuleImportDescriptor[]): {
  errors: string[];
  stubbed: string[];
} {
  const errors: string[] = [];
  const stubbed: string[] = [];
  for (const { module, name, kind } of imports) {
    const label = `${module}.${name}`;
    if (kind !== "function") {
      errors.push(`import ${label} (${kind}): a Proxy-Wasm host only provides functions`);
    } else if (module === "env" && PROXY_FUNCTIONS.has(name)) {
      // provided
    } else if (module === "env" && name.startsWith("proxy_")) {
      stubbed.push(label);
    } else if (WASI_MODULES.includes(module) && !(WASI_FUNCTIONS as readonly string[]).includes(name)) {
      stubbed.push(label);
    } else if (module === "env") {
      errors.push(
        `import ${label} is not provided by Proxy-Wasm hosts (Envoy refuses it too)` +
          (name === "abort" ? "; AssemblyScript: route abort with --use abort=<your function>" : "") +
          (name === "seed" ? "; AssemblyScript: Math.random imports env.seed, do not use it" : ""),
      );
    } else if (WASI_MODULES.includes(module)) {
      // provided
    } else {
      errors.push(`import ${label} is not provided by this Proxy-Wasm host`);
    }
  }
  return { errors, stubbed };
}

export function buildImports(vm: AbiVm, imports: WebAssembly.ModuleImportDescriptor[]): WebAssembly.Imports {
  const env: Record<string, HostFunction> = proxyFunctions(vm);
  const wasi: Record<string, HostFunction> = { ...wasiFunctions(vm) };
  const namespaces: Record<string, Record<string, HostFunction>> = {
    env,
    wasi_snapshot_preview1: { ...wasi },
    wasi_unstable: { ...wasi },
  };
  for (const { module, name, kind } of imports) {
    const namespace = namespaces[module];
    if (!namespace || kind !== "function" || name in namespace) continue;
    // Functions we lack but whose result type is known: Envoy would refuse the module, we let it
    // load and answer "not implemented" (proxy_* return an i32 status, WASI an i32 errno).
    if (module === "env" && name.startsWith("proxy_")) {
      namespace[name] = () => {
        vm.warnStub(`${module}.${name}`);
        return Status.Unimplemented;
      };
    } else if (module !== "env") {
      namespace[name] = () => {
        vm.warnStub(`${module}.${name}`);
        return WASI_ENOSYS;
      };
    }
  }
  return namespaces;
}

/** Every area's functions for one VM, each answering a failed check with its status. */
function proxyFunctions(vm: AbiVm): Record<string, HostFunction> {
  const abi = new HostCalls(vm);
  const functions: Record<string, HostFunction> = {};
  for (const area of AREAS) Object.assign(functions, area.functions(vm, abi));
  return guarded(functions);
}
