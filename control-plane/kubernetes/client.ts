// A small client of the Kubernetes API for the store and the webhooks: JSON requests and watch
// streams over node:https, authenticated the way the kubeconfig says (client certificate, bearer
// token, the cluster's CA), through @kubernetes/client-node's KubeConfig. The generated typed clients
// cover the built-in kinds; ours are custom objects reached by path (crds.ts resourceOf), and the
// store needs what they make awkward: the HTTP status (201 created or 200 replaced), the Status
// object of a refusal (its message names the field or the webhook's reason), and a watch whose
// resourceVersion bookkeeping it owns.
import http from "node:http";
import https from "node:https";
import type * as k8s from "@kubernetes/client-node";

/** Kubernetes' Status, as a refused request returns it. */
export interface KubeStatus {
  kind?: string;
  status?: string;
  message?: string;
  reason?: string;
  code?: number;
  details?: { causes?: { field?: string; message?: string; reason?: string }[] };
}

/** A request the API server answered with an error status (or could not be sent: status 0). */
export class KubeApiError extends Error {
  readonly status: number;
  readonly reason: string;
  readonly body: KubeStatus | undefined;
  constructor(method: string, path: string, status: number, body: KubeStatus | undefined, detail?: string) {
    const what = body?.message ?? detail ?? `HTTP ${status}`;
    super(`${method} ${path}: ${what}`);
    this.name = "KubeApiError";
    this.status = status;
    this.reason = body?.reason ?? (status === 0 ? "Unreachable" : "Unknown");
    this.body = body;
  }
}

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: {
    name?: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    creationTimestamp?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    deletionTimestamp?: string;
    [key: string]: unknown;
  };
  [key: string]: unknown;
}

export interface KubeList<T extends KubeObject = KubeObject> {
  metadata: { resourceVersion?: string; continue?: string };
  items: T[];
}

export type WatchEventType = "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";

export interface KubeClient {
  /** The API server's URL (for messages). */
  readonly server: string;
  request<T = KubeObject>(
    method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE",
    path: string,
    options?: { query?: Record<string, string | undefined>; body?: unknown; contentType?: string },
  ): Promise<{ status: number; body: T }>;
  /** GET `path`; undefined when the API server answers 404 (absence is an answer, not a failure). */
  find<T = KubeObject>(path: string): Promise<T | undefined>;
  /**
   * Streams the events of a watch until the server ends it (resolves), it fails (rejects: an
   * ERROR event as a KubeApiError with its Status, e.g. 410 Gone) or the signal aborts (resolves).
   */
  watch(
    path: string,
    query: Record<string, string | undefined>,
    onEvent: (type: WatchEventType, object: KubeObject) => void,
    signal: AbortSignal,
  ): Promise<void>;
}

function url(server: string, path: string, query: Record<string, string | undefined> = {}): URL {
  const target = new URL(server.replace(/\/$/, "") + path);
  for (const [key, value] of Object.entries(query))
    if (value !== undefined) target.searchParams.set(key, value);
  return target;
}

function parseStatus(text: string): KubeStatus | undefined {
  try {
    const parsed: unknown = JSON.parse(text);
    return typeof parsed === "object" && parsed !== null ? (parsed as KubeStatus) : undefined;
  } catch {
    return undefined;
  }
}

export function createKubeClient(kubeConfig: k8s.KubeConfig): KubeClient {
  const cluster = kubeConfig.getCurrentCluster();
  if (cluster === null) throw new Error("the kubeconfig names no current cluster");
  const server = cluster.server;
  const secure = server.startsWith("https:");
  // One agent: connections are reused across requests, and watches hold one each.
  const agent = secure ? new https.Agent({ keepAlive: true }) : new http.Agent({ keepAlive: true });

  /** TLS material and headers from the kubeconfig (re-read each time: a token file can rotate). */
  async function requestOptions(method: string): Promise<https.RequestOptions> {
    const options: https.RequestOptions = { method, headers: {} };
    await kubeConfig.applyToHTTPSOptions(options);
    return { ...options, agent };
  }

  function send(
    target: URL,
    options: https.RequestOptions,
    body: string | undefined,
  ): Promise<http.IncomingMessage> {
    return new Promise((resolve, reject) => {
      const req = (secure ? https : http).request(target, options, resolve);
      req.once("error", reject);
      if (body !== undefined) req.end(body);
      else req.end();
    });
  }

  async function request<T>(
    method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE",
    path: string,
    options: { query?: Record<string, string | undefined>; body?: unknown; contentType?: string } = {},
  ): Promise<{ status: number; body: T }> {
    const target = url(server, path, options.query);
    const base = await requestOptions(method);
    const payload = options.body === undefined ? undefined : JSON.stringify(options.body);
    base.headers = {
      ...base.headers,
      Accept: "application/json",
      ...(payload !== undefined
        ? {
            "Content-Type": options.contentType ?? "application/json",
            "Content-Length": Buffer.byteLength(payload),
          }
        : {}),
    };
    let response: http.IncomingMessage;
    try {
      response = await send(target, base, payload);
    } catch (error) {
      throw new KubeApiError(
        method,
        path,
        0,
        undefined,
        `cannot reach ${server}: ${(error as Error).message}`,
      );
    }
    const chunks: Buffer[] = [];
    for await (const chunk of response) chunks.push(chunk as Buffer);
    const text = Buffer.concat(chunks).toString("utf8");
    const status = response.statusCode ?? 0;
    if (status < 200 || status >= 300) throw new KubeApiError(method, path, status, parseStatus(text));
    return { status, body: (text === "" ? {} : JSON.parse(text)) as T };
  }

  async function watch(
    path: string,
    query: Record<string, string | undefined>,
    onEvent: (type: WatchEventType, object: KubeObject) => void,
    signal: AbortSignal,
  ): Promise<void> {
    if (signal.aborted) return;
    const target = url(server, path, { ...query, watch: "true" });
    const base = await requestOptions("GET");
    base.headers = { ...base.headers, Accept: "application/json" };
    base.signal = signal;
    let response: http.IncomingMessage;
    try {
      response = await send(target, base, undefined);
    } catch (error) {
      if (signal.aborted) return;
      throw new KubeApiError(
        "GET",
        path,
        0,
        undefined,
        `cannot reach ${server}: ${(error as Error).message}`,
      );
    }
    const status = response.statusCode ?? 0;
    if (status !== 200) {
      const chunks: Buffer[] = [];
      for await (const chunk of response) chunks.push(chunk as Buffer);
      throw new KubeApiError("GET", path, status, parseStatus(Buffer.concat(chunks).toString("utf8")));
    }
    let pending = "";
    try {
      for await (const chunk of response) {
        pending += (chunk as Buffer).toString("utf8");
        let newline = pending.indexOf("\n");
        while (newline >= 0) {
          const line = pending.slice(0, newline).trim();
          pending = pending.slice(newline + 1);
          newline = pending.indexOf("\n");
          if (line === "") continue;
          const event = JSON.parse(line) as { type: WatchEventType; object: KubeObject };
          if (event.type === "ERROR") {
            const statusObject = event.object as KubeStatus;
            throw new KubeApiError("WATCH", path, statusObject.code ?? 500, statusObject);
          }
          onEvent(event.type, event.object);
        }
      }
    } catch (error) {
      if (signal.aborted) return;
      throw error;
    }
  }

  async function find<T>(path: string): Promise<T | undefined> {
    try {
      return (await request<T>("GET", path)).body;
    } catch (error) {
      if (error instanceof KubeApiError && error.status === 404) return undefined;
      throw error;
    }
  }

  return { server, request, find, watch };
}
