// The workload's identity in the agent (issue 11): the SDS server Envoy gets its certificate and the
// trust bundle from (sds.ts), fed by the certificate manager (certificates.ts), which gets the
// certificate from the control plane against a CSR and renews it. Started before Envoy, so that the
// socket the bootstrap names is there when Envoy first connects.
import { join } from "node:path";
import { SDS_SOCKET } from "../control-plane/envoy/index.ts";
import { type CertificateManager, startCertificateManager } from "./certificates.ts";
import type { Token } from "./http.ts";
import { type SdsServer, startSdsServer } from "./sds.ts";

export interface WorkloadIdentityOptions {
  /** Envoy's working directory: the bootstrap names the socket relative to it (SDS_SOCKET). */
  dataDir: string;
  api: string;
  token?: Token;
  /** PEM: the CAs an https API's certificate is verified with. */
  ca?: string;
  /** Asked of the CA for each certificate (default the CA's workload validity). */
  certValiditySeconds?: number;
  /** How often the trust bundle is checked (default 30 s). */
  bundleRefreshMs?: number;
  log: (line: string) => void;
}

export interface WorkloadIdentity {
  readonly sds: SdsServer;
  readonly certificates: CertificateManager;
  close(): Promise<void>;
}

export async function startWorkloadIdentity(options: WorkloadIdentityOptions): Promise<WorkloadIdentity> {
  const sds = await startSdsServer({ socketPath: join(options.dataDir, SDS_SOCKET), log: options.log });
  const certificates = startCertificateManager({
    api: options.api,
    ...(options.token !== undefined ? { token: options.token } : {}),
    ...(options.ca !== undefined ? { ca: options.ca } : {}),
    sds,
    ...(options.certValiditySeconds !== undefined ? { validitySeconds: options.certValiditySeconds } : {}),
    ...(options.bundleRefreshMs !== undefined ? { bundleRefreshMs: options.bundleRefreshMs } : {}),
    log: options.log,
  });
  return {
    sds,
    certificates,
    async close() {
      certificates.close();
      await sds.close();
    },
  };
}
