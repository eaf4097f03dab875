// POST /v1/certificates and GET /v1/certificates/trust-bundle (control-plane/api/certificates.ts)
// on a real CA over a SQLite file: whose identity a caller gets (a dataplane token's service, never
// what the CSR asks for; an admin names it), refusals named by field, and the bundle's ETag.
import { X509Certificate } from "node:crypto";
import { Hono } from "hono";
import { afterEach, describe, expect, it } from "vitest";
import { type CertificateCaller, certificateRoutes } from "../../control-plane/api/certificates.ts";
import { toApiError } from "../../control-plane/api/errors.ts";
import type { CertificateAuthority } from "../../control-plane/ca/index.ts";
import { type OpenedCa, openTestCa, uriSans, verifyWithNode, workloadRequest } from "../support/ca.ts";

const opened: OpenedCa[] = [];
afterEach(async () => {
  for (const ca of opened.splice(0)) await ca.close();
});

async function testCa(): Promise<CertificateAuthority> {
  const ca = await openTestCa();
  opened.push(ca);
  return ca.ca;
}

/** The routes behind a stand-in authentication that says the request is `caller`. */
function app(ca: CertificateAuthority | undefined, caller: CertificateCaller): Hono {
  const api = new Hono();
  api.route("/v1/certificates", certificateRoutes({ ca, caller: () => caller }));
  api.onError((error, c) => {
    const apiError = toApiError(error);
    if (apiError === undefined) throw error;
    return c.json(apiError.body(), apiError.status);
  });
  return api;
}

const DATAPLANE: CertificateCaller = { tokenId: "dp1", role: "dataplane", service: "reviews" };
const ADMIN: CertificateCaller = { tokenId: "adm", role: "admin" };

