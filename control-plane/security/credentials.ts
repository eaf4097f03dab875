// The credentials file, ${XDG_CONFIG_HOME:-$HOME/.config}/wasmesh/credentials.json: where `wasmesh
// server` leaves the admin token of its data directory for the CLI of the same user on the same
// machine, keyed by the API's URL, so that `wasmesh get routes` works with no flag. Owner-only
// (0600, in a 0700 directory), written whole (temp file, then rename) under a lock file, since
// several servers may start at once. Light on purpose: every CLI command that calls the API reads it.
import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";

interface CredentialsFile {
  /** Per API base URL (as credentialKey() writes it). */
  apis: Record<string, { token?: string; dataDir?: string; caFile?: string; savedAt: string }>;
}

/** Where the CLI looks for tokens, and `wasmesh server` leaves its admin token. */
export function credentialsPath(env: NodeJS.ProcessEnv = process.env): string {
  const config = env.XDG_CONFIG_HOME || join(env.HOME || homedir(), ".config");
  return join(config, "wasmesh", "credentials.json");
}

const LOOPBACK = new Set(["localhost", "127.0.0.1", "[::1]"]);

/**
 * The key of an API URL: its href without a trailing slash; a loopback host is written 127.0.0.1,
 * so that localhost, 127.0.0.1 and [::1] find the same entry.
 */
export function credentialKey(api: string): string {
  const url = new URL(api);
  if (LOOPBACK.has(url.hostname)) url.hostname = "127.0.0.1";
  return url.href.replace(/\/$/, "");
}

function read(path: string): CredentialsFile {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return { apis: {} };
    throw error;
  }
  const parsed = JSON.parse(text) as Partial<CredentialsFile> | null;
  if (
    typeof parsed !== "object" ||
    parsed === null ||
    typeof parsed.apis !== "object" ||
    parsed.apis === null
  )
    throw new Error(`${path} is not a wasmesh credentials file (no "apis" object)`);
  return { apis: parsed.apis };
}

/** What is saved for this API, if anything; a file that cannot be read is an error naming it. */
function savedEntry(api: string, path: string): CredentialsFile["apis"][string] | undefined {
  let file: CredentialsFile;
  try {
    file = read(path);
  } catch (error) {
    throw new Error(`cannot read the credentials file ${path}: ${(error as Error).message}`);
  }
  return file.apis[credentialKey(api)];
}

/** The token saved for this API, if any. */
export function savedToken(api: string, path = credentialsPath()): string | undefined {
  const token = savedEntry(api, path)?.token;
  return typeof token === "string" ? token : undefined;
}

/** The CA file saved for this API (an https URL of a server started with --tls), if any. */
export function savedCaFile(api: string, path = credentialsPath()): string | undefined {
  const caFile = savedEntry(api, path)?.caFile;
  return typeof caFile === "string" ? caFile : undefined;
}

const LOCK_WAIT_MS = 5_000;
/** A lock file older than this was left by a process that died holding it. */
const STALE_LOCK_MS = 10_000;

function lock(path: string): () => void {
  const lockPath = `${path}.lock`;
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      closeSync(openSync(lockPath, "wx", 0o600));
      return () => rmSync(lockPath, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
    const age = Date.now() - (statSync(lockPath, { throwIfNoEntry: false })?.mtimeMs ?? Date.now());
    if (age > STALE_LOCK_MS) rmSync(lockPath, { force: true });
    else if (Date.now() > deadline) throw new Error(`${lockPath} is held by another process`);
    else Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
  }
}

/** Saves `token` for each of `apis` (base URLs), keeping the other entries. */
export function saveToken(
  apis: readonly string[],
  token: string,
  options: { path?: string; dataDir?: string } = {},
): void {
  update(apis, options.path, (entry) => {
    const { caFile } = entry ?? {};
    return {
      token,
      ...(options.dataDir !== undefined ? { dataDir: options.dataDir } : {}),
      ...(caFile !== undefined ? { caFile } : {}),
    };
  });
}

/** Saves the CA file that verifies each of `apis` (https URLs), keeping their tokens. */
export function saveCaFile(apis: readonly string[], caFile: string, options: { path?: string } = {}): void {
  update(apis, options.path, (entry) => ({ ...entry, caFile }));
}

type Entry = CredentialsFile["apis"][string];

function update(
  apis: readonly string[],
  at: string | undefined,
  change: (entry: Entry | undefined) => Omit<Entry, "savedAt">,
): void {
  const path = at ?? credentialsPath();
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const unlock = lock(path);
  try {
    const file = read(path);
    const savedAt = new Date().toISOString();
    for (const api of apis) {
      const key = credentialKey(api);
      file.apis[key] = { ...change(file.apis[key]), savedAt };
    }
    writePrivate(path, `${JSON.stringify(file, null, 2)}\n`);
  } finally {
    unlock();
  }
}

/** Writes a file only its owner can read, whole: a temp file (0600) renamed over it. */
export function writePrivate(path: string, text: string): void {
  const temp = `${path}.${process.pid}.tmp`;
  rmSync(temp, { force: true });
  const fd = openSync(temp, "wx", 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temp, path);
}
