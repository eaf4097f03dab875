// Helpers for the CA's tests: a CA on a real SQLite store in a temp directory, a workload's key and
// CSR, an operator's own PKI (root, intermediates) to plug in, and two independent verifiers of what
// the CA issues: Node's X509Certificate (checkIssued, verify) and the openssl binary, when there is one.
import { execFileSync, spawnSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  type CertificateAuthority,
  type CertificateAuthorityOptions,
  createCertificateRequest,
  createWorkloadKey,
  type ExternalAuthority,
  openCertificateAuthority,
  type WorkloadKey,
} from "../../control-plane/ca/index.ts";
import { randomSerial, signatureAlgorithm, x509 } from "../../control-plane/ca/x509.ts";
import { openSqliteStore, type ResourceStore } from "../../control-plane/store/index.ts";
import { tempDir } from "./temp.ts";

export interface OpenedCa {
  ca: CertificateAuthority;
  store: ResourceStore;
  dataDir: string;
  close(): Promise<void>;
}

/** A CA on the SQLite store of dataDir (a new temp directory unless given); close() closes the store. */
export async function openTestCa(
  options: Partial<Omit<CertificateAuthorityOptions, "store">> & { dataDir?: string } = {},
): Promise<OpenedCa> {
  const dataDir = options.dataDir ?? tempDir("ca");
  const store = await openSqliteStore({ dataDir });
  try {
    const ca = await openCertificateAuthority({ log: () => {}, env: {}, ...options, store, dataDir });
    return { ca, store, dataDir, close: () => store.close() };
  } catch (error) {
    await store.close();
    throw error;
  }
}

/** A workload's key and a CSR for it (asking for `spiffeId` if given, which the CA must ignore). */
export async function workloadRequest(spiffeId?: string): Promise<WorkloadKey & { csr: string }> {
  const key = await createWorkloadKey();
  return { ...key, csr: await createCertificateRequest(key.keys, spiffeId) };
}

/** The URI SANs of a PEM certificate, as Node reads them. */
export function uriSans(pem: string): string[] {
  const san = new X509Certificate(pem).subjectAltName ?? "";
  return san
    .split(", ")
    .filter((entry) => entry.startsWith("URI:"))
    .map((entry) => entry.slice(4));
}

/** The certificates of a PEM text, as Node's X509Certificate. */
export function nodeCertificates(pem: string): X509Certificate[] {
  return [...pem.matchAll(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g)].map(
    (m) => new X509Certificate(m[0]),
  );
}

/**
 * Verifies leaf → chain → a root of the bundle with Node alone: each link's names (checkIssued) and
 * signature (verify with the issuer's public key), each certificate valid at `at`. Returns the root.
 */
export function verifyWithNode(
  leafPem: string,
  chainPem: string,
  bundlePem: string,
  at = new Date(),
): X509Certificate {
  const path = [...nodeCertificates(leafPem), ...nodeCertificates(chainPem)];
  const roots = nodeCertificates(bundlePem);
  for (const certificate of path) {
    if (Date.parse(certificate.validFrom) > at.getTime() || Date.parse(certificate.validTo) < at.getTime()) {
      throw new Error(
        `${certificate.subject || certificate.subjectAltName} is not valid at ${at.toISOString()}`,
      );
    }
  }
  for (let i = 0; i + 1 < path.length; i++) {
    const [child, parent] = [path[i] as X509Certificate, path[i + 1] as X509Certificate];
    if (!child.checkIssued(parent) || !child.verify(parent.publicKey)) {
      throw new Error(`certificate ${i} of the path is not issued by certificate ${i + 1}`);
    }
  }
  const top = path[path.length - 1] as X509Certificate;
  const root = roots.find((r) => top.checkIssued(r) && top.verify(r.publicKey));
  if (root === undefined) throw new Error("no root of the bundle issued the top of the path");
  return root;
}

/** Whether the openssl binary is there (its verify is the second opinion). */
export const OPENSSL = spawnSync("openssl", ["version"], { encoding: "utf8" }).status === 0;

/**
 * `openssl verify -x509_strict -purpose P -CAfile bundle.pem [-untrusted chain.pem] leaf.pem`, for
 * both TLS purposes; returns its output for each, or throws with it when it does not say OK.
 */
export function opensslVerify(
  dir: string,
  pems: { leaf: string; chain: string; bundle: string },
  at?: Date,
): string[] {
  const file = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };
  const leaf = file("leaf.pem", pems.leaf);
  const bundle = file("bundle.pem", pems.bundle);
  const untrusted = pems.chain.trim() === "" ? [] : ["-untrusted", file("chain.pem", pems.chain)];
  const time = at === undefined ? [] : ["-attime", String(Math.floor(at.getTime() / 1000))];
  return ["sslserver", "sslclient"].map((purpose) => {
    const args = [
      "verify",
      "-x509_strict",
      "-purpose",
      purpose,
      ...time,
      "-CAfile",
      bundle,
      ...untrusted,
      leaf,
    ];
    const result = spawnSync("openssl", args, { encoding: "utf8" });
    const output = `${result.stdout}${result.stderr}`.trim();
    if (result.status !== 0 || output !== `${leaf}: OK`)
      throw new Error(`openssl ${args.join(" ")}: ${output}`);
    return output;
  });
}

