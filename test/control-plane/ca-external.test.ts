// Bring your own intermediate (control-plane/ca/external.ts): the CA signs with an operator's
// intermediate, given as Istio's cacerts files; certificates chain leaf → intermediate(s) → the
// operator's root, which is the whole trust bundle, and verify with openssl as operators would check
// them. Bad material is refused naming its file; a restart keeps the CA; moving from the generated
// root to an operator's intermediate is a rotation.
import { createPrivateKey } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  CA_DIR_ENV,
  CaInputError,
  CaStateError,
  EXTERNAL_FILES,
  readExternalAuthority,
  universalIdentity,
} from "../../control-plane/ca/index.ts";
import { x509 } from "../../control-plane/ca/x509.ts";
import {
  nodeCertificates,
  OPENSSL,
  opensslVerify,
  openTestCa,
  operatorPki,
  uriSans,
  verifyWithNode,
  workloadRequest,
} from "../support/ca.ts";
import { tempDir } from "../support/temp.ts";

const identity = universalIdentity("payments");
const pemOf = (certificates: x509.X509Certificate[]) => certificates.map((c) => c.toString("pem")).join("\n");

function openssl(pems: { leaf: string; chain: string; bundle: string }): void {
  if (!OPENSSL) {
    console.warn("openssl is not installed: skipping openssl verify (Node's verification still ran)");
    return;
  }
  opensslVerify(tempDir("ca-byo-verify"), pems);
}

/** Writes the operator's files as Istio's cacerts, cert-chain.pem holding ca-cert, the middle and the root. */
function writeCacerts(pki: Awaited<ReturnType<typeof operatorPki>>): string {
  const dir = tempDir("cacerts");
  writeFileSync(join(dir, EXTERNAL_FILES.certificate), pki.external.certificate);
  writeFileSync(join(dir, EXTERNAL_FILES.key), pki.external.key, { mode: 0o600 });
  writeFileSync(join(dir, EXTERNAL_FILES.root), pki.external.root);
  writeFileSync(join(dir, EXTERNAL_FILES.chain), pemOf([pki.intermediate, ...pki.middle, pki.root]));
  return dir;
}

async function refusedAt(promise: Promise<unknown>, field: string | RegExp, message: RegExp): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(CaInputError);
  const actual = (error as CaInputError).field;
  if (typeof field === "string") expect(actual).toBe(field);
  else expect(actual).toMatch(field);
  expect((error as Error).message).toMatch(message);
}

