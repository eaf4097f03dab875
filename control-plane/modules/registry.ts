// The module registry: validated bytes go to the blob store, then a WasmModule resource naming
// their digest goes to the resource store. Blob first, reference second: a crash in between leaves
// an unreferenced blob (harmless), never a resource whose bytes are missing.
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { Value } from "@sinclair/typebox/value";
import { DEFAULT_MEMORY_LIMIT_BYTES } from "../../host/index.ts";
import type { ModuleCode } from "../envoy/index.ts";
import {
  API_VERSION,
  type FieldError,
  MESH_MODULE,
  ResourceName,
  validateResource,
  type WasmModule,
} from "../resources/index.ts";
import { ConflictError, type ResourceStore, type StoredResource } from "../store/index.ts";
import { isSha256, type ModuleBlobStore, sha256Hex } from "./blobs.ts";
import { validateModuleIsolated } from "./isolate.ts";
import { capMemoryMaximum, PAGE_BYTES } from "./memory-limit.ts";
import { type ModuleRegistry, ModuleRejectedError, type PushOptions, type PushResult } from "./types.ts";
import type { ValidateOptions, ValidateResult } from "./validate.ts";

const KIND = "WasmModule";

/** build/mesh.wasm of this checkout, where `npm run build:filters` writes it. */
export const BUILTIN_MODULE_PATH = fileURLToPath(new URL("../../build/mesh.wasm", import.meta.url));

export interface ModuleRegistryOptions {
  store: ResourceStore;
  blobs: ModuleBlobStore;
  /** The built-in module (build/mesh.wasm), served under the reserved name "mesh". */
  builtin: ModuleCode;
  /** Where missing or damaged module bytes are reported (default console.warn). */
  log?: (line: string) => void;
  /** Replaces the default validation (validateModuleIsolated: a worker thread with a time limit). */
  validate?: (bytes: Uint8Array, options: ValidateOptions) => Promise<ValidateResult>;
  /**
   * The modules' memory ceiling (default the host's, 128 MiB): the code handed to translation,
   * which Envoy runs, declares at most this much memory, so V8 refuses to grow a module past it.
   * Stored bytes (and bytes()) stay as uploaded. Validation has its own setting (ValidateOptions).
   */
  memoryLimitBytes?: number;
}

/** Reads the built-in module; tells the user how to build it when it is not there. */
export async function loadBuiltinModule(path: string = BUILTIN_MODULE_PATH): Promise<ModuleCode> {
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(await readFile(path));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") {
      throw new Error(
        `the built-in module ${path} does not exist: run \`npm run build:filters\` to build it`,
      );
    }
    throw new Error(`cannot read the built-in module ${path}: ${(error as Error).message}`);
  }
  return { sha256: sha256Hex(bytes), bytes };
}

/** Code as codes() hands it out: always with the digest of its bytes. */
type Deployable = ModuleCode & { codeSha256: string };