/** `openssl x509 -text` of a PEM certificate. */
export function opensslText(pem: string): string {
  return execFileSync("openssl", ["x509", "-noout", "-text"], { input: pem, encoding: "utf8" });
}

export interface OperatorPki {
  root: x509.X509Certificate;
  /** Between the signing intermediate and the root, nearest first. */
  middle: x509.X509Certificate[];
  /** The intermediate the mesh signs with. */
  intermediate: x509.X509Certificate;
  intermediateKeyPem: string;
  /** What the CA is given. */
  external: ExternalAuthority;
}

type KeySpec = "P-256" | "P-384" | "RSA-2048";

async function keyPair(spec: KeySpec): Promise<CryptoKeyPair> {
  const algorithm =
    spec === "RSA-2048"
      ? {
          name: "RSASSA-PKCS1-v1_5",
          hash: "SHA-256",
          publicExponent: new Uint8Array([1, 0, 1]),
          modulusLength: 2048,
        }
      : { name: "ECDSA", namedCurve: spec };
  return (await crypto.subtle.generateKey(algorithm, true, ["sign", "verify"])) as CryptoKeyPair;
}

const sigOf = (spec: KeySpec) =>
  spec === "RSA-2048"
    ? signatureAlgorithm({ type: "rsa", bits: 2048 })
    : signatureAlgorithm({ type: "ec", curve: spec });

const pem = (certificates: x509.X509Certificate[]) =>
  certificates.map((c) => `${c.toString("pem").trim()}\n`).join("");

/**
 * An operator's PKI: a root, `levels` intermediates below it (the last signs the mesh's
 * certificates), each with the key kind given (root first). CA certificates carry SKI and AKI, as
 * real ones do.
 */
export async function operatorPki(
  options: { keys?: KeySpec[]; levels?: number; validDays?: number; organization?: string } = {},
): Promise<OperatorPki> {
  const levels = options.levels ?? 1;
  const org = options.organization ?? "Example Corp";
  const specs = options.keys ?? ["P-384", ...Array.from({ length: levels }, () => "P-256" as KeySpec)];
  const now = Date.now();
  const notBefore = new Date(now - 3600_000);
  const notAfter = new Date(now + (options.validDays ?? 365) * 86400_000);
  const rootKeys = await keyPair(specs[0] as KeySpec);
  const root = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: `CN=${org} Root CA, O=${org}`,
    notBefore,
    notAfter,
    keys: rootKeys,
    signingAlgorithm: sigOf(specs[0] as KeySpec),
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(rootKeys.publicKey),
    ],
  });
  let parent = root;
  let parentKeys = rootKeys;
  let parentSpec = specs[0] as KeySpec;
  const issued: x509.X509Certificate[] = [];
  for (let level = 1; level <= levels; level++) {
    const spec = specs[level] ?? "P-256";
    const keys = await keyPair(spec);
    const certificate = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject: `CN=${org} Intermediate ${level}, O=${org}`,
      issuer: parent.subjectName,
      notBefore,
      notAfter,
      publicKey: keys.publicKey,
      signingKey: parentKeys.privateKey,
      signingAlgorithm: sigOf(parentSpec),
      extensions: [
        new x509.BasicConstraintsExtension(true, levels - level, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
        await x509.AuthorityKeyIdentifierExtension.create(parentKeys.publicKey),
      ],
    });
    issued.push(certificate);
    parent = certificate;
    parentKeys = keys;
    parentSpec = spec;
  }
  const intermediate = issued[issued.length - 1] as x509.X509Certificate;
  const middle = issued.slice(0, -1).reverse();
  const pkcs8 = await crypto.subtle.exportKey("pkcs8", parentKeys.privateKey);
  const intermediateKeyPem = `${x509.PemConverter.encode(pkcs8, "PRIVATE KEY").trim()}\n`;
  return {
    root,
    middle,
    intermediate,
    intermediateKeyPem,
    external: {
      certificate: pem([intermediate]),
      key: intermediateKeyPem,
      root: pem([root]),
      ...(middle.length > 0 ? { chain: pem(middle) } : {}),
    },
  };
}

/**
 * A self-signed EC P-256 certificate made by openssl (valid a day), for a server of its own or a CA
 * that has nothing to do with the mesh: its files in a new temp directory and its PEM.
 */
export function selfSigned(
  subject: string,
  san?: string,
): { certFile: string; keyFile: string; pem: string } {
  const dir = tempDir("self-signed");
  const certFile = join(dir, "cert.pem");
  const keyFile = join(dir, "key.pem");
  execFileSync(
    "openssl",
    [
      ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"],
      ...["-keyout", keyFile, "-out", certFile, "-subj", subject, "-days", "1"],
      ...(san !== undefined ? ["-addext", `subjectAltName=${san}`] : []),
    ],
    { stdio: "ignore" },
  );
  return { certFile, keyFile, pem: readFileSync(certFile, "utf8") };
}
