// /v1/ca: the mesh CA's state and its rotation, for operators (admin tokens only, auth.ts). GET
// lists the authorities (the roots, or an operator's intermediates) with their rotation status and
// never a private key; POST /v1/ca/rotation takes one step of ca/rotation.ts's state machine, a
// step the CA refuses now being a 409 with its reason.
//
// Before promoting, every sidecar must trust the next root. Agents poll the trust bundle (30 s by
// default, dataplane/certificates.ts), and a poll that gets its answer holds the current version, so
// the bundle route records who polled when (bundleTracker): GET /v1/ca says how many agents checked
// the current bundle recently and how many were last seen holding an older one. In memory only: a
// restarted control plane knows of each agent again after its next poll.
import { type Static, Type } from "@sinclair/typebox";
import { Hono } from "hono";
import { describeRoute } from "hono-openapi";
import { schemaErrors } from "../../schema/filter-config.ts";
import {
  CaInputError,
  CaStateError,
  type CaStatus,
  type CertificateAuthority,
  RotationError,
} from "../ca/index.ts";
import { accepts, decodeText, JSON_TYPES, limit, parseJson } from "./body.ts";
import { ApiError, badRequest, fieldDetails, invalid } from "./errors.ts";
import { component, errorResponse, json } from "./openapi.ts";

/** How long after its last poll an agent still counts (a little over two polls of 30 s). */
export const AGENT_WINDOW_MS = 75_000;

/** Who polled the trust bundle and which version they hold since. */
export interface BundleTracker {
  /** An agent (token id and address) got an answer for `version`: it holds it now. */
  record(agent: string, version: string): void;
  /** Agents seen within the window: holding `current`, holding another version. */
  summary(current: string): { current: number; stale: number };
}

export function createBundleTracker(now: () => number = Date.now, windowMs = AGENT_WINDOW_MS): BundleTracker {
  const seen = new Map<string, { version: string; at: number }>();
  return {
    record(agent, version) {
      seen.set(agent, { version, at: now() });
    },
    summary(current) {
      const since = now() - windowMs;
      let held = 0;
      let stale = 0;
      for (const [agent, entry] of seen) {
        if (entry.at < since) seen.delete(agent);
        else if (entry.version === current) held++;
        else stale++;
      }
      return { current: held, stale };
    },
  };
}

const date = Type.String({ format: "date-time" });
const Authority = Type.Object({
  id: Type.String({
    description: "the SHA-256 of its certificate (DER), hex; 16 digits are enough to name it",
  }),
  fingerprint: Type.String({ description: "the same SHA-256 as openssl prints it (AB:CD:...)" }),
  status: Type.Union([Type.Literal("active"), Type.Literal("next"), Type.Literal("retiring")], {
    description:
      "active signs; next is trusted but signs nothing yet; retiring is trusted while its certificates live",
  }),
  origin: Type.Union([Type.Literal("builtin"), Type.Literal("external")], {
    description: "builtin: a root the CA generated; external: an operator's intermediate",
  }),
  subject: Type.String(),
  issuer: Type.String(),
  root: Type.String({ description: "the subject of the root it chains to" }),
  notBefore: date,
  notAfter: date,
  retiredAt: Type.Optional({ ...date, description: "when it stopped signing" }),
  removableAt: Type.Optional({
    ...date,
    description: "when every certificate it signed has expired: removable without force from then on",
  }),
});
const CaState = component(
  "CaStatus",
  Type.Object({
    trustDomain: Type.String(),
    bundleVersion: Type.String({ description: "the trust bundle's version (its ETag, unquoted)" }),
    authorities: Type.Array(Authority, { description: "active first, then next, then retiring" }),
    agents: Type.Object(
      {
        windowSeconds: Type.Integer(),
        current: Type.Integer({
          description: "agents that checked the trust bundle within the window and hold this version",
        }),
        stale: Type.Integer({
          description: "agents seen within the window whose last check got an older version",
        }),
      },
      {
        description:
          "data-plane agents (by token and address) polling the trust bundle, in this process's memory: before promoting, wait until stale is 0 and current counts every agent",
      },
    ),
  }),
);
const RotationRequest = component(
  "CaRotationRequest",
  Type.Object(
    {
      step: Type.Union([Type.Literal("add-next"), Type.Literal("promote"), Type.Literal("remove")]),
      id: Type.Optional(
        Type.String({
          minLength: 1,
          description: "remove: the authority's id (full or its first 16 hex digits)",
        }),
      ),
      force: Type.Optional(
        Type.Boolean({ description: "remove: a retiring authority whose certificates may still be valid" }),
      ),
      external: Type.Optional(
        Type.Object(
          {
            certificate: Type.String({ description: "PEM: the intermediate that will sign (ca-cert.pem)" }),
            key: Type.String({ description: "PEM: its private key, not encrypted (ca-key.pem)" }),
            root: Type.String({ description: "PEM: the operator's root (root-cert.pem)" }),
            chain: Type.Optional(
              Type.String({ description: "PEM: certificates between them (cert-chain.pem)" }),
            ),
          },
          {
            additionalProperties: false,
            description:
              "add-next: an operator's intermediate as the next authority instead of a generated root",
          },
        ),
      ),
    },
    { additionalProperties: false },
  ),
);

