// The web console at /gui: the files `npm run build:gui` writes into build/gui/ (the front end's
// source is gui/), served as they are. The files themselves need no token (auth.ts lets /gui
// through after the Host check); the console asks the user for one and sends it on its data
// calls, which are the API's own routes. A middleware, not routes: the console is no API operation
// (GET /v1/openapi.json documents exactly the routes).
import { createHash } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import { extname, join, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { createMiddleware } from "hono/factory";
import { ApiError } from "./errors.ts";

export const CONSOLE_PATH = "/gui";
/** The route label its requests are counted under (wasmesh_api_requests_total). */
export const CONSOLE_ROUTE = "/gui/*";

/** build/gui of this checkout, where `npm run build:gui` writes the console. */
export const DEFAULT_CONSOLE_DIR = fileURLToPath(new URL("../../build/gui", import.meta.url));

export const isConsolePath = (path: string): boolean =>
  path === CONSOLE_PATH || path.startsWith(`${CONSOLE_PATH}/`);

const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json",
  ".map": "application/json",
  ".txt": "text/plain; charset=utf-8",
  ".woff2": "font/woff2",
};

// Everything the console loads comes from this server: the policy says so to the browser too.
const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; " +
  "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'";

/** Vite names the files under assets/ by their content's hash: they never change. */
const IMMUTABLE = "public, max-age=31536000, immutable";

/**
 * Serves the console's files from `dir` (default build/gui) for GET and HEAD under /gui: / and any
 * path that names no file is index.html (the console's pages are addressed by the URL's hash).
 * 503 when the console has not been built.
 */
export function consoleFiles(dir: string = DEFAULT_CONSOLE_DIR) {
  const root = resolve(dir);
  return createMiddleware(async (c, next) => {
    if (!isConsolePath(c.req.path) || (c.req.method !== "GET" && c.req.method !== "HEAD")) return next();
    let relative: string;
    try {
      relative = decodeURIComponent(c.req.path.slice(CONSOLE_PATH.length)).replace(/^\/+/, "");
    } catch {
      throw new ApiError(404, "not_found", `no file ${c.req.path}`);
    }
    if (relative.includes("\0") || relative.split(/[/\\]/).includes(".."))
      throw new ApiError(404, "not_found", `no file ${c.req.path}`);

    const index = join(root, "index.html");
    const indexStat = await stat(index).catch(() => undefined);
    if (indexStat === undefined) {
      throw new ApiError(
        503,
        "unavailable",
        `the web console is not built: run \`npm run build:gui\` (or \`npm run build\`), which writes ${root}`,
      );
    }
    let file = relative === "" ? index : resolve(root, relative);
    if (file !== index && !file.startsWith(`${root}${sep}`))
      throw new ApiError(404, "not_found", `no file ${c.req.path}`);
    let info = file === index ? indexStat : await stat(file).catch(() => undefined);
    if (info === undefined || !info.isFile()) {
      // A file the console would load (it has an extension) is missing; anything else is a page.
      if (extname(relative) !== "") throw new ApiError(404, "not_found", `no file ${c.req.path}`);
      file = index;
      info = indexStat;
    }
    const type = CONTENT_TYPES[extname(file)] ?? "application/octet-stream";
    const immutable = relative.startsWith("assets/") && file !== index;
    const etag = `"${createHash("sha256").update(`${file} ${info.size} ${info.mtimeMs}`).digest("hex").slice(0, 20)}"`;
    const headers: Record<string, string> = {
      "Content-Type": type,
      "Cache-Control": immutable ? IMMUTABLE : "no-cache",
      ETag: etag,
      "X-Content-Type-Options": "nosniff",
      ...(type.startsWith("text/html") ? { "Content-Security-Policy": CSP, "X-Frame-Options": "DENY" } : {}),
    };
    if (c.req.header("if-none-match") === etag) return c.body(null, 304, headers);
    headers["Content-Length"] = String(info.size);
    if (c.req.method === "HEAD") return c.body(null, 200, headers);
    return c.body(new Uint8Array(await readFile(file)), 200, headers);
  });
}
