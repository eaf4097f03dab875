// SPIFFE IDs of the mesh's workloads (control-plane/ca/spiffe.ts): spiffe://<td>/ns/<ns>/sa/<sa>,
// `default` and the service in universal mode; parsing checks the SPIFFE ID standard and our path
// shape, and every refusal names its field.
import { describe, expect, it } from "vitest";
import {
  checkTrustDomain,
  DEFAULT_TRUST_DOMAIN,
  parseSpiffeId,
  parseWorkloadSpiffeId,
  SpiffeIdError,
  universalIdentity,
  workloadSpiffeId,
} from "../../control-plane/ca/index.ts";

function refusal(run: () => unknown): SpiffeIdError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(SpiffeIdError);
    return error as SpiffeIdError;
  }
  throw new Error("expected a SpiffeIdError");
}

describe("building", () => {
  it("gives a universal workload the namespace default and its service as service account", () => {
    expect(universalIdentity("payments")).toEqual({ namespace: "default", serviceAccount: "payments" });
    expect(workloadSpiffeId(DEFAULT_TRUST_DOMAIN, universalIdentity("payments"))).toBe(
      "spiffe://wasmesh.local/ns/default/sa/payments",
    );
  });

  it("reads a discovered service <name>.<namespace> as namespace and service account", () => {
    expect(universalIdentity("reviews.bookinfo")).toEqual({
      namespace: "bookinfo",
      serviceAccount: "reviews",
    });
    expect(workloadSpiffeId(DEFAULT_TRUST_DOMAIN, universalIdentity("reviews.bookinfo"))).toBe(
      "spiffe://wasmesh.local/ns/bookinfo/sa/reviews",
    );
    expect(refusal(() => universalIdentity("reviews.bookinfo.svc")).field).toBe("service");
    expect(refusal(() => universalIdentity("reviews.")).field).toBe("service");
  });

  it("takes a Kubernetes namespace and service account unchanged (a service account may have dots)", () => {
    expect(workloadSpiffeId("cluster.local", { namespace: "shop", serviceAccount: "cart.v2" })).toBe(
      "spiffe://cluster.local/ns/shop/sa/cart.v2",
    );
  });

  it("names the field of what it refuses", () => {
    const cases: [() => unknown, string, RegExp][] = [
      [() => universalIdentity("Payments"), "service", /DNS-1123 label/],
      [() => universalIdentity(""), "service", /is empty/],
      [() => universalIdentity("a".repeat(64)), "service", /at most 63/],
      [
        () => workloadSpiffeId("wasmesh.local", { namespace: "", serviceAccount: "x" }),
        "identity.namespace",
        /empty/,
      ],
      [
        () => workloadSpiffeId("wasmesh.local", { namespace: "default", serviceAccount: "x..y" }),
        "identity.serviceAccount",
        /DNS-1123 subdomain/,
      ],
      [
        () => workloadSpiffeId("wasmesh.local", { namespace: "default", serviceAccount: "a/b" }),
        "identity.serviceAccount",
        /DNS-1123 subdomain/,
      ],
      [() => workloadSpiffeId("Wasmesh.Local", universalIdentity("x")), "trustDomain", /lower-case letters/],
      [() => workloadSpiffeId("td:8080", universalIdentity("x")), "trustDomain", /no scheme, port or path/],
      [() => checkTrustDomain(""), "trustDomain", /is empty/],
      [() => checkTrustDomain("a".repeat(256)), "trustDomain", /longer than 255/],
      [() => checkTrustDomain(".."), "trustDomain", /not a trust domain/],
    ];
    for (const [run, field, message] of cases) {
      const error = refusal(run);
      expect(error.field, String(run)).toBe(field);
      expect(error.message).toMatch(message);
      expect(error.message.startsWith(`${field}: `)).toBe(true);
    }
  });
});

