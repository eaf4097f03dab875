// The agent's module cache: Wasm code by sha256 in `<dataDir>/modules/<name>/<sha256>.wasm`, the
// files Envoy loads when an ECDS resource names them (`vm_config.code.local.filename`, relative to
// the data directory, where the agent starts Envoy). Content-addressed, so a file is written once
// and never changes:
// - a file appears only verified: the download goes to a temporary file in the same folder, is
//   hashed as it arrives, fsynced, and renamed onto its name only if the digest is the one asked
//   for (a rename within a folder is atomic, so Envoy never reads half a module);
// - a file found on disk (a previous run) is trusted only once its content hashed to its name, on
//   first use; then it is remembered, as is every file this process wrote;
// - concurrent needs of one digest share one download; a failure is not remembered, so the next
//   need tries again;
// - network errors and 5xx answers are retried a bounded number of times with back-off; a 4xx, a
//   body over the size limit or a digest mismatch fail at once (retrying would not change them).
// Retention: every version is kept. Envoy reads a file when it applies the ECDS resource naming it,
// and a listener or filter created later from a cached ECDS configuration may read it again, so a
// version stays while any configuration might name it; modules are small and few, and versions of
// one module are few.
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, rmSync } from "node:fs";
import { type FileHandle, open, readFile, rename, unlink } from "node:fs/promises";
import { join } from "node:path";
import { bearer, type Fetch, fetchTrusting, type Token } from "./http.ts";

/**
 * The API's limit on a module upload (MAX_MODULE_BYTES in control-plane/modules/validate.ts, which
 * this layer may not import; a test holds the two together), with room for what the registry adds
 * when it caps the declared memory maximum of the code it serves (a few bytes).
 */
export const MAX_MODULE_DOWNLOAD_BYTES = 32 * 1024 * 1024 + 64 * 1024;

const MODULE_NAME = /^[a-z0-9][a-z0-9-]*$/;
const SHA256 = /^[0-9a-f]{64}$/;
const TEMP_SUFFIX = ".tmp";

/** Why a module could not be provided: the reason a NACK carries. */
export type ModuleFailure =
  /** The bytes served do not hash to the digest asked for. */
  | "digest"
  /** Larger than the download limit. */
  | "size"
  /** Not served (an HTTP error, or the network after every retry). */
  | "fetch";

export class ModuleFetchError extends Error {
  readonly module: string;
  readonly sha256: string;
  readonly failure: ModuleFailure;
  constructor(module: string, sha256: string, failure: ModuleFailure, reason: string) {
    super(`module ${module} sha256 ${sha256}: ${reason}`);
    this.name = "ModuleFetchError";
    this.module = module;
    this.sha256 = sha256;
    this.failure = failure;
  }
}

export interface ModuleCacheOptions {
  /** The cache is `<dataDir>/modules/`. */
  dataDir: string;
  /** The control plane's HTTP API base URL: bytes come from `<api>/v1/modules/<name>/<sha256>.wasm`. */
  api: string;
  /** The agent's API token, sent as a bearer token. */
  token?: Token;
  /** PEM: the CAs an https API's certificate is verified with (default the system's). */
  ca?: string;
  /** Download limit in bytes (default MAX_MODULE_DOWNLOAD_BYTES). */
  maxBytes?: number;
  /** Tries per download, the first included, for network errors and 5xx answers (default 4). */
  attempts?: number;
  /** Wait before the first retry, doubling for each next one (default 250 ms). */
  backoffMs?: number;
  /** Time limit of one try, connection to last byte (default 30 s). */
  timeoutMs?: number;
  log?: (line: string) => void;
}

export interface ModuleCache {
  /** The file of a module version, relative to the data directory (what ECDS names). */
  relativePath(module: string, sha256: string): string;
  /**
   * Makes sure the verified file of `module` at `sha256` exists, downloading it if need be, and
   * resolves with its absolute path; rejects with a ModuleFetchError.
   */
  ensure(module: string, sha256: string): Promise<string>;
  /** HTTP requests made for module bytes so far (each try counts, as the API sees them). */
  readonly fetches: number;
}

/** Answers worth another try: the server or something on the way is away or overloaded. */
const retryable = (status: number) => status >= 500 || status === 408 || status === 429;

class Retryable extends Error {}

