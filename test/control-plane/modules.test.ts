// The module registry: validation at upload (the binary, the Proxy-Wasm contract, a smoke run in the
// TypeScript host), content-addressed blobs on disk, and WasmModule resources in a real SQLite store.
// Broken modules are AssemblyScript fixtures (test/fixtures/modules/) compiled in memory.
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, utimesSync, writeFileSync } from "node:fs";
import { request as httpRequest, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { serve } from "@hono/node-server";
import asc from "assemblyscript/asc";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { createApi } from "../../control-plane/api/index.ts";
import type { ModuleCode } from "../../control-plane/envoy/index.ts";
import {
  createFileBlobStore,
  createMemoryBlobStore,
  createModuleRegistry,
  declaredMemories,
  type FileBlobStore,
  limitMemory,
  loadBuiltinModule,
  MAX_MODULE_BYTES,
  MEMORY_REQUEST_EXPORT,
  type ModuleRegistry,
  ModuleRejectedError,
  ValidationPool,
  validateModule,
  validateModuleIsolated,
} from "../../control-plane/modules/index.ts";
import {
  ConflictError,
  createMemoryStore,
  openSqliteStore,
  type ResourceStore,
} from "../../control-plane/store/index.ts";
import { RELEASE_WASM } from "../support/artifacts.ts";
import { compileAssemblyScript } from "../support/asc.ts";
import { startControlPlaneProcess } from "../support/control-plane.ts";
import { tagModule } from "../support/tag-module.ts";
import { tempDir } from "../support/temp.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const FIXTURES = [
  "trap-vm-start",
  "trap-request",
  "no-abi",
  "abi-0-1-0",
  "refuse-config",
  "loop-configure",
  "trap-configure",
  "grow-vm-start",
  "grow-touch",
] as const;
type Fixture = (typeof FIXTURES)[number];

let mesh: Uint8Array;
let builtin: ModuleCode;
let tag1: Uint8Array;
let tag2: Uint8Array;
const fixtures = new Map<Fixture, Uint8Array>();
/** A module whose memory section asks for 2049 pages (128 MiB and one page) from the start. */
let bigInitial: Uint8Array;

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");
const fixture = (name: Fixture) => fixtures.get(name) as Uint8Array;
/** The smallest valid module: header only, no exports. */
const EMPTY_MODULE = new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]);

beforeAll(async () => {
  if (!existsSync(RELEASE_WASM)) throw new Error(`${RELEASE_WASM} is missing: run npm run build:filters`);
  mesh = new Uint8Array(readFileSync(RELEASE_WASM));
  builtin = await loadBuiltinModule();
  tag1 = await tagModule(1);
  tag2 = await tagModule(2);
  for (const name of FIXTURES) {
    fixtures.set(
      name,
      await compileAssemblyScript(
        `test/fixtures/modules/${name}.ts`,
        ["--config", "asconfig.json", "--target", "release"],
        {
          baseDir: ROOT,
        },
      ),
    );
  }
  bigInitial = await compileAssemblyScript(
    "test/fixtures/modules/refuse-config.ts",
    ["--config", "asconfig.json", "--target", "release", "--initialMemory", "2049"],
    { baseDir: ROOT },
  );
}, 120_000);

interface Env {
  dataDir: string;
  store: ResourceStore;
  blobs: FileBlobStore;
  registry: ModuleRegistry;
  logs: string[];
}

const stores: ResourceStore[] = [];
const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
  for (const store of stores.splice(0)) await store.close();
});

async function open(dataDir?: string): Promise<Env> {
  const dir = dataDir ?? tempDir("modules");
  const store = await openSqliteStore({ dataDir: dir });
  stores.push(store);
  const logs: string[] = [];
  const log = (line: string) => logs.push(line);
  const blobs = createFileBlobStore(dir, { log });
  // In-thread validation keeps this file fast; the default (a worker per push) gives the same
  // verdicts, checked under "validateModuleIsolated", and runs in the API and end-to-end tests.
  const registry = createModuleRegistry({ store, blobs, builtin, log, validate: validateModule });
  return { dataDir: dir, store, blobs, registry, logs };
}

/** The .wasm files in the blob directory (none if it was never created). */
function blobFiles(env: Env): string[] {
  return existsSync(env.blobs.dir) ? readdirSync(env.blobs.dir).filter((f) => f.endsWith(".wasm")) : [];
}

/**
 * `code` is `original` as Envoy is to run it: the same version digest and exports, a declared
 * maximum memory of `pages` (the ceiling: 128 MiB by default), and the digest of that code.
 */
function expectDeployable(code: ModuleCode | undefined, original: Uint8Array, pages = 2048): void {
  expect(code?.sha256).toBe(sha256(original));
  const bytes = code?.bytes ?? new Uint8Array();
  expect(code?.codeSha256).toBe(sha256(bytes));
  expect(declaredMemories(bytes)).toEqual([
    { ...(declaredMemories(original)[0] as object), maximumPages: pages },
  ]);
  const exportsOf = (wasm: Uint8Array) =>
    WebAssembly.Module.exports(new WebAssembly.Module(new Uint8Array(wasm)));
  expect(exportsOf(bytes)).toEqual(exportsOf(original));
}

