// The mesh's certificate authority. openCertificateAuthority() loads it from the store, or creates it
// there (a generated root, or the operator's intermediate) the first time; issue() signs a workload
// certificate for the identity the caller is authenticated as, against a CSR whose key the workload
// keeps; trustBundle() is every root a sidecar must trust; addNext/promote/remove rotate the
// authorities (rotation.ts). The store's record is the source of truth, read again before every
// operation (cheap: one row), so that a rotation made elsewhere is seen; a write names the version it
// read, so two writers cannot both win.
import { createHash, webcrypto } from "node:crypto";
import { isIP } from "node:net";
import { ConflictError, type ResourceStore } from "../store/index.ts";
import { checkCertificateRequest } from "./csr.ts";
import { CaInputError, CaStateError } from "./errors.ts";
import { checkExternalAuthority, type ExternalAuthority, readExternalAuthority } from "./external.ts";
import { type Kek, KekError, type KekOptions, loadKek } from "./kek.ts";
import {
  type AuthorityStatus,
  checkAuthorities,
  type RotationStep,
  retiresAt,
  rotate,
  signerOf,
  trustedOf,
} from "./rotation.ts";
import { checkTrustDomain, DEFAULT_TRUST_DOMAIN, type WorkloadIdentity, workloadSpiffeId } from "./spiffe.ts";
import { CA_KIND, CA_NAME, type CaSpec, readState, type StoredAuthority, writeState } from "./state.ts";
import {
  fingerprint,
  generateP256,
  importSigningKey,
  type KeyKind,
  keyKind,
  parseCertificates,
  pemOf,
  publicKeyObject,
  randomSerial,
  signatureAlgorithm,
  x509,
} from "./x509.ts";

const DAY = 24 * 3600;
/** Workload certificates live a day unless configured otherwise, within 10 minutes and 30 days. */
export const DEFAULT_WORKLOAD_VALIDITY_SECONDS = DAY;
export const MIN_WORKLOAD_VALIDITY_SECONDS = 600;
export const MAX_WORKLOAD_VALIDITY_SECONDS = 30 * DAY;
/** A generated root lives ten years unless configured otherwise (at least a year, at most thirty). */
export const DEFAULT_ROOT_VALIDITY_SECONDS = 3652 * DAY;
const MIN_ROOT_VALIDITY_SECONDS = 365 * DAY;
const MAX_ROOT_VALIDITY_SECONDS = 30 * 365 * DAY;
/** Certificates start this long before they are signed, for peers whose clocks run behind. */
export const BACKDATE_SECONDS = 60;
/** The trust domain of a new CA, unless options.trustDomain says. */
export const TRUST_DOMAIN_ENV = "WASMESH_TRUST_DOMAIN";
/** A directory of an operator's intermediate (external.ts' files), unless options.external gives one. */
export const CA_DIR_ENV = "WASMESH_CA_DIR";

export interface CertificateAuthorityOptions {
  store: ResourceStore;
  /** Where <data>/ca-kek is (and is created for a new CA). */
  dataDir: string;
  /**
   * The mesh's trust domain (default $WASMESH_TRUST_DOMAIN, else wasmesh.local): set when the CA is
   * created, refused if it differs later.
   */
  trustDomain?: string;
  /** The key-encryption key: a file or the key itself; otherwise the environment, then <data>/ca-kek. */
  kek?: Pick<KekOptions, "file" | "key">;
  /** Read for WASMESH_CA_KEK_FILE, WASMESH_CA_KEK, WASMESH_CA_DIR and WASMESH_TRUST_DOMAIN (default process.env). */
  env?: Record<string, string | undefined>;
  /**
   * The operator's intermediate to sign with (external.ts; default the files of $WASMESH_CA_DIR, if
   * set). Taken when the CA is created; afterwards it must be one of the CA's authorities (to change
   * to another, rotate: addNext, then promote).
   */
  external?: ExternalAuthority;
  /** Lifetime of workload certificates (default a day; 600 s to 30 days). */
  workloadValiditySeconds?: number;
  /** Lifetime of a generated root (default ten years). */
  rootValiditySeconds?: number;
  /** The clock, in ms (default Date.now). */
  now?: () => number;
  log?: (line: string) => void;
}

export interface IssueRequest {
  /** PEM PKCS#10 request; only its key and signature are used. */
  csr: string;
  /** Who the caller is authenticated as: the certificate names exactly this. */
  identity: WorkloadIdentity;
  /** Shorter than the CA's workload validity if asked (at least 600 s). */
  validitySeconds?: number;
}