export function createModuleRegistry(options: ModuleRegistryOptions): ModuleRegistry {
  const { store, blobs, builtin } = options;
  const log = options.log ?? ((line: string) => console.warn(line));
  const validate = options.validate ?? validateModuleIsolated;
  const limitPages = Math.floor((options.memoryLimitBytes ?? DEFAULT_MEMORY_LIMIT_BYTES) / PAGE_BYTES);
  // Blobs never change under a digest, so bytes once read and verified can be kept. Bounded by what
  // the last codes() call needed (the modules in use), plus whatever bytes() fetched since.
  let cache = new Map<string, Uint8Array>();
  /** What codes() hands out: the bytes with their memory capped (capMemoryMaximum), by version digest. */
  let deployable = new Map<string, Deployable>();
  /**
   * The same code by its own digest (codeSha256), which proxies with local module delivery fetch:
   * what the last codes() call handed out, and the call before (a proxy may still be fetching what
   * the revision before the newest named).
   */
  let served = new Map<string, Uint8Array>();
  let servedBefore = new Map<string, Uint8Array>();
  const builtinCode = deployableCode(builtin.sha256, builtin.bytes);

  /** The code Envoy runs of a version: its memory maximum capped, and the digest of that. */
  function deployableCode(sha256: string, bytes: Uint8Array): Deployable {
    const code = capMemoryMaximum(bytes, limitPages);
    return { sha256, bytes: code, codeSha256: sha256Hex(code) };
  }

  async function load(sha256: string): Promise<Uint8Array | undefined> {
    if (sha256 === builtin.sha256) return builtin.bytes;
    const cached = cache.get(sha256);
    if (cached) return cached;
    const bytes = await blobs.get(sha256);
    if (bytes) cache.set(sha256, bytes);
    return bytes;
  }

  /** The store part of a push, for bytes validation accepted. */
  async function storeValidated(
    name: string,
    bytes: Uint8Array,
    verdict: Extract<ValidateResult, { ok: true }>,
    pushOptions: PushOptions,
  ): Promise<PushResult> {
    const { sha256, size, abiVersion, warnings } = verdict;

    const current = await store.get(KIND, name);
    const currentSpec = current?.spec as WasmModule["spec"] | undefined;
    const description =
      pushOptions.description ?? (currentSpec?.sha256 === sha256 ? currentSpec.description : undefined);
    if (current && currentSpec?.sha256 === sha256 && currentSpec.description === description) {
      // Nothing to write, but the caller's precondition still holds or fails as an apply's would.
      checkExpected(name, pushOptions.expectedVersion, current);
      // Repairs a blob lost or damaged since: the resource must keep pointing at real bytes.
      if (!(await blobs.has(sha256))) await blobs.put(sha256, bytes);
      return { resource: current, created: false, unchanged: true, warnings };
    }

    const spec: WasmModule["spec"] = {
      sha256,
      size,
      abiVersion,
      ...(description !== undefined ? { description } : {}),
    };
    const labels = current?.metadata.labels;
    const resource = {
      apiVersion: API_VERSION,
      kind: KIND,
      metadata: { name, ...(labels ? { labels } : {}) },
      spec,
    };
    // The store knows nothing of the model: check the document as the API would before storing it.
    const checked = validateResource(resource);
    if (!checked.ok) throw new ModuleRejectedError(checked.errors);

    await blobs.put(sha256, bytes);
    const applied = await store.apply([
      pushOptions.expectedVersion === undefined
        ? { op: "put", resource }
        : { op: "put", resource, expectedVersion: pushOptions.expectedVersion },
    ]);
    const change = applied.changes[0];
    if (change?.op !== "put") throw new Error(`store apply returned ${JSON.stringify(change)} for a put`);
    return { resource: change.resource, created: change.created, unchanged: false, warnings };
  }

  return {
    builtinSha256: builtin.sha256,

    async push(name: string, bytes: Uint8Array, pushOptions: PushOptions = {}): Promise<PushResult> {
      const request = requestErrors(name, pushOptions);
      if (request.length > 0) throw new ModuleRejectedError(request);

      const verdict = await validate(bytes, {
        ...(pushOptions.configuration !== undefined ? { configuration: pushOptions.configuration } : {}),
        ...(pushOptions.rootId !== undefined ? { rootId: pushOptions.rootId } : {}),
      });
      if (!verdict.ok) throw new ModuleRejectedError(verdict.errors);
      await pushOptions.accept?.({ sha256: verdict.sha256, bytes });
      const write = () => storeValidated(name, bytes, verdict, pushOptions);
      return pushOptions.exclusive ? pushOptions.exclusive(write) : write();
    },

    async bytes(sha256: string): Promise<Uint8Array | undefined> {
      if (!isSha256(sha256)) return undefined;
      return load(sha256);
    },

    builtinCodeSha256: builtinCode.codeSha256,

    code(codeSha256: string): Uint8Array | undefined {
      if (codeSha256 === builtinCode.codeSha256) return builtinCode.bytes;
      return served.get(codeSha256) ?? servedBefore.get(codeSha256);
    },

    async codes(modules: readonly { name: string; sha256: string }[]): Promise<Map<string, ModuleCode>> {
      const codes = new Map<string, ModuleCode>();
      const used = new Map<string, Uint8Array>();
      const capped = new Map<string, Deployable>();
      for (const { name, sha256 } of modules) {
        if (name === MESH_MODULE) continue; // reserved: the built-in always wins
        if (sha256 === builtin.sha256) {
          codes.set(name, builtinCode);
          continue;
        }
        const bytes = await load(sha256);
        if (bytes === undefined) {
          // Translation refuses a plugin whose module has no code, so the gap shows up there too.
          log(`wasmesh: no bytes for module '${name}' (sha256 ${sha256}): push it again`);
          continue;
        }
        const code = deployable.get(sha256) ?? deployableCode(sha256, bytes);
        codes.set(name, code);
        used.set(sha256, bytes);
        capped.set(sha256, code);
      }
      codes.set(MESH_MODULE, builtinCode);
      cache = used;
      deployable = capped;
      servedBefore = served;
      served = new Map([...capped.values()].map((code) => [code.codeSha256, code.bytes]));
      return codes;
    },
  };
}

/** What is wrong with the request itself (name, description), before looking at the bytes. */
function requestErrors(name: string, options: PushOptions): FieldError[] {
  const errors: FieldError[] = [];
  if (name === MESH_MODULE) {
    errors.push({
      path: "name",
      message: `"${MESH_MODULE}" is reserved for the built-in module (build/mesh.wasm); choose another name`,
    });
  } else if (!Value.Check(ResourceName, name)) {
    errors.push({
      path: "name",
      message: `invalid module name ${JSON.stringify(name)}: use a DNS-1123 label (lower-case letters, digits and '-', at most 63 characters, starting and ending alphanumeric)`,
    });
  }
  if (options.description !== undefined && options.description.length > 1024) {
    errors.push({
      path: "description",
      message: `too long: ${options.description.length} characters (at most 1024)`,
    });
  }
  return errors;
}

/** The precondition of an apply, for a push that writes nothing. */
function checkExpected(name: string, expected: string | null | undefined, current: StoredResource): void {
  if (expected === undefined) return;
  if (expected !== current.metadata.resourceVersion) {
    throw new ConflictError(KIND, name, expected, current.metadata.resourceVersion);
  }
}