async function rejection(promise: Promise<unknown>): Promise<ModuleRejectedError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ModuleRejectedError);
  return error as ModuleRejectedError;
}

describe("push", () => {
  it("stores a valid module's bytes by sha256 and publishes a WasmModule resource", async () => {
    const env = await open();
    const result = await env.registry.push("routing", mesh, { description: "the mesh filter, again" });
    const digest = sha256(mesh);
    expect(result).toMatchObject({ created: true, unchanged: false, warnings: [] });
    expect(result.resource).toMatchObject({
      apiVersion: "wasmesh.io/v1alpha1",
      kind: "WasmModule",
      metadata: { name: "routing", resourceVersion: "1" },
      spec: {
        sha256: digest,
        size: mesh.byteLength,
        abiVersion: "0.2.1",
        description: "the mesh filter, again",
      },
    });
    expect(await env.store.get("WasmModule", "routing")).toEqual(result.resource);
    expect(await env.store.revision()).toBe(1);

    const file = join(env.dataDir, "modules", `${digest}.wasm`);
    expect(env.blobs.pathOf(digest)).toBe(file);
    expect(new Uint8Array(readFileSync(file))).toEqual(mesh);
    // Only the blob: the temp file it was written as has been renamed into place.
    expect(readdirSync(env.blobs.dir)).toEqual([`${digest}.wasm`]);
  });

  it("survives reopening the store and the blobs", async () => {
    const first = await open();
    const { resource } = await first.registry.push("routing", mesh);
    await first.store.close();

    const again = await open(first.dataDir);
    expect(await again.store.get("WasmModule", "routing")).toEqual(resource);
    const digest = sha256(mesh);
    expect(await again.registry.bytes(digest)).toEqual(mesh);
    expect(await again.blobs.has(digest)).toBe(true);
    const codes = await again.registry.codes([{ name: "routing", sha256: digest }]);
    expectDeployable(codes.get("routing"), mesh);
  });

  it("answers unchanged, without a store write, when the same bytes are pushed again", async () => {
    const env = await open();
    const first = await env.registry.push("tag", tag1, { description: "v1" });
    const again = await env.registry.push("tag", tag1);
    expect(again).toMatchObject({ created: false, unchanged: true });
    expect(again.resource).toEqual(first.resource); // the description stays with its bytes
    expect(await env.store.revision()).toBe(1);

    const relabelled = await env.registry.push("tag", tag1, { description: "version one" });
    expect(relabelled).toMatchObject({ created: false, unchanged: false });
    expect(relabelled.resource.metadata.resourceVersion).toBe("2");

    const next = await env.registry.push("tag", tag2);
    expect(next).toMatchObject({ created: false, unchanged: false });
    expect(next.resource.spec).toEqual({ sha256: sha256(tag2), size: tag2.byteLength, abiVersion: "0.2.1" });
    expect(await env.store.revision()).toBe(3);
    // Old versions stay addressable: a proxy may still be fetching them.
    expect(blobFiles(env).sort()).toEqual([`${sha256(tag1)}.wasm`, `${sha256(tag2)}.wasm`].sort());
  });

  it("repairs a damaged blob when the same bytes are pushed again", async () => {
    const env = await open();
    await env.registry.push("tag", tag1);
    const file = env.blobs.pathOf(sha256(tag1));
    writeFileSync(file, "garbage");
    const fresh = createModuleRegistry({ store: env.store, blobs: env.blobs, builtin, log: () => {} });
    expect(await fresh.bytes(sha256(tag1))).toBeUndefined();
    expect(env.logs.join("\n")).toMatch(/module blob .* is damaged/);

    expect(await fresh.push("tag", tag1)).toMatchObject({ unchanged: true });
    expect(new Uint8Array(readFileSync(file))).toEqual(tag1);
    expect(await env.store.revision()).toBe(1);
  });

  it("tests a given configuration in the smoke run, and rejects one the module refuses", async () => {
    const env = await open();
    expect(await env.registry.push("tag", tag1, { configuration: { greeting: "hi" } })).toMatchObject({
      created: true,
    });
    const error = await rejection(env.registry.push("tag", tag2, { configuration: "reject" }));
    expect(error.errors).toEqual([
      {
        path: "configuration",
        message: "refused by the module: tag: configuration refused: it asks to be rejected",
      },
    ]);
    expect((await env.store.get("WasmModule", "tag"))?.spec).toMatchObject({ sha256: sha256(tag1) });
  });

  it("accepts, with a warning, a module that refuses every default configuration", async () => {
    const env = await open();
    const result = await env.registry.push("picky", fixture("refuse-config"));
    expect(result.created).toBe(true);
    expect(result.warnings).toEqual([
      {
        path: "module.smoke",
        message: expect.stringMatching(/refused every default configuration .*no request was run/),
      },
    ]);
    expect(result.warnings[0]?.message).toContain("refuse-config: no configuration is good enough");
  });
});

