// The headers build/mesh.wasm sets are the ones schema/headers.ts names, which the control plane's
// Envoy route, the edge worker and the demo read. The module is AssemblyScript and cannot import
// that file: here each header is observed on what the built module does through the TypeScript
// host, so renaming one on either side alone fails.
import { describe, expect, it } from "vitest";
import { ManualClock } from "../../host/index.ts";
import { CIRCUIT_HEADER, CLUSTER_HEADER, DENIED_HEADER, FAULT_HEADER } from "../../schema/headers.ts";
import { type Decision, MeshUnderTest, requestPairs } from "../support/mesh-host.ts";

/** The module's own headers on a request or reply: every name with its prefix, and its value. */
const reserved = (headers: Map<string, string> | null) =>
  Object.fromEntries([...(headers ?? [])].filter(([name]) => name.startsWith("x-wasmesh-")));

/** The local reply's headers the module set (not the upstream's, which answers no local reply). */
function localReply(decision: Decision): Record<string, string> {
  expect(decision.cluster).toBeNull();
  return reserved(decision.responseHeaders);
}

describe("the headers the module reserves", () => {
  it("routes a request by CLUSTER_HEADER, and sets no other header on it", async () => {
    const mesh = await MeshUnderTest.start({ routes: [{ name: "all", destinations: [{ cluster: "v2" }] }] });
    const decision = mesh.request({ path: "/" });
    expect(reserved(decision.upstreamHeaders)).toEqual({ [CLUSTER_HEADER]: "v2" });
    // The client's own value is replaced, not sent on beside the module's.
    const spoofed = mesh.request({ path: "/", headers: { [CLUSTER_HEADER]: "v9" } });
    expect(reserved(spoofed.upstreamHeaders)).toEqual({ [CLUSTER_HEADER]: "v2" });
  });

  it("names a denying rule in DENIED_HEADER and an aborting one in FAULT_HEADER", async () => {
    const mesh = await MeshUnderTest.start({
      headerRules: [
        { name: "no-admin", match: { path: { prefix: "/admin" } }, deny: { status: 403 } },
        { name: "chaos", match: { path: { prefix: "/chaos" } }, fault: { abort: { status: 503 } } },
      ],
      routes: [{ name: "all", destinations: [{ cluster: "v1" }] }],
    });
    const denied = mesh.request({ path: "/admin" });
    expect(denied.status).toBe(403);
    expect(localReply(denied)).toEqual({ [DENIED_HEADER]: "no-admin" });
    const aborted = mesh.request({ path: "/chaos" });
    expect(aborted.status).toBe(503);
    expect(localReply(aborted)).toEqual({ [FAULT_HEADER]: "abort" });
  });

  it("says in CIRCUIT_HEADER why the breaker answered: open, or overflow", async () => {
    const open = await MeshUnderTest.start(
      {
        routes: [{ name: "all", destinations: [{ cluster: "v2" }] }],
        breakers: [{ cluster: "v2", consecutiveErrors: 1, intervalMs: 10_000, baseEjectionMs: 30_000 }],
      },
      { clock: new ManualClock() },
    );
    expect(open.request({ path: "/" }, () => 503).cluster).toBe("v2");
    expect(localReply(open.request({ path: "/" }))).toEqual({ [CIRCUIT_HEADER]: "open" });

    const full = await MeshUnderTest.start({
      routes: [{ name: "all", destinations: [{ cluster: "v2" }] }],
      breakers: [
        { cluster: "v2", consecutiveErrors: 5, intervalMs: 10_000, baseEjectionMs: 30_000, maxConcurrent: 1 },
      ],
    });
    // One request in flight (headers sent, no response yet) fills the one slot.
    const held = full.pick().newHttpStream();
    try {
      held.requestHeaders(requestPairs({ path: "/" }), true);
      expect(localReply(full.request({ path: "/" }))).toEqual({ [CIRCUIT_HEADER]: "overflow" });
    } finally {
      held.complete();
    }
  });
});