export interface CaDeps {
  /** Absent: the routes answer 503. */
  ca: CertificateAuthority | undefined;
  tracker: BundleTracker;
  maxBodyBytes: number;
  /** Told after each rotation step taken (the server rewrites <data>/ca-bundle.pem at once). */
  onRotation?: () => void;
}

const fingerprintOf = (id: string) => (id.toUpperCase().match(/../g) ?? []).join(":");

async function describe(ca: CertificateAuthority, status: CaStatus, tracker: BundleTracker) {
  const bundle = await ca.trustBundle();
  return {
    trustDomain: status.trustDomain,
    bundleVersion: bundle.version,
    authorities: status.authorities.map((a) => ({
      id: a.id,
      fingerprint: fingerprintOf(a.id),
      status: a.status,
      origin: a.origin,
      subject: a.subject,
      issuer: a.issuer,
      root: a.root,
      notBefore: a.notBefore.toISOString(),
      notAfter: a.notAfter.toISOString(),
      ...(a.retiredAt ? { retiredAt: a.retiredAt.toISOString() } : {}),
      ...(a.removableAt ? { removableAt: a.removableAt.toISOString() } : {}),
    })),
    agents: { windowSeconds: AGENT_WINDOW_MS / 1000, ...tracker.summary(bundle.version) },
  };
}

export function caRoutes(deps: CaDeps): Hono {
  const router = new Hono();
  const tags = ["ca"];
  const ca = (): CertificateAuthority => {
    if (deps.ca === undefined) throw new ApiError(503, "unavailable", "this control plane has no CA");
    return deps.ca;
  };

  router.get(
    "/",
    describeRoute({
      operationId: "getCa",
      summary: "The mesh CA (admin): trust domain, authorities with their rotation status, agents' bundles",
      tags,
      responses: {
        "200": { description: "the CA's state; never a private key", content: json(CaState) },
        "503": errorResponse("this control plane has no CA"),
      },
    }),
    async (c) => {
      const authority = ca();
      return c.json(await describe(authority, await authority.status(), deps.tracker));
    },
  );

  router.post(
    "/rotation",
    describeRoute({
      operationId: "rotateCa",
      summary: "One CA rotation step (admin): add-next, promote or remove",
      description:
        "add-next: a new root (or, with external, an operator's intermediate) is trusted by every sidecar but " +
        "signs nothing yet; promote: once every agent holds the bundle with it (GET /v1/ca: agents.stale 0), it " +
        "signs and the active one retires; remove: drops the next one (a rotation abandoned) or the retiring " +
        "one once its certificates have expired (force: before). A step the CA refuses now is a 409 saying why.",
      tags,
      requestBody: { required: true, content: json(RotationRequest) },
      responses: {
        "200": { description: "the CA after the step", content: json(CaState) },
        "400": errorResponse(
          "malformed body, remove without id, external material refused (naming its part)",
        ),
        "409": errorResponse("the step is not allowed now (the CA's reason); nothing changed"),
        "503": errorResponse("this control plane has no CA"),
      },
    }),
    accepts(JSON_TYPES),
    limit(deps.maxBodyBytes),
    async (c) => {
      const authority = ca();
      const body = parseJson(decodeText(await c.req.arrayBuffer()));
      const errors = schemaErrors(RotationRequest, body);
      if (errors.length > 0) throw invalid("invalid rotation request", fieldDetails(errors, {}));
      const request = body as Static<typeof RotationRequest>;
      if (request.step === "remove" && request.id === undefined) {
        throw badRequest("remove names the authority: id", [
          { path: "id", message: "is required to remove" },
        ]);
      }
      if (request.step !== "add-next" && request.external !== undefined) {
        throw badRequest(`external is for add-next, not ${request.step}`, [
          { path: "external", message: "only with add-next" },
        ]);
      }
      let status: CaStatus;
      try {
        if (request.step === "add-next") {
          status = await authority.addNext(request.external ? { external: request.external } : undefined);
        } else if (request.step === "promote") {
          status = await authority.promote();
        } else {
          status = await authority.remove(request.id as string, { force: request.force === true });
        }
      } catch (error) {
        if (error instanceof RotationError || error instanceof CaStateError) {
          throw new ApiError(409, "conflict", `${request.step} refused: ${error.message}`);
        }
        if (error instanceof CaInputError) {
          throw badRequest(`the external authority is refused: ${error.message}`, [
            { path: `external (${error.field})`, message: error.message },
          ]);
        }
        throw error;
      }
      deps.onRotation?.();
      return c.json(await describe(authority, status, deps.tracker));
    },
  );

  return router;
}