describe("push refuses", () => {
  const tooLarge = () => {
    const bytes = new Uint8Array(MAX_MODULE_BYTES + 1);
    bytes.set(EMPTY_MODULE);
    return bytes;
  };
  /** The first error is path: message; `errors` is how many there are (default 1). */
  const cases: {
    what: string;
    name?: string;
    bytes: () => Uint8Array;
    path: string;
    message: string | RegExp;
    errors?: number;
  }[] = [
    {
      what: "bytes that are not WebAssembly",
      bytes: () => new TextEncoder().encode("#!/bin/sh\necho not a module\n"),
      path: "module",
      message: /^not a WebAssembly binary \(bad magic\)/,
    },
    {
      what: "WebAssembly text",
      bytes: () => new TextEncoder().encode("(module)"),
      path: "module",
      message: /bad magic\): this is WebAssembly text \(\.wat\)/,
    },
    {
      what: "no bytes",
      bytes: () => new Uint8Array(0),
      path: "module",
      message: "empty upload: no bytes were sent",
    },
    {
      what: "a truncated module",
      bytes: () => mesh.subarray(0, Math.floor(mesh.byteLength / 2)),
      path: "module",
      message: /^invalid WebAssembly binary \(truncated or corrupt\): .+/,
    },
    {
      what: "a truncated header",
      bytes: () => EMPTY_MODULE.subarray(0, 6),
      path: "module",
      message: "invalid WebAssembly binary (truncated): 6 bytes, less than its 8-byte header",
    },
    {
      what: "a valid module without Proxy-Wasm exports",
      bytes: () => EMPTY_MODULE,
      path: "module.exports",
      message:
        "missing export proxy_abi_version_0_2_1: not a Proxy-Wasm module, or one built for another ABI",
      errors: 4, // memory, allocator and proxy_on_context_create too (see validateModule below)
    },
    {
      what: "a filter without proxy_abi_version_0_2_1",
      bytes: () => fixture("no-abi"),
      path: "module.exports",
      message:
        "missing export proxy_abi_version_0_2_1: not a Proxy-Wasm module, or one built for another ABI",
    },
    {
      what: "a filter for another ABI version",
      bytes: () => fixture("abi-0-1-0"),
      path: "module.exports",
      message:
        /^wrong Proxy-Wasm ABI version: the module exports proxy_abi_version_0_1_0, but wasmesh runs ABI 0\.2\.1/,
    },
    {
      what: "a module that traps as the VM starts",
      bytes: () => fixture("trap-vm-start"),
      path: "module.smoke",
      message: "trapped in proxy_on_vm_start: unreachable",
    },
    {
      what: "a module that traps on a request",
      bytes: () => fixture("trap-request"),
      path: "module.smoke",
      message:
        /^trapped in proxy_on_request_headers: unreachable \(the module logged: .*smoke request exploded/,
    },
    {
      what: "a module that grows its memory to 4 GiB as the VM starts",
      bytes: () => fixture("grow-vm-start"),
      path: "module.memory",
      message:
        "uses too much memory: it asked to grow its memory to 4096 MiB (65536 pages) in proxy_on_vm_start; the limit is 128 MiB",
    },
    {
      what: "a module that grows its memory and uses it, 16 MiB at a time, past the limit",
      bytes: () => fixture("grow-touch"),
      path: "module.memory",
      message:
        "uses too much memory: it asked to grow its memory to 128.1 MiB (2049 pages) in proxy_on_vm_start; the limit is 128 MiB",
    },
    {
      what: "a module whose memory starts above the limit",
      bytes: () => bigInitial,
      path: "module.memory",
      message:
        "uses too much memory: it declares an initial memory of 128.1 MiB (2049 pages); the limit is 128 MiB",
    },
    {
      what: "a module over the size limit",
      bytes: tooLarge,
      path: "module",
      message: "too large: 32.0 MiB (33554433 bytes); the limit is 32 MiB",
    },
    {
      what: 'the reserved name "mesh"',
      name: "mesh",
      bytes: () => mesh,
      path: "name",
      message: '"mesh" is reserved for the built-in module (build/mesh.wasm); choose another name',
    },
    {
      what: "an invalid name",
      name: "My_Filter",
      bytes: () => mesh,
      path: "name",
      message: /^invalid module name "My_Filter"/,
    },
    { what: "an empty name", name: "", bytes: () => mesh, path: "name", message: /^invalid module name ""/ },
    {
      what: "a name too long",
      name: "a".repeat(64),
      bytes: () => mesh,
      path: "name",
      message: /^invalid module name/,
    },
  ];

  for (const c of cases) {
    it(`${c.what}, storing nothing`, async () => {
      const env = await open();
      const error = await rejection(env.registry.push(c.name ?? "custom", c.bytes()));
      const message = typeof c.message === "string" ? c.message : expect.stringMatching(c.message);
      expect(error.errors[0]).toEqual({ path: c.path, message });
      expect(error.errors).toHaveLength(c.errors ?? 1);
      expect(error.message).toContain(`${c.path}: `);
      expect(await env.store.revision()).toBe(0);
      expect(await env.store.list()).toEqual([]);
      expect(blobFiles(env)).toEqual([]);
    });
  }

  it("a push whose expectedVersion does not hold, with ConflictError", async () => {
    const env = await open();
    const created = await env.registry.push("tag", tag1, { expectedVersion: null });
    expect(created.created).toBe(true);
    await expect(env.registry.push("tag", tag2, { expectedVersion: null })).rejects.toBeInstanceOf(
      ConflictError,
    );
    await expect(env.registry.push("tag", tag2, { expectedVersion: "7" })).rejects.toThrow(
      /conflict on WasmModule\/tag: expected resourceVersion "7", but found resourceVersion "1"/,
    );
    // An unchanged push checks the precondition too.
    await expect(env.registry.push("tag", tag1, { expectedVersion: "7" })).rejects.toBeInstanceOf(
      ConflictError,
    );
    await expect(env.registry.push("other", tag1, { expectedVersion: "1" })).rejects.toBeInstanceOf(
      ConflictError,
    );
    expect(await env.store.revision()).toBe(1);
    expect((await env.store.get("WasmModule", "tag"))?.spec).toMatchObject({ sha256: sha256(tag1) });

    const updated = await env.registry.push("tag", tag2, { expectedVersion: "1" });
    expect(updated.resource.metadata.resourceVersion).toBe("2");
    expect(await env.registry.push("tag", tag2, { expectedVersion: "2" })).toMatchObject({ unchanged: true });
  });
});

