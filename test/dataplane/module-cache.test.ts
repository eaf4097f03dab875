// The agent's module cache (dataplane/module-cache.ts) against a real HTTP server serving module
// bytes by digest: a file appears only verified, once per digest, and every failure is a
// ModuleFetchError naming module, digest and reason, with nothing left on disk.

import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MAX_MODULE_BYTES } from "../../control-plane/modules/index.ts";
import {
  createModuleCache,
  MAX_MODULE_DOWNLOAD_BYTES,
  type ModuleCacheOptions,
  ModuleFetchError,
} from "../../dataplane/module-cache.ts";
import { freePort } from "../support/envoy.ts";
import { flipLastByte, type ModuleServer, sha256, startModuleServer } from "../support/module-server.ts";
import { tempDir } from "../support/temp.ts";

/** Distinct module-like byte strings (the cache does not care what they are). */
let made = 0;
const blob = (size = 1000) => {
  made++;
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 31 + made * 7) & 0xff;
  return bytes;
};

/** What a failed ensure() rejected with. */
async function failureOf(promise: Promise<unknown>): Promise<ModuleFetchError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ModuleFetchError);
  return error as ModuleFetchError;
}

describe("module cache", () => {
  let server: ModuleServer;
  const cacheFor = (dataDir: string, options: Partial<ModuleCacheOptions> = {}) =>
    createModuleCache({ dataDir, api: server.url, backoffMs: 10, ...options });
  /** The files in a module's folder, temporary ones included. */
  const filesIn = (dataDir: string, module: string) => {
    const folder = join(dataDir, "modules", module);
    return existsSync(folder) ? readdirSync(folder).sort() : [];
  };

  beforeAll(async () => {
    server = await startModuleServer();
  });
  afterAll(async () => {
    await server?.close();
  });

  it("downloads a version once, verified, to modules/<name>/<sha256>.wasm", async () => {
    const dataDir = tempDir("module-cache");
    const bytes = blob();
    const sha = sha256(bytes);
    server.add(bytes);
    const cache = cacheFor(dataDir);
    expect(cache.relativePath("mesh", sha)).toBe(`modules/mesh/${sha}.wasm`);

    const path = await cache.ensure("mesh", sha);
    expect(path).toBe(join(dataDir, "modules", "mesh", `${sha}.wasm`));
    expect(new Uint8Array(readFileSync(path))).toEqual(bytes);
    expect(filesIn(dataDir, "mesh")).toEqual([`${sha}.wasm`]);
    expect(cache.fetches).toBe(1);

    // Later needs find it.
    for (let i = 0; i < 5; i++) expect(await cache.ensure("mesh", sha)).toBe(path);
    expect(cache.fetches).toBe(1);
    expect(server.fetches(sha)).toBe(1);
  });

  it("concurrent needs of one digest share one download", async () => {
    const dataDir = tempDir("module-cache");
    const bytes = blob(200_000);
    const sha = sha256(bytes);
    server.add(bytes);
    const cache = cacheFor(dataDir);
    const paths = await Promise.all(Array.from({ length: 20 }, () => cache.ensure("tagger", sha)));
    expect(new Set(paths).size).toBe(1);
    expect(cache.fetches).toBe(1);
    expect(server.fetches(sha)).toBe(1);
  });

  it("refuses bytes whose digest is not the one asked for; nothing appears, and the next need tries again", async () => {
    const dataDir = tempDir("module-cache");
    const bytes = blob();
    const sha = sha256(bytes);
    server.add(bytes);
    server.tamper.add(sha);
    const cache = cacheFor(dataDir);
    try {
      const error = await failureOf(cache.ensure("tagger", sha));
      expect(error.failure).toBe("digest");
      expect(error.module).toBe("tagger");
      expect(error.sha256).toBe(sha);
      expect(error.message).toContain(`module tagger sha256 ${sha}: digest mismatch`);
      expect(error.message).toContain(sha256(tampered(bytes)));
      // A digest mismatch is not retried: the same server would send the same bytes.
      expect(server.fetches(sha)).toBe(1);
      // Neither the file nor a temporary one.
      expect(filesIn(dataDir, "tagger")).toEqual([]);

      server.tamper.delete(sha);
      await cache.ensure("tagger", sha);
      expect(server.fetches(sha)).toBe(2);
      expect(filesIn(dataDir, "tagger")).toEqual([`${sha}.wasm`]);
    } finally {
      server.tamper.delete(sha);
    }
  });

  it("trusts a file found on disk only when its content has its name's digest", async () => {
    const dataDir = tempDir("module-cache");
    const good = blob();
    const damaged = blob();
    server.add(good);
    server.add(damaged);
    const folder = join(dataDir, "modules", "mesh");
    mkdirSync(folder, { recursive: true });
    writeFileSync(join(folder, `${sha256(good)}.wasm`), good);
    // A file whose content is not what its name says: e.g. damaged on disk.
    writeFileSync(join(folder, `${sha256(damaged)}.wasm`), tampered(damaged));

    const cache = cacheFor(dataDir);
    await cache.ensure("mesh", sha256(good));
    expect(cache.fetches).toBe(0);
    const path = await cache.ensure("mesh", sha256(damaged));
    expect(cache.fetches).toBe(1);
    expect(new Uint8Array(readFileSync(path))).toEqual(damaged);
  });

  it("removes the temporary files a stopped run left behind", () => {
    const dataDir = tempDir("module-cache");
    const folder = join(dataDir, "modules", "mesh");
    mkdirSync(folder, { recursive: true });
    const sha = "a".repeat(64);
    writeFileSync(join(folder, `.${sha}.123.abcd1234.tmp`), "half a module");
    writeFileSync(join(folder, `${sha}.wasm`), "kept");
    cacheFor(dataDir);
    expect(filesIn(dataDir, "mesh")).toEqual([`${sha}.wasm`]);
  });

  it("retries network errors and 5xx answers with back-off, then succeeds", async () => {
    const dataDir = tempDir("module-cache");
    const bytes = blob();
    const sha = sha256(bytes);
    server.add(bytes);
    server.faults.push("reset", 503, "reset");
    const cache = cacheFor(dataDir, { attempts: 4 });
    await cache.ensure("mesh", sha);
    expect(server.fetches(sha)).toBe(4);
    expect(cache.fetches).toBe(4);
    expect(filesIn(dataDir, "mesh")).toEqual([`${sha}.wasm`]);
  });

  it("gives up after the tries it is allowed, naming the last error", async () => {
    const dataDir = tempDir("module-cache");
    const bytes = blob();
    const sha = sha256(bytes);
    server.add(bytes);
    server.faults.push(503, 503, 503);
    const cache = cacheFor(dataDir, { attempts: 3 });
    const error = await failureOf(cache.ensure("mesh", sha));
    expect(error.failure).toBe("fetch");
    expect(error.message).toMatch(/failed 3 times, last: .* answered 503/);
    expect(server.fetches(sha)).toBe(3);

    // Nobody listening at all.
    const closed = createModuleCache({
      dataDir,
      api: `http://127.0.0.1:${await freePort()}`,
      attempts: 2,
      backoffMs: 10,
    });
    const refused = await failureOf(closed.ensure("mesh", sha));
    expect(refused.failure).toBe("fetch");
    expect(refused.message).toMatch(/failed 2 times, last: fetch failed: .*ECONNREFUSED/);
    expect(closed.fetches).toBe(2);
    expect(filesIn(dataDir, "mesh")).toEqual([]);
  });

  it("does not retry an answer that another try would not change (404)", async () => {
    const dataDir = tempDir("module-cache");
    const sha = sha256(blob());
    const cache = cacheFor(dataDir);
    const error = await failureOf(cache.ensure("mesh", sha));
    expect(error.failure).toBe("fetch");
    expect(error.message).toContain("answered 404");
    expect(server.fetches(sha)).toBe(1);
  });

  it("refuses a download over the size limit, declared or not", async () => {
    const dataDir = tempDir("module-cache");
    const bytes = blob(10_000);
    const sha = sha256(bytes);
    server.add(bytes);
    const cache = cacheFor(dataDir, { maxBytes: 9_999 });
    const error = await failureOf(cache.ensure("mesh", sha));
    expect(error.failure).toBe("size");
    expect(error.message).toContain("10000 bytes, over the limit of 9999");
    expect(filesIn(dataDir, "mesh")).toEqual([]);

    // A body without Content-Length is counted as it arrives.
    const chunked = await startChunkedServer(bytes);
    try {
      const streaming = createModuleCache({ dataDir, api: chunked.url, maxBytes: 9_999 });
      const overflow = await failureOf(streaming.ensure("mesh", sha));
      expect(overflow.failure).toBe("size");
      expect(overflow.message).toContain("sent more than the limit of 9999 bytes");
      expect(filesIn(dataDir, "mesh")).toEqual([]);
      // Within the limit, the same server's module is fine.
      await createModuleCache({ dataDir, api: chunked.url }).ensure("mesh", sha);
      expect(filesIn(dataDir, "mesh")).toEqual([`${sha}.wasm`]);
    } finally {
      await chunked.close();
    }
  });

  it("allows downloads of the API's largest module", () => {
    expect(MAX_MODULE_DOWNLOAD_BYTES).toBeGreaterThanOrEqual(MAX_MODULE_BYTES);
    expect(MAX_MODULE_DOWNLOAD_BYTES).toBeLessThan(MAX_MODULE_BYTES + 1024 * 1024);
  });

  it("refuses names that are no module name or digest, without a request", async () => {
    const cache = cacheFor(tempDir("module-cache"));
    expect((await failureOf(cache.ensure("../etc", "a".repeat(64)))).message).toContain("not a module name");
    expect((await failureOf(cache.ensure("mesh", "A".repeat(64)))).message).toContain("not a sha256 digest");
    expect(cache.fetches).toBe(0);
  });
});

function tampered(bytes: Uint8Array): Uint8Array {
  const copy = new Uint8Array(bytes);
  flipLastByte(copy);
  return copy;
}

/** Serves `bytes` for any path in chunks, without Content-Length. */
async function startChunkedServer(bytes: Uint8Array) {
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { "content-type": "application/wasm" });
    for (let i = 0; i < bytes.length; i += 1000) res.write(bytes.subarray(i, i + 1000));
    res.end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
