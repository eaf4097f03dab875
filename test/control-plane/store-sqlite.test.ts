// SQLite-only properties of the store: the files it creates, durability across a reopen,
// schema migrations, isolation of an open transaction, crash safety (a child process is
// SIGKILLed inside a 5,000-change apply) and the node:sqlite warning decision.
// The behaviour shared with the memory store is in store.test.ts.
import { type ChildProcess, spawn } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { join, resolve } from "node:path";
import type { DatabaseSync as DatabaseSyncType } from "node:sqlite";
import { pathToFileURL } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import {
  type Change,
  ConflictError,
  DATABASE_FILE,
  openSqliteStore,
  type ResourceInput,
  type ResourceStore,
  SCHEMA_VERSION,
  StoreUnwritableError,
} from "../../control-plane/store/index.ts";
import { loadSqlite } from "../../control-plane/store/sqlite.ts";
import { tempDir } from "../support/temp.ts";
import { canMountTmpfs, fill, mountTmpfs } from "../support/tmpfs.ts";

// The store's loader: without SQLite's one-time ExperimentalWarning (see sqlite.ts).
const { DatabaseSync } = loadSqlite();

const STORE_URL = pathToFileURL(resolve(import.meta.dirname, "../../control-plane/store/index.ts")).href;

const cleanups: (() => void | Promise<void>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function open(dataDir: string): Promise<ResourceStore> {
  const store = await openSqliteStore({ dataDir });
  cleanups.push(() => store.close());
  return store;
}

/** A raw connection to inspect the file the way SQLite itself sees it. */
function raw(dataDir: string, readOnly = true): DatabaseSyncType {
  const db = new DatabaseSync(join(dataDir, DATABASE_FILE), { readOnly });
  cleanups.push(() => {
    if (db.isOpen) db.close();
  });
  return db;
}

const res = (kind: string, name: string, spec: unknown = {}): ResourceInput => ({
  apiVersion: "wasmesh.io/v1alpha1",
  kind,
  metadata: { name },
  spec,
});
const put = (resource: ResourceInput): Change => ({ op: "put", resource });

describe("sqlite store: files and schema", () => {
  it("creates a missing data directory and one wasmesh.db in WAL mode with the current schema", async () => {
    const dataDir = join(tempDir("store-sqlite"), "nested", "data");
    const store = await open(dataDir);
    await store.apply([put(res("S", "a"))]);
    expect(existsSync(join(dataDir, DATABASE_FILE))).toBe(true);
    const db = raw(dataDir);
    expect(db.prepare("PRAGMA journal_mode").get()).toEqual({ journal_mode: "wal" });
    expect(db.prepare("SELECT version FROM schema_version").all()).toEqual([{ version: SCHEMA_VERSION }]);
    expect(db.prepare("SELECT kind, name, version FROM resources").all()).toEqual([
      { kind: "S", name: "a", version: 1 },
    ]);
    expect(db.prepare("SELECT revision FROM store_state").all()).toEqual([{ revision: 1 }]);
  });

  it("creates wasmesh.db and its -wal and -shm readable by their owner only (0600)", async () => {
    const dataDir = join(tempDir("store-sqlite"), "private");
    const store = await open(dataDir);
    await store.apply([put(res("S", "a"))]);
    for (const name of [DATABASE_FILE, `${DATABASE_FILE}-wal`, `${DATABASE_FILE}-shm`]) {
      expect((statSync(join(dataDir, name)).mode & 0o777).toString(8), name).toBe("600");
    }
  });

  it("refuses to open a database written by a newer schema, without touching it", async () => {
    const dataDir = tempDir("store-sqlite");
    await (await openSqliteStore({ dataDir })).close();
    const db = raw(dataDir, false);
    db.prepare("INSERT INTO schema_version (version, applied_at) VALUES (?, 'future')").run(
      SCHEMA_VERSION + 1,
    );
    db.close();
    await expect(openSqliteStore({ dataDir })).rejects.toThrow(
      /schema version 2 is newer than this wasmesh supports \(1\)/,
    );
    expect(raw(dataDir).prepare("SELECT count(*) AS n FROM schema_version").get()).toEqual({ n: 2 });
  });
});

describe("sqlite store: a data directory that held a database never comes up empty", () => {
  const refusal =
    "Refusing to start with no resources, which would remove every route, rule and plugin from every " +
    `connected sidecar. Restore ${DATABASE_FILE} from a backup, or start on a new data directory (--data)`;

  /** A data directory with one resource in it, closed cleanly (no -wal or -shm left). */
  async function initialised(): Promise<string> {
    const dataDir = tempDir("store-sqlite");
    const store = await openSqliteStore({ dataDir });
    await store.apply([put(res("Service", "web"))]);
    await store.close();
    expect(readdirSync(dataDir)).toEqual([DATABASE_FILE]);
    return dataDir;
  }

  it("refuses a zero-byte wasmesh.db, naming it and what to do, and leaves it as it was", async () => {
    const dataDir = await initialised();
    const path = join(dataDir, DATABASE_FILE);
    truncateSync(path, 0);
    await expect(openSqliteStore({ dataDir })).rejects.toThrow(
      `${path} is empty (0 bytes), but wasmesh only ever creates it complete: it was truncated or replaced. ` +
        `${refusal}; to start empty here on purpose, move ${path} away first.`,
    );
    expect(statSync(path).size).toBe(0);
    expect(readdirSync(dataDir)).toEqual([DATABASE_FILE]);
    // As the message says: moved away, the directory starts empty.
    renameSync(path, `${path}.empty`);
    rmSync(`${path}.empty`);
    expect(await (await open(dataDir)).revision()).toBe(0);
  });

  it("refuses a wasmesh.db without the wasmesh tables", async () => {
    const dataDir = tempDir("store-sqlite");
    const path = join(dataDir, DATABASE_FILE);
    const other = new DatabaseSync(path);
    other.exec("CREATE TABLE unrelated (x)");
    other.close();
    await expect(openSqliteStore({ dataDir })).rejects.toThrow(
      `${path} is not a wasmesh database (it has no wasmesh tables). ${refusal}`,
    );
  });

  it("refuses to create a database next to its -wal or -shm, or the data it is told of", async () => {
    for (const leftover of [`${DATABASE_FILE}-wal`, `${DATABASE_FILE}-shm`]) {
      const dataDir = await initialised();
      renameSync(join(dataDir, DATABASE_FILE), join(dataDir, "moved.db"));
      writeFileSync(join(dataDir, leftover), "left over");
      await expect(openSqliteStore({ dataDir })).rejects.toThrow(
        `${join(dataDir, DATABASE_FILE)} is missing, but ${leftover} is in ${dataDir}: this data directory held a database. ${refusal}; to start empty here on purpose, move it away first.`,
      );
      expect(existsSync(join(dataDir, DATABASE_FILE))).toBe(false);
    }
    const dataDir = tempDir("store-sqlite");
    const otherData = () => ["modules/a.wasm", "modules/b.wasm"];
    await expect(openSqliteStore({ dataDir, otherData })).rejects.toThrow(
      "is missing, but modules/a.wasm, modules/b.wasm are in",
    );
    expect(readdirSync(dataDir)).toEqual([]);
    // With the database there, other data is what it should be.
    const store = await openSqliteStore({ dataDir: await initialised(), otherData });
    expect(await store.revision()).toBe(1);
    await store.close();
  });

  it("creates a new database complete, under its name only: no temp file is left", async () => {
    const dataDir = join(tempDir("store-sqlite"), "new");
    const store = await open(dataDir);
    expect(await store.revision()).toBe(0);
    expect(readdirSync(dataDir).sort()).toEqual([
      DATABASE_FILE,
      `${DATABASE_FILE}-shm`,
      `${DATABASE_FILE}-wal`,
    ]);
  });
});

describe("sqlite store: when the database cannot be written", () => {
  const locked = "the resource store cannot be written: database is locked";

  it("a lock another process holds: writes fail with why, after busyTimeoutMs; reads and the probe carry on", async () => {
    const dataDir = tempDir("store-sqlite");
    const store = await openSqliteStore({ dataDir, busyTimeoutMs: 100 });
    cleanups.push(() => store.close());
    await store.apply([put(res("S", "a"))]);
    const other = raw(dataDir, false);
    other.exec("BEGIN IMMEDIATE");
    const failure = await store.apply([put(res("S", "b"))]).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(StoreUnwritableError);
    expect(failure).toMatchObject({ message: locked, reason: "database is locked" });
    await expect(store.checkWritable()).rejects.toThrow(locked);
    expect((await store.list()).map((r) => r.metadata.name)).toEqual(["a"]);

    // Released while the probe waits for it: the probe succeeds.
    const probe = store.checkWritable();
    setTimeout(() => other.exec("ROLLBACK"), 50);
    await probe;
    expect((await store.apply([put(res("S", "b"))])).revision).toBe(2);
  });

  it("checkWritable writes nothing: no revision, no WAL frame", async () => {
    const dataDir = tempDir("store-sqlite");
    const store = await open(dataDir);
    await store.apply([put(res("S", "a"))]);
    const wal = join(dataDir, `${DATABASE_FILE}-wal`);
    const before = {
      size: statSync(wal).size,
      data: raw(dataDir).prepare("SELECT * FROM store_state").all(),
    };
    for (let i = 0; i < 5; i++) await store.checkWritable();
    expect({
      size: statSync(wal).size,
      data: raw(dataDir).prepare("SELECT * FROM store_state").all(),
    }).toEqual(before);
    expect(await store.revision()).toBe(1);
  });

  // Skipped where no tmpfs can be mounted (test/support/tmpfs.ts).
  it.skipIf(!canMountTmpfs())(
    "a full disk: writes fail with why; the probe says so until space is freed",
    async () => {
      const tmpfs = mountTmpfs(tempDir("store-sqlite"), 2 * 1024 * 1024);
      // After the store closes (cleanups run last first), before the temp dir goes.
      cleanups.unshift(tmpfs.unmount);
      const dataDir = tmpfs.dir;
      const store = await open(dataDir);
      await store.apply([put(res("S", "a"))]);
      await store.checkWritable();
      const filler = join(dataDir, "filler");
      fill(filler);
      const failure = await store
        .apply([put(res("S", "big", { pad: "x".repeat(256 * 1024) }))])
        .catch((error: unknown) => error);
      expect(failure).toBeInstanceOf(StoreUnwritableError);
      expect((failure as Error).message).toBe(
        "the resource store cannot be written: database or disk is full",
      );
      await expect(store.checkWritable()).rejects.toThrow(
        new RegExp(
          `^the resource store cannot be written: database or disk is full \\(\\d+ bytes free in ${dataDir}\\)$`,
        ),
      );
      expect(await store.revision()).toBe(1);
      rmSync(filler);
      await store.checkWritable();
      expect((await store.apply([put(res("S", "big", { pad: "x".repeat(256 * 1024) }))])).revision).toBe(2);
    },
  );
});

describe("sqlite store: durability", () => {
  it("keeps resources, versions and the revision across close and reopen, without re-migrating", async () => {
    const dataDir = tempDir("store-sqlite");
    const first = await openSqliteStore({ dataDir });
    await first.apply([put(res("Service", "web", { port: 80 })), put(res("Route", "r"))]);
    await first.apply([put(res("Service", "api")), { op: "delete", kind: "Route", name: "r" }]);
    await first.apply([put(res("Service", "web", { port: 8080 }))]);
    const before = await first.list();
    await first.close();

    const second = await open(dataDir);
    expect(await second.revision()).toBe(3);
    expect(await second.list()).toEqual(before);
    expect((await second.get("Service", "web"))?.metadata.resourceVersion).toBe("3");
    // Preconditions keep working against the reopened state, and revisions keep climbing.
    await expect(
      second.apply([{ op: "put", resource: res("Service", "web"), expectedVersion: "1" }]),
    ).rejects.toBeInstanceOf(ConflictError);
    expect(
      (await second.apply([{ op: "put", resource: res("Service", "web"), expectedVersion: "3" }])).revision,
    ).toBe(4);
    expect(raw(dataDir).prepare("SELECT count(*) AS n FROM schema_version").get()).toEqual({ n: 1 });
  });

  it("keeps the revision in the database: two stores on one file see each other's writes", async () => {
    const dataDir = tempDir("store-sqlite");
    const a = await open(dataDir);
    const b = await open(dataDir);
    await a.apply([put(res("S", "x", { by: "a" }))]);
    expect(await b.revision()).toBe(1);
    const result = await b.apply([{ op: "put", resource: res("S", "x", { by: "b" }), expectedVersion: "1" }]);
    expect(result.revision).toBe(2);
    await expect(
      a.apply([{ op: "put", resource: res("S", "x", { by: "a again" }), expectedVersion: "1" }]),
    ).rejects.toMatchObject({ name: "ConflictError", actual: "2" });
    expect((await a.get("S", "x"))?.spec).toEqual({ by: "b" });
  });
});

describe("sqlite store: transactions", () => {
  it("makes an apply invisible to other connections until COMMIT, and rolls back if the hook throws", async () => {
    const dataDir = tempDir("store-sqlite");
    const seenInside: unknown[] = [];
    let reader: DatabaseSyncType | undefined;
    let fail = false;
    const store = await openSqliteStore({
      dataDir,
      onBeforeCommit: (info) => {
        // Every statement of the apply has run; another connection must still see the old state.
        reader ??= raw(dataDir);
        seenInside.push(
          info,
          reader.prepare("SELECT revision FROM store_state").get(),
          reader.prepare("SELECT count(*) AS n FROM resources").get(),
        );
        if (fail) throw new Error("injected failure before COMMIT");
      },
    });
    cleanups.push(() => store.close());
    await store.apply([put(res("S", "a")), put(res("S", "b"))]);
    expect(seenInside).toEqual([{ revision: 1, writes: 2 }, { revision: 0 }, { n: 0 }]);

    fail = true;
    await expect(store.apply([put(res("S", "c")), { op: "delete", kind: "S", name: "a" }])).rejects.toThrow(
      "injected failure before COMMIT",
    );
    expect(await store.revision()).toBe(1);
    expect((await store.list()).map((r) => r.metadata.name)).toEqual(["a", "b"]);
    // The connection is usable again (the transaction was closed, not left dangling).
    fail = false;
    expect((await store.apply([put(res("S", "c"))])).revision).toBe(2);
  });
});

/** Collects a child's output and resolves when a line matching `pattern` appears. */
function lineWaiter(child: ChildProcess) {
  let stdout = "";
  let stderr = "";
  const waiters: { pattern: RegExp; resolve: (line: string) => void }[] = [];
  const check = () => {
    for (const waiter of [...waiters]) {
      const line = stdout.split("\n").find((l) => waiter.pattern.test(l));
      if (line !== undefined) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve(line);
      }
    }
  };
  child.stdout?.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
    check();
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolveExit) => {
    child.on("exit", (code, signal) => resolveExit({ code, signal }));
  });
  return {
    exited,
    output: () => ({ stdout, stderr }),
    waitFor(pattern: RegExp): Promise<string> {
      return new Promise((resolveLine, reject) => {
        waiters.push({ pattern, resolve: resolveLine });
        check();
        exited.then(({ code, signal }) =>
          reject(
            new Error(`child exited (${code ?? signal}) before printing ${pattern}\n${stdout}\n${stderr}`),
          ),
        );
      });
    },
  };
}

