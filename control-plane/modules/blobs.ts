// Module bytes, addressed by their sha256. Blobs are immutable: a digest names one content forever,
// so a put of a digest already held is a no-op and readers never see a blob change under them.
// The WasmModule resources in the store say which blobs are in use; a blob no resource names is
// garbage (e.g. left by a crash between the blob write and the store write), harmless but kept.
import { createHash, randomUUID } from "node:crypto";
import { mkdir, open, readdir, readFile, rename, stat, unlink } from "node:fs/promises";
import { join } from "node:path";

export interface ModuleBlobStore {
  /** Stores bytes under their digest; throws if the digest does not match the bytes. Idempotent. */
  put(sha256: string, bytes: Uint8Array): Promise<void>;
  /** The bytes, verified against the digest; undefined when absent (or damaged: then logged). */
  get(sha256: string): Promise<Uint8Array | undefined>;
  /** Whether get() would return the bytes. */
  has(sha256: string): Promise<boolean>;
}

/** Blobs live in `<dataDir>/modules/`, next to the database. */
export const MODULES_DIR = "modules";

const SHA256 = /^[0-9a-f]{64}$/;
/** A temp file older than this is left over from a crash, not a put in progress. */
const STALE_TEMP_MS = 60 * 60 * 1000;

export function isSha256(value: string): boolean {
  return SHA256.test(value);
}

/** Lower-case hex sha256, as WasmModule.spec.sha256 holds it. */
export function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Refuses a digest that is not one, and bytes that are not the digest's (a caller's bug). */
function checkPut(sha256: string, bytes: Uint8Array): void {
  if (!isSha256(sha256)) throw new TypeError(`not a lower-case hex sha256: ${JSON.stringify(sha256)}`);
  const actual = sha256Hex(bytes);
  if (actual !== sha256)
    throw new Error(`module bytes do not match their digest: expected ${sha256}, got ${actual}`);
}

export interface FileBlobStoreOptions {
  /** Where a damaged blob is reported (default console.warn). */
  log?: (line: string) => void;
}

export interface FileBlobStore extends ModuleBlobStore {
  /** The directory holding the blobs: `<dataDir>/modules`. */
  readonly dir: string;
  /** The file a blob is (or would be) stored in. */
  pathOf(sha256: string): string;
}

/**
 * Blobs as files `<dataDir>/modules/<sha256>.wasm`. A put writes a temp file, fsyncs it, renames it
 * into place and fsyncs the directory, so a crash leaves either no blob or the whole blob under its
 * final name, never a partial one. Reads verify the digest, so a file damaged on disk is never
 * served (it reads as absent, and the next put of those bytes replaces it).
 */
export function createFileBlobStore(dataDir: string, options: FileBlobStoreOptions = {}): FileBlobStore {
  const dir = join(dataDir, MODULES_DIR);
  const log = options.log ?? ((line: string) => console.warn(line));
  const pathOf = (sha256: string) => join(dir, `${sha256}.wasm`);
  let swept: Promise<void> | undefined;

  async function get(sha256: string): Promise<Uint8Array | undefined> {
    // The digest may come from a URL: anything else must never become part of a path.
    if (!isSha256(sha256)) return undefined;
    const path = pathOf(sha256);
    let bytes: Uint8Array;
    try {
      bytes = new Uint8Array(await readFile(path));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw error;
    }
    const actual = sha256Hex(bytes);
    if (actual !== sha256) {
      log(`wasmesh: module blob ${path} is damaged (its sha256 is ${actual}); treating it as absent`);
      return undefined;
    }
    return bytes;
  }

  async function put(sha256: string, bytes: Uint8Array): Promise<void> {
    checkPut(sha256, bytes);
    if ((await get(sha256)) !== undefined) return;
    await mkdir(dir, { recursive: true });
    swept ??= sweepStaleTemps(dir).catch(() => undefined);
    await swept;
    // Dot-prefixed and not ending in .wasm: never mistaken for a blob, by us or by an operator.
    const temp = join(dir, `.${sha256}.${process.pid}.${randomUUID()}.tmp`);
    try {
      const handle = await open(temp, "wx", 0o644);
      try {
        await handle.writeFile(bytes);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temp, pathOf(sha256));
    } catch (error) {
      await unlink(temp).catch(() => undefined);
      throw error;
    }
    await syncDirectory(dir);
  }

  return {
    dir,
    pathOf,
    get,
    put,
    has: async (sha256) => (await get(sha256)) !== undefined,
  };
}

/** Makes a rename durable. Some platforms cannot open a directory for fsync; there it is skipped. */
async function syncDirectory(dir: string): Promise<void> {
  let handle: Awaited<ReturnType<typeof open>> | undefined;
  try {
    handle = await open(dir, "r");
    await handle.sync();
  } catch {
    // Best effort: the blob's own bytes are already synced; only the name could be lost.
  } finally {
    await handle?.close();
  }
}

/** Removes temp files a crashed put left behind; recent ones may be another process's put. */
async function sweepStaleTemps(dir: string): Promise<void> {
  const now = Date.now();
  for (const name of await readdir(dir)) {
    if (!name.startsWith(".") || !name.endsWith(".tmp")) continue;
    const path = join(dir, name);
    const info = await stat(path).catch(() => undefined);
    if (info && now - info.mtimeMs > STALE_TEMP_MS) await unlink(path).catch(() => undefined);
  }
}

/** Blobs in memory, for tests and for a control plane without a data directory. */
export function createMemoryBlobStore(): ModuleBlobStore {
  const blobs = new Map<string, Uint8Array>();
  return {
    async put(sha256, bytes) {
      checkPut(sha256, bytes);
      // Copies in and out: a caller that reuses its buffer must not change a stored blob.
      if (!blobs.has(sha256)) blobs.set(sha256, new Uint8Array(bytes));
    },
    async get(sha256) {
      const bytes = blobs.get(sha256);
      return bytes === undefined ? undefined : new Uint8Array(bytes);
    },
    async has(sha256) {
      return blobs.has(sha256);
    },
  };
}
