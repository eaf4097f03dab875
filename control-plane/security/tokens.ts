// API tokens: bearer secrets with a role, kept in the resource store as an internal kind (no part of
// the mesh: writing one moves no revision and pushes nothing; store/types.ts). A token is `wsm_`
// and 32 random bytes in base64url; the store keeps only its sha256, under an id made of the
// hash's first 16 hex digits, so that a presented token is looked up by one get() and never by
// scanning. What the secret was is known only to whoever it was printed for, once.
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { Value } from "@sinclair/typebox/value";
import type { WorkloadIdentity } from "../ca/spiffe.ts";
import { ServiceName } from "../resources/index.ts";
import { INTERNAL_KIND_PREFIX, type ResourceStore, type StoredResource } from "../store/index.ts";

/** The store kind of a token record. */
export const TOKEN_KIND = `${INTERNAL_KIND_PREFIX}ApiToken`;
export const TOKEN_PREFIX = "wsm_";

/**
 * admin: everything. read-only: reads (GET) of everything but tokens. dataplane: what the agent of
 * one service needs: its service's Workloads (register, renew, delete), module bytes, and its
 * service's workload certificates (POST /v1/certificates).
 */
export const ROLES = ["admin", "read-only", "dataplane"] as const;
export type Role = (typeof ROLES)[number];

/** Who a request (or an ADS stream) is: what its token proves. */
export interface Principal {
  tokenId: string;
  role: Role;
  /** The service a dataplane token is bound to. */
  service?: string;
  name?: string;
  /**
   * The workload's identity for mTLS when it is not its service's universal one: on Kubernetes, the
   * namespace and service account a pod's service-account token proves (kubernetes/token-review.ts),
   * which its certificates name. wasmesh's own tokens carry none.
   */
  identity?: WorkloadIdentity;
}

/** A token as listed: never its secret, nor its hash. */
export interface TokenInfo {
  id: string;
  role: Role;
  service?: string;
  name?: string;
  createdAt: string;
  expiresAt?: string;
  revoked: boolean;
  revokedAt?: string;
}

export interface TokenRequest {
  role: Role;
  /** Required for (and only for) a dataplane token. */
  service?: string;
  /** A label for people: what or who the token is for. */
  name?: string;
  /** Lifetime; none: until revoked. */
  ttlSeconds?: number;
}

/** Bounds of TokenRequest.ttlSeconds: a minute to ten years. */
export const TTL_SECONDS = { minimum: 60, maximum: 10 * 365 * 24 * 3600 };
export const MAX_TOKEN_NAME = 100;

export type Verdict = { ok: true; principal: Principal } | { ok: false; reason: string };

export interface Tokens {
  /** Creates a token; `secret` is the only copy of it there will ever be. */
  issue(request: TokenRequest): Promise<{ token: TokenInfo; secret: string }>;
  list(): Promise<TokenInfo[]>;
  get(id: string): Promise<TokenInfo | undefined>;
  /** Marks it revoked (kept, so that lists say so); undefined when there is no such token. */
  revoke(id: string): Promise<TokenInfo | undefined>;
  /** Who a presented secret is; the reason otherwise (never echoing the secret). */
  verify(secret: string): Promise<Verdict>;
}

/** A token request that cannot be issued: the field and why. */
export class TokenRequestError extends Error {
  readonly path: string;
  readonly reason: string;
  constructor(path: string, reason: string) {
    super(`${path}: ${reason}`);
    this.name = "TokenRequestError";
    this.path = path;
    this.reason = reason;
  }
}

interface TokenSpec {
  role: Role;
  service?: string;
  name?: string;
  /** sha256 of the whole token, hex. */
  sha256: string;
  expiresAt?: string;
  revokedAt?: string;
}

const SECRET = /^wsm_[A-Za-z0-9_-]{43}$/;
const ID = /^[0-9a-f]{16}$/;

const sha256 = (text: string) => createHash("sha256").update(text).digest();

/** The id of a token: the first 16 hex digits of its sha256 (64 bits: ids never collide in practice). */
export const tokenIdOf = (secret: string) => sha256(secret).toString("hex").slice(0, 16);

/** A token's form, for callers that want to tell a token from other text (e.g. to redact it). */
export const looksLikeToken = (text: string) => SECRET.test(text);

