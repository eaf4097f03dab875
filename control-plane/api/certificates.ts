// Workload certificates (issue 11, §1): POST /v1/certificates signs a data-plane agent's CSR for the
// identity its token proves (a dataplane token names its service: the certificate names exactly
// that service's SPIFFE ID, whatever the CSR asks for), and GET /v1/certificates/trust-bundle serves
// the mesh's roots with their version as ETag, which agents poll so that a CA rotation's next root
// reaches every sidecar before it signs anything. The private key never comes here: the agent makes
// it, keeps it and serves it to its Envoy over SDS.
//
// The body is JSON ({ csr, validitySeconds? }) rather than the bare PEM: one schema the OpenAPI
// document and the API's error shape describe like every other body, and room for the lifetime.
import { Type } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import type { Context, MiddlewareHandler } from "hono";
import { Hono } from "hono";
import { describeRoute } from "hono-openapi";
import {
  CaInputError,
  CaStateError,
  type CertificateAuthority,
  MAX_CSR_BYTES,
  MAX_WORKLOAD_VALIDITY_SECONDS,
  MIN_WORKLOAD_VALIDITY_SECONDS,
  universalIdentity,
  type WorkloadIdentity,
} from "../ca/index.ts";
import { ServiceName } from "../resources/index.ts";
import { forbidden } from "./auth.ts";
import { accepts, decodeText, JSON_TYPES, limit, parseJson } from "./body.ts";
import { noneMatchHits } from "./edge.ts";
import { ApiError, badRequest, invalid } from "./errors.ts";
import { clientOf } from "./modules.ts";

import { component, errorResponse, json, queryParam } from "./openapi.ts";

/** Who a request is, as far as certificates care (the API's Principal has this shape). */
export interface CertificateCaller {
  tokenId: string;
  role: string;
  /** The service a dataplane token is bound to. */
  service?: string;
  /** A dataplane caller's own identity (a Kubernetes pod's service account): its certificates name it. */
  identity?: WorkloadIdentity;
}

export interface CertificateDeps {
  /** Absent: the routes answer 503 (a control plane without its CA). */
  ca: CertificateAuthority | undefined;
  /** Who the request is (the authentication in front of the routes says). */
  caller: (c: Context) => CertificateCaller;
  /** Put in front of each route (the marker that lets dataplane tokens call it). */
  guards?: MiddlewareHandler[];
  /** Told of each agent's answered trust-bundle check: who (token id, address) holds which version now. */
  onBundleCheck?: (agent: string, version: string) => void;
}

/**
 * The service a caller may get a certificate for: a dataplane token's own (`?service=` may only
 * repeat it), for an admin the one `?service=` names; nobody else's.
 */
export function certificateService(caller: CertificateCaller, asked: string | undefined): string {
  if (asked !== undefined && !Value.Check(ServiceName, asked)) {
    throw badRequest(`service: '${asked}' is not a service name`, [
      { path: "service", message: ServiceName.description ?? "not a service name" },
    ]);
  }
  if (caller.role === "dataplane" && caller.service !== undefined) {
    if (asked !== undefined && asked !== caller.service) {
      throw forbidden(
        `token ${caller.tokenId} is a dataplane token of service '${caller.service}': it gets that service's certificates only, not '${asked}'`,
      );
    }
    return caller.service;
  }
  if (caller.role === "admin") {
    if (asked === undefined) {
      throw badRequest("an admin token names the service to issue for: ?service=NAME", [
        { path: "service", message: "is required with an admin token" },
      ]);
    }
    return asked;
  }
  throw forbidden(
    `token ${caller.tokenId} (${caller.role}) cannot get certificates: a data-plane agent's token or an admin token can`,
  );
}

export const CertificateRequest = component(
  "CertificateRequest",
  Type.Object(
    {
      csr: Type.String({
        maxLength: MAX_CSR_BYTES,
        description:
          "PEM PKCS#10 request (EC P-256/P-384 or RSA 2048-8192); only its key and signature are used",
      }),
      validitySeconds: Type.Optional(
        Type.Integer({
          minimum: MIN_WORKLOAD_VALIDITY_SECONDS,
          maximum: MAX_WORKLOAD_VALIDITY_SECONDS,
          description: "a shorter lifetime than the CA's workload validity (which also caps it)",
        }),
      ),
    },
    { additionalProperties: false },
  ),
);

export const IssuedCertificate = component(
  "IssuedCertificate",
  Type.Object({
    spiffeId: Type.String({ description: "the certificate's only SAN, a URI" }),
    serialNumber: Type.String(),
    notBefore: Type.String({ format: "date-time" }),
    notAfter: Type.String({ format: "date-time" }),
    certificateChain: Type.String({
      description: "PEM: the certificate, then the intermediates up to a root",
    }),
    trustBundle: Type.String({ description: "PEM: every root a sidecar must trust now" }),
    trustBundleVersion: Type.String({ description: "the trust bundle's version (its ETag, unquoted)" }),
  }),
);

const unavailable = (message: string) => new ApiError(503, "unavailable", message);
const BODY_LIMIT = MAX_CSR_BYTES + 4096;

