// The default ResourceStore: one SQLite database file, <dataDir>/wasmesh.db, through Node's
// built-in node:sqlite (no native npm module to download or compile).
//
// Durability and crash safety:
// - journal_mode=WAL with synchronous=FULL: a commit returns only after its WAL frames are
//   fsynced, so a committed apply survives a process crash and a power loss.
// - every apply runs between BEGIN IMMEDIATE and COMMIT, including the bump of the revision
//   counter. IMMEDIATE takes the write lock before the preconditions are read, so another
//   process sharing the file cannot slip a write between the check and the write. A crash
//   before COMMIT leaves only uncommitted WAL frames, which SQLite ignores on the next open:
//   the previous state is intact (test/control-plane/store-sqlite.test.ts SIGKILLs a process
//   inside a 5,000-change apply to prove it).
//
// A data directory that held a database never comes up empty by accident: an empty control plane
// would push an empty mesh to every sidecar. The database is created complete (in a temp file,
// then linked into place), so a wasmesh.db that exists always holds the schema; a zero-byte or
// schema-less wasmesh.db, or a missing one next to its -wal/-shm or other data, is refused with
// what to do instead. Starting empty is then a deliberate act: a new --data, or moving files away.

import { randomUUID } from "node:crypto";
import {
  accessSync,
  closeSync,
  constants,
  existsSync,
  fsyncSync,
  linkSync,
  mkdirSync,
  openSync,
  renameSync,
  rmSync,
  statfsSync,
  statSync,
} from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import type { DatabaseSync, StatementSync } from "node:sqlite";
import { setTimeout as delay } from "node:timers/promises";
import { type ExistingEntry, planApply, Watchers } from "./core.ts";
import { StoreClosedError, StoreUnwritableError } from "./errors.ts";
import {
  type ApplyOptions,
  type ApplyResult,
  type Change,
  INTERNAL_KIND_PREFIX,
  type ResourceStore,
  type StoredResource,
  type WatchListener,
} from "./types.ts";

export const DATABASE_FILE = "wasmesh.db";

export interface SqliteStoreOptions {
  /** Directory holding the database; created (with parents) if missing. */
  dataDir: string;
  /** Clock for createdAt/updatedAt; tests inject a fixed one. Defaults to the system clock. */
  now?: () => Date;
  /**
   * How long a write waits for a lock another process (another control plane on this file) holds,
   * before it fails with StoreUnwritableError; default 5000 ms.
   */
  busyTimeoutMs?: number;
  /**
   * TEST-ONLY hook, called inside the apply transaction after every statement has run and
   * immediately before COMMIT. The crash test uses it to announce "inside the transaction"
   * and block until it is SIGKILLed. If it throws, the apply rolls back. Not for production
   * use: anything slow here holds the database's write lock.
   */
  onBeforeCommit?: (info: { revision: number; writes: number }) => void;
  /**
   * Files of dataDir besides the database that only a directory that held one has (the module
   * registry's blobs), relative to dataDir. While wasmesh.db is missing, any of them means it was
   * lost: the store refuses to create an empty one.
   */
  otherData?: () => string[];
}

export interface SqliteResourceStore extends ResourceStore {
  /** Absolute or dataDir-relative path of the database file. */
  readonly path: string;
}

/**
 * Ordered schema migrations; entry i takes the schema from version i to i + 1. Append only:
 * a released migration is never edited, since databases in the field have already run it.
 */