describe("bytes and codes", () => {
  it("serves the built-in module and pushed versions by sha256, and nothing else", async () => {
    const env = await open();
    await env.registry.push("tag", tag1);
    await env.registry.push("tag", tag2);
    expect(builtin).toEqual({ sha256: sha256(mesh), bytes: mesh });
    expect(await env.registry.bytes(builtin.sha256)).toEqual(mesh);
    expect(await env.registry.bytes(sha256(tag1))).toEqual(tag1);
    expect(await env.registry.bytes(sha256(tag2))).toEqual(tag2);
    expect(await env.registry.bytes(sha256(new Uint8Array([1])))).toBeUndefined();
    expect(await env.registry.bytes("../../etc/passwd")).toBeUndefined();
    expect(await env.registry.bytes(sha256(tag1).toUpperCase())).toBeUndefined();
  });

  it("gives the code of every module named, plus the built-in mesh", async () => {
    const env = await open();
    await env.registry.push("tag", tag1);
    await env.registry.push("routing", mesh);
    const modules = (await env.store.list("WasmModule")).map((r) => ({
      name: r.metadata.name,
      sha256: (r.spec as { sha256: string }).sha256,
    }));
    const codes = await env.registry.codes(modules);
    expect([...codes.keys()].sort()).toEqual(["mesh", "routing", "tag"]);
    expectDeployable(codes.get("mesh"), builtin.bytes);
    expectDeployable(codes.get("tag"), tag1);
    expectDeployable(codes.get("routing"), mesh);

    expect([...(await env.registry.codes([])).keys()]).toEqual(["mesh"]);
    // A module whose bytes are gone is left out (translation then refuses it) and logged.
    const missing = await env.registry.codes([{ name: "gone", sha256: "0".repeat(64) }]);
    expect([...missing.keys()]).toEqual(["mesh"]);
    expect(env.logs.join("\n")).toContain("no bytes for module 'gone'");
  });

  it("hands translation code that cannot grow its memory past the ceiling; the stored bytes stay as uploaded", async () => {
    const store = createMemoryStore();
    stores.push(store);
    const registry = createModuleRegistry({
      store,
      blobs: createMemoryBlobStore(),
      builtin,
      validate: validateModule,
      memoryLimitBytes: 32 * 1024 * 1024,
    });
    await registry.push("tag", tag1);
    const codes = await registry.codes([{ name: "tag", sha256: sha256(tag1) }]);
    expectDeployable(codes.get("tag"), tag1, 512);
    expectDeployable(codes.get("mesh"), builtin.bytes, 512);
    expect(await registry.bytes(sha256(tag1))).toEqual(tag1);
    // The code by its own digest, as proxies that load module files fetch it.
    for (const code of codes.values()) expect(registry.code(code.codeSha256 ?? "")).toEqual(code.bytes);
    expect(registry.builtinCodeSha256).toBe(codes.get("mesh")?.codeSha256);
    expect(registry.code(sha256(tag1))).toBeUndefined();
    expect(declaredMemories(tag1)).toEqual([{ initialPages: 1, shared: false, memory64: false }]);
  });

  it("works over the in-memory store and blobs", async () => {
    const store = createMemoryStore();
    stores.push(store);
    const registry = createModuleRegistry({ store, blobs: createMemoryBlobStore(), builtin });
    const { resource } = await registry.push("tag", tag1);
    expect(resource.spec).toMatchObject({ sha256: sha256(tag1) });
    expect(await registry.bytes(sha256(tag1))).toEqual(tag1);
    expect(await registry.push("tag", tag1)).toMatchObject({ unchanged: true });
  });
});

