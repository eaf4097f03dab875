// The workload's certificate (issue 11, §1), kept by the agent: it makes the key pair itself
// (control-plane/ca/workload.ts: EC P-256), sends only a CSR to the control plane (POST
// /v1/certificates, with its dataplane token: the certificate names the token's service), and hands
// the certificate chain and the key to its Envoy over SDS (sds.ts). The key exists in this process
// and in Envoy's memory, nowhere else: not on disk, not at the control plane.
//
// Renewal: at the time renewal.ts gives (half the lifetime plus up to a tenth, so a fleet started
// together does not renew in the same second), with a new key each time, as Istio's agent does; a
// failure is retried with back-off (0.5 s doubling to 30 s) while the certificate still has 40% of
// its life. The new secret is pushed on Envoy's open SDS stream: no restart, no connection closed.
//
// The trust bundle is polled (GET /v1/certificates/trust-bundle with If-None-Match: a bodiless 304
// while it is current) every --bundle-refresh interval (30 s by default), besides arriving with each
// certificate. Riding on renewals alone would make a CA rotation wait half a certificate lifetime
// (12 h by default) between adding the next root and promoting it, since no sidecar may be handed a
// certificate of the new root before every sidecar trusts it; a poll bounds that wait to one
// interval, for a 304 of a few hundred bytes per agent and interval.
import { X509Certificate } from "node:crypto";
import { renewalDelayMs } from "../control-plane/ca/renewal.ts";
import { createCertificateRequest, createWorkloadKey } from "../control-plane/ca/workload.ts";
import { failureOf, type HttpResponse, httpRequest, type Token } from "./http.ts";
import type { SdsServer } from "./sds.ts";

export interface CertificateManagerOptions {
  /** The control plane's HTTP API base URL. */
  api: string;
  /** The agent's token (a dataplane token of its service). */
  token?: Token;
  /** PEM: the CAs an https API's certificate is verified with (default the system's). */
  ca?: string;
  sds: SdsServer;
  /** Asked of the CA (which caps it at its own workload validity); default the CA's. */
  validitySeconds?: number;
  /** How often the trust bundle is checked (default 30 s). */
  bundleRefreshMs?: number;
  log: (line: string) => void;
  /** The clock (ms), for the renewal time (default Date.now). */
  now?: () => number;
  /** Back-off after a failed call (default 500 ms doubling to 30 s). */
  backoff?: { minMs: number; maxMs: number };
}

/** What the agent holds now, for logs, readiness and tests. */
export interface HeldCertificate {
  spiffeId: string;
  serialNumber: string;
  notBefore: Date;
  notAfter: Date;
  /** When it is renewed (unless renew() comes first). */
  renewAt: Date;
  /** The issuer's subject: the CA authority that signed it. */
  issuer: string;
}

export interface CertificateManager {
  /** The certificate in SDS now; undefined until the first is issued. */
  readonly current: HeldCertificate | undefined;
  /** Certificates obtained so far (the first and each renewal). */
  readonly issued: number;
  /** The version of the trust bundle in SDS (the API's ETag, unquoted). */
  readonly bundleVersion: string | undefined;
  /** Why there is no certificate yet (the last failure), for the readiness endpoint. */
  readonly problem: string | undefined;
  /** Resolves once the first certificate is in SDS. */
  ready(): Promise<void>;
  /** A new key and certificate now (and the next renewal scheduled from it). */
  renew(): Promise<void>;
  /** Checks the trust bundle now; resolves with whether it changed. */
  refreshBundle(): Promise<boolean>;
  close(): void;
}

interface IssueResponse {
  spiffeId: string;
  serialNumber: string;
  notBefore: string;
  notAfter: string;
  certificateChain: string;
  trustBundle: string;
  trustBundleVersion: string;
}

