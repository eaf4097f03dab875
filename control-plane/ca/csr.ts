// PKCS#10 certificate signing requests as the CA takes them: one PEM request, at most 16 KiB, whose
// key the mesh accepts and whose signature verifies with that key (the requester holds the private
// key). Nothing else in the request is used: the subject and the extensions it asks for are ignored,
// since the identity a certificate carries is the one the caller is authenticated as.
import { Buffer } from "node:buffer";
import { CaInputError } from "./errors.ts";
import { type KeyKind, keyKind, publicKeyObject, x509 } from "./x509.ts";

export const MAX_CSR_BYTES = 16 * 1024;

const LABELS = new Set(["CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"]);

export interface CheckedRequest {
  /** The key the certificate will certify. */
  publicKey: x509.PublicKey;
  key: KeyKind;
}

/** The request's key, checked; CaInputError naming `field` (or `field.publicKey`, `.signature`) otherwise. */
export async function checkCertificateRequest(pem: unknown, field = "csr"): Promise<CheckedRequest> {
  if (typeof pem !== "string" || pem.trim() === "") {
    throw new CaInputError(field, "must be a PEM certificate signing request (PKCS#10)");
  }
  if (Buffer.byteLength(pem, "utf8") > MAX_CSR_BYTES) {
    throw new CaInputError(field, `is larger than ${MAX_CSR_BYTES} bytes`);
  }
  let blocks: x509.PemStruct[];
  try {
    blocks = x509.PemConverter.decodeWithHeaders(pem);
  } catch (error) {
    throw new CaInputError(field, `is not PEM: ${(error as Error).message}`);
  }
  if (blocks.length !== 1) {
    throw new CaInputError(field, `must hold exactly one PEM block (found ${blocks.length})`);
  }
  const block = blocks[0] as x509.PemStruct;
  if (!LABELS.has(block.type)) {
    throw new CaInputError(field, `is a ${block.type}, not a CERTIFICATE REQUEST`);
  }
  let request: x509.Pkcs10CertificateRequest;
  try {
    request = new x509.Pkcs10CertificateRequest(block.rawData);
  } catch (error) {
    throw new CaInputError(field, `cannot be read as PKCS#10: ${(error as Error).message}`);
  }
  let key: KeyKind;
  try {
    key = keyKind(publicKeyObject(request.publicKey), `${field}.publicKey`);
  } catch (error) {
    if (error instanceof CaInputError) throw error;
    throw new CaInputError(`${field}.publicKey`, `cannot be read: ${(error as Error).message}`);
  }
  let verified = false;
  try {
    verified = await request.verify();
  } catch {
    // An algorithm WebCrypto does not know cannot prove possession either.
  }
  if (!verified) {
    throw new CaInputError(
      `${field}.signature`,
      "does not verify with the request's own key: the request was altered, or not signed by the key it carries",
    );
  }
  return { publicKey: request.publicKey, key };
}
