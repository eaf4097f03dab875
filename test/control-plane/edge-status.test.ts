// What edge workers say of themselves when they poll GET /v1/edge/config (issue 14 §1): the table
// (control-plane/edge/status.ts) keeps, per name and token, the version each serves, its last
// rejection and when it last polled, within bounds; GET /v1/status lists them; and the worker's side
// (workers/src/config-source.ts) sends the name and a header-safe rejection.
import type { Hono } from "hono";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createApi } from "../../control-plane/api/index.ts";
import { cleanReason, createEdgeStatusTable, versionOf } from "../../control-plane/edge/status.ts";
import { openSqliteStore } from "../../control-plane/store/index.ts";
import { headerSafe, httpSource, readSettings } from "../../workers/src/config-source.ts";
import { tempDir } from "../support/temp.ts";

const poll = (name: string, ifNoneMatch: string | undefined, rejected?: string, tokenId = "t1") => ({
  name,
  tokenId,
  ifNoneMatch,
  rejected,
  currentVersion: "v2",
});

describe("the edge status table", () => {
  it("keeps the version each edge serves, current or behind, and its polls", () => {
    let now = 1_000_000;
    const table = createEdgeStatusTable({ now: () => now });
    expect(table.record(poll("edge-a", '"v1"'))).toBe(true);
    now += 5_000;
    table.record(poll("edge-a", '"v1"'));
    table.record(poll("edge-b", undefined));
    now += 1_000;
    const [a, b] = table.list("v2");
    expect(a).toEqual({
      name: "edge-a",
      tokenId: "t1",
      servingVersion: "v1",
      currentVersion: "v2",
      current: false,
      lastPollAt: new Date(1_005_000).toISOString(),
      lastPollAgoMs: 1_000,
      polls: 2,
    });
    // No If-None-Match: it serves nothing yet.
    expect(b).toMatchObject({ name: "edge-b", servingVersion: null, current: false, polls: 1 });
    // After a 200 it holds the new one once it polls with it.
    table.record(poll("edge-a", 'W/"v2"'));
    expect(table.list("v2")[0]).toMatchObject({ servingVersion: "v2", current: true, polls: 3 });
    // Without the version now, the one its last poll was answered with.
    expect(table.list()[0]).toMatchObject({ currentVersion: "v2", current: true });
  });

  it("a poll with a rejection names the refused document: the served version stays, the rejection is kept", () => {
    let now = 0;
    const table = createEdgeStatusTable({ now: () => now });
    table.record(poll("edge", '"v1"'));
    now = 1_000;
    table.record(poll("edge", '"v2"', "the module refused configuration v2: bad route"));
    now = 2_000;
    table.record(poll("edge", '"v2"', "the module refused configuration v2: bad route"));
    const [refusing] = table.list("v2");
    expect(refusing).toMatchObject({
      servingVersion: "v1",
      current: false,
      lastRejection: {
        reason: "the module refused configuration v2: bad route",
        version: "v2",
        at: new Date(1_000).toISOString(),
      },
    });
    // A later document it accepts: current, the rejection still told (as a sidecar's last NACK).
    now = 3_000;
    table.record(poll("edge", '"v3"'));
    expect(table.list("v3")[0]).toMatchObject({
      servingVersion: "v3",
      current: true,
      lastRejection: { version: "v2" },
    });
    // A worker that refused its first document serves nothing.
    table.record(poll("fresh", '"v3"', "invalid"));
    expect(table.list("v3").find((e) => e.name === "fresh")).toMatchObject({
      servingVersion: null,
      current: false,
    });
  });

  it("keys by name and token, ignores names that are no DNS label, and bounds what it keeps", () => {
    let now = 0;
    const table = createEdgeStatusTable({ now: () => now, maxEdges: 3, expiryMs: 60_000 });
    table.record(poll("edge", '"v1"', undefined, "t1"));
    table.record(poll("edge", '"v2"', undefined, "t2"));
    expect(table.list("v2").map((e) => [e.tokenId, e.current])).toEqual([
      ["t1", false],
      ["t2", true],
    ]);
    for (const bad of ["", "Edge", "-edge", "edge-", "a".repeat(64), "a b", "edge\r\nx: y", "é"]) {
      expect(table.record(poll(bad, '"v1"')), bad).toBe(false);
    }
    expect(table.record(poll("a".repeat(63), '"v1"'))).toBe(true);
    // Full: the least recently polled goes.
    now = 1;
    table.record(poll("edge", '"v1"', undefined, "t1"));
    table.record(poll("other", '"v1"'));
    expect(table.list().map((e) => `${e.name}/${e.tokenId}`)).toEqual([
      "a".repeat(63).concat("/t1"),
      "edge/t1",
      "other/t1",
    ]);
    // Forgotten after the expiry without a poll.
    now = 60_002;
    table.record(poll("other", '"v1"'));
    expect(table.list().map((e) => e.name)).toEqual(["other"]);
    now = 200_000;
    expect(table.list()).toEqual([]);
  });

  it("bounds and cleans what the headers carry", () => {
    expect(cleanReason("line one\r\nline two\u0000")).toBe("line one line two");
    const long = cleanReason("é".repeat(1_000));
    expect(new TextEncoder().encode(long).length).toBe(512);
    expect(cleanReason(`${"a".repeat(511)}é`)).toBe("a".repeat(511));
    expect(versionOf('"abc", "def"')).toBe("abc");
    expect(versionOf("*")).toBeNull();
    expect(versionOf(undefined)).toBeNull();
    expect(versionOf(`"${"x".repeat(1_000)}"`)?.length).toBe(128);
  });
});