describe("blobs on disk", () => {
  it("refuse bytes that do not match their digest, and digests that are not one", async () => {
    const env = await open();
    await expect(env.blobs.put(sha256(tag1), tag2)).rejects.toThrow(/do not match their digest/);
    await expect(env.blobs.put("../x", tag1)).rejects.toThrow(/not a lower-case hex sha256/);
    expect(blobFiles(env)).toEqual([]);
  });

  it("treat a damaged file as absent, and replace it on the next put", async () => {
    const env = await open();
    const digest = sha256(tag1);
    await env.blobs.put(digest, tag1);
    const damaged = new Uint8Array(tag1);
    damaged[100] = (damaged[100] ?? 0) ^ 0xff;
    writeFileSync(env.blobs.pathOf(digest), damaged);
    expect(await env.blobs.get(digest)).toBeUndefined();
    expect(await env.blobs.has(digest)).toBe(false);
    expect(env.logs.length).toBeGreaterThan(0);
    for (const line of env.logs) expect(line).toContain(`${digest}.wasm is damaged`);
    await env.blobs.put(digest, tag1);
    expect(await env.blobs.get(digest)).toEqual(tag1);
  });

  it("sweep temp files a crashed put left behind, but not one in progress", async () => {
    const env = await open();
    await env.blobs.put(sha256(tag1), new Uint8Array(tag1)); // creates the directory
    const stale = join(env.blobs.dir, `.${"a".repeat(64)}.1.x.tmp`);
    const recent = join(env.blobs.dir, `.${"b".repeat(64)}.1.y.tmp`);
    writeFileSync(stale, "partial");
    writeFileSync(recent, "partial");
    const twoHoursAgo = new Date(Date.now() - 2 * 60 * 60 * 1000);
    utimesSync(stale, twoHoursAgo, twoHoursAgo);
    // A temp file is never read as a blob.
    expect(await env.blobs.has("a".repeat(64))).toBe(false);

    const blobs = createFileBlobStore(env.dataDir); // the sweep runs once per store, at its first put
    await blobs.put(sha256(tag2), tag2);
    expect(existsSync(stale)).toBe(false);
    expect(existsSync(recent)).toBe(true);
  });
});

describe("validateModule", () => {
  it("accepts the built-in module, with its digest, size and ABI", async () => {
    expect(await validateModule(mesh)).toEqual({
      ok: true,
      sha256: sha256(mesh),
      size: mesh.byteLength,
      abiVersion: "0.2.1",
      warnings: [],
    });
    expect(await validateModule(mesh, { configuration: { routes: [] } })).toMatchObject({ ok: true });
  });

  it("rejects a configuration the module refuses, or one that is not JSON", async () => {
    expect(await validateModule(mesh, { configuration: { bogus: 1 } })).toEqual({
      ok: false,
      errors: [
        {
          path: "configuration",
          message: expect.stringMatching(
            /^refused by the module: wasmesh: invalid plugin configuration: bogus/,
          ),
        },
      ],
    });
    expect(await validateModule(mesh, { configuration: { n: 1n } })).toEqual({
      ok: false,
      errors: [{ path: "configuration", message: expect.stringMatching(/^must be JSON-serialisable/) }],
    });
  });

  it("lists every missing export at once", async () => {
    const result = await validateModule(EMPTY_MODULE);
    expect(result.ok).toBe(false);
    if (!result.ok) {
      expect(result.errors.map((e) => e.message)).toEqual([
        expect.stringMatching(/^missing export proxy_abi_version_0_2_1/),
        expect.stringMatching(/^missing export memory/),
        expect.stringMatching(/^missing export proxy_on_memory_allocate \(or malloc\)/),
        expect.stringMatching(/^missing export proxy_on_context_create/),
      ]);
    }
  });
});