async function post(api: Hono, body: unknown, query = "") {
  const response = await api.request(`/v1/certificates${query}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

describe("POST /v1/certificates", () => {
  it("signs a dataplane token's CSR for its own service, whatever the CSR asks for", async () => {
    const ca = await testCa();
    const api = app(ca, DATAPLANE);
    // The CSR asks for another identity: ignored.
    const request = await workloadRequest("spiffe://wasmesh.local/ns/default/sa/payments");
    const { status, body } = await post(api, { csr: request.csr });
    expect(status).toBe(200);
    expect(body.spiffeId).toBe("spiffe://wasmesh.local/ns/default/sa/reviews");
    const chain = body.certificateChain as string;
    expect(uriSans(chain)).toEqual(["spiffe://wasmesh.local/ns/default/sa/reviews"]);
    // The certificate is for the CSR's key, chains to the bundle, and carries the bundle's version.
    expect(new X509Certificate(chain).publicKey.export({ format: "jwk" })).toEqual(
      (await import("node:crypto")).createPublicKey(request.privateKeyPem).export({ format: "jwk" }),
    );
    verifyWithNode(chain, "", body.trustBundle as string);
    expect(body.trustBundleVersion).toBe((await ca.trustBundle()).version);
    expect(Date.parse(body.notAfter as string) - Date.parse(body.notBefore as string)).toBe(
      (24 * 3600 + 60) * 1000,
    );
    // ?service= may repeat the token's own service only.
    expect((await post(api, { csr: request.csr }, "?service=reviews")).status).toBe(200);
    const other = await post(api, { csr: request.csr }, "?service=payments");
    expect(other.status).toBe(403);
    expect(JSON.stringify(other.body)).toContain("dataplane token of service 'reviews'");
  });

  it("names a dataplane caller's own identity when it has one (a Kubernetes pod's service account)", async () => {
    const api = app(await testCa(), {
      ...DATAPLANE,
      identity: { namespace: "bookinfo", serviceAccount: "bookinfo-reviews" },
    });
    const { status, body } = await post(api, { csr: (await workloadRequest()).csr });
    expect(status).toBe(200);
    expect(body.spiffeId).toBe("spiffe://wasmesh.local/ns/bookinfo/sa/bookinfo-reviews");
    expect(uriSans(body.certificateChain as string)).toEqual([body.spiffeId]);
  });

  it("takes a shorter lifetime, within the CA's bounds", async () => {
    const api = app(await testCa(), DATAPLANE);
    const { csr } = await workloadRequest();
    const short = await post(api, { csr, validitySeconds: 600 });
    expect(short.status).toBe(200);
    expect(Date.parse(short.body.notAfter as string) - Date.parse(short.body.notBefore as string)).toBe(
      660_000,
    );
    const tooShort = await post(api, { csr, validitySeconds: 10 });
    expect(tooShort.status).toBe(400);
    expect(tooShort.body).toMatchObject({ error: { details: [{ path: "validitySeconds" }] } });
  });

  it("lets an admin name the service, and no one else get certificates", async () => {
    const ca = await testCa();
    const { csr } = await workloadRequest();
    const issued = await post(app(ca, ADMIN), { csr }, "?service=ratings");
    expect(issued.body.spiffeId).toBe("spiffe://wasmesh.local/ns/default/sa/ratings");
    const unnamed = await post(app(ca, ADMIN), { csr });
    expect(unnamed.status).toBe(400);
    expect(unnamed.body).toMatchObject({
      error: { details: [{ path: "service", message: "is required with an admin token" }] },
    });
    const badName = await post(app(ca, ADMIN), { csr }, "?service=Not_A_Name");
    expect(badName.status).toBe(400);
    // A service discovered on Kubernetes: its namespace and name (ca/spiffe.ts universalIdentity).
    const discovered = await post(app(ca, ADMIN), { csr }, "?service=reviews.bookinfo");
    expect(discovered.body.spiffeId).toBe("spiffe://wasmesh.local/ns/bookinfo/sa/reviews");
    expect((await post(app(ca, ADMIN), { csr }, "?service=reviews.bookinfo.svc")).status).toBe(400);
    expect((await post(app(ca, { tokenId: "ro", role: "read-only" }), { csr })).status).toBe(403);
  });

  it("refuses a bad request naming the field, and answers 503 without a CA", async () => {
    const api = app(await testCa(), DATAPLANE);
    const garbage = await post(api, {
      csr: "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
    });
    expect(garbage.status).toBe(400);
    expect(garbage.body).toMatchObject({ error: { details: [{ path: "csr" }] } });
    const missing = await post(api, { certificate: "x" });
    expect(missing.status).toBe(400);
    expect(JSON.stringify(missing.body)).toContain('"path":"csr"');
    expect((await post(api, "{not json")).status).toBe(400);
    const none = await post(app(undefined, DATAPLANE), { csr: (await workloadRequest()).csr });
    expect(none.status).toBe(503);
    expect(none.body).toMatchObject({
      error: { code: "unavailable", message: expect.stringContaining("no CA") },
    });
  });
});

describe("GET /v1/certificates/trust-bundle", () => {
  it("serves the roots with their version as ETag, 304 while it is current, and the next root once added", async () => {
    const ca = await testCa();
    const api = app(ca, DATAPLANE);
    const first = await api.request("/v1/certificates/trust-bundle");
    expect(first.status).toBe(200);
    expect(first.headers.get("content-type")).toBe("application/x-pem-file");
    const etag = first.headers.get("etag") as string;
    expect(etag).toBe(`"${(await ca.trustBundle()).version}"`);
    expect((await first.text()).match(/BEGIN CERTIFICATE/g)).toHaveLength(1);
    const again = await api.request("/v1/certificates/trust-bundle", { headers: { "if-none-match": etag } });
    expect(again.status).toBe(304);
    expect(await again.text()).toBe("");

    await ca.addNext();
    const rotated = await api.request("/v1/certificates/trust-bundle", {
      headers: { "if-none-match": etag },
    });
    expect(rotated.status).toBe(200);
    expect(rotated.headers.get("etag")).not.toBe(etag);
    expect((await rotated.text()).match(/BEGIN CERTIFICATE/g)).toHaveLength(2);
  });
});
