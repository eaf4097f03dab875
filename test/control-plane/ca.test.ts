// The mesh CA (issue 11, §1): its generated root, workload certificates issued against a CSR for the
// identity the caller is authenticated as (whatever the CSR asks for), refused requests, validity, the
// CA kept in a real SQLite store with its keys sealed by a key-encryption key outside the database,
// and the certificates used for real: two workloads complete an mTLS handshake through node:tls
// (OpenSSL). Every certificate is checked by Node's X509Certificate and, when the binary is there,
// by `openssl verify -x509_strict` for both TLS purposes.
import { Buffer } from "node:buffer";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { cpSync, existsSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { connect, createServer, type TLSSocket } from "node:tls";
import { afterEach, describe, expect, it } from "vitest";
import {
  BACKDATE_SECONDS,
  CA_KIND,
  CaInputError,
  CaStateError,
  DEFAULT_TRUST_DOMAIN,
  KEK_ENV,
  KEK_FILE,
  KEK_FILE_ENV,
  KekError,
  SpiffeIdError,
  TRUST_DOMAIN_ENV,
  universalIdentity,
} from "../../control-plane/ca/index.ts";
import { x509 } from "../../control-plane/ca/x509.ts";
import { DATABASE_FILE } from "../../control-plane/store/index.ts";
import {
  OPENSSL,
  type OpenedCa,
  opensslVerify,
  openTestCa,
  uriSans,
  verifyWithNode,
  workloadRequest,
} from "../support/ca.ts";
import { tempDir } from "../support/temp.ts";
import { until } from "../support/wait.ts";

const opened: OpenedCa[] = [];
afterEach(async () => {
  for (const o of opened.splice(0)) await o.close();
});

async function open(options: Parameters<typeof openTestCa>[0] = {}): Promise<OpenedCa> {
  const o = await openTestCa(options);
  opened.push(o);
  return o;
}

async function closeAll(): Promise<void> {
  for (const o of opened.splice(0)) await o.close();
}

const PAYMENTS = universalIdentity("payments");
const PAYMENTS_ID = `spiffe://${DEFAULT_TRUST_DOMAIN}/ns/default/sa/payments`;

/** Asserts that `promise` rejects with `type` whose field is `field` and message matches `message`. */
async function refused(
  promise: Promise<unknown>,
  type: typeof CaInputError | typeof CaStateError,
  field: string | undefined,
  message: RegExp,
): Promise<Error> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(type);
  if (field !== undefined) expect((error as CaInputError).field).toBe(field);
  expect((error as Error).message).toMatch(message);
  return error as Error;
}

function openssl(dir: string, pems: { leaf: string; chain: string; bundle: string }, at?: Date): void {
  if (!OPENSSL) {
    console.warn("openssl is not installed: skipping openssl verify (Node's verification still ran)");
    return;
  }
  const results = opensslVerify(dir, pems, at);
  expect(results).toHaveLength(2);
}

describe("the generated root", () => {
  it("is EC P-256, CA:TRUE pathlen 0, keyCertSign and cRLSign only, ten years, named for the trust domain", async () => {
    const { ca } = await open();
    expect(ca.created).toBe(true);
    const bundle = await ca.trustBundle();
    const roots = x509.PemConverter.decode(bundle.pem).map((der) => new x509.X509Certificate(der));
    expect(roots).toHaveLength(1);
    const root = roots[0] as x509.X509Certificate;
    const node = new X509Certificate(Buffer.from(root.rawData));
    expect(node.ca).toBe(true);
    expect(node.publicKey.asymmetricKeyDetails?.namedCurve).toBe("prime256v1");
    expect(node.checkIssued(node) && node.verify(node.publicKey)).toBe(true);
    expect(root.subject).toContain(`O=${DEFAULT_TRUST_DOMAIN}`);
    const constraints = root.getExtension(x509.BasicConstraintsExtension);
    expect([constraints?.ca, constraints?.pathLength, constraints?.critical]).toEqual([true, 0, true]);
    const usage = root.getExtension(x509.KeyUsagesExtension);
    expect(usage?.usages).toBe(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);
    expect(usage?.critical).toBe(true);
    const years = (root.notAfter.getTime() - root.notBefore.getTime()) / (365.25 * 86400_000);
    expect(years).toBeGreaterThan(9.99);
    expect(years).toBeLessThan(10.01);
    const status = await ca.status();
    expect(status.authorities.map((a) => [a.status, a.origin])).toEqual([["active", "builtin"]]);
  });
});