function spawnScript(dir: string, source: string, args: string[]): ChildProcess {
  const script = join(dir, "child.mjs");
  writeFileSync(script, source);
  const child = spawn(process.execPath, [script, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  cleanups.push(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  return child;
}

describe("sqlite store: processes sharing a data directory", () => {
  it("opens one new data directory from six processes at once: every one starts and writes", async () => {
    // Two control planes started together on a new --data (a rolling restart, a test harness)
    // race to create the file and switch it to WAL; the loser must wait for the lock, not fail.
    const dir = tempDir("store-sqlite");
    const dataDir = join(dir, "data");
    const source = `
      import { openSqliteStore } from ${JSON.stringify(STORE_URL)};
      // Every child opens at the same instant, so they really collide on the new file.
      const startAt = Number(process.argv[4]);
      while (Date.now() < startAt);
      const store = await openSqliteStore({ dataDir: process.argv[2] });
      const name = "p" + process.argv[3];
      await store.apply([{ op: "put", resource: { apiVersion: "wasmesh.io/v1alpha1", kind: "S", metadata: { name }, spec: {} } }]);
      await store.close();
      `;
    const startAt = String(Date.now() + 1500);
    const children = Array.from({ length: 6 }, (_, i) => {
      const childDir = join(dir, `child-${i}`);
      mkdirSync(childDir);
      return lineWaiter(spawnScript(childDir, source, [dataDir, String(i), startAt]));
    });
    const exits = await Promise.all(children.map((c) => c.exited));
    for (const [i, exit] of exits.entries()) {
      expect({ exit, stderr: children[i]?.output().stderr }).toEqual({
        exit: { code: 0, signal: null },
        stderr: "",
      });
    }
    const store = await open(dataDir);
    expect((await store.list("S")).map((r) => r.metadata.name).sort()).toEqual([
      "p0",
      "p1",
      "p2",
      "p3",
      "p4",
      "p5",
    ]);
    expect(await store.revision()).toBe(6);
  });
});

describe("sqlite store: crash safety", () => {
  it("keeps the previous state when the process is SIGKILLed inside a 5,000-put apply", async () => {
    const dir = tempDir("store-sqlite");
    const dataDir = join(dir, "data");
    // The child commits a baseline, then starts an apply of 5,000 puts (about 2 KiB each, so
    // SQLite's 2 MiB page cache spills uncommitted pages into the WAL file) plus an update
    // and a delete of baseline resources. The test-only onBeforeCommit hook runs after every
    // statement of that apply, just before COMMIT: it announces itself and blocks until killed.
    const child = spawnScript(
      dir,
      `
      import { writeSync } from "node:fs";
      import { openSqliteStore } from ${JSON.stringify(STORE_URL)};
      let crash = false;
      const store = await openSqliteStore({
        dataDir: process.argv[2],
        onBeforeCommit: (info) => {
          if (!crash) return;
          writeSync(1, "INSIDE_TRANSACTION " + JSON.stringify(info) + "\\n");
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 60_000);
          writeSync(1, "NOT_KILLED\\n");
          process.exit(3);
        },
      });
      const res = (kind, name, spec) => ({ apiVersion: "wasmesh.io/v1alpha1", kind, metadata: { name }, spec });
      await store.apply([
        { op: "put", resource: res("Service", "web", { v: 1 }) },
        { op: "put", resource: res("Service", "api", { v: 1 }) },
      ]);
      await store.apply([{ op: "put", resource: res("Route", "r", { v: 1 }) }]);
      writeSync(1, "BASELINE_COMMITTED\\n");
      crash = true;
      const changes = [];
      for (let i = 0; i < 5000; i++) {
        changes.push({ op: "put", resource: res("Bulk", "b" + i, { i, pad: "x".repeat(2048) }) });
      }
      changes.push({ op: "put", resource: res("Service", "web", { v: 2 }), expectedVersion: "1" });
      changes.push({ op: "delete", kind: "Service", name: "api" });
      await store.apply(changes);
      writeSync(1, "COMMITTED\\n");
      `,
      [dataDir],
    );
    const lines = lineWaiter(child);
    await lines.waitFor(/^BASELINE_COMMITTED$/);
    const inside = await lines.waitFor(/^INSIDE_TRANSACTION /);
    expect(JSON.parse(inside.slice("INSIDE_TRANSACTION ".length))).toEqual({ revision: 3, writes: 5002 });

    // While the child sits inside the transaction: its uncommitted pages are on disk in the
    // WAL (so recovery really has something to discard), yet a reader sees only the baseline.
    const walBytes = statSync(join(dataDir, `${DATABASE_FILE}-wal`)).size;
    expect(walBytes).toBeGreaterThan(2 * 1024 * 1024);
    const reader = new DatabaseSync(join(dataDir, DATABASE_FILE), { readOnly: true });
    expect(reader.prepare("SELECT revision FROM store_state").get()).toEqual({ revision: 2 });
    reader.close();

    child.kill("SIGKILL");
    expect(await lines.exited).toEqual({ code: null, signal: "SIGKILL" });
    const printed = lines.output().stdout.split("\n");
    expect(printed).not.toContain("COMMITTED");
    expect(printed).not.toContain("NOT_KILLED");

    const store = await open(dataDir);
    expect(await store.revision()).toBe(2);
    expect(await store.list("Bulk")).toEqual([]);
    expect(
      (await store.list()).map((r) => `${r.kind}/${r.metadata.name}@${r.metadata.resourceVersion}`),
    ).toEqual(["Route/r@2", "Service/api@1", "Service/web@1"]);
    expect((await store.get("Service", "web"))?.spec).toEqual({ v: 1 });
    // The next apply continues from the last committed revision.
    expect((await store.apply([put(res("Bulk", "after-crash"))])).revision).toBe(3);
    await store.close();

    const check = raw(dataDir);
    expect(check.prepare("PRAGMA integrity_check").all()).toEqual([{ integrity_check: "ok" }]);
    expect(check.prepare("SELECT count(*) AS n FROM resources WHERE kind = 'Bulk'").get()).toEqual({ n: 1 });
  });
});

describe("sqlite store: node:sqlite ExperimentalWarning", () => {
  it("suppresses only SQLite's experimental warning; other warnings still print", async () => {
    const dir = tempDir("store-sqlite");
    const child = spawnScript(
      dir,
      `
      import { openSqliteStore } from ${JSON.stringify(STORE_URL)};
      const store = await openSqliteStore({ dataDir: process.argv[2] });
      await store.apply([]);
      await store.close();
      process.emitWarning("canary warning", "ExperimentalWarning");
      process.emitWarning("another canary");
      `,
      [join(dir, "data")],
    );
    const lines = lineWaiter(child);
    expect(await lines.exited).toEqual({ code: 0, signal: null });
    const { stderr } = lines.output();
    expect(stderr).toContain("ExperimentalWarning: canary warning");
    expect(stderr).toContain("Warning: another canary");
    expect(stderr).not.toMatch(/SQLite is an experimental feature/);
  });
});