const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE store_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    revision INTEGER NOT NULL
  );
  INSERT INTO store_state (id, revision) VALUES (1, 0);
  CREATE TABLE resources (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (kind, name)
  ) WITHOUT ROWID;
  `,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

type SqliteModule = typeof import("node:sqlite");
let sqliteModule: SqliteModule | undefined;

/**
 * Loads node:sqlite without its one-time "ExperimentalWarning: SQLite is an experimental
 * feature" (Node 22 prints it on first load). The warning would appear on every
 * `wasmesh server` start and teaches users to ignore warnings; we accept the API's
 * experimental status deliberately (it is pinned by engines.node, covered by our tests, and
 * the PostgreSQL store is the other option). Only that exact warning is dropped, and only
 * during the synchronous load; every other warning still reaches process.emitWarning.
 * Loaded lazily so that importing the store package for the memory store never loads it.
 * Exported (from this file, not index.ts) for tests and tools that inspect the file directly.
 */
export function loadSqlite(): SqliteModule {
  if (sqliteModule !== undefined) return sqliteModule;
  const original = process.emitWarning;
  const filtered = (warning: string | Error, ...rest: unknown[]): void => {
    const message = typeof warning === "string" ? warning : warning.message;
    const type = typeof warning === "string" ? rest[0] : warning.name;
    if (type === "ExperimentalWarning" && message.startsWith("SQLite is an experimental feature")) return;
    Reflect.apply(original, process, [warning, ...rest]);
  };
  process.emitWarning = filtered as typeof process.emitWarning;
  try {
    sqliteModule = createRequire(import.meta.url)("node:sqlite") as SqliteModule;
  } finally {
    process.emitWarning = original;
  }
  return sqliteModule;
}

/** The schema version the database records; undefined when it has no wasmesh tables at all. */
function schemaVersion(db: DatabaseSync): number | undefined {
  const table = db
    .prepare("SELECT 1 AS found FROM sqlite_schema WHERE type = 'table' AND name = 'schema_version'")
    .get();
  if (table === undefined) return undefined;
  const row = db.prepare("SELECT coalesce(max(version), 0) AS version FROM schema_version").get();
  return Number(row?.version ?? 0);
}

/**
 * Brings the schema up to date. Read first, so that an up-to-date database is opened without a
 * write transaction (a read-only one still serves reads); a new one is only ever migrated in its
 * temp file (createDatabase), so here a database without the schema is refused, not initialised.
 */
function migrate(db: DatabaseSync, path: string, fresh = false): void {
  const found = schemaVersion(db);
  if (found === undefined && !fresh) throw notInitialised(path);
  if (found === MIGRATIONS.length) return;
  db.exec("BEGIN IMMEDIATE");
  try {
    db.exec(
      "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
    );
    // Again, under the write lock: another process may have migrated meanwhile.
    const current = schemaVersion(db) ?? 0;
    if (current > MIGRATIONS.length) {
      throw new Error(
        `database schema version ${current} is newer than this wasmesh supports (${MIGRATIONS.length}); ` +
          "upgrade wasmesh rather than risk damaging the data",
      );
    }
    const record = db.prepare("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)");
    for (let version = current + 1; version <= MIGRATIONS.length; version++) {
      db.exec(MIGRATIONS[version - 1] ?? "");
      record.run(version, new Date().toISOString());
    }
    db.exec("COMMIT");
  } catch (error) {
    if (db.isTransaction) db.exec("ROLLBACK");
    throw error;
  }
}

const REFUSAL =
  "Refusing to start with no resources, which would remove every route, rule and plugin from every " +
  `connected sidecar. Restore ${DATABASE_FILE} from a backup, or start on a new data directory (--data)`;

/** wasmesh.db exists but holds no wasmesh schema: truncated, emptied or replaced. */
function notInitialised(path: string): Error {
  const size = statSync(path, { throwIfNoEntry: false })?.size ?? 0;
  const what =
    size === 0
      ? `${path} is empty (0 bytes), but wasmesh only ever creates it complete: it was truncated or replaced`
      : `${path} is not a wasmesh database (it has no wasmesh tables)`;
  return new Error(`${what}. ${REFUSAL}; to start empty here on purpose, move ${path} away first.`);
}

/** Why a missing wasmesh.db must not be created afresh: what shows that dataDir held one. */
function leftovers(dataDir: string, options: SqliteStoreOptions): string[] {
  const own = ["-wal", "-shm", "-journal"].map((suffix) => `${DATABASE_FILE}${suffix}`);
  return [...own.filter((name) => existsSync(join(dataDir, name))), ...(options.otherData?.() ?? [])];
}

/**
 * Creates <dataDir>/wasmesh.db complete: the schema is written to a temp file, which is then
 * hard-linked into place, so no process ever sees a wasmesh.db without the schema (which the open
 * refuses). link() fails if another process got there first; its database is as new as ours. The file
 * is created 0600: it holds the API tokens' hashes besides the mesh.
 */
function createDatabase(dataDir: string, path: string): void {
  const { DatabaseSync } = loadSqlite();
  const temp = join(dataDir, `.${DATABASE_FILE}.new-${process.pid}-${randomUUID().slice(0, 8)}`);
  try {
    // Readable by its owner only (SQLite gives the -wal and -shm files the database's mode).
    closeSync(openSync(temp, "wx", 0o600));
    const db = new DatabaseSync(temp);
    try {
      db.exec("PRAGMA journal_mode = WAL");
      db.exec("PRAGMA synchronous = FULL");
      migrate(db, temp, true);
    } finally {
      // The last connection to close checkpoints the WAL into the file and deletes it.
      db.close();
    }
    try {
      linkSync(temp, path);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? "";
      if (code === "EEXIST") return;
      if (!["EPERM", "ENOTSUP", "EOPNOTSUPP", "ENOSYS"].includes(code)) throw error;
      // A file system without hard links: rename, which is atomic but not exclusive.
      if (existsSync(path)) return;
      renameSync(temp, path);
    }
    // The new name must survive a power loss too.
    syncDirectory(dataDir);
  } finally {
    for (const suffix of ["", "-wal", "-shm"]) rmSync(`${temp}${suffix}`, { force: true });
  }
}

function syncDirectory(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, "r");
    fsyncSync(fd);
  } catch {
    // Some platforms cannot open or fsync a directory; the link (or rename) itself has happened.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

class SqliteStore implements SqliteResourceStore {
  readonly path: string;
  readonly #db: DatabaseSync;
  readonly #now: () => Date;
  readonly #onBeforeCommit: SqliteStoreOptions["onBeforeCommit"];
  readonly #watchers = new Watchers();
  readonly #select: StatementSync;
  readonly #listAll: StatementSync;
  readonly #listKind: StatementSync;
  readonly #lookup: StatementSync;
  readonly #upsert: StatementSync;
  readonly #delete: StatementSync;
  readonly #readRevision: StatementSync;
  readonly #writeRevision: StatementSync;
  readonly #touchRevision: StatementSync;
  readonly #busyTimeoutMs: number;
  /** The writability probe in progress, which concurrent checks share. */
  #probe: Promise<void> | undefined;
  #closed = false;

  constructor(path: string, db: DatabaseSync, options: SqliteStoreOptions) {
    this.path = path;
    this.#db = db;
    this.#now = options.now ?? (() => new Date());
    this.#onBeforeCommit = options.onBeforeCommit;
    this.#select = db.prepare("SELECT doc FROM resources WHERE kind = ? AND name = ?");
    // BINARY collation compares UTF-8 bytes, i.e. code point order (compareCodePoints).
    // Internal kinds (INTERNAL_KIND_PREFIX) are no part of the mesh: listed only by kind.
    this.#listAll = db.prepare(
      `SELECT doc FROM resources WHERE kind NOT GLOB '${INTERNAL_KIND_PREFIX}*' ORDER BY kind, name`,
    );
    this.#listKind = db.prepare("SELECT doc FROM resources WHERE kind = ? ORDER BY name");
    this.#lookup = db.prepare("SELECT version, created_at FROM resources WHERE kind = ? AND name = ?");
    this.#upsert = db.prepare(
      "INSERT INTO resources (kind, name, version, created_at, doc) VALUES (?, ?, ?, ?, ?) " +
        "ON CONFLICT (kind, name) DO UPDATE SET version = excluded.version, " +
        "created_at = excluded.created_at, doc = excluded.doc",
    );
    this.#delete = db.prepare("DELETE FROM resources WHERE kind = ? AND name = ?");
    this.#readRevision = db.prepare("SELECT revision FROM store_state WHERE id = 1");
    this.#writeRevision = db.prepare("UPDATE store_state SET revision = ? WHERE id = 1");
    this.#touchRevision = db.prepare("UPDATE store_state SET revision = revision WHERE id = 1");
    this.#busyTimeoutMs = options.busyTimeoutMs ?? BUSY_TIMEOUT_MS;
  }

  #assertOpen(): void {
    if (this.#closed) throw new StoreClosedError();
  }

  #currentRevision(): number {
    const row = this.#readRevision.get();
    if (row === undefined) throw new Error(`${this.path}: store_state row missing; the database is damaged`);
    return Number(row.revision);
  }

  #lookupEntry(kind: string, name: string): ExistingEntry | undefined {
    const row = this.#lookup.get(kind, name);
    return row === undefined
      ? undefined
      : { version: String(row.version), createdAt: String(row.created_at) };
  }

  async get(kind: string, name: string): Promise<StoredResource | undefined> {
    this.#assertOpen();
    const row = this.#select.get(kind, name);
    return row === undefined ? undefined : JSON.parse(String(row.doc));
  }

  async list(kind?: string): Promise<StoredResource[]> {
    this.#assertOpen();
    const rows = kind === undefined ? this.#listAll.all() : this.#listKind.all(kind);
    return rows.map((row): StoredResource => JSON.parse(String(row.doc)));
  }

  async apply(changes: readonly Change[], options: ApplyOptions = {}): Promise<ApplyResult> {
    this.#assertOpen();
    const db = this.#db;
    // Everything from BEGIN to COMMIT is synchronous, so no other call on this connection
    // can interleave; BEGIN IMMEDIATE excludes writers in other processes.
    try {
      db.exec("BEGIN IMMEDIATE");
    } catch (error) {
      throw unwritable(error) ?? error;
    }
    let plan: ReturnType<typeof planApply>;
    try {
      plan = planApply(
        changes,
        (kind, name) => this.#lookupEntry(kind, name),
        this.#currentRevision(),
        this.#now(),
      );
      if (options.dryRun || plan.writes.length === 0) {
        db.exec("ROLLBACK");
        return plan.result;
      }
      for (const write of plan.writes) {
        if (write.op === "put") {
          this.#upsert.run(write.kind, write.name, write.version, write.createdAt, write.json);
        } else {
          this.#delete.run(write.kind, write.name);
        }
      }
      // Internal kinds only (no event): the revision stays.
      const revision = plan.event?.revision ?? plan.result.revision;
      if (plan.event !== undefined) this.#writeRevision.run(revision);
      this.#onBeforeCommit?.({ revision, writes: plan.writes.length });
      db.exec("COMMIT");
    } catch (error) {
      // SQLite may already have rolled back by itself (e.g. on SQLITE_FULL).
      if (db.isTransaction) db.exec("ROLLBACK");
      throw unwritable(error) ?? error;
    }
    if (plan.event !== undefined) this.#watchers.notify(plan.event);
    return plan.result;
  }

  async revision(): Promise<number> {
    this.#assertOpen();
    return this.#currentRevision();
  }

  checkWritable(): Promise<void> {
    try {
      this.#assertOpen();
    } catch (error) {
      return Promise.reject(error);
    }
    this.#probe ??= this.#checkWritable().finally(() => {
      this.#probe = undefined;
    });
    return this.#probe;
  }

  async #checkWritable(): Promise<void> {
    // A file system remounted read-only (after an I/O error) fails the next commit; the rolled-back
    // write below never reaches the disk, so ask the file system. (EACCES is no answer: an open
    // database stays writable through its descriptor; a read-only one is found below.)
    try {
      accessSync(this.path, constants.W_OK);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "EROFS") {
        throw new StoreUnwritableError(`${this.path} is on a read-only file system`);
      }
    }
    // Nor does it find a full disk: what a commit needs must be free (the WAL, then its checkpoint).
    const dir = dirname(this.path);
    const fs = statfsSync(dir);
    const free = (process.getuid?.() === 0 ? fs.bfree : fs.bavail) * fs.bsize;
    if (free < MIN_FREE_BYTES) {
      throw new StoreUnwritableError(`database or disk is full (${free} bytes free in ${dir})`);
    }
    // The write lock, and a row changed under it, rolled back: finds a database SQLite opened
    // read-only (its file was) and a lock another process holds, and writes nothing.
    const deadline = Date.now() + Math.min(this.#busyTimeoutMs, PROBE_WAIT_MS);
    for (;;) {
      this.#assertOpen();
      try {
        this.#tryWrite();
        return;
      } catch (error) {
        if (!isBusy(error) || Date.now() >= deadline) throw unwritable(error) ?? error;
      }
      // Not SQLite's busy handler: that would block the event loop for the whole wait.
      await delay(20);
    }
  }

  #tryWrite(): void {
    const db = this.#db;
    db.exec("PRAGMA busy_timeout = 0");
    try {
      db.exec("BEGIN IMMEDIATE");
      try {
        this.#touchRevision.run();
      } finally {
        if (db.isTransaction) db.exec("ROLLBACK");
      }
    } finally {
      db.exec(`PRAGMA busy_timeout = ${this.#busyTimeoutMs}`);
    }
  }

  watch(listener: WatchListener): () => void {
    this.#assertOpen();
    return this.#watchers.add(listener);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#watchers.clear();
    this.#db.close();
  }
}

