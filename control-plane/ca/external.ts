// Bring your own intermediate: the mesh CA signs with an intermediate of the operator's own CA instead
// of a root it generates. The files follow Istio's plugged-in CA certificates ("cacerts"), so one
// directory serves both:
//   ca-cert.pem     the intermediate that signs workload certificates (CA:true, keyCertSign)
//   ca-key.pem      its private key (PKCS#8, SEC1 "EC PRIVATE KEY" or PKCS#1; not encrypted)
//   root-cert.pem   the operator's root: the trust bundle every sidecar gets
//   cert-chain.pem  optional: the certificates between ca-cert and the root (ca-cert and the root
//                   themselves may be in it too, as in Istio's, and are skipped)
// Everything is checked before the CA takes it: the key matches the certificate, the path from the
// intermediate to the root verifies signature by signature, every certificate on it is a CA and
// currently valid, and the keys are ones the mesh accepts. Each refusal names its file.
import { Buffer } from "node:buffer";
import { createPrivateKey, X509Certificate as NodeCertificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { CaInputError } from "./errors.ts";
import { type KeyKind, keyKind, parseCertificates, publicKeyObject, x509 } from "./x509.ts";

export const EXTERNAL_FILES = {
  certificate: "ca-cert.pem",
  key: "ca-key.pem",
  root: "root-cert.pem",
  chain: "cert-chain.pem",
} as const;

/** An operator's intermediate, as PEM texts; each `*Source` names where it came from, for errors. */
export interface ExternalAuthority {
  certificate: string;
  key: string;
  root: string;
  chain?: string;
  sources?: Partial<Record<"certificate" | "key" | "root" | "chain", string>>;
}

/** An external authority, checked and decoded. */
export interface CheckedExternal {
  certificate: x509.X509Certificate;
  /** From the intermediate's issuer up to, not including, the root. */
  chain: x509.X509Certificate[];
  root: x509.X509Certificate;
  /** The private key, PKCS#8 DER. */
  pkcs8: Buffer;
  key: KeyKind;
}

/** Reads ca-cert.pem, ca-key.pem, root-cert.pem and, if present, cert-chain.pem from `dir`. */
export function readExternalAuthority(dir: string): ExternalAuthority {
  const read = (name: string, optional = false): string | undefined => {
    const path = join(dir, name);
    try {
      return readFileSync(path, "utf8");
    } catch (error) {
      if (optional && (error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw new CaInputError(path, `cannot be read: ${(error as Error).message}`);
    }
  };
  const chain = read(EXTERNAL_FILES.chain, true);
  return {
    certificate: read(EXTERNAL_FILES.certificate) as string,
    key: read(EXTERNAL_FILES.key) as string,
    root: read(EXTERNAL_FILES.root) as string,
    ...(chain === undefined ? {} : { chain }),
    sources: {
      certificate: join(dir, EXTERNAL_FILES.certificate),
      key: join(dir, EXTERNAL_FILES.key),
      root: join(dir, EXTERNAL_FILES.root),
      chain: join(dir, EXTERNAL_FILES.chain),
    },
  };
}

const same = (a: x509.X509Certificate, b: x509.X509Certificate) =>
  Buffer.from(a.rawData).equals(Buffer.from(b.rawData));

function node(certificate: x509.X509Certificate): NodeCertificate {
  return new NodeCertificate(Buffer.from(certificate.rawData));
}

/** Throws naming `field` unless the certificate may sign certificates. */
function checkCa(certificate: x509.X509Certificate, field: string): void {
  const constraints = certificate.getExtension(x509.BasicConstraintsExtension);
  if (!constraints?.ca)
    throw new CaInputError(
      field,
      `${certificate.subject} is not a CA certificate (basicConstraints CA:TRUE)`,
    );
  const usage = certificate.getExtension(x509.KeyUsagesExtension);
  if (usage && (usage.usages & x509.KeyUsageFlags.keyCertSign) === 0) {
    throw new CaInputError(
      field,
      `${certificate.subject} may not sign certificates (keyUsage lacks keyCertSign)`,
    );
  }
}

function checkValidNow(certificate: x509.X509Certificate, field: string, now: Date): void {
  if (certificate.notBefore.getTime() > now.getTime()) {
    throw new CaInputError(
      field,
      `${certificate.subject} is not valid before ${certificate.notBefore.toISOString()}`,
    );
  }
  if (certificate.notAfter.getTime() <= now.getTime()) {
    throw new CaInputError(field, `${certificate.subject} expired at ${certificate.notAfter.toISOString()}`);
  }
}

/** Whether `parent` issued `child`: names match and the signature verifies with the parent's key. */
function issued(parent: x509.X509Certificate, child: x509.X509Certificate): boolean {
  const p = node(parent);
  const c = node(child);
  return c.checkIssued(p) && c.verify(p.publicKey);
}

/** The operator's material, checked; CaInputError naming the file (or field) at fault. */
export function checkExternalAuthority(external: ExternalAuthority, now: Date): CheckedExternal {
  const src = {
    certificate: external.sources?.certificate ?? "external.certificate",
    key: external.sources?.key ?? "external.key",
    root: external.sources?.root ?? "external.root",
    chain: external.sources?.chain ?? "external.chain",
  };
  const certificates = parseCertificates(external.certificate, src.certificate);
  if (certificates.length !== 1) {
    throw new CaInputError(
      src.certificate,
      `holds ${certificates.length} certificates: only the signing intermediate (put the others in ${EXTERNAL_FILES.chain})`,
    );
  }
  const certificate = certificates[0] as x509.X509Certificate;
  checkCa(certificate, src.certificate);
  checkValidNow(certificate, src.certificate, now);
  const key = keyKind(publicKeyObject(certificate.publicKey), `${src.certificate} (its public key)`);

  // PKCS#8 "ENCRYPTED PRIVATE KEY", or a traditional key with "Proc-Type: 4,ENCRYPTED".
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type:\s*4,\s*ENCRYPTED/.test(external.key)) {
    throw new CaInputError(
      src.key,
      "is encrypted: give the key without a passphrase (protect the file instead; the CA seals it at rest)",
    );
  }
  let privateKey: ReturnType<typeof createPrivateKey>;
  try {
    privateKey = createPrivateKey({ key: external.key, format: "pem" });
  } catch (error) {
    throw new CaInputError(src.key, `is not a PEM private key: ${(error as Error).message}`);
  }
  if (!node(certificate).checkPrivateKey(privateKey)) {
    throw new CaInputError(src.key, `is not the private key of ${src.certificate} (${certificate.subject})`);
  }
  const pkcs8 = privateKey.export({ format: "der", type: "pkcs8" });

  const roots = parseCertificates(external.root, src.root);
  if (roots.length !== 1) {
    throw new CaInputError(src.root, `holds ${roots.length} certificates: give exactly the one root`);
  }
  const root = roots[0] as x509.X509Certificate;
  if (!issued(root, root)) throw new CaInputError(src.root, `${root.subject} is not a self-signed root`);
  checkCa(root, src.root);
  checkValidNow(root, src.root, now);
  if (same(root, certificate)) {
    throw new CaInputError(
      src.certificate,
      "is the root itself: give an intermediate (for a root of your own, sign an intermediate with it)",
    );
  }

  // The path from the intermediate up to the root, through the chain's certificates in any order.
  const pool =
    external.chain === undefined
      ? []
      : parseCertificates(external.chain, src.chain).filter((c) => !same(c, certificate) && !same(c, root));
  const chain: x509.X509Certificate[] = [];
  let child = certificate;
  while (!issued(root, child)) {
    const parent = pool.find((c) => !chain.includes(c) && issued(c, child));
    if (parent === undefined) {
      throw new CaInputError(
        external.chain === undefined ? src.root : src.chain,
        `no certificate issued ${child.subject} (issuer ${child.issuer}): the path from ${src.certificate} to ${src.root} is incomplete`,
      );
    }
    checkCa(parent, src.chain);
    checkValidNow(parent, src.chain, now);
    chain.push(parent);
    child = parent;
  }
  const unused = pool.filter((c) => !chain.includes(c));
  if (unused.length > 0) {
    throw new CaInputError(
      src.chain,
      `${unused[0]?.subject} is not on the path from ${src.certificate} to the root`,
    );
  }
  return { certificate, chain, root, pkcs8, key };
}