export interface ServerIssueRequest {
  /** PEM PKCS#10 request; only its key and signature are used. */
  csr: string;
  /** Host names and IP addresses the server is reached by; the first is its subject's CN. */
  names: readonly string[];
  validitySeconds?: number;
}

export interface IssuedCertificate {
  /** The identity in the certificate's only SAN, a URI. */
  spiffeId: string;
  /** Hex. */
  serialNumber: string;
  notBefore: Date;
  notAfter: Date;
  /** PEM of the workload certificate. */
  certificate: string;
  /** PEM of the intermediates between it and the root (empty when a root signs). */
  chain: string;
  /** certificate then chain: Envoy's tls_certificate.certificate_chain. */
  certificateChain: string;
  /** PEM of every root trusted: Envoy's validation_context.trusted_ca. */
  trustBundle: string;
  /** Id of the authority that signed it. */
  signer: string;
}

export interface TrustBundle {
  /** PEM of every root trusted now, the active authority's first. */
  pem: string;
  /** A digest of pem, to tell when it changed. */
  version: string;
}

export interface AuthorityInfo {
  id: string;
  status: AuthorityStatus;
  origin: "builtin" | "external";
  subject: string;
  issuer: string;
  notBefore: Date;
  notAfter: Date;
  /** Subject of the root it chains to. */
  root: string;
  /** When it stopped signing (retiring). */
  retiredAt?: Date;
  /** When every certificate it signed has expired (retiring): remove() without force from then on. */
  removableAt?: Date;
}

export interface CaStatus {
  trustDomain: string;
  /** Active first, then next, then retiring. */
  authorities: AuthorityInfo[];
}

export interface CertificateAuthority {
  readonly trustDomain: string;
  /** Whether this open created the CA (a new data directory). */
  readonly created: boolean;
  /** The SPIFFE ID a workload of this identity gets. */
  spiffeId(identity: WorkloadIdentity): string;
  issue(request: IssueRequest): Promise<IssuedCertificate>;
  /**
   * A TLS server certificate for the control plane's own ports (wasmesh server --tls): DNS and IP
   * SANs `names`, serverAuth only, no SPIFFE ID, signed like a workload's and as short-lived.
   */
  issueServer(request: ServerIssueRequest): Promise<Omit<IssuedCertificate, "spiffeId">>;
  trustBundle(): Promise<TrustBundle>;
  status(): Promise<CaStatus>;
  /** A new authority as next (trusted, not signing): a generated root, or the operator's intermediate. */
  addNext(source?: { external: ExternalAuthority }): Promise<CaStatus>;
  /** next signs from now on; the active one retires. */
  promote(): Promise<CaStatus>;
  /** Drops next, or retiring once its certificates have expired (or forced). `id`: full or 16 hex digits. */
  remove(id: string, options?: { force?: boolean }): Promise<CaStatus>;
}

/** An authority with its certificates decoded. */
interface Decoded {
  id: string;
  status: AuthorityStatus;
  stored: StoredAuthority;
  certificate: x509.X509Certificate;
  chain: x509.X509Certificate[];
  root: x509.X509Certificate;
  key: KeyKind;
}

interface Loaded {
  spec: CaSpec;
  version: string;
  authorities: Decoded[];
}

const short = (id: string) => id.slice(0, 16);

function checkSeconds(value: number, min: number, max: number, field: string): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new CaInputError(field, `must be a whole number of seconds within ${min}..${max} (got ${value})`);
  }
  return value;
}

/** What a sealed key is bound to: its trust domain and the certificate it belongs to. */
const keyContext = (trustDomain: string, id: string) => `wasmesh-ca ${trustDomain} authority ${id}`;

function decode(stored: StoredAuthority, index: number): Decoded {
  const field = (name: string) => `${CA_KIND}/${CA_NAME} spec.authorities[${index}].${name}`;
  try {
    const certificate = parseCertificates(
      stored.certificate,
      field("certificate"),
    )[0] as x509.X509Certificate;
    if (fingerprint(certificate) !== stored.id) {
      throw new CaStateError(`${field("id")} is not the certificate's SHA-256`);
    }
    return {
      id: stored.id,
      status: stored.status,
      stored,
      certificate,
      chain: stored.chain.flatMap((pem, i) => parseCertificates(pem, field(`chain[${i}]`))),
      root: parseCertificates(stored.root, field("root"))[0] as x509.X509Certificate,
      key: keyKind(publicKeyObject(certificate.publicKey), field("certificate")),
    };
  } catch (error) {
    if (error instanceof CaStateError) throw error;
    throw new CaStateError(`the stored CA is damaged: ${(error as Error).message}`, { cause: error });
  }
}