describe("an operator's intermediate", () => {
  it("signs leaf → intermediate → operator root; the bundle is the operator's root alone", async () => {
    const pki = await operatorPki();
    const { ca, close } = await openTestCa({ external: pki.external });
    try {
      expect(ca.created).toBe(true);
      const status = await ca.status();
      expect(status.authorities).toHaveLength(1);
      expect(status.authorities[0]).toMatchObject({
        status: "active",
        origin: "external",
        subject: pki.intermediate.subject,
        root: pki.root.subject,
      });
      const bundle = (await ca.trustBundle()).pem;
      expect(nodeCertificates(bundle).map((c) => c.fingerprint256)).toEqual(
        nodeCertificates(pki.root.toString("pem")).map((c) => c.fingerprint256),
      );

      const request = await workloadRequest();
      const issued = await ca.issue({ csr: request.csr, identity });
      expect(uriSans(issued.certificate)).toEqual(["spiffe://wasmesh.local/ns/default/sa/payments"]);
      expect(new x509.X509Certificate(issued.certificate).issuer).toBe(pki.intermediate.subject);
      expect(nodeCertificates(issued.chain).map((c) => c.fingerprint256)).toEqual(
        nodeCertificates(pki.intermediate.toString("pem")).map((c) => c.fingerprint256),
      );
      expect(issued.certificateChain).toBe(issued.certificate + issued.chain);
      expect(issued.trustBundle).toBe(bundle);
      verifyWithNode(issued.certificate, issued.chain, issued.trustBundle);
      openssl({ leaf: issued.certificate, chain: issued.chain, bundle: issued.trustBundle });
      // Without the intermediate, the leaf does not reach the root: the chain is needed.
      expect(() => verifyWithNode(issued.certificate, "", issued.trustBundle)).toThrow(
        /no root of the bundle/,
      );
    } finally {
      await close();
    }
  });

  it("reads Istio's cacerts files (cert-chain.pem with ca-cert and root in it), through two intermediates, an RSA one among them", async () => {
    // Root P-384 → intermediate 1 RSA-2048 → intermediate 2 P-256, which signs.
    const pki = await operatorPki({ levels: 2, keys: ["P-384", "RSA-2048", "P-256"] });
    const external = readExternalAuthority(writeCacerts(pki));
    const { ca, close } = await openTestCa({ external });
    try {
      const request = await workloadRequest();
      const issued = await ca.issue({ csr: request.csr, identity });
      const chain = nodeCertificates(issued.chain).map((c) => c.fingerprint256);
      expect(chain).toEqual(
        [pki.intermediate, ...pki.middle].map((c) => nodeCertificates(c.toString("pem"))[0]?.fingerprint256),
      );
      verifyWithNode(issued.certificate, issued.chain, issued.trustBundle);
      openssl({ leaf: issued.certificate, chain: issued.chain, bundle: issued.trustBundle });
    } finally {
      await close();
    }
  });

  it("is read from the directory WASMESH_CA_DIR names, as `wasmesh server` is started by an operator", async () => {
    const pki = await operatorPki();
    const { ca, close } = await openTestCa({ env: { [CA_DIR_ENV]: writeCacerts(pki) } });
    try {
      const status = await ca.status();
      expect(status.authorities.map((a) => [a.origin, a.subject])).toEqual([
        ["external", pki.intermediate.subject],
      ]);
      const issued = await ca.issue({ csr: (await workloadRequest()).csr, identity });
      verifyWithNode(issued.certificate, issued.chain, issued.trustBundle);
    } finally {
      await close();
    }
    const missing = tempDir("no-cacerts");
    await refusedAt(
      openTestCa({ env: { [CA_DIR_ENV]: missing } }),
      join(missing, EXTERNAL_FILES.certificate),
      /cannot be read/,
    );
  });

  it("signs with an RSA intermediate (RSA PKCS#1 v1.5, SHA-256)", async () => {
    const pki = await operatorPki({ keys: ["P-256", "RSA-2048"] });
    const { ca, close } = await openTestCa({ external: pki.external });
    try {
      const issued = await ca.issue({ csr: (await workloadRequest()).csr, identity });
      expect(new x509.X509Certificate(issued.certificate).signatureAlgorithm).toMatchObject({
        name: "RSASSA-PKCS1-v1_5",
        hash: { name: "SHA-256" },
      });
      verifyWithNode(issued.certificate, issued.chain, issued.trustBundle);
      openssl({ leaf: issued.certificate, chain: issued.chain, bundle: issued.trustBundle });
    } finally {
      await close();
    }
  });

  it("takes its key as SEC1 (EC PRIVATE KEY) as well as PKCS#8", async () => {
    const pki = await operatorPki();
    const sec1 = createPrivateKey(pki.intermediateKeyPem).export({ format: "pem", type: "sec1" }) as string;
    expect(sec1).toContain("BEGIN EC PRIVATE KEY");
    const { ca, close } = await openTestCa({ external: { ...pki.external, key: sec1 } });
    try {
      const issued = await ca.issue({ csr: (await workloadRequest()).csr, identity });
      verifyWithNode(issued.certificate, issued.chain, issued.trustBundle);
    } finally {
      await close();
    }
  });

  it("never issues past the intermediate's end", async () => {
    const pki = await operatorPki({ validDays: 0.5 });
    const { ca, close } = await openTestCa({ external: pki.external });
    try {
      const issued = await ca.issue({ csr: (await workloadRequest()).csr, identity });
      expect(issued.notAfter.getTime()).toBe(pki.intermediate.notAfter.getTime());
      verifyWithNode(issued.certificate, issued.chain, issued.trustBundle);
    } finally {
      await close();
    }
  });

  it("keeps the CA across a restart with the same files, and refuses another operator's intermediate then", async () => {
    const pki = await operatorPki();
    const first = await openTestCa({ external: pki.external });
    const bundle = (await first.ca.trustBundle()).pem;
    await first.close();
    const again = await openTestCa({ dataDir: first.dataDir, external: pki.external });
    expect(again.ca.created).toBe(false);
    expect((await again.ca.trustBundle()).pem).toBe(bundle);
    await again.close();
    // Without the files, too: the key is sealed in the store.
    const without = await openTestCa({ dataDir: first.dataDir });
    await without.ca.issue({ csr: (await workloadRequest()).csr, identity });
    await without.close();

    const other = await operatorPki({ organization: "Other Corp" });
    const error = await openTestCa({ dataDir: first.dataDir, external: other.external }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(CaStateError);
    expect((error as Error).message).toMatch(
      /is not one of this CA's authorities .* add it as the next authority and promote it/,
    );
  });

  it("refuses bad material naming the file at fault", async () => {
    const pki = await operatorPki();
    const other = await operatorPki({ organization: "Other Corp" });
    const deep = await operatorPki({ levels: 2 });
    const dir = writeCacerts(pki);
    const files = readExternalAuthority(dir);
    const at = (name: string) => join(dir, name);
    const open = (external: typeof files) => openTestCa({ external }).then(async (o) => o.close());

    // The key of another intermediate.
    await refusedAt(
      open({ ...files, key: other.external.key }),
      at(EXTERNAL_FILES.key),
      /is not the private key of/,
    );
    // An encrypted key.
    const encrypted = createPrivateKey(pki.intermediateKeyPem).export({
      format: "pem",
      type: "pkcs8",
      cipher: "aes-256-cbc",
      passphrase: "secret",
    }) as string;
    await refusedAt(open({ ...files, key: encrypted }), at(EXTERNAL_FILES.key), /is encrypted/);
    await refusedAt(open({ ...files, key: "nonsense" }), at(EXTERNAL_FILES.key), /is not a PEM private key/);
    // The intermediate as root: not self-signed.
    await refusedAt(
      open({ ...files, root: pki.external.certificate }),
      at(EXTERNAL_FILES.root),
      /is not a self-signed root/,
    );
    // The root as the intermediate.
    await refusedAt(
      open({ ...files, certificate: pki.external.root }),
      at(EXTERNAL_FILES.key),
      /is not the private key of/,
    );
    // Another operator's root: no path.
    await refusedAt(
      open({ ...files, root: other.external.root, chain: undefined }),
      at(EXTERNAL_FILES.root),
      /the path from .*ca-cert\.pem to .*root-cert\.pem is incomplete/,
    );
    // Two levels without the middle one.
    await refusedAt(
      open({ ...deep.external, chain: undefined }),
      "external.root",
      /no certificate issued CN=Example Corp Intermediate 2.*is incomplete/,
    );
    // A certificate in the chain that is not on the path.
    await refusedAt(
      open({ ...deep.external, chain: pemOf([...deep.middle, other.intermediate]) }),
      "external.chain",
      /CN=Other Corp Intermediate 1, O=Other Corp is not on the path/,
    );
    // Two certificates in ca-cert.pem.
    await refusedAt(
      open({ ...files, certificate: pemOf([pki.intermediate, pki.root]) }),
      at(EXTERNAL_FILES.certificate),
      /holds 2 certificates/,
    );
    // A workload certificate is no CA.
    const mesh = await openTestCa();
    const leaf = await mesh.ca.issue({ csr: (await workloadRequest()).csr, identity });
    await mesh.close();
    await refusedAt(
      open({ ...files, certificate: leaf.certificate }),
      at(EXTERNAL_FILES.certificate),
      /is not a CA certificate/,
    );
    // Expired.
    const expired = await operatorPki({ validDays: -1 / 48 });
    await refusedAt(open(expired.external), "external.certificate", /expired at/);
    // Missing files.
    await expect(async () => readExternalAuthority(tempDir("empty-cacerts"))).rejects.toThrow(
      /ca-cert\.pem: cannot be read/,
    );
  });
});

describe("from the generated root to an operator's intermediate", () => {
  it("is a rotation: the operator's root is trusted first, then signs; both verify with openssl meanwhile", async () => {
    const { ca, close } = await openTestCa();
    try {
      const csr = (await workloadRequest()).csr;
      const builtin = await ca.issue({ csr, identity });
      const pki = await operatorPki();
      await ca.addNext({ external: pki.external });
      const both = (await ca.trustBundle()).pem;
      expect(nodeCertificates(both)).toHaveLength(2);
      await ca.promote();
      const operator = await ca.issue({ csr, identity });
      expect(new x509.X509Certificate(operator.certificate).issuer).toBe(pki.intermediate.subject);
      for (const leaf of [builtin, operator]) {
        verifyWithNode(leaf.certificate, leaf.chain, both);
        openssl({ leaf: leaf.certificate, chain: leaf.chain, bundle: both });
      }
      expect((await ca.status()).authorities.map((a) => [a.status, a.origin])).toEqual([
        ["active", "external"],
        ["retiring", "builtin"],
      ]);
    } finally {
      await close();
    }
  });
});