describe("validateModuleIsolated", () => {
  it("gives the same verdicts as validateModule, from a worker thread", async () => {
    const good = await validateModuleIsolated(mesh);
    expect(good).toMatchObject({ ok: true, sha256: sha256(mesh), size: mesh.length });
    const bad = await validateModuleIsolated(fixture("trap-vm-start"));
    expect(bad).toEqual({
      ok: false,
      errors: [{ path: "module.smoke", message: "trapped in proxy_on_vm_start: unreachable" }],
    });
  });

  it("gives up on a module that never returns, and the registry refuses it without storing it", async () => {
    const verdict = await validateModuleIsolated(fixture("loop-configure"), {}, { timeoutMs: 500 });
    expect(verdict).toEqual({
      ok: false,
      errors: [
        {
          path: "module.smoke",
          message:
            "did not finish within 500 ms: it was still running (a loop that never returns?); its memory stayed within the 128 MiB limit",
        },
      ],
    });

    const env = await open();
    const revision = await env.store.revision();
    const registry = createModuleRegistry({
      store: env.store,
      blobs: env.blobs,
      builtin,
      validate: (bytes, options) => validateModuleIsolated(bytes, options, { timeoutMs: 500 }),
    });
    const error = await rejection(registry.push("spinner", fixture("loop-configure")));
    expect(error.errors[0]?.path).toBe("module.smoke");
    expect(await env.store.revision()).toBe(revision);
    expect(blobFiles(env)).toEqual([]);
  });
});

describe("the memory ceiling", () => {
  it("is configurable, and what the module asked for is named against it", async () => {
    expect(await validateModule(fixture("grow-touch"), { memoryLimitBytes: 32 * 1024 * 1024 })).toEqual({
      ok: false,
      errors: [
        {
          path: "module.memory",
          message:
            "uses too much memory: it asked to grow its memory to 32.1 MiB (513 pages) in proxy_on_vm_start; the limit is 32 MiB",
        },
      ],
    });
    // The built-in module lives well within a small ceiling.
    expect(await validateModule(mesh, { memoryLimitBytes: 1024 * 1024 })).toMatchObject({ ok: true });
  });

  it("holds in the worker thread: validating a module that wants 1 GiB leaves the control plane's memory alone", async () => {
    // grow-touch writes to every page it gets, 16 MiB at a time up to 1 GiB, then spins: without the
    // ceiling it took this process past 1 GiB of RSS, then timed out as "a loop". The peak RSS of the
    // process (worker threads included) must stay far below what the module wanted.
    const before = process.memoryUsage().rss;
    const verdict = await validateModuleIsolated(fixture("grow-touch"), {}, { timeoutMs: 20_000 });
    expect(verdict).toEqual({
      ok: false,
      errors: [
        {
          path: "module.memory",
          message:
            "uses too much memory: it asked to grow its memory to 128.1 MiB (2049 pages) in proxy_on_vm_start; the limit is 128 MiB",
        },
      ],
    });
    const peak = process.resourceUsage().maxRSS * 1024;
    expect(peak - before).toBeLessThan(512 * 1024 * 1024);
  });

  it("runs the smoke test on a copy whose memory cannot pass it, and which says what it asked for", async () => {
    const limited = limitMemory(mesh, 2048);
    expect(limited.observed).toBe(true);
    expect(declaredMemories(mesh)).toEqual([{ initialPages: 1, shared: false, memory64: false }]);
    expect(declaredMemories(limited.bytes)).toEqual([
      { initialPages: 1, maximumPages: 2048, shared: false, memory64: false },
    ]);

    // SIMD, atomics, bulk memory and a shared memory: instructions the copy's decoder steps over.
    const compiled = await asc.compileString(
      `export function grow(p: usize, pages: i32): i32 {
        const v = i32x4.add(v128.load(p), i32x4.splat(3));
        v128.store(p, v);
        memory.copy(p + 16, p, 16);
        memory.fill(p + 32, 7, 8);
        atomic.add<i32>(p, 1);
        return i32x4.extract_lane(v, 2) + atomic.load<i32>(p) + memory.grow(pages);
      }`,
      {
        runtime: "stub",
        enable: ["simd", "threads", "bulk-memory"],
        sharedMemory: true,
        initialMemory: 1,
        maximumMemory: 100,
        noAssert: true,
      },
    );
    if (compiled.error || !compiled.binary) throw new Error(compiled.stderr.toString());
    const features = limitMemory(new Uint8Array(compiled.binary), 4);
    expect(features.observed).toBe(true);
    expect(declaredMemories(features.bytes)).toEqual([
      { initialPages: 1, maximumPages: 4, shared: true, memory64: false },
    ]);
    const { instance } = await WebAssembly.instantiate(features.bytes, { env: { abort: () => {} } });
    const grow = instance.exports.grow as (p: number, pages: number) => number;
    const asked = instance.exports[MEMORY_REQUEST_EXPORT] as WebAssembly.Global;
    grow(64, 2); // 3 pages: within the 4
    expect(asked.value).toBe(0n);
    expect(() => grow(64, 5)).toThrow(/unreachable/);
    expect(asked.value).toBe(8n); // the 3 it had and the 5 it asked for

    // A module whose types this decoder does not read (a GC recursion group) is only capped.
    const gc = new Uint8Array([
      ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
      ...[0x01, 0x06, 0x01, 0x4e, 0x01, 0x60, 0x00, 0x00], // types: rec { func }
      ...[0x03, 0x02, 0x01, 0x00], // one function
      ...[0x05, 0x03, 0x01, 0x00, 0x01], // memory: 1 page, no maximum
      ...[0x07, 0x0a, 0x01, 0x06, ...new TextEncoder().encode("memory"), 0x02, 0x00],
      ...[0x0a, 0x09, 0x01, 0x07, 0x00, 0x3f, 0x00, 0x40, 0x00, 0x1a, 0x0b], // memory.grow(memory.size)
    ]);
    expect(WebAssembly.validate(gc)).toBe(true);
    const capped = limitMemory(gc, 16);
    expect(capped).toMatchObject({ observed: false, reason: "its type section uses GC type definitions" });
    expect(WebAssembly.validate(capped.bytes)).toBe(true);
    expect(declaredMemories(capped.bytes)).toEqual([
      { initialPages: 1, maximumPages: 16, shared: false, memory64: false },
    ]);
  });
});