export function createModuleCache(options: ModuleCacheOptions): ModuleCache {
  const root = join(options.dataDir, "modules");
  const api = options.api.replace(/\/+$/, "");
  const maxBytes = options.maxBytes ?? MAX_MODULE_DOWNLOAD_BYTES;
  const attempts = Math.max(1, options.attempts ?? 4);
  const backoffMs = options.backoffMs ?? 250;
  const timeoutMs = options.timeoutMs ?? 30_000;
  const log = options.log ?? (() => {});
  /** Digests on disk and verified, and those being verified or downloaded (shared by their callers). */
  const known = new Map<string, Promise<string>>();
  let fetches = 0;
  // fetch takes no CA: with --ca-file, node:https under fetch's shape.
  const get: Fetch = options.ca !== undefined ? fetchTrusting(options.ca) : fetch;

  removeLeftovers(root);

  const relativePath = (module: string, sha256: string) => `modules/${module}/${sha256}.wasm`;

  async function ensure(module: string, sha256: string): Promise<string> {
    if (!MODULE_NAME.test(module)) throw new ModuleFetchError(module, sha256, "fetch", "not a module name");
    if (!SHA256.test(sha256)) throw new ModuleFetchError(module, sha256, "fetch", "not a sha256 digest");
    const key = `${module}/${sha256}`;
    let entry = known.get(key);
    if (!entry) {
      entry = provide(module, sha256);
      known.set(key, entry);
      // Only successes are remembered: a later need of a digest that failed tries again.
      entry.catch(() => known.delete(key));
    }
    return entry;
  }

  async function provide(module: string, sha256: string): Promise<string> {
    const folder = join(root, module);
    const file = join(folder, `${sha256}.wasm`);
    const present = await readFile(file).catch(() => undefined);
    if (present) {
      if (digestOf(present) === sha256) return file;
      // Not what its name says (damaged, or written by hand): replaced by a verified download.
      log(`module cache: ${relativePath(module, sha256)} does not match its digest; downloading it again`);
      await unlink(file).catch(() => {});
    }
    mkdirSync(folder, { recursive: true });
    const url = `${api}/v1/modules/${module}/${sha256}.wasm`;
    for (let attempt = 1; ; attempt++) {
      try {
        await download(url, module, sha256, folder, file);
        log(`module cache: fetched ${relativePath(module, sha256)}`);
        return file;
      } catch (error) {
        if (!(error instanceof Retryable)) throw error;
        if (attempt >= attempts)
          throw new ModuleFetchError(
            module,
            sha256,
            "fetch",
            `GET ${url} failed ${attempts} time${attempts === 1 ? "" : "s"}, last: ${error.message}`,
          );
        const wait = backoffMs * 2 ** (attempt - 1);
        log(`module cache: GET ${url}: ${error.message}; trying again in ${wait} ms`);
        await new Promise((resolve) => setTimeout(resolve, wait));
      }
    }
  }

  /** One try: streams the body into a temporary file, hashing it, and renames it onto `file` if it verifies. */
  async function download(url: string, module: string, sha256: string, folder: string, file: string) {
    const fail = (failure: ModuleFailure, reason: string) =>
      new ModuleFetchError(module, sha256, failure, reason);
    fetches++;
    let response: Response;
    try {
      response = await get(url, {
        signal: AbortSignal.timeout(timeoutMs),
        ...(options.token !== undefined ? { headers: { authorization: bearer(options.token) } } : {}),
      });
    } catch (error) {
      throw new Retryable(describe(error));
    }
    if (!response.ok) {
      await response.body?.cancel().catch(() => {});
      const reason = `GET ${url} answered ${response.status} ${response.statusText}`.trimEnd();
      if (retryable(response.status)) throw new Retryable(reason);
      throw fail("fetch", reason);
    }
    const declared = Number(response.headers.get("content-length") ?? Number.NaN);
    if (declared > maxBytes) {
      await response.body?.cancel().catch(() => {});
      throw fail("size", `${url} is ${declared} bytes, over the limit of ${maxBytes}`);
    }
    const temp = join(folder, `.${sha256}.${process.pid}.${randomBytes(4).toString("hex")}${TEMP_SUFFIX}`);
    let handle: FileHandle | undefined;
    let renamed = false;
    try {
      handle = await open(temp, "wx");
      const hash = createHash("sha256");
      let size = 0;
      const body = response.body?.getReader();
      try {
        for (let next = await body?.read(); next && !next.done; next = await body?.read()) {
          size += next.value.byteLength;
          if (size > maxBytes) {
            await body?.cancel().catch(() => {});
            throw fail("size", `${url} sent more than the limit of ${maxBytes} bytes`);
          }
          hash.update(next.value);
          await handle.write(next.value);
        }
      } catch (error) {
        if (error instanceof ModuleFetchError) throw error;
        throw new Retryable(`reading the body: ${describe(error)}`);
      }
      const actual = hash.digest("hex");
      if (actual !== sha256)
        throw fail("digest", `digest mismatch: the ${size} bytes served by ${url} have sha256 ${actual}`);
      await handle.sync();
      await handle.close();
      handle = undefined;
      await rename(temp, file);
      renamed = true;
      await syncFolder(folder);
    } finally {
      await handle?.close().catch(() => {});
      if (!renamed) await unlink(temp).catch(() => {});
    }
  }

  return {
    relativePath,
    ensure,
    get fetches() {
      return fetches;
    },
  };
}

export const digestOf = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

/** The rename survives a crash only once the folder's entry is on disk too. */
async function syncFolder(folder: string): Promise<void> {
  const handle = await open(folder, "r");
  try {
    await handle.sync();
  } catch {
    // Some file systems refuse fsync on a directory; the rename itself is still atomic.
  } finally {
    await handle.close();
  }
}

/** Temporary files a previous run left behind when it stopped during a download. */
function removeLeftovers(root: string): void {
  let folders: string[];
  try {
    folders = readdirSync(root);
  } catch {
    return; // no cache yet
  }
  for (const folder of folders) {
    let names: string[];
    try {
      names = readdirSync(join(root, folder));
    } catch {
      continue; // not a folder
    }
    for (const name of names)
      if (name.startsWith(".") && name.endsWith(TEMP_SUFFIX))
        rmSync(join(root, folder, name), { force: true });
  }
}

function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  // undici puts the network reason (ECONNREFUSED, a reset, a timeout) in `cause`.
  const cause = error.cause instanceof Error ? `: ${error.cause.message}` : "";
  return `${error.message}${cause}`;
}
