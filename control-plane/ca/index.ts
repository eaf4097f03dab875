// The mesh's certificate authority and workload identities (issue 11, §1): what the control plane
// (the CSR endpoint, SDS through the agent, mTLS) and the data-plane agent use of it.
export {
  type AuthorityInfo,
  BACKDATE_SECONDS,
  CA_DIR_ENV,
  type CaStatus,
  type CertificateAuthority,
  type CertificateAuthorityOptions,
  DEFAULT_ROOT_VALIDITY_SECONDS,
  DEFAULT_WORKLOAD_VALIDITY_SECONDS,
  type IssuedCertificate,
  type IssueRequest,
  MAX_WORKLOAD_VALIDITY_SECONDS,
  MIN_WORKLOAD_VALIDITY_SECONDS,
  openCertificateAuthority,
  type ServerIssueRequest,
  TRUST_DOMAIN_ENV,
  type TrustBundle,
} from "./authority.ts";
export { checkCertificateRequest, MAX_CSR_BYTES } from "./csr.ts";
export { CaInputError, CaStateError, RotationError } from "./errors.ts";
export { EXTERNAL_FILES, type ExternalAuthority, readExternalAuthority } from "./external.ts";
export { KEK_ENV, KEK_FILE, KEK_FILE_ENV, KekError } from "./kek.ts";
export {
  DEFAULT_RENEWAL_JITTER,
  type RenewalOptions,
  renewalDelayMs,
  renewalTime,
  type Validity,
} from "./renewal.ts";
export { type AuthorityStatus, type RotationStep, rotate } from "./rotation.ts";
export {
  checkTrustDomain,
  DEFAULT_TRUST_DOMAIN,
  parseSpiffeId,
  parseWorkloadSpiffeId,
  type SpiffeId,
  SpiffeIdError,
  UNIVERSAL_NAMESPACE,
  universalIdentity,
  type WorkloadIdentity,
  workloadSpiffeId,
} from "./spiffe.ts";
export { CA_KIND } from "./state.ts";
export { createCertificateRequest, createWorkloadKey, type WorkloadKey } from "./workload.ts";