/** A response of the API over HTTP, its body parsed. */
interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  // biome-ignore lint/suspicious/noExplicitAny: test assertions walk the JSON freely.
  body: any;
}

/**
 * POST /v1/modules/<name> from the source address `from` (127.0.0.x: each address is a client of
 * its own for the per-client bound); test/support's sendHttp cannot choose its source address.
 */
function upload(port: number, name: string, bytes: Uint8Array, from: string, token?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: "127.0.0.1",
        port,
        method: "POST",
        path: `/v1/modules/${name}`,
        localAddress: from,
        agent: false,
        headers: {
          "content-type": "application/wasm",
          "content-length": String(bytes.byteLength),
          ...(token !== undefined ? { authorization: `Bearer ${token}` } : {}),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: JSON.parse(Buffer.concat(chunks).toString("utf8")),
          }),
        );
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(bytes);
  });
}

/** The API over real HTTP, its module registry validating in `pool`. */
async function serveApi(pool: ValidationPool): Promise<number> {
  const store = createMemoryStore();
  stores.push(store);
  const registry = createModuleRegistry({
    store,
    blobs: createMemoryBlobStore(),
    builtin,
    validate: (bytes, options) => pool.validate(bytes, options),
  });
  const app = createApi({
    auth: "none",
    store,
    modules: registry,
    log: () => {},
    validationRetryAfterSeconds: Math.ceil(pool.timeoutMs / 1000),
  });
  const server = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" });
  await new Promise<void>((resolve) => server.once("listening", () => resolve()));
  cleanups.push(async () => {
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
    });
    await pool.close();
  });
  return (server.address() as AddressInfo).port;
}