describe("issuance", () => {
  it("signs exactly the authenticated service's SPIFFE ID, whatever the CSR asks for, and the chain verifies (Node and openssl)", async () => {
    const { ca } = await open();
    // The CSR asks for another identity; the caller is authenticated as payments.
    const request = await workloadRequest(`spiffe://${DEFAULT_TRUST_DOMAIN}/ns/default/sa/admin`);
    const issued = await ca.issue({ csr: request.csr, identity: PAYMENTS });

    expect(issued.spiffeId).toBe(PAYMENTS_ID);
    const leaf = new X509Certificate(issued.certificate);
    expect(leaf.subjectAltName).toBe(`URI:${PAYMENTS_ID}`);
    expect(uriSans(issued.certificate)).toEqual([PAYMENTS_ID]);
    // No CN-based identity: the subject is empty.
    expect(new x509.X509Certificate(issued.certificate).subject).toBe("");
    expect(leaf.subject || "").toBe("");
    // The workload's own key, which never left it.
    expect(leaf.checkPrivateKey(createPrivateKey(request.privateKeyPem))).toBe(true);
    expect(leaf.ca).toBe(false);

    const parsed = new x509.X509Certificate(issued.certificate);
    expect(parsed.getExtension(x509.BasicConstraintsExtension)?.ca).toBe(false);
    const usage = parsed.getExtension(x509.KeyUsagesExtension);
    expect(usage?.usages).toBe(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment);
    expect(parsed.getExtension(x509.ExtendedKeyUsageExtension)?.usages).toEqual([
      x509.ExtendedKeyUsage.serverAuth,
      x509.ExtendedKeyUsage.clientAuth,
    ]);
    expect(parsed.getExtension(x509.SubjectAlternativeNameExtension)?.critical).toBe(true);

    // A root signs directly: no intermediates, and the bundle is that root.
    expect(issued.chain).toBe("");
    expect(issued.certificateChain).toBe(issued.certificate);
    expect(issued.trustBundle).toBe((await ca.trustBundle()).pem);
    verifyWithNode(issued.certificate, issued.chain, issued.trustBundle);
    openssl(tempDir("ca-verify"), {
      leaf: issued.certificate,
      chain: issued.chain,
      bundle: issued.trustBundle,
    });
  });

  it("lives 24 h from a minute before issuance by default, shorter on request, within bounds", async () => {
    const now = Date.parse("2031-03-01T12:00:00.000Z");
    const { ca } = await open({ now: () => now });
    const request = await workloadRequest();
    const issued = await ca.issue({ csr: request.csr, identity: PAYMENTS });
    expect(issued.notBefore.toISOString()).toBe(new Date(now - BACKDATE_SECONDS * 1000).toISOString());
    expect(issued.notAfter.toISOString()).toBe(new Date(now + 86400_000).toISOString());
    const node = new X509Certificate(issued.certificate);
    expect(Date.parse(node.validTo)).toBe(now + 86400_000);

    const hour = await ca.issue({ csr: request.csr, identity: PAYMENTS, validitySeconds: 3600 });
    expect(hour.notAfter.getTime()).toBe(now + 3600_000);
    await refused(
      ca.issue({ csr: request.csr, identity: PAYMENTS, validitySeconds: 599 }),
      CaInputError,
      "validitySeconds",
      /within 600\.\.86400/,
    );
    await refused(
      ca.issue({ csr: request.csr, identity: PAYMENTS, validitySeconds: 86401 }),
      CaInputError,
      "validitySeconds",
      /within 600\.\.86400/,
    );

    // Valid while it lasts, refused once expired (Node's and openssl's clocks set to those times).
    const within = new Date(now + 86000_000);
    const after = new Date(now + 86400_000 + 1000);
    verifyWithNode(issued.certificate, issued.chain, issued.trustBundle, within);
    expect(() => verifyWithNode(issued.certificate, issued.chain, issued.trustBundle, after)).toThrow(
      /not valid at/,
    );
    if (OPENSSL) {
      const dir = tempDir("ca-expiry");
      opensslVerify(
        dir,
        { leaf: issued.certificate, chain: issued.chain, bundle: issued.trustBundle },
        within,
      );
      expect(() =>
        opensslVerify(
          dir,
          { leaf: issued.certificate, chain: issued.chain, bundle: issued.trustBundle },
          after,
        ),
      ).toThrow(/certificate has expired/);
    } else {
      console.warn("openssl is not installed: skipping the openssl expiry check");
    }
  });

  it("refuses a configured validity out of bounds, naming the option", async () => {
    await refused(
      open({ workloadValiditySeconds: 31 * 86400 }),
      CaInputError,
      "workloadValiditySeconds",
      /within/,
    );
    await refused(open({ workloadValiditySeconds: 60 }), CaInputError, "workloadValiditySeconds", /within/);
  });

  it("gives every certificate a random positive 128-bit serial", async () => {
    const { ca } = await open();
    const request = await workloadRequest();
    const serials = new Set<string>();
    for (let i = 0; i < 5; i++) {
      const issued = await ca.issue({ csr: request.csr, identity: PAYMENTS });
      expect(issued.serialNumber).toMatch(/^[0-7][0-9a-f]{31}$/);
      serials.add(issued.serialNumber);
    }
    expect(serials.size).toBe(5);
  });

  it("refuses a tampered CSR, naming csr.signature", async () => {
    const { ca } = await open();
    const request = await workloadRequest(PAYMENTS_ID);
    const der = Buffer.from(x509.PemConverter.decodeFirst(request.csr));
    // The requested SAN changed after signing.
    const at = der.indexOf("payments");
    expect(at).toBeGreaterThan(0);
    const altered = Buffer.from(der);
    altered.write("paymentz", at);
    await refused(
      ca.issue({ csr: x509.PemConverter.encode(altered, "CERTIFICATE REQUEST"), identity: PAYMENTS }),
      CaInputError,
      "csr.signature",
      /does not verify/,
    );
    // Another key put in place of the one that signed (a request for a key the caller does not hold).
    const other = await workloadRequest(PAYMENTS_ID);
    const theirs = new x509.Pkcs10CertificateRequest(other.csr).publicKey.rawData;
    const ours = new x509.Pkcs10CertificateRequest(request.csr).publicKey.rawData;
    const swapped = Buffer.from(der);
    Buffer.from(theirs).copy(swapped, der.indexOf(Buffer.from(ours)));
    await refused(
      ca.issue({ csr: x509.PemConverter.encode(swapped, "CERTIFICATE REQUEST"), identity: PAYMENTS }),
      CaInputError,
      "csr.signature",
      /not signed by the key it carries/,
    );
    // The untouched request still passes.
    await ca.issue({ csr: request.csr, identity: PAYMENTS });
  });

  it("refuses weak and unsupported keys naming csr.publicKey, and takes P-384 and RSA-2048", async () => {
    const { ca } = await open();
    const csrFor = async (
      algorithm: RsaHashedKeyGenParams | EcKeyGenParams | Algorithm,
      signing: Algorithm | EcdsaParams,
    ) => {
      const keys = (await crypto.subtle.generateKey(algorithm, true, ["sign", "verify"])) as CryptoKeyPair;
      const request = await x509.Pkcs10CertificateRequestGenerator.create({
        keys,
        signingAlgorithm: signing,
        name: "CN=payments",
      });
      return request.toString("pem");
    };
    const rsa = (bits: number) => ({
      name: "RSASSA-PKCS1-v1_5",
      hash: "SHA-256",
      publicExponent: new Uint8Array([1, 0, 1]),
      modulusLength: bits,
    });
    await refused(
      ca.issue({ csr: await csrFor(rsa(1024), rsa(1024)), identity: PAYMENTS }),
      CaInputError,
      "csr.publicKey",
      /RSA key of 1024 bits is too weak \(at least 2048\)/,
    );
    await refused(
      ca.issue({
        csr: await csrFor({ name: "ECDSA", namedCurve: "P-521" }, { name: "ECDSA", hash: "SHA-512" }),
        identity: PAYMENTS,
      }),
      CaInputError,
      "csr.publicKey",
      /curve secp521r1 is not supported/,
    );
    await refused(
      ca.issue({ csr: await csrFor({ name: "Ed25519" }, { name: "Ed25519" }), identity: PAYMENTS }),
      CaInputError,
      "csr.publicKey",
      /ed25519 keys are not supported/,
    );
    for (const [algorithm, signing] of [
      [
        { name: "ECDSA", namedCurve: "P-384" },
        { name: "ECDSA", hash: "SHA-384" },
      ],
      [rsa(2048), rsa(2048)],
    ] as const) {
      const issued = await ca.issue({ csr: await csrFor(algorithm, signing), identity: PAYMENTS });
      expect(uriSans(issued.certificate)).toEqual([PAYMENTS_ID]);
      verifyWithNode(issued.certificate, issued.chain, issued.trustBundle);
      openssl(tempDir("ca-keys"), {
        leaf: issued.certificate,
        chain: issued.chain,
        bundle: issued.trustBundle,
      });
    }
  });

  it.skipIf(!OPENSSL)("refuses a secp256k1 key (made by openssl), naming csr.publicKey", async () => {
    const { ca } = await open();
    const dir = tempDir("ca-k1");
    const { execFileSync } = await import("node:child_process");
    execFileSync("openssl", [
      "ecparam",
      "-name",
      "secp256k1",
      "-genkey",
      "-noout",
      "-out",
      join(dir, "k.pem"),
    ]);
    const csr = execFileSync("openssl", ["req", "-new", "-key", join(dir, "k.pem"), "-subj", "/CN=x"], {
      encoding: "utf8",
    });
    await refused(
      ca.issue({ csr, identity: PAYMENTS }),
      CaInputError,
      "csr.publicKey",
      /curve secp256k1 is not supported/,
    );
  });

  it("refuses what is not one CSR, naming csr", async () => {
    const { ca } = await open();
    const { csr } = await workloadRequest();
    const issued = await ca.issue({ csr, identity: PAYMENTS });
    const cases: [unknown, RegExp][] = [
      ["", /must be a PEM certificate signing request/],
      [42, /must be a PEM certificate signing request/],
      ["hello", /exactly one PEM block \(found 0\)|is not PEM/],
      [csr + csr, /exactly one PEM block \(found 2\)/],
      [issued.certificate, /is a CERTIFICATE, not a CERTIFICATE REQUEST/],
      [
        `-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n`,
        /cannot be read as PKCS#10/,
      ],
      [`${csr}${" ".repeat(17 * 1024)}`, /larger than 16384 bytes/],
    ];
    for (const [input, message] of cases) {
      await refused(ca.issue({ csr: input as string, identity: PAYMENTS }), CaInputError, "csr", message);
    }
  });

  it("refuses an identity that makes no SPIFFE ID, naming its field", async () => {
    const { ca } = await open();
    const { csr } = await workloadRequest();
    await refused(
      ca.issue({ csr, identity: { namespace: "Prod", serviceAccount: "payments" } }),
      SpiffeIdError,
      "identity.namespace",
      /DNS-1123 label/,
    );
    await refused(
      ca.issue({ csr, identity: { namespace: "default", serviceAccount: "pay/ments" } }),
      SpiffeIdError,
      "identity.serviceAccount",
      /DNS-1123 subdomain/,
    );
  });
});