const DEFAULT_BACKOFF = { minMs: 500, maxMs: 30_000 };
const DEFAULT_BUNDLE_REFRESH_MS = 30_000;
/** setTimeout's limit (about 24.8 days); a longer wait is taken in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;
const TIMEOUT_MS = 10_000;

export function startCertificateManager(options: CertificateManagerOptions): CertificateManager {
  const { log, sds } = options;
  const now = options.now ?? Date.now;
  const backoff = options.backoff ?? DEFAULT_BACKOFF;
  const auth = {
    ...(options.token !== undefined ? { token: options.token } : {}),
    ...(options.ca !== undefined ? { ca: options.ca } : {}),
  };
  let current: HeldCertificate | undefined;
  let issued = 0;
  let bundleVersion: string | undefined;
  let problem: string | undefined;
  let closed = false;
  let renewTimer: NodeJS.Timeout | undefined;
  let bundleTimer: NodeJS.Timeout | undefined;
  let resolveReady: () => void = () => {};
  const readyPromise = new Promise<void>((resolve) => {
    resolveReady = resolve;
  });

  const setBundle = (pem: string, version: string) => {
    if (version === bundleVersion) return false;
    sds.update({ trustBundle: pem });
    const changed = bundleVersion !== undefined;
    bundleVersion = version;
    if (changed)
      log(`certificates: trust bundle ${version} (${pem.match(/BEGIN CERTIFICATE/g)?.length ?? 0} roots)`);
    return true;
  };

  /** One CSR and its certificate; throws with the reason. */
  async function issueOnce(): Promise<void> {
    const key = await createWorkloadKey();
    const csr = await createCertificateRequest(key.keys);
    const response = await httpRequest(`${options.api}/v1/certificates`, {
      method: "POST",
      json: {
        csr,
        ...(options.validitySeconds !== undefined ? { validitySeconds: options.validitySeconds } : {}),
      },
      timeoutMs: TIMEOUT_MS,
      ...auth,
    });
    if (response.status !== 200) throw new Error(`POST /v1/certificates: ${failureOf(response)}`);
    const body = JSON.parse(response.text) as IssueResponse;
    const notBefore = new Date(body.notBefore);
    const notAfter = new Date(body.notAfter);
    const leaf = new X509Certificate(body.certificateChain);
    // The bundle first: a certificate of a new root must never reach Envoy before the root does.
    setBundle(body.trustBundle, body.trustBundleVersion);
    sds.update({ certificate: { certificateChain: body.certificateChain, privateKey: key.privateKeyPem } });
    const renewIn = renewalDelayMs({ notBefore, notAfter }, now());
    current = {
      spiffeId: body.spiffeId,
      serialNumber: body.serialNumber,
      notBefore,
      notAfter,
      renewAt: new Date(now() + renewIn),
      issuer: leaf.issuer.replaceAll("\n", ", "),
    };
    issued++;
    problem = undefined;
    log(
      `certificates: ${issued === 1 ? "got" : "renewed"} ${body.spiffeId} (serial ${body.serialNumber.slice(0, 16)}, valid until ${notAfter.toISOString()}; renewal at ${current.renewAt.toISOString()})`,
    );
    resolveReady();
    schedule(current.renewAt.getTime());
  }

  /** Renews at `at` (ms on the clock), in steps where setTimeout cannot wait that long. */
  function schedule(at: number): void {
    clearTimeout(renewTimer);
    if (closed) return;
    const wait = at - now();
    renewTimer = setTimeout(
      () => (wait > MAX_TIMER_MS ? schedule(at) : void renewLoop()),
      Math.max(0, Math.min(wait, MAX_TIMER_MS)),
    );
    renewTimer.unref();
  }

  /** Issues until it works (or the agent closes), with back-off; one loop at a time. */
  let running: Promise<void> | undefined;
  function renewLoop(): Promise<void> {
    running ??= (async () => {
      let delay = backoff.minMs;
      try {
        while (!closed) {
          try {
            await issueOnce();
            return;
          } catch (error) {
            problem = (error as Error).message;
            log(
              `certificates: cannot get a certificate (trying again in ${delay} ms${current ? `; the current one is valid until ${current.notAfter.toISOString()}` : ""}): ${problem}`,
            );
            await new Promise((resolve) => setTimeout(resolve, delay).unref());
            delay = Math.min(delay * 2, backoff.maxMs);
          }
        }
      } finally {
        running = undefined;
      }
    })();
    return running;
  }

  async function refreshBundle(): Promise<boolean> {
    let response: HttpResponse;
    try {
      response = await httpRequest(`${options.api}/v1/certificates/trust-bundle`, {
        timeoutMs: TIMEOUT_MS,
        ...(bundleVersion !== undefined ? { headers: { "if-none-match": `"${bundleVersion}"` } } : {}),
        ...auth,
      });
    } catch (error) {
      log(`certificates: cannot check the trust bundle: ${(error as Error).message}`);
      return false;
    }
    if (response.status === 304) return false;
    if (response.status !== 200) {
      log(`certificates: cannot check the trust bundle: ${failureOf(response)}`);
      return false;
    }
    const etag = response.headers.etag;
    const version = typeof etag === "string" ? etag.replace(/^(?:W\/)?"(.*)"$/, "$1") : undefined;
    if (version === undefined) {
      log("certificates: the trust bundle came without an ETag; ignored");
      return false;
    }
    return setBundle(response.text, version);
  }

  const pollBundle = () => {
    if (closed) return;
    bundleTimer = setTimeout(async () => {
      await refreshBundle();
      pollBundle();
    }, options.bundleRefreshMs ?? DEFAULT_BUNDLE_REFRESH_MS);
    bundleTimer.unref();
  };

  void renewLoop();
  pollBundle();

  return {
    get current() {
      return current;
    },
    get issued() {
      return issued;
    },
    get bundleVersion() {
      return bundleVersion;
    },
    get problem() {
      return problem;
    },
    ready: () => readyPromise,
    async renew() {
      if (running) await running;
      await renewLoop();
    },
    refreshBundle,
    close() {
      closed = true;
      clearTimeout(renewTimer);
      clearTimeout(bundleTimer);
    },
  };
}
