// Who may call the API, checked in front of every route: the Host a request was sent to (DNS
// rebinding), where a browser's write comes from (cross-origin writes), the bearer token and what
// its role may do. /healthz and /readyz answer without a token (probes), and the web console's
// files under /gui (gui.ts); everything else needs one.
//
// Roles: admin does everything; read-only reads (GET and HEAD) everything but tokens and the CA; a dataplane
// token, bound to one service, calls only the routes marked with agentRoute (an agent's: its
// service's Workloads, module bytes, certificates and traffic reports), whose handlers check the service.
import { isIP } from "node:net";
import type { Context } from "hono";
import { createMiddleware } from "hono/factory";
import { matchedRoutes } from "hono/route";
import type { Principal, Tokens } from "../security/tokens.ts";
import type { StoredResource } from "../store/index.ts";
import { ApiError } from "./errors.ts";
import { isConsolePath } from "./gui.ts";

declare module "hono" {
  interface ContextVariableMap {
    /** Who the request is (set in front of every route but the open ones). */
    principal: Principal;
  }
}

export interface ApiAuth {
  tokens: Tokens;
  /**
   * Host names the API is reached by (`wasmesh server --api-host`), besides IP addresses and
   * localhost, which are always served: a request naming any other host is refused.
   */
  hosts?: readonly string[];
}

/** Probes answer without a token. */
export const OPEN_PATHS: ReadonlySet<string> = new Set(["/healthz", "/readyz"]);

/** What a request is when the API runs without authentication (createApi's `auth: "none"`, tests). */
const UNAUTHENTICATED: Principal = { tokenId: "none", role: "admin" };

/**
 * Marks a route a dataplane token may call (put it in the route's handlers); the handler confines
 * the token to its service.
 */
export const agentRoute = createMiddleware(async (_c, next) => {
  await next();
});

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

export const unauthenticated = (message: string, error?: "invalid_token" | "invalid_request") =>
  new ApiError(401, "unauthenticated", message, [], {
    "WWW-Authenticate": `Bearer realm="wasmesh"${error ? `, error="${error}"` : ""}`,
  });
export const forbidden = (message: string) => new ApiError(403, "forbidden", message);