describe("GET /v1/status lists the edges that poll GET /v1/edge/config", () => {
  const cleanups: (() => void | Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  async function setup(): Promise<Hono> {
    const store = await openSqliteStore({ dataDir: tempDir("edge-status") });
    cleanups.push(() => store.close());
    const app = createApi({ auth: "none", store, log: () => {} });
    return app;
  }

  // biome-ignore lint/suspicious/noExplicitAny: assertions navigate arbitrary JSON
  const status = async (app: Hono): Promise<any> => (await app.request("/v1/status")).json();

  it("a poll, then the edge with the version it serves, current or not, and its rejection", async () => {
    const app = await setup();
    // A poll without a name is not recorded (curl, an older worker).
    const first = await app.request("/v1/edge/config");
    const etag = first.headers.get("etag") as string;
    const version = etag.slice(1, -1);
    expect((await status(app)).edges).toEqual([]);

    await app.request("/v1/edge/config", {
      headers: { "wasmesh-edge-name": "edge-1", "if-none-match": etag },
    });
    await app.request("/v1/edge/config", {
      headers: { "wasmesh-edge-name": "edge-2", "if-none-match": '"old"' },
    });
    const reason = `the module refused configuration ${version}: ${"x".repeat(2_000)}`;
    const refused = await app.request("/v1/edge/config", {
      headers: { "wasmesh-edge-name": "edge-2", "if-none-match": etag, "wasmesh-edge-rejected": reason },
    });
    expect(refused.status).toBe(304);
    // A name that is no DNS label is not recorded, and the poll is answered all the same.
    const bad = await app.request("/v1/edge/config", { headers: { "wasmesh-edge-name": "Not A Label" } });
    expect(bad.status).toBe(200);

    const { edges } = await status(app);
    expect(edges).toHaveLength(2);
    expect(edges[0]).toMatchObject({
      name: "edge-1",
      tokenId: "none",
      servingVersion: version,
      currentVersion: version,
      current: true,
      polls: 1,
    });
    expect(edges[0].lastRejection).toBeUndefined();
    expect(edges[1]).toMatchObject({ name: "edge-2", servingVersion: "old", current: false, polls: 2 });
    expect(edges[1].lastRejection.reason).toBe(reason.slice(0, 512));
    expect(edges[1].lastRejection.version).toBe(version);
  });

  it("the OpenAPI document describes the edges and the headers", async () => {
    const app = await setup();
    // biome-ignore lint/suspicious/noExplicitAny: assertions navigate arbitrary JSON
    const doc: any = await (await app.request("/v1/openapi.json")).json();
    expect(Object.keys(doc.components.schemas.Status.properties)).toEqual(["proxies", "edges"]);
    expect(doc.components.schemas.EdgeStatus.required).toEqual(
      expect.arrayContaining(["name", "servingVersion", "currentVersion", "current", "lastPollAt"]),
    );
    const names = doc.paths["/v1/edge/config"].get.parameters.map((p: { name: string }) => p.name);
    expect(names).toEqual(expect.arrayContaining(["Wasmesh-Edge-Name", "Wasmesh-Edge-Rejected"]));
  });
});

describe("the worker's side", () => {
  afterEach(() => vi.unstubAllGlobals());

  it("validates EDGE_NAME as it validates its other vars", () => {
    const base = { CONFIG_URL: "http://127.0.0.1:1/v1/edge/config" };
    expect(readSettings(base).ok).toBe(true);
    expect(readSettings({ ...base, EDGE_NAME: "edge-eu-1" }).ok).toBe(true);
    for (const bad of ["Edge", "edge_1", "-x", "a".repeat(64), "a b"]) {
      const read = readSettings({ ...base, EDGE_NAME: bad });
      expect(read.ok, bad).toBe(false);
      if (!read.ok) expect(read.error).toMatch(/^EDGE_NAME must be a DNS label/);
    }
  });

  it("sends its name, and a refusal header-safe and bounded", async () => {
    const sent: Headers[] = [];
    vi.stubGlobal("fetch", async (_url: string, init: RequestInit) => {
      sent.push(new Headers(init.headers));
      return new Response(null, { status: 304 });
    });
    const source = httpSource("http://cp/v1/edge/config", "tok", "edge-eu-1");
    expect(await source.load('etag:"v1"')).toEqual({ kind: "unchanged" });
    expect(await source.load('etag:"v2"', `bad\r\nInjected: yes é ${"y".repeat(1_000)}`)).toEqual({
      kind: "unchanged",
    });
    expect(sent[0]?.get("wasmesh-edge-name")).toBe("edge-eu-1");
    expect(sent[0]?.get("wasmesh-edge-rejected")).toBeNull();
    expect(sent[0]?.get("if-none-match")).toBe('"v1"');
    const rejected = sent[1]?.get("wasmesh-edge-rejected") ?? "";
    expect(rejected.startsWith("bad Injected: yes ? yyy")).toBe(true);
    expect(rejected).toHaveLength(512);
    expect(headerSafe("a\u0001\u0002b\u007fc")).toBe("a b c");
  });
});