export async function openCertificateAuthority(
  options: CertificateAuthorityOptions,
): Promise<CertificateAuthority> {
  const { store } = options;
  const log = options.log ?? ((line: string) => console.log(line));
  const clock = options.now ?? Date.now;
  const workloadValidity = checkSeconds(
    options.workloadValiditySeconds ?? DEFAULT_WORKLOAD_VALIDITY_SECONDS,
    MIN_WORKLOAD_VALIDITY_SECONDS,
    MAX_WORKLOAD_VALIDITY_SECONDS,
    "workloadValiditySeconds",
  );
  const rootValidity = checkSeconds(
    options.rootValiditySeconds ?? DEFAULT_ROOT_VALIDITY_SECONDS,
    MIN_ROOT_VALIDITY_SECONDS,
    MAX_ROOT_VALIDITY_SECONDS,
    "rootValiditySeconds",
  );
  const rotationContext = () => ({ now: new Date(clock()), leafLifetimeMs: workloadValidity * 1000 });

  // Operators of `wasmesh server` set these by environment (CA_DIR_ENV, TRUST_DOMAIN_ENV); options win.
  const env = options.env ?? process.env;
  const asked = options.trustDomain ?? (env[TRUST_DOMAIN_ENV] || undefined);
  const external =
    options.external ?? (env[CA_DIR_ENV] ? readExternalAuthority(env[CA_DIR_ENV] as string) : undefined);

  const existing = await readState(store);
  const trustDomain =
    existing?.spec.trustDomain ??
    checkTrustDomain(
      asked ?? DEFAULT_TRUST_DOMAIN,
      options.trustDomain === undefined && asked ? TRUST_DOMAIN_ENV : "trustDomain",
    );
  if (existing !== undefined && asked !== undefined && asked !== trustDomain) {
    throw new CaStateError(
      `this mesh's CA was created for trust domain ${JSON.stringify(trustDomain)}, not ${JSON.stringify(asked)}: every workload identity names it, so it does not change (start with the stored one, or a new data directory)`,
    );
  }
  const kek: Kek = loadKek({
    dataDir: options.dataDir,
    ...options.kek,
    env,
    // Keys already sealed need the key they were sealed with: a new one would never open them.
    create: existing === undefined,
    warn: log,
  });
  if (existing !== undefined && existing.spec.kekId !== kek.id) {
    throw new KekError(
      `the CA's private keys in the database were sealed with key-encryption key ${existing.spec.kekId}, but ${kek.source} holds key ${kek.id}: not the key they need (a database copied without its ca-kek, or another directory's key)`,
    );
  }

  /** Decrypted signing keys by authority id (never extractable again). */
  const signingKeys = new Map<string, Promise<CryptoKey>>();
  let cached: Loaded | undefined;

  function load(spec: CaSpec, version: string): Loaded {
    if (cached?.version === version) return cached;
    try {
      checkAuthorities(spec.authorities);
    } catch (error) {
      throw new CaStateError(`the stored CA is damaged: ${(error as Error).message}`);
    }
    cached = { spec, version, authorities: spec.authorities.map(decode) };
    return cached;
  }

  async function current(): Promise<Loaded> {
    const state = await readState(store);
    if (state === undefined)
      throw new CaStateError(`the CA's record (${CA_KIND}/${CA_NAME}) is gone from the store`);
    if (state.spec.kekId !== kek.id) {
      throw new KekError(
        `the CA's private keys were sealed again under key ${state.spec.kekId}; this process holds ${kek.id}`,
      );
    }
    return load(state.spec, state.version);
  }

  function signingKey(authority: Decoded): Promise<CryptoKey> {
    let key = signingKeys.get(authority.stored.id);
    if (key === undefined) {
      const pkcs8 = kek.open(authority.stored.key, keyContext(trustDomain, authority.stored.id));
      key = importSigningKey(pkcs8, authority.key);
      signingKeys.set(authority.stored.id, key);
    }
    return key;
  }

  /** A new root of this trust domain, with its key sealed. */
  async function generateRoot(status: AuthorityStatus): Promise<StoredAuthority> {
    const now = clock();
    const keys = await generateP256();
    const day = new Date(now).toISOString().slice(0, 10);
    const certificate = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: randomSerial(),
      // A name of its own per root: a bundle holding the old and the new root during a rotation must
      // not leave verifiers to tell them apart by key identifiers alone.
      name: `CN=wasmesh root ${day} ${randomSerial().slice(0, 8)}, O=${trustDomain}`,
      notBefore: new Date(now - BACKDATE_SECONDS * 1000),
      notAfter: new Date(now + rootValidity * 1000),
      signingAlgorithm: signatureAlgorithm({ type: "ec", curve: "P-256" }),
      keys,
      extensions: [
        // pathlen 0: it signs workload certificates only, never another CA.
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    const pkcs8 = new Uint8Array(await webcrypto.subtle.exportKey("pkcs8", keys.privateKey));
    const id = fingerprint(certificate);
    const pem = pemOf([certificate]);
    return {
      id,
      status,
      origin: "builtin",
      certificate: pem,
      chain: [],
      root: pem,
      key: kek.seal(pkcs8, keyContext(trustDomain, id)),
      createdAt: new Date(now).toISOString(),
    };
  }

  function externalAuthority(external: ExternalAuthority, status: AuthorityStatus): StoredAuthority {
    const checked = checkExternalAuthority(external, new Date(clock()));
    const id = fingerprint(checked.certificate);
    return {
      id,
      status,
      origin: "external",
      certificate: pemOf([checked.certificate]),
      chain: checked.chain.map((c) => pemOf([c])),
      root: pemOf([checked.root]),
      key: kek.seal(checked.pkcs8, keyContext(trustDomain, id)),
      createdAt: new Date(clock()).toISOString(),
    };
  }

  let created = false;
  if (existing === undefined) {
    const first = external ? externalAuthority(external, "active") : await generateRoot("active");
    try {
      await writeState(store, { trustDomain, kekId: kek.id, authorities: [first] }, null);
      created = true;
      log(
        `wasmesh: created the mesh CA (trust domain ${trustDomain}, ${first.origin === "builtin" ? "generated root" : "operator intermediate"} ${short(first.id)}); its key is sealed with ${kek.source}`,
      );
    } catch (error) {
      // Another process created it meanwhile: theirs stands, and must open with the same key.
      if (!(error instanceof ConflictError)) throw error;
    }
  }
  const opened = await current();
  // Fails now, not at the first CSR, if the signing key cannot be opened.
  await signingKey(signerOf(opened.authorities));
  if (external && !created) {
    const id = fingerprint(checkExternalAuthority(external, new Date(clock())).certificate);
    const held = opened.authorities.find((a) => a.stored.id === id);
    if (held === undefined) {
      throw new CaStateError(
        `the operator intermediate given (${short(id)}) is not one of this CA's authorities (active: ${short(signerOf(opened.authorities).stored.id)}): to sign with it, add it as the next authority and promote it`,
      );
    }
  }

  function bundleOf(loaded: Loaded): x509.X509Certificate[] {
    const roots: x509.X509Certificate[] = [];
    const seen = new Set<string>();
    for (const authority of trustedOf(loaded.authorities)) {
      const id = fingerprint(authority.root);
      if (!seen.has(id)) {
        seen.add(id);
        roots.push(authority.root);
      }
    }
    return roots;
  }

  function statusOf(loaded: Loaded): CaStatus {
    const context = rotationContext();
    return {
      trustDomain,
      authorities: trustedOf(loaded.authorities).map((a) => {
        const removableAt = retiresAt(a.stored, context);
        return {
          id: a.stored.id,
          status: a.stored.status,
          origin: a.stored.origin,
          subject: a.certificate.subject,
          issuer: a.certificate.issuer,
          notBefore: a.certificate.notBefore,
          notAfter: a.certificate.notAfter,
          root: a.root.subject,
          ...(a.stored.retiredAt ? { retiredAt: new Date(a.stored.retiredAt) } : {}),
          ...(removableAt ? { removableAt } : {}),
        };
      }),
    };
  }

  // Rotations in this process one at a time; against other processes, the store's version check.
  let mutating: Promise<unknown> = Promise.resolve();
  function mutate(step: (loaded: Loaded) => Promise<RotationStep<StoredAuthority>>): Promise<CaStatus> {
    const run = mutating.then(async () => {
      const loaded = await current();
      const next = rotate(loaded.spec.authorities, await step(loaded), rotationContext());
      try {
        await writeState(store, { ...loaded.spec, authorities: next }, loaded.version);
      } catch (error) {
        if (error instanceof ConflictError) {
          throw new CaStateError(
            "the CA was changed by another writer meanwhile: nothing was changed, try again",
          );
        }
        throw error;
      }
      return statusOf(await current());
    });
    mutating = run.catch(() => undefined);
    return run;
  }

  /** Signs the CSR's key for `names` with the active authority, for at most `validitySeconds`. */
  async function sign(
    csrPem: string,
    validitySeconds: number | undefined,
    what: { names: x509.JsonGeneralName[]; subject: string; usages: string[] },
  ): Promise<IssuedCertificate> {
    const validity = checkSeconds(
      validitySeconds ?? workloadValidity,
      MIN_WORKLOAD_VALIDITY_SECONDS,
      workloadValidity,
      "validitySeconds",
    );
    const csr = await checkCertificateRequest(csrPem);
    const loaded = await current();
    const signer = signerOf(loaded.authorities);
    const key = await signingKey(signer);
    const now = clock();
    // Never outlive the authority, its chain or its root: a certificate past its issuer's end fails.
    const limit = Math.min(
      ...[signer.certificate, ...signer.chain, signer.root].map((c) => c.notAfter.getTime()),
    );
    const notAfter = Math.min(now + validity * 1000, limit);
    if (notAfter - now < MIN_WORKLOAD_VALIDITY_SECONDS * 1000) {
      throw new CaStateError(
        `the signing authority ${short(signer.stored.id)} (or its chain) expires at ${new Date(limit).toISOString()}: add a new authority and promote it`,
      );
    }
    const notBefore = Math.max(now - BACKDATE_SECONDS * 1000, signer.certificate.notBefore.getTime());
    const ski = signer.certificate.getExtension(x509.SubjectKeyIdentifierExtension);
    const leaf = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject: what.subject,
      issuer: signer.certificate.subjectName,
      notBefore: new Date(notBefore),
      notAfter: new Date(notAfter),
      signingAlgorithm: signatureAlgorithm(signer.key),
      publicKey: csr.publicKey,
      signingKey: key,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(
          x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
          true,
        ),
        new x509.ExtendedKeyUsageExtension(what.usages),
        new x509.SubjectAlternativeNameExtension(what.names, what.subject === ""),
        await x509.SubjectKeyIdentifierExtension.create(csr.publicKey),
        // The issuer's own key identifier, as it states it: verifiers match the two.
        ...(ski ? [new x509.AuthorityKeyIdentifierExtension(ski.keyId)] : []),
      ],
    });
    const certificate = pemOf([leaf]);
    // A root signs alone; an intermediate is presented with the certificates above it, up to the root.
    const chain = pemOf(signer.stored.origin === "builtin" ? [] : [signer.certificate, ...signer.chain]);
    return {
      spiffeId: "",
      serialNumber: leaf.serialNumber,
      notBefore: leaf.notBefore,
      notAfter: leaf.notAfter,
      certificate,
      chain,
      certificateChain: certificate + chain,
      trustBundle: pemOf(bundleOf(loaded)),
      signer: signer.stored.id,
    };
  }

  return {
    trustDomain,
    created,
    spiffeId: (identity) => workloadSpiffeId(trustDomain, identity),

    async issue(request) {
      const spiffeId = workloadSpiffeId(trustDomain, request.identity);
      const issued = await sign(request.csr, request.validitySeconds, {
        names: [{ type: "url", value: spiffeId }],
        // No subject: the identity is the URI SAN alone (so the SAN is critical, RFC 5280 §4.2.1.6).
        subject: "",
        usages: [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth],
      });
      return { ...issued, spiffeId };
    },

    async issueServer(request) {
      if (request.names.length === 0) throw new CaInputError("names", "a server certificate names a host");
      const names = request.names.map((name): x509.JsonGeneralName => {
        if (isIP(name) !== 0) return { type: "ip", value: name };
        if (!/^[A-Za-z0-9*](?:[-A-Za-z0-9.]{0,251}[A-Za-z0-9])?$/.test(name)) {
          throw new CaInputError("names", `'${name}' is neither a host name nor an IP address`);
        }
        return { type: "dns", value: name };
      });
      const { spiffeId: _, ...issued } = await sign(request.csr, request.validitySeconds, {
        names,
        subject: `CN=${request.names[0]}`,
        usages: [x509.ExtendedKeyUsage.serverAuth],
      });
      return issued;
    },

    async trustBundle() {
      const pem = pemOf(bundleOf(await current()));
      return { pem, version: createHash("sha256").update(pem).digest("hex").slice(0, 16) };
    },

    async status() {
      return statusOf(await current());
    },

    addNext(source) {
      return mutate(async () => ({
        op: "add-next",
        authority: source ? externalAuthority(source.external, "next") : await generateRoot("next"),
      }));
    },

    promote() {
      return mutate(async () => ({ op: "promote" }));
    },

    remove(id, removeOptions = {}) {
      return mutate(async () => ({ op: "remove", id, force: removeOptions.force === true }));
    },
  };
}
