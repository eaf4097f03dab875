// The workload's certificate in the agent (dataplane/certificates.ts, identity.ts) against the real
// control plane (startControlPlane on a SQLite file: its CA, POST /v1/certificates behind dataplane
// tokens, the trust bundle's ETag), read back through the agent's SDS socket as Envoy reads it: the
// first certificate and the bundle, a renewal with a new key on the open stream, a CA rotation's next
// root reaching SDS before it signs, retries while the control plane refuses, readiness's reason.
import { createPublicKey, X509Certificate } from "node:crypto";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { CERTIFICATE_SECRET, TRUST_BUNDLE_SECRET } from "../../control-plane/envoy/index.ts";
import { type ControlPlane, startControlPlane } from "../../control-plane/server.ts";
import { startWorkloadIdentity, type WorkloadIdentity } from "../../dataplane/identity.ts";
import { RELEASE_WASM } from "../support/artifacts.ts";
import { uriSans, verifyWithNode } from "../support/ca.ts";
import { apiOf, dataplaneToken } from "../support/control-plane.ts";
import { closeSdsClients, connectSds, latestSecret, type SdsStream } from "../support/sds-client.ts";
import { tempDir } from "../support/temp.ts";
import { until } from "../support/wait.ts";

let plane: ControlPlane;
let api: string;
let token: string;
const identities: WorkloadIdentity[] = [];

beforeAll(async () => {
  plane = await startControlPlane({
    dataDir: tempDir("cp"),
    httpPort: 0,
    xdsPort: 0,
    builtinModule: RELEASE_WASM,
    log: () => {},
    ca: { env: {} },
  });
  api = apiOf(plane).api;
  token = await dataplaneToken(api, "reviews");
});
afterAll(async () => {
  await plane?.close();
});
afterEach(async () => {
  closeSdsClients();
  for (const identity of identities.splice(0)) await identity.close();
});

async function start(options: { token?: string; lines?: string[]; bundleRefreshMs?: number } = {}) {
  const identity = await startWorkloadIdentity({
    dataDir: tempDir("agent"),
    api,
    token: options.token ?? token,
    bundleRefreshMs: options.bundleRefreshMs ?? 60_000,
    log: (line) => options.lines?.push(line),
  });
  identities.push(identity);
  return identity;
}

/** Envoy's two SDS streams, one per secret, as it opens them. */
function envoyStreams(identity: WorkloadIdentity): { certificate: SdsStream; bundle: SdsStream } {
  const certificate = connectSds(identity.sds.socketPath);
  certificate.send({ resourceNames: [CERTIFICATE_SECRET] });
  const bundle = connectSds(identity.sds.socketPath);
  bundle.send({ resourceNames: [TRUST_BUNDLE_SECRET] });
  return { certificate, bundle };
}

const chainOf = (stream: SdsStream) =>
  latestSecret(stream, CERTIFICATE_SECRET)?.tls_certificate?.certificate_chain.inline_string ?? "";
const keyOf = (stream: SdsStream) =>
  latestSecret(stream, CERTIFICATE_SECRET)?.tls_certificate?.private_key.inline_string ?? "";
const bundleOf = (stream: SdsStream) =>
  latestSecret(stream, TRUST_BUNDLE_SECRET)?.validation_context?.trusted_ca.inline_string ?? "";
const roots = (pem: string) => pem.match(/BEGIN CERTIFICATE/g)?.length ?? 0;

describe("the agent's workload certificate", () => {
  it("gets its service's certificate for a key of its own, and serves both secrets to Envoy", async () => {
    const identity = await start();
    await identity.certificates.ready();
    const streams = envoyStreams(identity);
    await until("both secrets", () => chainOf(streams.certificate) !== "" && bundleOf(streams.bundle) !== "");
    const chain = chainOf(streams.certificate);
    expect(uriSans(chain)).toEqual(["spiffe://wasmesh.local/ns/default/sa/reviews"]);
    expect(identity.certificates.current?.spiffeId).toBe("spiffe://wasmesh.local/ns/default/sa/reviews");
    // The key served is the certificate's.
    expect(new X509Certificate(chain).publicKey.export({ format: "jwk" })).toEqual(
      createPublicKey(keyOf(streams.certificate)).export({ format: "jwk" }),
    );
    verifyWithNode(chain, "", bundleOf(streams.bundle));
    expect(bundleOf(streams.bundle)).toBe((await plane.ca?.trustBundle())?.pem);
    // Renewal at half the lifetime and up to a tenth more (renewal.ts).
    const { notBefore, notAfter, renewAt } = identity.certificates.current ?? ({} as never);
    const share = (renewAt.getTime() - notBefore.getTime()) / (notAfter.getTime() - notBefore.getTime());
    expect(share).toBeGreaterThanOrEqual(0.49);
    expect(share).toBeLessThanOrEqual(0.61);
  });

  it("renews with a new key on Envoy's open stream", async () => {
    const identity = await start();
    await identity.certificates.ready();
    const streams = envoyStreams(identity);
    await until("the first certificate", () => chainOf(streams.certificate) !== "");
    const [firstChain, firstKey] = [chainOf(streams.certificate), keyOf(streams.certificate)];
    const firstSerial = identity.certificates.current?.serialNumber;
    await identity.certificates.renew();
    expect(identity.certificates.issued).toBe(2);
    expect(identity.certificates.current?.serialNumber).not.toBe(firstSerial);
    await until(
      "the renewed certificate on the same stream",
      () => chainOf(streams.certificate) !== firstChain,
    );
    expect(keyOf(streams.certificate)).not.toBe(firstKey);
    expect(streams.certificate.status()).toBeUndefined();
    expect(streams.certificate.responses).toHaveLength(2);
  });

  it("brings a CA rotation's next root to Envoy before it signs, and a 304 changes nothing", async () => {
    const identity = await start();
    await identity.certificates.ready();
    const streams = envoyStreams(identity);
    await until("the bundle", () => bundleOf(streams.bundle) !== "");
    // Nothing changed: a 304, nothing sent.
    expect(await identity.certificates.refreshBundle()).toBe(false);
    await plane.ca?.addNext();
    expect(await identity.certificates.refreshBundle()).toBe(true);
    await until("two roots in ROOTCA", () => roots(bundleOf(streams.bundle)) === 2);
    expect(bundleOf(streams.bundle)).toBe((await plane.ca?.trustBundle())?.pem);
    // Promoted: certificates come from the new root, which the bundle already held.
    await plane.ca?.promote();
    await identity.certificates.renew();
    const chain = chainOf(streams.certificate);
    await until("the new root's certificate", () => chainOf(streams.certificate) !== chain);
    verifyWithNode(chainOf(streams.certificate), "", bundleOf(streams.bundle));
    const status = await plane.ca?.status();
    const active = status?.authorities.find((a) => a.status === "active");
    expect(identity.certificates.current?.issuer).toBe(active?.subject);
    // Clean up the rotation for the other tests: retire the old root at once.
    const retiring = status?.authorities.find((a) => a.status === "retiring");
    if (retiring) await plane.ca?.remove(retiring.id, { force: true });
  });

  it("keeps asking while the control plane refuses, and says why", async () => {
    const lines: string[] = [];
    const identity = await start({ token: "wsm_not-a-token", lines });
    await until("a refusal logged", () => lines.some((l) => l.includes("cannot get a certificate")));
    expect(identity.certificates.current).toBeUndefined();
    expect(identity.certificates.problem).toMatch(/POST \/v1\/certificates: HTTP 401/);
    await until(
      "a second try",
      () => lines.filter((l) => l.includes("cannot get a certificate")).length >= 2,
    );
  });
});
