// Authenticated ADS (issue 11, §3): the real control plane (startControlPlane, SQLite, gRPC on its
// xDS port) serves a stream only when its metadata carries a token that proves the service its
// node claims: a dataplane token of that service, or an admin token. No token or an invalid one is
// UNAUTHENTICATED, another service's token (or a read-only one) PERMISSION_DENIED, before anything
// is sent and without the stream ever counting as a connected proxy. A revoked token's open streams
// end at once. Each refusal counts into `tally`, printed at the end (the closing note's figures).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TYPE_URL } from "../../control-plane/envoy/index.ts";
import { type ControlPlane, startControlPlane } from "../../control-plane/server.ts";
import { RELEASE_WASM } from "../support/artifacts.ts";
import { apiFetch, apiOf, metricSum } from "../support/control-plane.ts";
import { tempDir } from "../support/temp.ts";
import { type AdsClient, type AdsProtocol, connectAds } from "../support/xds-client.ts";

const CDS = TYPE_URL.cluster;
const LDS = TYPE_URL.listener;

let plane: ControlPlane;
let api: string;
let address: string;
const clients: AdsClient[] = [];
const tally = new Map<string, { tried: number; refused: number }>();

beforeAll(async () => {
  plane = await startControlPlane({
    dataDir: tempDir("xds-auth"),
    httpPort: 0,
    xdsPort: 0,
    builtinModule: RELEASE_WASM,
    log: () => {},
  });
  api = apiOf(plane).api;
  address = `127.0.0.1:${plane.xdsPort}`;
  const service = (name: string) => ({
    apiVersion: "wasmesh.io/v1alpha1",
    kind: "Service",
    metadata: { name },
    spec: { ports: [{ name: "http", port: 9080, protocol: "http" }] },
  });
  const applied = await apiFetch(`${api}/v1/apply`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify([service("reviews"), service("productpage")]),
  });
  expect(applied.status, await applied.text()).toBe(200);
});

afterAll(async () => {
  for (const client of clients) client.close();
  await plane?.close();
  const lines = [...tally].map(([what, { tried, refused }]) => `  ${what}: ${refused}/${tried} refused`);
  console.log(`ADS streams refused per case:\n${lines.join("\n")}`);
});

/** A stream as `service`'s node, with `token` (null: none), asking for clusters at once. */
async function stream(service: string, token: string | null, protocol: AdsProtocol = "sotw") {
  const client = await connectAds({
    address,
    node: { id: `${service}-${clients.length}`, cluster: service },
    token,
    protocol,
  });
  clients.push(client);
  client.subscribe(CDS);
  return client;
}

/** The stream's end, which must come before any response; counted under `what`. */
async function refused(what: string, client: AdsClient, code: number): Promise<string> {
  const status = await client.status;
  const entry = tally.get(what) ?? { tried: 0, refused: 0 };
  entry.tried++;
  if (status.code === code && client.responses.length === 0) entry.refused++;
  tally.set(what, entry);
  expect(status.code, status.details).toBe(code);
  expect(client.responses, "nothing is sent to a refused stream").toEqual([]);
  return status.details;
}

const UNAUTHENTICATED = 16;
const PERMISSION_DENIED = 7;