describe("pushes over the API", () => {
  it("validate side by side: a healthy push is stored while four looping ones are still being validated", async () => {
    // Before, every push validated under the write lock, one at a time: four looping uploads were
    // answered after 10, 20, 30 and 40 s, and any other push after them.
    const pool = new ValidationPool({ timeoutMs: 5_000 });
    const port = await serveApi(pool);
    const answered: string[] = [];
    const track = (label: string, reply: Promise<Reply>) =>
      reply.then((r) => {
        answered.push(label);
        return r;
      });
    const loop = fixture("loop-configure");
    const loopers = [
      track("loop-1", upload(port, "spin-1", loop, "127.0.0.2")),
      track("loop-2", upload(port, "spin-2", loop, "127.0.0.2")),
      track("loop-3", upload(port, "spin-3", loop, "127.0.0.3")),
      track("loop-4", upload(port, "spin-4", loop, "127.0.0.3")),
    ];
    await vi.waitFor(() => expect(pool.running).toBe(4), { timeout: 4_000, interval: 20 });

    // A client past its bound is answered at once, and told when to come back.
    const refused = await track("loop-5", upload(port, "spin-5", loop, "127.0.0.2"));
    expect(refused.status).toBe(429);
    expect(refused.headers["retry-after"]).toBe("5");
    expect(refused.body.error).toEqual({
      code: "too_many_requests",
      message:
        "127.0.0.2 already has 2 module validations running, the most one client may have at once (2); retry when one has finished",
      details: [],
    });

    const started = performance.now();
    const healthy = await track("healthy", upload(port, "tagger", tag1, "127.0.0.1"));
    const elapsed = performance.now() - started;
    expect(healthy.status).toBe(201);
    expect(healthy.body).toMatchObject({ kind: "WasmModule", spec: { sha256: sha256(tag1) }, warnings: [] });
    // The order of the answers, not a duration: no looping upload had been answered yet.
    expect(answered).toEqual(["loop-5", "healthy"]);
    console.log(
      `a healthy push took ${elapsed.toFixed(0)} ms while ${pool.running} looping ones were validated`,
    );

    for (const reply of await Promise.all(loopers)) {
      expect(reply.status).toBe(400);
      expect(reply.body.error.details).toEqual([
        {
          path: "module.smoke",
          message: expect.stringMatching(/^did not finish within 5000 ms: it was still running/),
        },
      ]);
    }
    expect(answered.slice(2).sort()).toEqual(["loop-1", "loop-2", "loop-3", "loop-4"]);
  });

  it("answer what validation could not check in the body (and in a header per warning)", async () => {
    const store = createMemoryStore();
    stores.push(store);
    const registry = createModuleRegistry({
      store,
      blobs: createMemoryBlobStore(),
      builtin,
      validate: validateModule,
    });
    const app = createApi({ auth: "none", store, modules: registry, log: () => {} });
    const push = (name: string, bytes: Uint8Array) =>
      app.request(`/v1/modules/${name}`, {
        method: "POST",
        body: new Uint8Array(bytes),
        headers: { "content-type": "application/wasm" },
      });

    // Traps in every proxy_on_configure: accepted (a real configuration may suit it), with a warning
    // every client sees, not only the CLI.
    const crashy = await push("crashy", fixture("trap-configure"));
    expect(crashy.status).toBe(201);
    const body = await crashy.json();
    expect(body).toEqual({
      apiVersion: "wasmesh.io/v1alpha1",
      kind: "WasmModule",
      metadata: expect.objectContaining({ name: "crashy", resourceVersion: "1" }),
      spec: {
        sha256: sha256(fixture("trap-configure")),
        size: fixture("trap-configure").byteLength,
        abiVersion: "0.2.1",
      },
      warnings: [
        {
          path: "module.smoke",
          message:
            "the module refused every default configuration (empty configuration: trapped in proxy_on_configure: unreachable; " +
            "configuration {}: trapped in proxy_on_configure: unreachable), so no request was run through it; " +
            "push it with a configuration to test one",
        },
      ],
    });
    expect(crashy.headers.get("wasmesh-warning")).toBe(body.warnings[0].message);
    // What is stored is the resource alone.
    expect(await store.get("WasmModule", "crashy")).not.toHaveProperty("warnings");

    const clean = await push("tagger", tag1);
    expect(clean.status).toBe(201);
    expect((await clean.json()).warnings).toEqual([]);
    expect(clean.headers.get("wasmesh-warning")).toBeNull();

    // The OpenAPI document says where they are.
    const doc = await (await app.request("/v1/openapi.json")).json();
    for (const status of ["200", "201"]) {
      expect(
        doc.paths["/v1/modules/{name}"].post.responses[status].content["application/json"].schema,
      ).toEqual({
        $ref: "#/components/schemas/ModulePushResult",
      });
    }
    const schema = doc.components.schemas.ModulePushResult;
    expect(schema.properties.warnings).toEqual({
      type: "array",
      items: { $ref: "#/components/schemas/ErrorDetail" },
    });
    expect([...schema.required].sort()).toEqual(Object.keys(body).sort());
    expect(doc.paths["/v1/modules/{name}"].post.responses["429"].headers).toHaveProperty("Retry-After");
  });
});

describe("wasmesh server", () => {
  it("takes the memory ceiling, the per-client bound and the time limit from its flags", async () => {
    const server = await startControlPlaneProcess({
      extraArgs: [
        "--module-memory-limit",
        "32",
        "--validations-per-client",
        "1",
        "--validation-timeout",
        "3",
      ],
    });
    cleanups.push(() => server.stop());
    const port = server.httpPort;

    const greedy = await upload(port, "greedy", fixture("grow-touch"), "127.0.0.1", server.token);
    expect(greedy.status).toBe(400);
    expect(greedy.body.error.details).toEqual([
      {
        path: "module.memory",
        message:
          "uses too much memory: it asked to grow its memory to 32.1 MiB (513 pages) in proxy_on_vm_start; the limit is 32 MiB",
      },
    ]);

    // While its looping upload is being validated, the client's one slot is taken: a push from the
    // same address is refused until then (pushes before the looper got its slot may go through).
    const looping = upload(port, "spin", fixture("loop-configure"), "127.0.0.1", server.token);
    let refused: Reply | undefined;
    while (!refused) {
      const reply = await upload(port, "tagger", tag1, "127.0.0.1", server.token);
      if (reply.status === 429) refused = reply;
      else expect(reply.status).toBeOneOf([200, 201]);
    }
    expect(refused.headers["retry-after"]).toBe("3");
    expect(refused.body.error.message).toMatch(
      /^127\.0\.0\.1 already has 1 module validations running.* \(1\)/,
    );
    // Another client is not held up.
    expect((await upload(port, "tagger", tag2, "127.0.0.2", server.token)).status).toBeOneOf([200, 201]);
    const timedOut = await looping;
    expect(timedOut.status).toBe(400);
    expect(timedOut.body.error.details[0].message).toMatch(
      /^did not finish within 3000 ms: it was still running/,
    );
  });
});

describe("loadBuiltinModule", () => {
  it("reads build/mesh.wasm by default", async () => {
    expect((await loadBuiltinModule()).sha256).toBe(sha256(mesh));
  });

  it("tells the user to build it when it is missing", async () => {
    await expect(loadBuiltinModule(join(tmpdir(), "wasmesh-no-such-dir", "mesh.wasm"))).rejects.toThrow(
      /does not exist: run `npm run build:filters` to build it/,
    );
  });
});
