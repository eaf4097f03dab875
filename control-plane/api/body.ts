// The edge of every write route: content type, size, decoding, syntax and the query/header
// preconditions, as middleware that either rejects the request or hands the handler typed values.

import { bodyLimit } from "hono/body-limit";
import { createMiddleware } from "hono/factory";
import type { MiddlewareHandler } from "hono/types";
import { parseYaml } from "../resources/index.ts";
import { decodeUtf8, describeInvalidUtf8 } from "../utf8.ts";
import { ApiError, badRequest, type ErrorDetail, invalid } from "./errors.ts";

export const JSON_TYPES = ["application/json"] as const;
export const YAML_TYPES = ["application/yaml", "text/yaml", "application/x-yaml"] as const;
export const MANIFEST_TYPES = [...JSON_TYPES, ...YAML_TYPES] as const;
export const WASM_TYPES = ["application/wasm", "application/octet-stream"] as const;

/** The media type of the request body, lower-case, without parameters; "" when absent. */
export function mediaType(header: string | undefined): string {
  return (header ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
}

export const isJson = (type: string) => (JSON_TYPES as readonly string[]).includes(type);

/** 415 unless the body is one of `types`; checked before anything is read. */
export function accepts(types: readonly string[]): MiddlewareHandler {
  return createMiddleware(async (c, next) => {
    const type = mediaType(c.req.header("content-type"));
    if (!types.includes(type)) {
      throw new ApiError(
        415,
        "unsupported_media_type",
        `Content-Type must be one of ${types.join(", ")} (got ${type === "" ? "none" : `'${type}'`})`,
      );
    }
    await next();
  });
}

/**
 * 413 once the body passes `maxBytes`. hono/body-limit counts while it reads (or trusts a
 * Content-Length the server enforces) and stops reading at the limit, so an endless body is never
 * buffered past it.
 */
export function limit(maxBytes: number): MiddlewareHandler {
  return bodyLimit({
    maxSize: maxBytes,
    onError: (c) => {
      const error = new ApiError(413, "too_large", `the request body is larger than ${maxBytes} bytes`);
      return c.json(error.body(), 413);
    },
  });
}

/** The body as UTF-8 text (after accepts() and limit()); invalid UTF-8 is a 400, not mojibake. */
export function decodeText(bytes: ArrayBuffer): string {
  // A BOM is legal at the start of JSON and YAML text; decodeUtf8 drops it, as the parsers want.
  const result = decodeUtf8(bytes);
  if (result.ok) return result.text;
  throw badRequest("the request body is not valid UTF-8", [
    { path: "(root)", message: `not UTF-8: ${describeInvalidUtf8(result)}`, line: result.line },
  ]);
}

/** Line and column (1-based) of a character offset. */
function position(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, offset);
  const line = before.split("\n").length;
  return { line, column: offset - before.lastIndexOf("\n") };
}

/** JSON.parse, with a syntax error turned into a 400 that says where. */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    const message = (error as Error).message;
    const detail: ErrorDetail = { path: "(root)", message: `invalid JSON: ${message}` };
    // V8 says "... (line L column C)" or "... at position N" depending on the error.
    const lc = /line (\d+) column (\d+)/.exec(message);
    const at = /position (\d+)/.exec(message);
    if (lc) Object.assign(detail, { line: Number(lc[1]), column: Number(lc[2]) });
    else if (at) Object.assign(detail, position(text, Number(at[1])));
    throw badRequest("the request body is not valid JSON", [detail]);
  }
}

/**
 * One YAML document (the body of a single-resource write), read as manifests are (parseYaml): a
 * syntax error is a 400 with its line and column; a tag or nesting a resource cannot hold, an
 * invalid document.
 */
export function parseYamlDocument(text: string): unknown {
  const result = parseYaml(text);
  if (!result.ok) {
    const details = result.errors.map(({ document: _, ...e }): ErrorDetail => e);
    if (details.some((d) => d.message.startsWith("invalid YAML"))) {
      throw badRequest("the request body is not valid YAML", details);
    }
    throw invalid("the request body is not a valid resource", details);
  }
  if (result.values.length > 1) {
    throw badRequest(
      `the request body holds ${result.values.length} YAML documents: write one resource here, or use POST /v1/apply`,
    );
  }
  return result.values[0] ?? null;
}

/** `?dryRun`, `?dryRun=true|false|1|0`; anything else is a 400 rather than a silent real write. */
export function parseDryRun(value: string | undefined): boolean {
  return parseFlag(value, "dryRun");
}

/** A boolean query parameter: absent, false or 0 is false; present empty, true or 1 is true. */
export function parseFlag(value: string | undefined, name: string): boolean {
  if (value === undefined || value === "false" || value === "0") return false;
  if (value === "" || value === "true" || value === "1") return true;
  throw badRequest(`${name} must be true or false (got '${value}')`);
}

/** A version from `If-Match` (`"5"` or `5`) and/or another source; both must agree. */
export function expectedVersion(ifMatch: string | undefined, other: string | undefined, otherName: string) {
  let fromHeader: string | undefined;
  if (ifMatch !== undefined) {
    const value = ifMatch.trim();
    if (value === "*" || value.startsWith("W/") || value.includes(",")) {
      throw badRequest(`If-Match must be one resourceVersion, e.g. "5" (got '${value}')`);
    }
    fromHeader = value.replace(/^"(.*)"$/, "$1");
    if (fromHeader === "") throw badRequest("If-Match is empty");
  }
  if (fromHeader !== undefined && other !== undefined && fromHeader !== other) {
    throw badRequest(`If-Match ("${fromHeader}") and ${otherName} ("${other}") disagree`);
  }
  return fromHeader ?? other;
}

/** The ETag of a stored resource: its resourceVersion, which changes with every write of it. */
export const etag = (resourceVersion: string) => `"${resourceVersion}"`;