describe("ADS streams need a token that proves the service their node claims", () => {
  it("no token, a malformed, unknown or revoked one: UNAUTHENTICATED, nothing sent, never a connected proxy", async () => {
    const before = await metricSum(api, "wasmesh_xds_refused_streams_total", { code: "unauthenticated" });
    const { token: revokedToken, secret: revoked } = await plane.tokens.issue({
      role: "dataplane",
      service: "reviews",
    });
    await plane.tokens.revoke(revokedToken.id);
    const cases: [string, string | null, RegExp][] = [
      ["no token", null, /^no token: an ADS stream's metadata must carry authorization: Bearer <token>/],
      ["not a token", "hunter2", /^the token was refused: not a wasmesh token/],
      ["unknown token", `wsm_${"C".repeat(43)}`, /^the token was refused: no such token/],
      [
        "revoked token",
        revoked,
        new RegExp(`^the token was refused: token ${revokedToken.id} was revoked at`),
      ],
    ];
    for (const protocol of ["sotw", "delta"] as const) {
      for (const [what, token, message] of cases) {
        const details = await refused(
          `${what} (${protocol})`,
          await stream("reviews", token, protocol),
          UNAUTHENTICATED,
        );
        expect(details).toMatch(message);
        expect(details).not.toContain("hunter2");
      }
    }
    expect((await plane.xds.status()).map((p) => p.nodeId)).toEqual([]);
    expect(await metricSum(api, "wasmesh_xds_refused_streams_total", { code: "unauthenticated" })).toBe(
      before + 8,
    );
  });

  it("a dataplane token of another service, or a read-only token: PERMISSION_DENIED before anything is sent", async () => {
    const { secret: reviews } = await plane.tokens.issue({ role: "dataplane", service: "reviews" });
    const { secret: reader } = await plane.tokens.issue({ role: "read-only" });
    for (const protocol of ["sotw", "delta"] as const) {
      const impersonating = await refused(
        `impersonation (${protocol})`,
        await stream("productpage", reviews, protocol),
        PERMISSION_DENIED,
      );
      expect(impersonating).toMatch(
        /is a dataplane token of service 'reviews': it cannot open a stream of node 'productpage-\d+', which claims service 'productpage'/,
      );
      const readOnly = await refused(
        `read-only token (${protocol})`,
        await stream("reviews", reader, protocol),
        PERMISSION_DENIED,
      );
      expect(readOnly).toMatch(/is read-only: ADS streams need a dataplane token of the node's service/);
    }
    expect(await metricSum(api, "wasmesh_xds_refused_streams_total", { code: "permission_denied" })).toBe(4);
    expect(plane.xds.status()).toEqual([]);
  });

  it("its own service's dataplane token, or an admin token, is served; requests sent while it is checked are all answered", async () => {
    const { secret: reviews } = await plane.tokens.issue({ role: "dataplane", service: "reviews" });
    for (const protocol of ["sotw", "delta"] as const) {
      const own = await stream("reviews", reviews, protocol);
      // Sent right behind the first request, before the token is checked: answered in turn.
      own.subscribe(LDS);
      await own.next(CDS);
      await own.next(LDS);
      expect(own.held(CDS).map((c) => c.name)).toContain("outbound|productpage");
      const admin = await stream("productpage", apiOf(plane).token, protocol);
      await admin.next(CDS);
    }
    expect(
      plane.xds
        .status()
        .map((p) => p.service)
        .sort(),
    ).toEqual(["productpage", "productpage", "reviews", "reviews"]);
    for (const client of clients.splice(0)) client.close();
  });

  it("revoking a token ends the streams it opened at once, and its next stream is refused", async () => {
    const { token, secret } = await plane.tokens.issue({ role: "dataplane", service: "reviews" });
    const kept = await plane.tokens.issue({ role: "dataplane", service: "reviews" });
    const doomed = await stream("reviews", secret);
    const other = await stream("reviews", kept.secret);
    await doomed.next(CDS);
    await other.next(CDS);
    const revoke = await apiFetch(`${api}/v1/tokens/${token.id}`, { method: "DELETE" });
    expect(revoke.status).toBe(200);
    const ended = await doomed.status;
    expect(ended).toEqual({ code: UNAUTHENTICATED, details: `token ${token.id} was revoked` });
    expect(other.endedWith).toBeUndefined();
    const again = await refused(
      "revoked token, reconnecting",
      await stream("reviews", secret),
      UNAUTHENTICATED,
    );
    expect(again).toMatch(/was revoked at/);
    expect(plane.xds.status().map((p) => p.nodeId)).toEqual([other.nodeId]);
  });
});
