// The workload's side of issuance, for the data-plane agent: a key pair made where it is used (its
// private key never leaves the agent, which serves it to Envoy over SDS), and a PKCS#10 request for
// it. The request may name the SPIFFE ID the workload expects, which helps whoever reads it; the CA
// ignores it and names the identity the caller is authenticated as.
import { webcrypto } from "node:crypto";
import { EC_P256, generateP256, signatureAlgorithm, x509 } from "./x509.ts";

export interface WorkloadKey {
  keys: CryptoKeyPair;
  /** PKCS#8 PEM ("PRIVATE KEY"), what Envoy's tls_certificate.private_key takes. */
  privateKeyPem: string;
}

/** A new EC P-256 key pair for a workload. */
export async function createWorkloadKey(): Promise<WorkloadKey> {
  const keys = await generateP256();
  const pkcs8 = await webcrypto.subtle.exportKey("pkcs8", keys.privateKey);
  return { keys, privateKeyPem: `${x509.PemConverter.encode(pkcs8, "PRIVATE KEY").trim()}\n` };
}

/** A PEM CSR signed by the key pair (which must be P-256, as createWorkloadKey makes). */
export async function createCertificateRequest(keys: CryptoKeyPair, spiffeId?: string): Promise<string> {
  const request = await x509.Pkcs10CertificateRequestGenerator.create({
    keys,
    signingAlgorithm: { ...EC_P256, ...signatureAlgorithm({ type: "ec", curve: "P-256" }) },
    ...(spiffeId
      ? { extensions: [new x509.SubjectAlternativeNameExtension([{ type: "url", value: spiffeId }])] }
      : {}),
  });
  return `${request.toString("pem").trim()}\n`;
}
