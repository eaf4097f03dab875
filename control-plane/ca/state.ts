// The CA's state as the store keeps it: one record of an internal kind (store/types.ts,
// INTERNAL_KIND_PREFIX), so the API never serves or accepts it, and writing it moves no mesh revision.
// It holds the trust domain, the id of the key-encryption key its private keys are sealed with, and
// the authorities (certificate, chain to their root, sealed private key, rotation status). Issued
// workload certificates are not kept: they are short-lived, and writing one per renewal would write
// the database for every sidecar twice a day for nothing to read back.
import { type Static, Type } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { schemaErrors } from "../../schema/filter-config.ts";
import { INTERNAL_KIND_PREFIX, type ResourceStore } from "../store/index.ts";
import { CaStateError } from "./errors.ts";

export const CA_KIND = `${INTERNAL_KIND_PREFIX}CertificateAuthority`;
export const CA_NAME = "mesh";
export const CA_API_VERSION = "internal.wasmesh.io/v1";

const strict = { additionalProperties: false } as const;

const StoredAuthority = Type.Object(
  {
    /** Lower-case hex SHA-256 of the signing certificate's DER. */
    id: Type.String({ pattern: "^[0-9a-f]{64}$" }),
    status: Type.Union([Type.Literal("active"), Type.Literal("next"), Type.Literal("retiring")]),
    retiredAt: Type.Optional(Type.String()),
    /** builtin: a root this CA generated; external: an operator's intermediate. */
    origin: Type.Union([Type.Literal("builtin"), Type.Literal("external")]),
    /** PEM of the certificate that signs workload certificates. */
    certificate: Type.String({ minLength: 1 }),
    /** PEMs of the certificates between it and its root, nearest first (none for a root). */
    chain: Type.Array(Type.String({ minLength: 1 })),
    /** PEM of the root it chains to (the certificate itself for a builtin root). */
    root: Type.String({ minLength: 1 }),
    /** Its PKCS#8 private key, sealed with the KEK (kek.ts). */
    key: Type.Object({ iv: Type.String(), data: Type.String() }, strict),
    createdAt: Type.String(),
  },
  strict,
);
export type StoredAuthority = Static<typeof StoredAuthority>;

const CaSpec = Type.Object(
  {
    trustDomain: Type.String({ minLength: 1 }),
    kekId: Type.String({ minLength: 1 }),
    authorities: Type.Array(StoredAuthority, { minItems: 1 }),
  },
  strict,
);
export type CaSpec = Static<typeof CaSpec>;

export interface StoredState {
  spec: CaSpec;
  /** The record's resourceVersion: the precondition of the next write. */
  version: string;
}

/** The stored state, checked, or undefined when this store has no CA yet. */
export async function readState(store: ResourceStore): Promise<StoredState | undefined> {
  const row = await store.get(CA_KIND, CA_NAME);
  if (row === undefined) return undefined;
  const errors = schemaErrors(CaSpec, row.spec);
  if (errors.length > 0 || !Value.Check(CaSpec, row.spec)) {
    const first = errors[0];
    throw new CaStateError(
      `the stored CA (${CA_KIND}/${CA_NAME}) is damaged: spec.${first?.path ?? "(root)"}: ${first?.message ?? "invalid"}`,
    );
  }
  return { spec: row.spec, version: row.metadata.resourceVersion };
}

/**
 * Writes the state if the stored record is still at `expected` (null: if there is none); returns the
 * new version. A ConflictError (another writer got there first) is rethrown as is, for the caller to
 * read the state again.
 */
export async function writeState(
  store: ResourceStore,
  spec: CaSpec,
  expected: string | null,
): Promise<string> {
  const result = await store.apply([
    {
      op: "put",
      resource: { apiVersion: CA_API_VERSION, kind: CA_KIND, metadata: { name: CA_NAME }, spec },
      expectedVersion: expected,
    },
  ]);
  const change = result.changes[0];
  if (change?.op !== "put") throw new Error("ca: the store did not report the CA's write");
  return change.resource.metadata.resourceVersion;
}
