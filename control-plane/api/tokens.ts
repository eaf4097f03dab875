// /v1/tokens: API tokens, for admin tokens only (auth.ts). Issuing one answers its secret, once;
// listing never shows a secret (the store holds only hashes). DELETE revokes: the token stays
// listed, marked revoked, and is refused from then on.
import { type Static, Type } from "@sinclair/typebox";
import { Hono } from "hono";
import { describeRoute } from "hono-openapi";
import { schemaErrors } from "../../schema/filter-config.ts";
import { ServiceName } from "../resources/index.ts";
import { MAX_TOKEN_NAME, ROLES, TokenRequestError, type Tokens, TTL_SECONDS } from "../security/tokens.ts";
import { accepts, decodeText, JSON_TYPES, limit, parseJson } from "./body.ts";
import { fieldDetails, invalid, notFound } from "./errors.ts";
import { component, errorResponse, json, pathParam } from "./openapi.ts";

const Role = Type.Union(
  ROLES.map((role) => Type.Literal(role)),
  {
    description:
      "admin: everything; read-only: reads of everything but tokens; dataplane: the Workloads of its service and module bytes (an agent's)",
  },
);
const Name = Type.String({
  minLength: 1,
  maxLength: MAX_TOKEN_NAME,
  description: "what or who the token is for",
});

const TokenRequest = component(
  "TokenRequest",
  Type.Object(
    {
      role: Role,
      service: Type.Optional({
        ...ServiceName,
        description: "the service a dataplane token is bound to (required for one)",
      }),
      name: Type.Optional(Name),
      ttlSeconds: Type.Optional(
        Type.Integer({ ...TTL_SECONDS, description: "lifetime in seconds (default: until revoked)" }),
      ),
    },
    { additionalProperties: false },
  ),
);
const tokenFields = {
  id: Type.String({
    pattern: "^[0-9a-f]{16}$",
    description: "the first 16 hex digits of the token's sha256",
  }),
  role: Role,
  service: Type.Optional(Type.String()),
  name: Type.Optional(Type.String()),
  createdAt: Type.String({ format: "date-time" }),
  expiresAt: Type.Optional(Type.String({ format: "date-time" })),
  revoked: Type.Boolean(),
  revokedAt: Type.Optional(Type.String({ format: "date-time" })),
};
const TokenInfo = component("Token", Type.Object(tokenFields, { description: "a token, never its secret" }));
const IssuedToken = component(
  "IssuedToken",
  Type.Object({
    ...tokenFields,
    secret: Type.String({
      description: "the bearer token: shown this once, never stored (only its sha256 is)",
    }),
  }),
);
const TokenList = component("TokenList", Type.Object({ items: Type.Array(TokenInfo) }));

export interface TokenDeps {
  tokens: Tokens;
  maxBodyBytes: number;
}

export function tokenRoutes(deps: TokenDeps): Hono {
  const { tokens } = deps;
  const router = new Hono();
  const tags = ["tokens"];
  const idParam = pathParam("id", "the token's id", tokenFields.id);

  router.get(
    "/",
    describeRoute({
      operationId: "listTokens",
      summary: "List API tokens (admin): ids, roles, services, expiry, revocation; never a secret",
      tags,
      responses: { "200": { description: "every token, by id", content: json(TokenList) } },
    }),
    async (c) => c.json({ items: await tokens.list() }),
  );

  router.post(
    "/",
    describeRoute({
      operationId: "createToken",
      summary: "Issue an API token (admin); its secret is in this answer only",
      tags,
      requestBody: { required: true, content: json(TokenRequest) },
      responses: {
        "201": { description: "issued", content: json(IssuedToken) },
        "400": errorResponse(
          "malformed body, unknown role, a dataplane token without a service, a bad ttlSeconds",
        ),
        "413": errorResponse("body too large"),
        "415": errorResponse("not JSON"),
      },
    }),
    accepts(JSON_TYPES),
    limit(deps.maxBodyBytes),
    async (c) => {
      const body = parseJson(decodeText(await c.req.arrayBuffer()));
      const errors = schemaErrors(TokenRequest, body);
      if (errors.length > 0) throw invalid("invalid token request", fieldDetails(errors, {}));
      let issued: Awaited<ReturnType<Tokens["issue"]>>;
      try {
        issued = await tokens.issue(body as Static<typeof TokenRequest>);
      } catch (error) {
        if (error instanceof TokenRequestError)
          throw invalid("invalid token request", [{ path: error.path, message: error.reason }]);
        throw error;
      }
      return c.json({ ...issued.token, secret: issued.secret }, 201, {
        Location: `/v1/tokens/${issued.token.id}`,
        "Cache-Control": "no-store",
      });
    },
  );

  router.get(
    "/:id",
    describeRoute({
      operationId: "getToken",
      summary: "Get an API token (admin), never its secret",
      tags,
      parameters: [idParam],
      responses: {
        "200": { description: "the token", content: json(TokenInfo) },
        "404": errorResponse("no such token"),
      },
    }),
    async (c) => {
      const token = await tokens.get(c.req.param("id"));
      if (!token) throw notFound(`token ${c.req.param("id")} does not exist`);
      return c.json(token);
    },
  );

  router.delete(
    "/:id",
    describeRoute({
      operationId: "revokeToken",
      summary: "Revoke an API token (admin): refused from now on, still listed as revoked",
      tags,
      parameters: [idParam],
      responses: {
        "200": { description: "revoked (or already revoked)", content: json(TokenInfo) },
        "404": errorResponse("no such token"),
      },
    }),
    async (c) => {
      const token = await tokens.revoke(c.req.param("id"));
      if (!token) throw notFound(`token ${c.req.param("id")} does not exist`);
      return c.json(token);
    },
  );

  return router;
}