describe("parsing", () => {
  it("takes a workload's ID apart, and any other valid SPIFFE ID without an identity", () => {
    expect(parseSpiffeId("spiffe://wasmesh.local/ns/default/sa/payments")).toEqual({
      trustDomain: "wasmesh.local",
      path: "/ns/default/sa/payments",
      identity: { namespace: "default", serviceAccount: "payments" },
    });
    expect(parseSpiffeId("spiffe://example.org")).toEqual({ trustDomain: "example.org", path: "" });
    expect(parseSpiffeId("spiffe://example.org/Some_Path/x.y-z")).toEqual({
      trustDomain: "example.org",
      path: "/Some_Path/x.y-z",
    });
    expect(parseWorkloadSpiffeId("spiffe://wasmesh.local/ns/shop/sa/cart.v2", "wasmesh.local")).toEqual({
      namespace: "shop",
      serviceAccount: "cart.v2",
    });
  });

  it("refuses what the SPIFFE ID standard refuses, naming the part", () => {
    const cases: [string, string, RegExp][] = [
      ["http://wasmesh.local/ns/default/sa/x", "spiffeId", /does not start with "spiffe:\/\/"/],
      ["SPIFFE://wasmesh.local/x", "spiffeId", /lower-case/],
      ["spiffe://", "spiffeId.trustDomain", /is empty/],
      ["spiffe:///ns/default", "spiffeId.trustDomain", /is empty/],
      ["spiffe://Wasmesh.local/x", "spiffeId.trustDomain", /lower-case letters/],
      ["spiffe://wasmesh.local:8443/x", "spiffeId.trustDomain", /port or user info/],
      ["spiffe://user@wasmesh.local/x", "spiffeId.trustDomain", /port or user info/],
      ["spiffe://wasmesh.local/x/", "spiffeId.path", /empty segment/],
      ["spiffe://wasmesh.local//x", "spiffeId.path", /empty segment/],
      ["spiffe://wasmesh.local/./x", "spiffeId.path", /"\." segment/],
      ["spiffe://wasmesh.local/x/..", "spiffeId.path", /"\.\." segment/],
      ["spiffe://wasmesh.local/a b", "spiffeId.path", /only letters, digits/],
      ["spiffe://wasmesh.local/caf%C3%A9", "spiffeId.path", /only letters, digits/],
      ["spiffe://wasmesh.local/x?y=1", "spiffeId", /query or fragment/],
      ["spiffe://wasmesh.local/x#y", "spiffeId", /query or fragment/],
      [`spiffe://wasmesh.local/${"a".repeat(2048)}`, "spiffeId", /longer than 2048 bytes/],
      // Our shape, with Kubernetes' name rules in it.
      ["spiffe://wasmesh.local/ns/Default/sa/x", "spiffeId.namespace", /DNS-1123 label/],
      ["spiffe://wasmesh.local/ns/default/sa/-x", "spiffeId.serviceAccount", /DNS-1123 subdomain/],
    ];
    for (const [id, field, message] of cases) {
      const error = refusal(() => parseSpiffeId(id));
      expect(error.field, id).toBe(field);
      expect(error.message, id).toMatch(message);
    }
  });

  it("refuses, for a workload, another trust domain or a path that is not /ns/<ns>/sa/<sa>", () => {
    const other = refusal(() =>
      parseWorkloadSpiffeId("spiffe://evil.example/ns/default/sa/x", "wasmesh.local"),
    );
    expect(other.field).toBe("spiffeId.trustDomain");
    expect(other.message).toMatch(/not this mesh's trust domain \("wasmesh.local"\)/);
    for (const path of ["", "/payments", "/ns/default/sa", "/ns/default/sa/x/extra", "/sa/x/ns/default"]) {
      const error = refusal(() =>
        parseWorkloadSpiffeId(`spiffe://wasmesh.local${path}`, "wasmesh.local", "san"),
      );
      expect(error.field, path).toBe("san.path");
      expect(error.message).toMatch(/is not a workload's/);
    }
  });

  it("round-trips every ID it builds", () => {
    for (const identity of [
      universalIdentity("a"),
      universalIdentity("reviews-v2"),
      { namespace: "kube-system", serviceAccount: "a.b.c" },
      { namespace: "x".repeat(63), serviceAccount: `${"y".repeat(63)}.${"z".repeat(63)}` },
    ]) {
      const id = workloadSpiffeId("prod.example.com", identity);
      expect(parseWorkloadSpiffeId(id, "prod.example.com")).toEqual(identity);
    }
  });
});