describe("the CA in the store, its keys sealed by a key-encryption key outside it", () => {
  it("keeps its root across restarts of the same data directory, and certificates from before still verify", async () => {
    const first = await open();
    const bundle = (await first.ca.trustBundle()).pem;
    const { csr } = await workloadRequest();
    const before = await first.ca.issue({ csr, identity: PAYMENTS });
    await closeAll();

    const second = await open({ dataDir: first.dataDir });
    expect(second.ca.created).toBe(false);
    expect((await second.ca.trustBundle()).pem).toBe(bundle);
    const after = await second.ca.issue({ csr, identity: PAYMENTS });
    verifyWithNode(before.certificate, "", after.trustBundle);
    verifyWithNode(after.certificate, "", bundle);
  });

  it("is an internal record: the mesh's revision does not move and list() leaves it out", async () => {
    const { ca, store } = await open();
    expect(ca.created).toBe(true);
    expect(await store.revision()).toBe(0);
    expect(await store.list()).toEqual([]);
    const [record] = await store.list(CA_KIND);
    expect(record?.metadata.name).toBe("mesh");
  });

  it("creates <data>/ca-kek 0600 at first start and stores no private key in clear", async () => {
    const { ca, store, dataDir } = await open();
    const kek = join(dataDir, KEK_FILE);
    expect(statSync(kek).mode & 0o777).toBe(0o600);
    expect(Buffer.from(readFileSync(kek, "utf8").trim(), "base64")).toHaveLength(32);
    const record = JSON.stringify(await store.get(CA_KIND, "mesh"));
    expect(record).not.toMatch(/PRIVATE KEY/);
    expect(record).toMatch(/"key":\{"iv":"[A-Za-z0-9+/=]+","data":"[A-Za-z0-9+/=]+"\}/);
    const { csr } = await workloadRequest();
    await ca.issue({ csr, identity: PAYMENTS });
    await closeAll();
    // Nowhere in the database file either (WAL checkpointed at close).
    expect(readFileSync(join(dataDir, DATABASE_FILE)).includes("PRIVATE KEY")).toBe(false);
  });

  it("cannot sign from a database copied without its ca-kek: opening refuses, naming the file, and creates no new key", async () => {
    const { dataDir } = await open();
    await closeAll();
    const copy = tempDir("ca-copy");
    cpSync(dataDir, copy, { recursive: true });
    rmSync(join(copy, KEK_FILE));
    const error = await refused(open({ dataDir: copy }), KekError, undefined, /ca-kek does not exist/);
    expect(error.message).toContain(join(copy, KEK_FILE));
    expect(error.message).toMatch(/cannot sign/);
    expect(existsSync(join(copy, KEK_FILE))).toBe(false);
    // With the file back, the copy is the same CA.
    cpSync(join(dataDir, KEK_FILE), join(copy, KEK_FILE));
    const restored = await open({ dataDir: copy });
    const { csr } = await workloadRequest();
    await restored.ca.issue({ csr, identity: PAYMENTS });
  });

  it("refuses a wrong key-encryption key by its id, and a malformed one naming where it came from", async () => {
    const { dataDir } = await open();
    await closeAll();
    const kek = join(dataDir, KEK_FILE);
    const good = readFileSync(kek, "utf8");
    writeFileSync(kek, `${Buffer.alloc(32, 7).toString("base64")}\n`, { mode: 0o600 });
    await refused(
      open({ dataDir }),
      KekError,
      undefined,
      /sealed with key-encryption key [0-9a-f]{16}, but .*ca-kek holds key [0-9a-f]{16}: not the key they need/,
    );
    writeFileSync(kek, "not base64 at all\n");
    await refused(
      open({ dataDir }),
      KekError,
      undefined,
      /ca-kek: the CA key-encryption key must be the base64 of 32 random bytes/,
    );
    writeFileSync(kek, good);
    await open({ dataDir });
  });

  it("refuses a sealed key altered in the database", async () => {
    const { store, dataDir } = await open();
    const record = await store.get(CA_KIND, "mesh");
    const spec = record?.spec as { authorities: { key: { data: string } }[] };
    const data = Buffer.from(spec.authorities[0]?.key.data ?? "", "base64");
    data[0] = (data[0] as number) ^ 1;
    (spec.authorities[0] as { key: { data: string } }).key.data = data.toString("base64");
    await store.apply([{ op: "put", resource: { ...(record as NonNullable<typeof record>), spec } }]);
    await closeAll();
    await refused(
      open({ dataDir }),
      KekError,
      undefined,
      /does not decrypt .* it was altered, or sealed under another key/,
    );
  });

  it("takes the key from WASMESH_CA_KEK instead (no file written), and refuses to start without it later", async () => {
    const dataDir = tempDir("ca-env");
    const key = Buffer.alloc(32, 3).toString("base64");
    const { ca } = await open({ dataDir, env: { [KEK_ENV]: key } });
    expect(ca.created).toBe(true);
    expect(existsSync(join(dataDir, KEK_FILE))).toBe(false);
    await closeAll();
    await open({ dataDir, env: { [KEK_ENV]: key } });
    await closeAll();
    await refused(open({ dataDir }), KekError, undefined, /ca-kek does not exist/);
    await refused(
      open({ dataDir, env: { [KEK_ENV]: "c2hvcnQ=" } }),
      KekError,
      undefined,
      /^WASMESH_CA_KEK: .* base64 of 32/,
    );
  });

  it("takes the key from the file WASMESH_CA_KEK_FILE names (never creating it), warning when others can read it", async () => {
    const dataDir = tempDir("ca-kek-file");
    const secrets = tempDir("ca-secrets");
    const file = join(secrets, "kek");
    const logs: string[] = [];
    await refused(
      open({ dataDir, env: { [KEK_FILE_ENV]: file }, log: (line) => logs.push(line) }),
      KekError,
      undefined,
      new RegExp(`${file}: cannot read the CA key-encryption key`),
    );
    writeFileSync(file, `${Buffer.alloc(32, 9).toString("base64")}\n`, { mode: 0o644 });
    const { ca } = await open({ dataDir, env: { [KEK_FILE_ENV]: file }, log: (line) => logs.push(line) });
    expect(ca.created).toBe(true);
    expect(existsSync(join(dataDir, KEK_FILE))).toBe(false);
    expect(
      logs.some((line) =>
        line.includes(`${file} (the CA key-encryption key) can be read by others (mode 644)`),
      ),
    ).toBe(true);
    expect(logs.some((line) => line.includes(`sealed with ${file}`))).toBe(true);
    await closeAll();
    // The same key given as a value opens it too; the data directory's default does not exist.
    await open({ dataDir, env: { [KEK_ENV]: Buffer.alloc(32, 9).toString("base64") } });
    await closeAll();
    await refused(open({ dataDir }), KekError, undefined, /ca-kek does not exist/);
  });

  it("takes its trust domain when created, refuses another later, and names a bad one", async () => {
    const { ca, dataDir } = await open({ trustDomain: "prod.example.com" });
    const { csr } = await workloadRequest();
    const issued = await ca.issue({ csr, identity: { namespace: "shop", serviceAccount: "cart.v2" } });
    expect(uriSans(issued.certificate)).toEqual(["spiffe://prod.example.com/ns/shop/sa/cart.v2"]);
    expect(new x509.X509Certificate((await ca.trustBundle()).pem).subject).toContain("O=prod.example.com");
    await closeAll();
    await open({ dataDir });
    await closeAll();
    await refused(
      open({ dataDir, trustDomain: "other.example" }),
      CaStateError,
      undefined,
      /created for trust domain "prod.example.com", not "other.example"/,
    );
    await refused(open({ trustDomain: "Prod.Example" }), SpiffeIdError, "trustDomain", /lower-case letters/);
  });

  it("takes its trust domain from WASMESH_TRUST_DOMAIN too (the option wins), naming the variable when bad", async () => {
    const fromEnv = await open({ env: { [TRUST_DOMAIN_ENV]: "env.example" } });
    expect(fromEnv.ca.trustDomain).toBe("env.example");
    const both = await open({ trustDomain: "option.example", env: { [TRUST_DOMAIN_ENV]: "env.example" } });
    expect(both.ca.trustDomain).toBe("option.example");
    await refused(
      open({ env: { [TRUST_DOMAIN_ENV]: "spiffe://x" } }),
      SpiffeIdError,
      TRUST_DOMAIN_ENV,
      /lower-case letters/,
    );
    await closeAll();
    await refused(
      open({ dataDir: fromEnv.dataDir, env: { [TRUST_DOMAIN_ENV]: "other.example" } }),
      CaStateError,
      undefined,
      /created for trust domain "env.example", not "other.example"/,
    );
  });
});