/** The host name of a Host header (lower case; an IPv6 address in brackets), or undefined. */
function hostnameOf(host: string | undefined): string | undefined {
  // Only a host and a port: no user, path or query for the URL parser to read the host out of.
  if (!host || /[/?#@\\\s]/.test(host)) return undefined;
  return URL.parse(`http://${host}`)?.hostname;
}

/**
 * Whether this server serves a request sent to `host`. DNS rebinding sends a name the attacker
 * controls (Host: evil.example) to a loopback or internal address; a request to an IP address or
 * to localhost was sent to this machine by its address, which is no rebinding.
 */
export function servesHost(host: string | undefined, names: ReadonlySet<string>): boolean {
  const hostname = hostnameOf(host);
  if (hostname === undefined) return false;
  if (isIP(hostname.replace(/^\[(.*)\]$/, "$1")) !== 0) return true;
  if (hostname === "localhost" || hostname.endsWith(".localhost")) return true;
  return names.has(hostname.replace(/\.$/, ""));
}

/** The checks in front of every route; with `auth: "none"`, every request is an admin's. */
export function authenticate(auth: ApiAuth | "none") {
  const names = new Set(
    auth === "none" ? [] : (auth.hosts ?? []).map((h) => h.toLowerCase().replace(/\.$/, "")),
  );
  const served =
    names.size > 0 ? `, and ${[...names].join(", ")}` : " (wasmesh server --api-host NAME adds a name)";
  return createMiddleware(async (c, next) => {
    if (auth === "none") {
      c.set("principal", UNAUTHENTICATED);
      return next();
    }
    const host = c.req.header("host");
    if (!servesHost(host, names)) {
      throw new ApiError(
        421,
        "misdirected",
        `this control plane does not serve the host ${host === undefined ? "(no Host header)" : `'${host}'`}: ` +
          `it answers requests sent to its IP addresses and localhost${served}. ` +
          "A request for another name is refused, as a DNS rebinding attack would send it",
      );
    }
    if (!SAFE_METHODS.has(c.req.method)) crossOriginCheck(c, host as string);
    // The web console's files (gui.ts) are open too: the page asks for a token for its data calls.
    if (OPEN_PATHS.has(c.req.path) || isConsolePath(c.req.path)) return next();

    const header = c.req.header("authorization");
    if (header === undefined) {
      throw unauthenticated(
        "this API needs a bearer token (Authorization: Bearer <token>): the CLI takes --token, $WASMESH_TOKEN " +
          "or the credentials file wasmesh server writes; a new data directory's admin token is in <data>/admin-token",
      );
    }
    const [, secret] = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header) ?? [];
    if (secret === undefined)
      throw unauthenticated("the Authorization header must be 'Bearer <token>'", "invalid_request");
    const verdict = await auth.tokens.verify(secret);
    if (!verdict.ok)
      throw unauthenticated(`the bearer token was refused: ${verdict.reason}`, "invalid_token");
    const principal = verdict.principal;
    authorize(c, principal);
    c.set("principal", principal);
    return next();
  });
}

/**
 * A browser's cross-origin write (a page elsewhere posting to the API) is refused, whatever it
 * carries: Sec-Fetch-Site says where it comes from, and Origin must be the host it was sent to.
 */
function crossOriginCheck(c: Context, host: string): void {
  const site = c.req.header("sec-fetch-site");
  if (site !== undefined && site !== "same-origin" && site !== "none")
    throw forbidden(`a ${site} browser request cannot change anything here (Sec-Fetch-Site: ${site})`);
  const origin = c.req.header("origin");
  if (origin === undefined) return;
  const from = URL.parse(origin);
  if (from === null || from.host !== URL.parse(`http://${host}`)?.host)
    throw forbidden(`a write from another origin (${origin}) is refused: this API serves ${host}`);
}

/** What a principal's role allows of this route, before its handler runs. */
function authorize(c: Context, principal: Principal): void {
  const { method, path } = c.req;
  if (principal.role === "admin") return;
  if (principal.role === "read-only") {
    if (path === "/v1/tokens" || path.startsWith("/v1/tokens/"))
      throw forbidden(
        `token ${principal.tokenId} is read-only: tokens are listed and issued with an admin token`,
      );
    if (path === "/v1/ca" || path.startsWith("/v1/ca/"))
      throw forbidden(
        `token ${principal.tokenId} is read-only: the CA is read and rotated with an admin token`,
      );
    if (!SAFE_METHODS.has(method))
      throw forbidden(`token ${principal.tokenId} is read-only: ${method} ${path} needs an admin token`);
    return;
  }
  if (!matchedRoutes(c).some((route) => route.handler === agentRoute)) {
    throw forbidden(
      `token ${principal.tokenId} is a dataplane token of service '${principal.service}': it may register, renew ` +
        `and delete that service's Workloads and fetch module bytes, and get that service's certificates and report its proxies' traffic figures; ${method} ${path} needs a read-only or admin token`,
    );
  }
}

/**
 * For a dataplane principal, a check of each Workload it writes or deletes (as stored, and as
 * written): both must be of its service. Undefined for the other roles.
 */
export function workloadGuard(
  principal: Principal,
):
  | ((change: { name: string; before?: StoredResource; after?: { kind: string; spec?: unknown } }) => void)
  | undefined {
  if (principal.role !== "dataplane") return undefined;
  const own = principal.service;
  return ({ name, before, after }) => {
    for (const [what, resource] of [
      ["stored", before],
      ["written", after],
    ] as const) {
      if (resource === undefined) continue;
      const service = (resource.spec as { service?: unknown } | null | undefined)?.service;
      if (resource.kind !== "Workload" || service !== own) {
        throw forbidden(
          `token ${principal.tokenId} is a dataplane token of service '${own}': Workload '${name}' as ${what} is ` +
            `of service '${String(service)}'`,
        );
      }
    }
  };
}
