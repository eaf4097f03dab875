// The ResourceStore contract, run against every implementation (SQLite on a real database
// file in a temp dir, and the in-memory store) so that they cannot drift apart.
// SQLite-only properties (files, durability, crash safety, migrations) are in
// store-sqlite.test.ts.
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  type Change,
  ConflictError,
  createMemoryStore,
  INTERNAL_KIND_PREFIX,
  InvalidChangeError,
  openSqliteStore,
  type ResourceInput,
  type ResourceStore,
  StoreClosedError,
  type WatchEvent,
} from "../../control-plane/store/index.ts";
import { tempDir } from "../support/temp.ts";

/** A clock that advances one second per reading, so createdAt/updatedAt are predictable. */
function steppingClock(): () => Date {
  let seconds = 0;
  return () => new Date(Date.UTC(2025, 0, 1, 0, 0, seconds++));
}
const t = (seconds: number) => new Date(Date.UTC(2025, 0, 1, 0, 0, seconds)).toISOString();

const openStores: ResourceStore[] = [];

afterEach(async () => {
  for (const store of openStores.splice(0)) await store.close();
  vi.restoreAllMocks();
});

const implementations: { name: string; open: (now: () => Date) => Promise<ResourceStore> }[] = [
  {
    name: "sqlite",
    open: async (now) => {
      const dataDir = tempDir("store");
      return openSqliteStore({ dataDir, now });
    },
  },
  { name: "memory", open: async (now) => createMemoryStore({ now }) },
];

function res(kind: string, name: string, spec: unknown = {}, labels?: Record<string, string>): ResourceInput {
  return {
    apiVersion: "wasmesh.io/v1alpha1",
    kind,
    metadata: labels === undefined ? { name } : { name, labels },
    spec,
  };
}
const put = (resource: ResourceInput, expectedVersion?: string | null): Change =>
  expectedVersion === undefined ? { op: "put", resource } : { op: "put", resource, expectedVersion };
const del = (kind: string, name: string, expectedVersion?: string | null): Change =>
  expectedVersion === undefined
    ? { op: "delete", kind, name }
    : { op: "delete", kind, name, expectedVersion };

const keys = (resources: { kind: string; metadata: { name: string } }[]) =>
  resources.map((r) => `${r.kind}/${r.metadata.name}`);

/** The store's whole observable state, to show that a rejected apply changed nothing. */
async function snapshot(store: ResourceStore) {
  return { revision: await store.revision(), resources: await store.list() };
}