const BUSY_TIMEOUT_MS = 5000;
/** How long checkWritable waits for a lock another process holds (a write waits busyTimeoutMs). */
const PROBE_WAIT_MS = 1000;
/** Below this much free space, checkWritable reports the disk full: a commit would likely fail. */
export const MIN_FREE_BYTES = 1024 * 1024;
/** SQLite's primary result code for a lock held elsewhere (extended codes keep it in the low byte). */
const SQLITE_BUSY = 5;

const primaryCode = (error: unknown) => ((error as { errcode?: number }).errcode ?? 0) & 0xff;
const isBusy = (error: unknown) => primaryCode(error) === SQLITE_BUSY;

/**
 * SQLite's primary result codes that say the file cannot be written now, for a reason no request
 * can fix: PERM, BUSY, LOCKED, READONLY, IOERR, CORRUPT, FULL, CANTOPEN, PROTOCOL, NOTADB.
 */
const UNWRITABLE = new Set([3, 5, 6, 8, 10, 11, 13, 14, 15, 26]);

/** The StoreUnwritableError for a SQLite error that means one; undefined for any other error. */
function unwritable(error: unknown): StoreUnwritableError | undefined {
  if (typeof (error as { errcode?: unknown }).errcode !== "number" || !UNWRITABLE.has(primaryCode(error))) {
    return undefined;
  }
  return new StoreUnwritableError((error as Error).message, { cause: error });
}

