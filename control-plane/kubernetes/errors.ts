// One way to say what went wrong in a call to the Kubernetes API, for logs and Events: the HTTP
// status and the API server's own message when it sent one (@kubernetes/client-node's ApiException,
// or any error carrying a code), "no answer in time" for an aborted call, else the error's message.
import * as k8s from "@kubernetes/client-node";

export function describeKubeError(error: unknown): string {
  if (error instanceof k8s.ApiException) {
    const body = error.body as { message?: unknown } | string | undefined;
    const message = typeof body === "object" && typeof body?.message === "string" ? body.message : undefined;
    return `HTTP ${error.code}${message ? `: ${message}` : ""}`;
  }
  if (error instanceof Error && error.name === "AbortError") return "no answer in time";
  if (typeof error === "object" && error !== null) {
    const e = error as { code?: unknown; statusCode?: unknown; message?: unknown };
    const status = e.code ?? e.statusCode;
    const message = typeof e.message === "string" ? e.message : String(error);
    return typeof status === "number" ? `HTTP ${status}: ${message}` : message;
  }
  return String(error);
}