describe.each(implementations)("$name store", ({ open }) => {
  async function fresh(): Promise<ResourceStore> {
    const store = await open(steppingClock());
    openStores.push(store);
    return store;
  }

  describe("put, get, list, delete", () => {
    it("starts empty at revision 0", async () => {
      const store = await fresh();
      expect(await store.revision()).toBe(0);
      expect(await store.list()).toEqual([]);
      expect(await store.get("Service", "web")).toBeUndefined();
    });

    it("stores a put with store-owned metadata and returns it from get", async () => {
      const store = await fresh();
      const input = {
        ...res("Service", "web", { ports: [80] }, { team: "a" }),
        status: "dropped: only known fields are stored",
      };
      input.metadata.resourceVersion = "999"; // store-owned: ignored
      const result = await store.apply([put(input)]);
      const expected = {
        apiVersion: "wasmesh.io/v1alpha1",
        kind: "Service",
        metadata: {
          name: "web",
          labels: { team: "a" },
          resourceVersion: "1",
          createdAt: t(0),
          updatedAt: t(0),
        },
        spec: { ports: [80] },
      };
      expect(result).toEqual({
        revision: 1,
        changes: [{ op: "put", kind: "Service", name: "web", created: true, resource: expected }],
      });
      expect(await store.get("Service", "web")).toEqual(expected);
      expect(await store.get("Service", "other")).toBeUndefined();
      expect(await store.get("Route", "web")).toBeUndefined();
    });

    it("stores an undefined spec as null", async () => {
      const store = await fresh();
      await store.apply([put({ apiVersion: "v", kind: "K", metadata: { name: "n" } })]);
      expect((await store.get("K", "n"))?.spec).toBeNull();
    });

    it("replaces on a second put: resourceVersion increases, createdAt is kept", async () => {
      const store = await fresh();
      await store.apply([put(res("Service", "web", { v: 1 }))]);
      await store.apply([put(res("Service", "other"))]);
      const result = await store.apply([put(res("Service", "web", { v: 2 }))]);
      expect(result.changes[0]).toMatchObject({ op: "put", created: false });
      const web = await store.get("Service", "web");
      expect(web?.spec).toEqual({ v: 2 });
      expect(web?.metadata).toEqual({ name: "web", resourceVersion: "3", createdAt: t(0), updatedAt: t(2) });
    });

    it("lists by kind then name in code point order, and filters by kind", async () => {
      const store = await fresh();
      // Inserted out of order, across several applies. "Z" < "a" bytewise; U+FFFF sorts
      // before U+1F600 by code point although its UTF-16 unit is larger than the surrogate's.
      await store.apply([put(res("Service", "web")), put(res("Route", "b"))]);
      await store.apply([put(res("Service", "api")), put(res("Route", "a")), put(res("Route", "Z"))]);
      await store.apply([put(res("Service", "\u{1F600}")), put(res("Service", "\uFFFF"))]);
      await store.apply([put(res("AccessRule", "x"))]);
      expect(keys(await store.list())).toEqual([
        "AccessRule/x",
        "Route/Z",
        "Route/a",
        "Route/b",
        "Service/api",
        "Service/web",
        "Service/\uFFFF",
        "Service/\u{1F600}",
      ]);
      expect(keys(await store.list("Route"))).toEqual(["Route/Z", "Route/a", "Route/b"]);
      expect(await store.list("Nothing")).toEqual([]);
    });

    it("deletes, reporting whether the resource existed", async () => {
      const store = await fresh();
      await store.apply([put(res("Service", "web")), put(res("Service", "api"))]);
      const result = await store.apply([del("Service", "web")]);
      expect(result).toEqual({
        revision: 2,
        changes: [{ op: "delete", kind: "Service", name: "web", deleted: true }],
      });
      expect(await store.get("Service", "web")).toBeUndefined();
      expect(keys(await store.list())).toEqual(["Service/api"]);
    });

    it("treats a delete of an absent resource without a version as a no-op that does not bump", async () => {
      const store = await fresh();
      await store.apply([put(res("Service", "api"))]);
      const result = await store.apply([del("Service", "ghost")]);
      expect(result).toEqual({
        revision: 1,
        changes: [{ op: "delete", kind: "Service", name: "ghost", deleted: false }],
      });
      expect(await store.revision()).toBe(1);
      expect(await store.apply([])).toEqual({ revision: 1, changes: [] });
      expect(await store.revision()).toBe(1);
    });

    it("returns copies: mutating a returned document does not change the store", async () => {
      const store = await fresh();
      const input = res("Service", "web", { ports: [80] }, { team: "a" });
      const result = await store.apply([put(input)]);
      input.metadata.labels = { team: "mutated input" };
      const first = await store.get("Service", "web");
      if (first === undefined) throw new Error("missing");
      (first.spec as { ports: number[] }).ports.push(81);
      const listed = await store.list();
      (listed[0]?.metadata.labels ?? {}).team = "mutated list";
      if (result.changes[0]?.op === "put") result.changes[0].resource.spec = "mutated result";
      const again = await store.get("Service", "web");
      expect(again?.spec).toEqual({ ports: [80] });
      expect(again?.metadata.labels).toEqual({ team: "a" });
    });
  });

  describe("revisions", () => {
    it("bumps the revision once per apply, not per change; every change of an apply shares it", async () => {
      const store = await fresh();
      const first = await store.apply([put(res("S", "a")), put(res("S", "b")), put(res("S", "c"))]);
      expect(first.revision).toBe(1);
      expect(await store.revision()).toBe(1);
      expect((await store.list()).map((r) => r.metadata.resourceVersion)).toEqual(["1", "1", "1"]);
      const second = await store.apply([put(res("S", "b")), del("S", "c"), put(res("S", "d"))]);
      expect(second.revision).toBe(2);
      expect(await store.revision()).toBe(2);
      expect((await store.list()).map((r) => `${r.metadata.name}@${r.metadata.resourceVersion}`)).toEqual([
        "a@1",
        "b@2",
        "d@2",
      ]);
    });

    it("derives resourceVersion from the revision, so a re-created resource gets a higher version", async () => {
      const store = await fresh();
      await store.apply([put(res("S", "a"))]);
      await store.apply([del("S", "a")]);
      await store.apply([put(res("S", "a"))]);
      expect((await store.get("S", "a"))?.metadata.resourceVersion).toBe("3");
    });
  });

  describe("optimistic concurrency and atomicity", () => {
    it("accepts a put and a delete whose expectedVersion matches", async () => {
      const store = await fresh();
      await store.apply([put(res("S", "a", { v: 1 })), put(res("S", "b"))]);
      const result = await store.apply([put(res("S", "a", { v: 2 }), "1"), del("S", "b", "1")]);
      expect(result.revision).toBe(2);
      expect((await store.get("S", "a"))?.spec).toEqual({ v: 2 });
      expect(await store.get("S", "b")).toBeUndefined();
    });

    it("rejects a stale expectedVersion with a ConflictError naming kind, name, expected and actual", async () => {
      const store = await fresh();
      await store.apply([put(res("Route", "r1", { v: 1 }))]);
      await store.apply([put(res("Route", "r1", { v: 2 }))]);
      const before = await snapshot(store);
      const error = await store.apply([put(res("Route", "r1", { v: 3 }), "1")]).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConflictError);
      expect(error).toMatchObject({ resourceKind: "Route", resourceName: "r1", expected: "1", actual: "2" });
      expect((error as Error).message).toBe(
        'conflict on Route/r1: expected resourceVersion "1", but found resourceVersion "2"',
      );
      expect(await snapshot(store)).toEqual(before);
    });

    it("stores nothing from an apply with one conflicting change, and keeps the revision", async () => {
      const store = await fresh();
      await store.apply([put(res("S", "existing", { v: 1 })), put(res("S", "doomed"))]);
      const before = await snapshot(store);
      const changes = [
        put(res("S", "new-1")),
        put(res("S", "existing", { v: 2 })),
        del("S", "doomed"),
        put(res("S", "absent"), "7"), // the one conflicting change, not the first
        put(res("S", "new-2")),
      ];
      await expect(store.apply(changes)).rejects.toMatchObject({
        name: "ConflictError",
        resourceName: "absent",
        expected: "7",
        actual: null,
      });
      expect(await snapshot(store)).toEqual(before);
      expect(await store.get("S", "new-1")).toBeUndefined();
      expect((await store.get("S", "existing"))?.spec).toEqual({ v: 1 });
      // The next successful apply continues from the old revision.
      expect((await store.apply([put(res("S", "new-1"))])).revision).toBe(2);
    });

    it("rejects a delete of a missing resource that expects a version", async () => {
      const store = await fresh();
      await store.apply([put(res("S", "other"))]);
      const before = await snapshot(store);
      await expect(store.apply([del("S", "ghost", "1")])).rejects.toMatchObject({
        name: "ConflictError",
        resourceKind: "S",
        resourceName: "ghost",
        expected: "1",
        actual: null,
      });
      expect(await snapshot(store)).toEqual(before);
    });

    it("treats expectedVersion null as create-only", async () => {
      const store = await fresh();
      expect((await store.apply([put(res("S", "a", { v: 1 }), null)])).revision).toBe(1);
      await expect(store.apply([put(res("S", "a", { v: 2 }), null)])).rejects.toMatchObject({
        name: "ConflictError",
        expected: null,
        actual: "1",
      });
      expect((await store.get("S", "a"))?.spec).toEqual({ v: 1 });
    });

    it("rejects two changes to the same key in one apply", async () => {
      const store = await fresh();
      const before = await snapshot(store);
      const error = await store.apply([put(res("S", "a")), del("S", "a")]).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(InvalidChangeError);
      expect(error).toMatchObject({ index: 1 });
      expect(await snapshot(store)).toEqual(before);
    });

    it.each([
      ["an unknown op", { op: "patch", kind: "S", name: "a" }, /unknown op "patch"/],
      [
        "a put without metadata.name",
        { op: "put", resource: { apiVersion: "v", kind: "S", metadata: {} } },
        /name/,
      ],
      ["a put without kind", { op: "put", resource: { apiVersion: "v", metadata: { name: "a" } } }, /kind/],
      [
        "a non-string label",
        { op: "put", resource: { ...res("S", "a"), metadata: { name: "a", labels: { x: 1 } } } },
        /labels/,
      ],
      ["a delete without name", { op: "delete", kind: "S" }, /kind and name/],
      [
        "a numeric expectedVersion",
        { op: "delete", kind: "S", name: "a", expectedVersion: 1 },
        /expectedVersion/,
      ],
      ["a spec JSON cannot hold", { op: "put", resource: res("S", "a", { n: 1n }) }, /JSON-serialisable/],
    ])("rejects %s and stores nothing", async (_label, bad, message) => {
      const store = await fresh();
      await store.apply([put(res("S", "keep"))]);
      const before = await snapshot(store);
      // Deliberately malformed input, as untyped JSON from the API could be.
      const changes = [put(res("S", "first")), bad as unknown as Change];
      const error = await store.apply(changes).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(InvalidChangeError);
      expect(error).toMatchObject({ index: 1 });
      expect((error as Error).message).toMatch(message);
      expect(await snapshot(store)).toEqual(before);
    });

    it("dry-runs an apply: same result, nothing stored, still checks versions", async () => {
      const store = await fresh();
      await store.apply([put(res("S", "a"))]);
      const events: WatchEvent[] = [];
      store.watch((event) => events.push(event));
      const before = await snapshot(store);
      const result = await store.apply([put(res("S", "b")), del("S", "a", "1")], { dryRun: true });
      expect(result.revision).toBe(2);
      expect(result.changes.map((c) => c.op)).toEqual(["put", "delete"]);
      await expect(store.apply([del("S", "a", "5")], { dryRun: true })).rejects.toBeInstanceOf(ConflictError);
      expect(await snapshot(store)).toEqual(before);
      expect(events).toEqual([]);
    });
  });

  describe("watch", () => {
    it("notifies once per committed apply with the changed keys and the new revision", async () => {
      const store = await fresh();
      const events: WatchEvent[] = [];
      store.watch((event) => events.push(event));
      await store.apply([put(res("S", "a")), put(res("S", "b")), put(res("R", "x"))]);
      await store.apply([del("S", "a"), del("S", "ghost"), put(res("S", "b"))]);
      expect(events).toEqual([
        {
          revision: 1,
          changes: [
            { op: "put", kind: "S", name: "a" },
            { op: "put", kind: "S", name: "b" },
            { op: "put", kind: "R", name: "x" },
          ],
        },
        {
          revision: 2,
          changes: [
            { op: "delete", kind: "S", name: "a" },
            { op: "put", kind: "S", name: "b" },
          ],
        },
      ]);
    });

    it("is called after the commit: the listener already sees the new state", async () => {
      const store = await fresh();
      const seen: unknown[] = [];
      store.watch(() => {
        // Synchronous listener; record promises and await them afterwards.
        seen.push(store.revision(), store.get("S", "a"));
      });
      await store.apply([put(res("S", "a", { v: 1 }))]);
      const [revision, resource] = await Promise.all(seen);
      expect(revision).toBe(1);
      expect(resource).toMatchObject({ spec: { v: 1 } });
    });

    it("does not notify for a conflicting, invalid, dry-run or no-op apply", async () => {
      const store = await fresh();
      await store.apply([put(res("S", "a"))]);
      const listener = vi.fn();
      store.watch(listener);
      await expect(store.apply([put(res("S", "b")), put(res("S", "a"), "9")])).rejects.toBeInstanceOf(
        ConflictError,
      );
      await expect(store.apply([put(res("S", "b")), put(res("S", "b"))])).rejects.toBeInstanceOf(
        InvalidChangeError,
      );
      await store.apply([put(res("S", "b"))], { dryRun: true });
      await store.apply([del("S", "ghost")]);
      await store.apply([]);
      expect(listener).not.toHaveBeenCalled();
      await store.apply([put(res("S", "b"))]);
      expect(listener).toHaveBeenCalledTimes(1);
    });

    it("stops notifying after unsubscribe; subscriptions are independent", async () => {
      const store = await fresh();
      const listener = vi.fn();
      const unsubscribeFirst = store.watch(listener);
      store.watch(listener);
      await store.apply([put(res("S", "a"))]);
      expect(listener).toHaveBeenCalledTimes(2);
      unsubscribeFirst();
      unsubscribeFirst(); // idempotent: must not remove the second subscription
      await store.apply([put(res("S", "b"))]);
      expect(listener).toHaveBeenCalledTimes(3);
    });

    it("isolates a throwing listener: the apply succeeds and later listeners still run", async () => {
      const store = await fresh();
      const logged = vi.spyOn(console, "error").mockImplementation(() => {});
      store.watch(() => {
        throw new Error("listener bug");
      });
      const after = vi.fn();
      store.watch(after);
      const result = await store.apply([put(res("S", "a"))]);
      expect(result.revision).toBe(1);
      expect(after).toHaveBeenCalledWith({ revision: 1, changes: [{ op: "put", kind: "S", name: "a" }] });
      expect(logged).toHaveBeenCalledTimes(1);
      expect(await store.get("S", "a")).toBeDefined();
    });
  });

  describe("internal kinds", () => {
    const token = (name: string, spec: unknown = {}) => res(`${INTERNAL_KIND_PREFIX}Token`, name, spec);

    it("are stored and read by kind, but never listed with the mesh, never move the revision and wake no watcher", async () => {
      const store = await fresh();
      await store.apply([put(res("S", "a"))]);
      const events: WatchEvent[] = [];
      store.watch((event) => events.push(event));
      const result = await store.apply([put(token("t1", { role: "admin" })), put(token("t2"))]);
      expect(result.revision).toBe(1);
      expect(result.changes.map((c) => c.op === "put" && c.resource.metadata.resourceVersion)).toEqual([
        "1",
        "1",
      ]);
      expect(await store.revision()).toBe(1);
      expect(events).toEqual([]);
      expect(keys(await store.list())).toEqual(["S/a"]);
      expect(keys(await store.list(`${INTERNAL_KIND_PREFIX}Token`))).toEqual([
        `${INTERNAL_KIND_PREFIX}Token/t1`,
        `${INTERNAL_KIND_PREFIX}Token/t2`,
      ]);
      expect((await store.get(`${INTERNAL_KIND_PREFIX}Token`, "t1"))?.spec).toEqual({ role: "admin" });
      // The next mesh write takes the next revision, as if no token had been written.
      expect((await store.apply([put(res("S", "b"))])).revision).toBe(2);
      expect(events.map((e) => e.revision)).toEqual([2]);
    });

    it("count their own writes as resourceVersion, which preconditions check", async () => {
      const store = await fresh();
      await store.apply([put(token("t1"))]);
      await store.apply([put(token("t1", { revoked: true }), "1")]);
      const stored = await store.get(`${INTERNAL_KIND_PREFIX}Token`, "t1");
      expect(stored?.metadata.resourceVersion).toBe("2");
      await expect(store.apply([put(token("t1"), "1")])).rejects.toBeInstanceOf(ConflictError);
      await store.apply([del(`${INTERNAL_KIND_PREFIX}Token`, "t1", "2")]);
      expect(await store.get(`${INTERNAL_KIND_PREFIX}Token`, "t1")).toBeUndefined();
      expect(await store.revision()).toBe(0);
    });

    it("refuses an apply that mixes them with the mesh's kinds, storing nothing", async () => {
      const store = await fresh();
      const before = await snapshot(store);
      await expect(store.apply([put(res("S", "a")), put(token("t1"))])).rejects.toThrow(InvalidChangeError);
      await expect(store.apply([put(res("S", "a")), put(token("t1"))])).rejects.toThrow(
        /internal:Token is internal and cannot be applied with other kinds/,
      );
      expect(await snapshot(store)).toEqual(before);
      expect(await store.list(`${INTERNAL_KIND_PREFIX}Token`)).toEqual([]);
    });
  });

  describe("close", () => {
    it("rejects every call after close with StoreClosedError; close is idempotent", async () => {
      const store = await fresh();
      await store.apply([put(res("S", "a"))]);
      await store.close();
      await store.close();
      await expect(store.get("S", "a")).rejects.toBeInstanceOf(StoreClosedError);
      await expect(store.list()).rejects.toBeInstanceOf(StoreClosedError);
      await expect(store.revision()).rejects.toBeInstanceOf(StoreClosedError);
      await expect(store.apply([put(res("S", "b"))])).rejects.toBeInstanceOf(StoreClosedError);
      await expect(store.checkWritable()).rejects.toBeInstanceOf(StoreClosedError);
      expect(() => store.watch(() => {})).toThrow(StoreClosedError);
    });
  });

  describe("checkWritable", () => {
    it("resolves for a store that can be written, and writes nothing", async () => {
      const store = await fresh();
      await store.apply([put(res("S", "a"))]);
      const before = await snapshot(store);
      const events: WatchEvent[] = [];
      store.watch((event) => events.push(event));
      await Promise.all([store.checkWritable(), store.checkWritable()]);
      expect(await snapshot(store)).toEqual(before);
      expect(events).toEqual([]);
    });
  });
});