describe("TLS with issued certificates", () => {
  /** A TLS server requiring a client certificate of the bundle; answers with the peer's URI SAN. */
  async function mtlsServer(creds: { key: string; cert: string; ca: string }) {
    const served = { count: 0 };
    const server = createServer({ ...creds, requestCert: true, rejectUnauthorized: true }, (socket) => {
      served.count++;
      socket.end(socket.getPeerX509Certificate()?.subjectAltName ?? "none");
    });
    const refusals: Error[] = [];
    server.on("tlsClientError", (error) => refusals.push(error));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return { server, port: (server.address() as AddressInfo).port, refusals, served };
  }

  /** Connects with a client certificate, checking the server's SPIFFE ID; resolves with what it answered. */
  function call(port: number, creds: { key: string; cert: string; ca: string }, serverId: string) {
    return new Promise<{ answer: string; server: string }>((resolve, reject) => {
      let server = "";
      const socket: TLSSocket = connect({
        host: "127.0.0.1",
        port,
        ...creds,
        // A mesh peer is checked by its SPIFFE ID, not a host name.
        checkServerIdentity: (_host, certificate) => {
          server = certificate.subjectaltname ?? "";
          return server === `URI:${serverId}` ? undefined : new Error(`unexpected server identity ${server}`);
        },
      });
      let answer = "";
      socket.setEncoding("utf8");
      socket.on("data", (chunk) => {
        answer += chunk;
      });
      socket.on("end", () => resolve({ answer, server }));
      socket.on("error", reject);
    });
  }

  it("two workloads complete an mTLS handshake, each seeing the other's SPIFFE ID; another mesh's certificate is refused", async () => {
    const { ca } = await open();
    const serverKey = await workloadRequest();
    const clientKey = await workloadRequest();
    const serverCert = await ca.issue({ csr: serverKey.csr, identity: universalIdentity("ratings") });
    const clientCert = await ca.issue({ csr: clientKey.csr, identity: universalIdentity("reviews") });
    const { server, port, refusals, served } = await mtlsServer({
      key: serverKey.privateKeyPem,
      cert: serverCert.certificateChain,
      ca: serverCert.trustBundle,
    });
    try {
      const ok = await call(
        port,
        { key: clientKey.privateKeyPem, cert: clientCert.certificateChain, ca: clientCert.trustBundle },
        serverCert.spiffeId,
      );
      expect(ok).toEqual({ answer: `URI:${clientCert.spiffeId}`, server: `URI:${serverCert.spiffeId}` });

      // The client expecting another identity refuses the server.
      await expect(
        call(
          port,
          { key: clientKey.privateKeyPem, cert: clientCert.certificateChain, ca: clientCert.trustBundle },
          `spiffe://${DEFAULT_TRUST_DOMAIN}/ns/default/sa/payments`,
        ),
      ).rejects.toThrow(/unexpected server identity/);

      // A certificate from another mesh's CA (another data directory) is refused by the server.
      const other = await open();
      const stranger = await workloadRequest();
      const strangerCert = await other.ca.issue({
        csr: stranger.csr,
        identity: universalIdentity("reviews"),
      });
      // The client that refused the server hung up on it: one refusal so far.
      await until("the server to see the refused handshake", () => refusals.length === 1);
      const servedBefore = served.count;
      // With TLS 1.3 the client finishes its side before the server judges its certificate: the
      // server's refusal ends the connection with an alert (an error) or an empty answer.
      const outcome = await call(
        port,
        { key: stranger.privateKeyPem, cert: strangerCert.certificateChain, ca: clientCert.trustBundle },
        serverCert.spiffeId,
      ).catch((error: Error) => ({ answer: `error: ${error.message}`, server: "" }));
      expect(outcome.answer).not.toContain("URI:");
      await until("the server to refuse the stranger's handshake", () => refusals.length === 2);
      expect(served.count).toBe(servedBefore);
    } finally {
      server.close();
    }
  });
});