function check(request: TokenRequest): void {
  if (!ROLES.includes(request.role))
    throw new TokenRequestError(
      "role",
      `must be one of ${ROLES.join(", ")} (got ${JSON.stringify(request.role)})`,
    );
  if (request.role === "dataplane") {
    if (request.service === undefined)
      throw new TokenRequestError("service", "a dataplane token is bound to a service: name it");
    if (!Value.Check(ServiceName, request.service))
      throw new TokenRequestError(
        "service",
        `${JSON.stringify(request.service)} is not a service name (${ServiceName.description})`,
      );
  } else if (request.service !== undefined) {
    throw new TokenRequestError(
      "service",
      `only dataplane tokens are bound to a service (this one is ${request.role})`,
    );
  }
  if (
    request.name !== undefined &&
    (request.name.length === 0 || request.name.length > MAX_TOKEN_NAME || /[\p{Cc}]/u.test(request.name))
  )
    throw new TokenRequestError("name", `1 to ${MAX_TOKEN_NAME} characters, no control characters`);
  const ttl = request.ttlSeconds;
  if (ttl !== undefined && (!Number.isInteger(ttl) || ttl < TTL_SECONDS.minimum || ttl > TTL_SECONDS.maximum))
    throw new TokenRequestError(
      "ttlSeconds",
      `a whole number of seconds from ${TTL_SECONDS.minimum} to ${TTL_SECONDS.maximum} (ten years), got ${ttl}`,
    );
}

function infoOf(stored: StoredResource): TokenInfo {
  const spec = stored.spec as TokenSpec;
  return {
    id: stored.metadata.name,
    role: spec.role,
    ...(spec.service !== undefined ? { service: spec.service } : {}),
    ...(spec.name !== undefined ? { name: spec.name } : {}),
    createdAt: stored.metadata.createdAt,
    ...(spec.expiresAt !== undefined ? { expiresAt: spec.expiresAt } : {}),
    revoked: spec.revokedAt !== undefined,
    ...(spec.revokedAt !== undefined ? { revokedAt: spec.revokedAt } : {}),
  };
}

const record = (id: string, spec: TokenSpec) => ({
  apiVersion: "wasmesh.io/v1alpha1",
  kind: TOKEN_KIND,
  metadata: { name: id },
  spec,
});

export function createTokens(store: ResourceStore, now: () => Date = () => new Date()): Tokens {
  return {
    async issue(request) {
      check(request);
      const createdAt = now();
      const spec = {
        role: request.role,
        ...(request.service !== undefined ? { service: request.service } : {}),
        ...(request.name !== undefined ? { name: request.name } : {}),
        ...(request.ttlSeconds !== undefined
          ? { expiresAt: new Date(createdAt.getTime() + request.ttlSeconds * 1000).toISOString() }
          : {}),
      };
      const secret = `${TOKEN_PREFIX}${randomBytes(32).toString("base64url")}`;
      const hash = sha256(secret).toString("hex");
      // Create-only: an id taken (2^-64) is a ConflictError rather than a token replaced.
      const { changes } = await store.apply([
        { op: "put", resource: record(hash.slice(0, 16), { ...spec, sha256: hash }), expectedVersion: null },
      ]);
      const change = changes[0];
      if (change?.op !== "put") throw new Error("tokens: a put returned no record");
      return { token: infoOf(change.resource), secret };
    },

    async list() {
      return (await store.list(TOKEN_KIND)).map(infoOf);
    },

    async get(id) {
      if (!ID.test(id)) return undefined;
      const stored = await store.get(TOKEN_KIND, id);
      return stored && infoOf(stored);
    },

    async revoke(id) {
      if (!ID.test(id)) return undefined;
      const stored = await store.get(TOKEN_KIND, id);
      if (!stored) return undefined;
      const spec = stored.spec as TokenSpec;
      if (spec.revokedAt !== undefined) return infoOf(stored);
      const { changes } = await store.apply([
        {
          op: "put",
          resource: record(id, { ...spec, revokedAt: now().toISOString() }),
          expectedVersion: stored.metadata.resourceVersion,
        },
      ]);
      const change = changes[0];
      if (change?.op !== "put") throw new Error("tokens: a put returned no record");
      return infoOf(change.resource);
    },

    async verify(secret) {
      if (!SECRET.test(secret))
        return {
          ok: false,
          reason: `not a wasmesh token (they are ${TOKEN_PREFIX} and 43 base64url characters)`,
        };
      const hash = sha256(secret);
      const id = hash.toString("hex").slice(0, 16);
      const stored = await store.get(TOKEN_KIND, id);
      const spec = stored?.spec as TokenSpec | undefined;
      if (!spec || !timingSafeEqual(Buffer.from(spec.sha256, "hex"), hash))
        return {
          ok: false,
          reason: "no such token (it was never issued here, or deleted with its data directory)",
        };
      if (spec.revokedAt !== undefined)
        return { ok: false, reason: `token ${id} was revoked at ${spec.revokedAt}` };
      if (spec.expiresAt !== undefined && Date.parse(spec.expiresAt) <= now().getTime())
        return { ok: false, reason: `token ${id} expired at ${spec.expiresAt}` };
      return {
        ok: true,
        principal: {
          tokenId: id,
          role: spec.role,
          ...(spec.service !== undefined ? { service: spec.service } : {}),
          ...(spec.name !== undefined ? { name: spec.name } : {}),
        },
      };
    },
  };
}
