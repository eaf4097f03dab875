// The API's one error shape, and the mapping of every error the layers below throw onto it, so
// that a client (the CLI, scripts) handles `{ error: { code, message, details } }` and nothing else.
import { type Static, Type } from "@sinclair/typebox";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { ModuleRejectedError } from "../modules/types.ts";
import type { FieldError } from "../resources/index.ts";
import { ConfigurationCheckUnavailableError } from "../revision/index.ts";
import { ConflictError, InvalidChangeError, StoreClosedError, StoreUnwritableError } from "../store/index.ts";

const ERROR_CODES = [
  "invalid",
  "not_found",
  "conflict",
  "too_large",
  "unsupported_media_type",
  "bad_request",
  "unauthenticated",
  "forbidden",
  "misdirected",
  "method_not_allowed",
  "too_many_requests",
  "unavailable",
  "internal",
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

/** One problem, located as precisely as known: which resource or document, which field, where in the text. */
export const ErrorDetail = Type.Object({
  kind: Type.Optional(Type.String()),
  name: Type.Optional(Type.String()),
  document: Type.Optional(
    Type.Integer({ minimum: 0, description: "0-based index of the document in the body" }),
  ),
  path: Type.String({
    description: 'field path, e.g. "spec.rules[0].destinations[1].weight"; "(root)" for the whole document',
  }),
  message: Type.String(),
  // 1-based position of a syntax error, when the parser knows it.
  line: Type.Optional(Type.Integer({ minimum: 1 })),
  column: Type.Optional(Type.Integer({ minimum: 1 })),
});
export type ErrorDetail = Static<typeof ErrorDetail>;

/** The body of every 4xx and 5xx answer. */
export const ErrorBody = Type.Object({
  error: Type.Object({
    code: Type.Union(ERROR_CODES.map((code) => Type.Literal(code))),
    message: Type.String(),
    details: Type.Array(ErrorDetail),
  }),
});
export type ErrorBody = Static<typeof ErrorBody>;

export class ApiError extends Error {
  readonly status: ContentfulStatusCode;
  readonly code: ErrorCode;
  readonly details: ErrorDetail[];
  readonly headers: Record<string, string>;

  constructor(
    status: ContentfulStatusCode,
    code: ErrorCode,
    message: string,
    details: ErrorDetail[] = [],
    headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details;
    this.headers = headers;
  }

  body(): ErrorBody {
    return { error: { code: this.code, message: this.message, details: this.details } };
  }
}

export const badRequest = (message: string, details: ErrorDetail[] = []) =>
  new ApiError(400, "bad_request", message, details);
export const invalid = (message: string, details: ErrorDetail[]) =>
  new ApiError(400, "invalid", message, details);
export const notFound = (message: string) => new ApiError(404, "not_found", message);

/** FieldErrors of one resource, located by kind and name when the document names them. */
export function fieldDetails(errors: readonly FieldError[], where: Omit<ErrorDetail, "path" | "message">) {
  return errors.map((e): ErrorDetail => ({ ...where, path: e.path, message: e.message }));
}

const STATUS_CODES: Partial<Record<number, ErrorCode>> = {
  400: "bad_request",
  401: "unauthenticated",
  403: "forbidden",
  404: "not_found",
  405: "method_not_allowed",
  409: "conflict",
  413: "too_large",
  415: "unsupported_media_type",
  421: "misdirected",
  429: "too_many_requests",
  503: "unavailable",
};

const FILE_SYSTEM_FULL_OR_READ_ONLY: Partial<Record<string, string>> = {
  ENOSPC: "no space left on device",
  EDQUOT: "disk quota exceeded",
  EROFS: "read-only file system",
};

/**
 * The ApiError for an error thrown by a handler, the store or the module registry; undefined for
 * an unexpected error (a bug), which the caller answers with a 500 and logs.
 */
export function toApiError(error: unknown): ApiError | undefined {
  if (error instanceof ApiError) return error;
  if (error instanceof ConflictError) {
    const { resourceKind: kind, resourceName: name } = error;
    const message =
      error.expected === null
        ? `${kind} '${name}' already exists`
        : error.actual === null
          ? `${kind} '${name}' does not exist (expected resourceVersion "${error.expected}")`
          : `${kind} '${name}' has changed: expected resourceVersion "${error.expected}", found "${error.actual}"; read it again and retry`;
    return new ApiError(409, "conflict", message, [
      { kind, name, path: "metadata.resourceVersion", message: error.message },
    ]);
  }
  if (error instanceof InvalidChangeError) return badRequest(error.message);
  if (error instanceof StoreClosedError) return new ApiError(503, "unavailable", error.message);
  // Nothing the client sent can fix it, and it says why: "…: attempt to write a readonly database".
  if (error instanceof StoreUnwritableError) return new ApiError(503, "unavailable", error.message);
  // The built-in module gave no verdict (its time limit, a crash): the write may well be fine.
  if (error instanceof ConfigurationCheckUnavailableError)
    return new ApiError(503, "unavailable", error.message);
  const errno = (error as NodeJS.ErrnoException | undefined)?.code;
  if (errno !== undefined && FILE_SYSTEM_FULL_OR_READ_ONLY[errno] !== undefined) {
    // The module registry's blobs are files next to the database.
    return new ApiError(
      503,
      "unavailable",
      `the module store cannot be written: ${FILE_SYSTEM_FULL_OR_READ_ONLY[errno]} (${errno})`,
    );
  }
  if (error instanceof ModuleRejectedError) {
    return invalid("the module was rejected", fieldDetails(error.errors, {}));
  }
  if (error instanceof HTTPException) {
    const status = error.status as ContentfulStatusCode;
    const code = STATUS_CODES[status] ?? (status >= 500 ? "internal" : "bad_request");
    return new ApiError(status, code, error.message || `HTTP ${status}`);
  }
  return undefined;
}