export function certificateRoutes(deps: CertificateDeps): Hono {
  const router = new Hono();
  const guards = deps.guards ?? [];
  const ca = (): CertificateAuthority => {
    if (deps.ca === undefined) throw unavailable("this control plane has no CA: it issues no certificates");
    return deps.ca;
  };

  router.post(
    "/",
    describeRoute({
      operationId: "issueCertificate",
      summary: "Sign a workload's CSR for the identity the caller is authenticated as",
      description:
        "The certificate names the SPIFFE ID of the caller's service (a dataplane token's; an admin names it " +
        "with ?service=), spiffe://<trust-domain>/ns/default/sa/<service>, or on Kubernetes the pod's " +
        "spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>, whatever the CSR asks for: its key " +
        "and signature are all that is used. Short-lived (24 h unless configured otherwise); the data-plane " +
        "agent renews at about half its life.",
      tags: ["certificates"],
      parameters: [
        queryParam(
          "service",
          ServiceName,
          "the service to issue for: a dataplane token's own (the default), any for an admin",
        ),
      ],
      requestBody: { required: true, content: json(CertificateRequest) },
      responses: {
        "200": {
          description: "the certificate, its chain and the trust bundle",
          content: json(IssuedCertificate),
        },
        "400": errorResponse(
          "the CSR or a field is refused (details name csr, csr.publicKey, csr.signature...)",
        ),
        "503": errorResponse("the CA cannot sign now (none, or its signing authority expires): the reason"),
      },
    }),
    ...guards,
    accepts(JSON_TYPES),
    limit(BODY_LIMIT),
    async (c) => {
      const caller = deps.caller(c);
      const service = certificateService(caller, c.req.query("service"));
      const authority = ca();
      const body = parseJson(decodeText(await c.req.arrayBuffer()));
      if (!Value.Check(CertificateRequest, body)) {
        throw invalid(
          "the body is not a certificate request",
          [...Value.Errors(CertificateRequest, body)].map((e) => ({
            path: e.path.split("/").slice(1).join(".") || "(root)",
            message: e.message,
          })),
        );
      }
      let issued: Awaited<ReturnType<CertificateAuthority["issue"]>>;
      try {
        issued = await authority.issue({
          csr: body.csr,
          // On Kubernetes the agent's token proves its pod's service account, which is the identity
          // (not the service); elsewhere the service's universal one.
          identity:
            caller.role === "dataplane" && caller.identity !== undefined
              ? caller.identity
              : universalIdentity(service),
          ...(body.validitySeconds !== undefined ? { validitySeconds: body.validitySeconds } : {}),
        });
      } catch (error) {
        if (error instanceof CaInputError) {
          const message = error.message.startsWith(`${error.field}: `)
            ? error.message.slice(error.field.length + 2)
            : error.message;
          throw badRequest(`the certificate request is refused: ${error.message}`, [
            { path: error.field, message },
          ]);
        }
        if (error instanceof CaStateError) throw unavailable(error.message);
        throw error;
      }
      const bundle = await authority.trustBundle();
      return c.json({
        spiffeId: issued.spiffeId,
        serialNumber: issued.serialNumber,
        notBefore: issued.notBefore.toISOString(),
        notAfter: issued.notAfter.toISOString(),
        certificateChain: issued.certificateChain,
        // The bundle of the same read as the version: the one the CA signed with is in it.
        trustBundle: bundle.pem,
        trustBundleVersion: bundle.version,
      });
    },
  );

  router.get(
    "/trust-bundle",
    describeRoute({
      operationId: "getTrustBundle",
      summary: "The mesh's trust bundle: every root sidecars must trust now (PEM)",
      description:
        "The signing authority's root first, then the next one of a rotation (trusted before it signs) and a " +
        "retiring one (trusted while certificates it signed live). ETag is its version: data-plane agents " +
        "poll with If-None-Match and get a bodiless 304 while it is current.",
      tags: ["certificates"],
      parameters: [
        {
          name: "If-None-Match",
          in: "header",
          required: false,
          description: "The ETag of the bundle the caller holds: 304 while it is current",
          schema: { type: "string" },
        },
      ],
      responses: {
        "200": {
          description: "the trust bundle; ETag is its version, quoted",
          headers: { ETag: { description: '"<version>"', schema: { type: "string" } } },
          content: { "application/x-pem-file": { schema: { type: "string" } } },
        },
        "304": { description: "If-None-Match names the current version; no body" },
        "503": errorResponse("this control plane has no CA"),
      },
    }),
    ...guards,
    async (c) => {
      const bundle = await ca().trustBundle();
      // Agents (dataplane tokens) only: an operator's look is no sidecar holding the bundle.
      const caller = deps.caller(c);
      if (caller.role === "dataplane")
        deps.onBundleCheck?.(`${caller.tokenId} ${clientOf(c)}`, bundle.version);
      const headers = { ETag: `"${bundle.version}"`, "Cache-Control": "no-cache" };
      if (noneMatchHits(c.req.header("if-none-match"), headers.ETag)) return c.body(null, 304, headers);
      return c.body(bundle.pem, 200, { ...headers, "Content-Type": "application/x-pem-file" });
    },
  );

  return router;
}
