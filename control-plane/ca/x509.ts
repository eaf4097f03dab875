// The X.509 library and what the CA and the agent need of it, in one module: @peculiar/x509 (on
// WebCrypto; Node has no API to create certificates) needs a Reflect polyfill loaded before it, which
// importing it from here guarantees. Keys are looked at with Node's KeyObject, which names curves and
// sizes exactly, whatever encoding they came in.
import "reflect-metadata";
import { Buffer } from "node:buffer";
import { createHash, createPublicKey, type KeyObject, randomBytes, webcrypto } from "node:crypto";
import * as x509 from "@peculiar/x509";
import { CaInputError } from "./errors.ts";

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export { x509 };

/** Keys the mesh accepts, for workloads and signing CAs alike: what Envoy (BoringSSL) serves and verifies. */
export const SUPPORTED_KEYS = "EC P-256 or P-384, or RSA of 2048 to 8192 bits";
const MIN_RSA_BITS = 2048;
const MAX_RSA_BITS = 8192;
const CURVES: Record<string, "P-256" | "P-384"> = { prime256v1: "P-256", secp384r1: "P-384" };

/** A key the mesh accepts. */
export type KeyKind = { type: "ec"; curve: "P-256" | "P-384" } | { type: "rsa"; bits: number };

/** What key this is, or a CaInputError naming `field` when the mesh does not take it. */
export function keyKind(key: KeyObject, field: string): KeyKind {
  const type = key.asymmetricKeyType;
  const details = key.asymmetricKeyDetails ?? {};
  if (type === "ec") {
    const curve = CURVES[details.namedCurve ?? ""];
    if (curve === undefined) {
      throw new CaInputError(
        field,
        `curve ${details.namedCurve ?? "(unnamed)"} is not supported (${SUPPORTED_KEYS})`,
      );
    }
    return { type: "ec", curve };
  }
  if (type === "rsa") {
    const bits = details.modulusLength ?? 0;
    if (bits < MIN_RSA_BITS) {
      throw new CaInputError(field, `an RSA key of ${bits} bits is too weak (at least ${MIN_RSA_BITS})`);
    }
    if (bits > MAX_RSA_BITS)
      throw new CaInputError(field, `an RSA key of ${bits} bits is larger than ${MAX_RSA_BITS}`);
    return { type: "rsa", bits };
  }
  throw new CaInputError(field, `${type ?? "unknown"} keys are not supported (${SUPPORTED_KEYS})`);
}

/** The WebCrypto algorithm to import a private key of this kind for signing. */
export function importAlgorithm(kind: KeyKind): EcKeyImportParams | RsaHashedImportParams {
  return kind.type === "ec"
    ? { name: "ECDSA", namedCurve: kind.curve }
    : { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" };
}

/** The signature a key of this kind makes: ECDSA with the curve's hash, RSA PKCS#1 v1.5 with SHA-256. */
export function signatureAlgorithm(kind: KeyKind): EcdsaParams | RsaHashedImportParams {
  if (kind.type === "rsa") return { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" };
  return { name: "ECDSA", hash: kind.curve === "P-384" ? "SHA-384" : "SHA-256" };
}

/** Node's view of a certificate's or request's public key. */
export function publicKeyObject(publicKey: x509.PublicKey): KeyObject {
  return createPublicKey({ key: Buffer.from(publicKey.rawData), format: "der", type: "spki" });
}

/** The mesh's own keys: EC P-256 (what Istio's and Kuma's CAs make by default). */
export const EC_P256: EcKeyGenParams = { name: "ECDSA", namedCurve: "P-256" };

/** A new extractable P-256 key pair. */
export async function generateP256(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(EC_P256, true, ["sign", "verify"])) as CryptoKeyPair;
}

/** A CryptoKey for signing from a PKCS#8 private key, not extractable again. */
export async function importSigningKey(pkcs8: Uint8Array, kind: KeyKind): Promise<CryptoKey> {
  return (await webcrypto.subtle.importKey("pkcs8", pkcs8, importAlgorithm(kind), false, [
    "sign",
  ])) as CryptoKey;
}

/** A random positive serial number of 128 bits, as hex (RFC 5280: at most 20 octets, positive). */
export function randomSerial(): string {
  const bytes = randomBytes(16);
  // A first octet in 0x01..0x7f: positive, and encoded in exactly 16 octets.
  bytes[0] = ((bytes[0] as number) & 0x7f) | 0x01;
  return bytes.toString("hex");
}

/** Lower-case hex SHA-256 of a certificate's DER: how the CA names its authorities (the first 16). */
export function fingerprint(certificate: x509.X509Certificate): string {
  return createHash("sha256").update(Buffer.from(certificate.rawData)).digest("hex");
}

/** Certificates as one PEM text, each ending in a newline (what Envoy and openssl read). */
export function pemOf(certificates: readonly x509.X509Certificate[]): string {
  return certificates.map((c) => `${c.toString("pem").trim()}\n`).join("");
}

/**
 * The certificates of a PEM text, in order; CaInputError naming `field` when it holds anything else,
 * or none and `min` is 1.
 */
export function parseCertificates(pem: string, field: string, min = 1): x509.X509Certificate[] {
  let blocks: x509.PemStruct[];
  try {
    blocks = x509.PemConverter.decodeWithHeaders(pem);
  } catch (error) {
    throw new CaInputError(field, `is not PEM: ${(error as Error).message}`);
  }
  if (blocks.length < min) throw new CaInputError(field, "holds no PEM certificate");
  return blocks.map((block, index) => {
    if (block.type !== "CERTIFICATE") {
      throw new CaInputError(field, `block ${index + 1} is a ${block.type}, not a CERTIFICATE`);
    }
    try {
      return new x509.X509Certificate(block.rawData);
    } catch (error) {
      throw new CaInputError(field, `certificate ${index + 1} cannot be read: ${(error as Error).message}`);
    }
  });
}