/**
 * PRAGMA journal_mode = WAL, retried while another process holds the lock. Switching a new file
 * to WAL can fail with SQLITE_BUSY without SQLite's busy handler ever waiting (it gives up at
 * once where waiting could deadlock), so processes opening one new file together need a retry.
 */
async function switchToWal(
  db: DatabaseSync,
  timeoutMs: number,
): Promise<Record<string, unknown> | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return db.prepare("PRAGMA journal_mode = WAL").get();
    } catch (error) {
      if (!isBusy(error) || Date.now() >= deadline) throw error;
      await delay(10 + Math.random() * 40);
    }
  }
}

/**
 * Opens <dataDir>/wasmesh.db and brings its schema up to date; creates it in a directory that never
 * held one. Refuses (with what to do) a database that was emptied or lost: see the top of this file.
 */
export async function openSqliteStore(options: SqliteStoreOptions): Promise<SqliteResourceStore> {
  const { DatabaseSync } = loadSqlite();
  const { dataDir } = options;
  mkdirSync(dataDir, { recursive: true });
  const path = join(dataDir, DATABASE_FILE);
  if (!existsSync(path)) {
    const found = leftovers(dataDir, options);
    // Checked again: a process creating the database this very moment may have opened it already.
    if (found.length > 0 && !existsSync(path)) {
      const named =
        found.length > 3 ? `${found.slice(0, 3).join(", ")} and ${found.length - 3} more` : found.join(", ");
      throw new Error(
        `${path} is missing, but ${named} ${found.length === 1 ? "is" : "are"} in ${dataDir}: ` +
          `this data directory held a database. ${REFUSAL}; to start empty here on purpose, move ` +
          `${found.length === 1 ? "it" : "them"} away first.`,
      );
    }
    if (found.length === 0) createDatabase(dataDir, path);
  }
  const db = new DatabaseSync(path);
  try {
    // First, before anything that takes a lock: another process (a second control plane during
    // a rolling restart, or one started at the same moment on a new --data) may hold the write
    // lock briefly. Wait instead of failing at once with SQLITE_BUSY.
    const busyTimeoutMs = options.busyTimeoutMs ?? BUSY_TIMEOUT_MS;
    db.exec(`PRAGMA busy_timeout = ${busyTimeoutMs}`);
    // Before anything that writes: switching to WAL would give an emptied file a header.
    if (schemaVersion(db) === undefined) throw notInitialised(path);
    // WAL: readers do not block the writer and a commit is one sequential append + fsync.
    const mode = await switchToWal(db, busyTimeoutMs);
    if (String(mode?.journal_mode).toLowerCase() !== "wal") {
      throw new Error(`${path}: cannot enable WAL journal mode (got ${String(mode?.journal_mode)})`);
    }
    // FULL (not WAL's usual NORMAL): fsync the WAL at every commit, so an acknowledged
    // apply survives power loss, not only a process crash. Applies are rare; this is cheap.
    db.exec("PRAGMA synchronous = FULL");
    migrate(db, path);
    return new SqliteStore(path, db, options);
  } catch (error) {
    db.close();
    // SQLite's own words ("attempt to write a readonly database") do not say which file, nor that
    // the directory may be what is read-only.
    if (typeof (error as { errcode?: unknown }).errcode === "number") {
      let hint = "";
      try {
        accessSync(dataDir, constants.W_OK);
      } catch {
        hint = ` (${dataDir} is not writable, and SQLite keeps ${DATABASE_FILE}-wal and -shm there)`;
      }
      throw new Error(`cannot open ${path}: ${(error as Error).message}${hint}`, { cause: error });
    }
    throw error;
  }
}
