// HTTP calls from the agent to the control plane's API and to Envoy's admin interface. node:http
// rather than fetch: fetch refuses "bad ports" (e.g. 6000, 6665) that a control plane or an admin
// port picked at random may have, and a call here needs a hard time limit and the local address
// the connection went out from (the workload's address by default).
import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { Readable } from "node:stream";

export interface HttpResponse {
  status: number;
  text: string;
  /** The address this host used for the connection. */
  localAddress: string | undefined;
  /** The response's headers (names in lower case). */
  headers: http.IncomingHttpHeaders;
}

/**
 * The agent's token, or how to read it now: a token file (--token-file) is read again for each call,
 * because the kubelet rotates a projected service-account token in place long before it expires.
 */
export type Token = string | (() => string);

/** The Authorization header's value for `token`, read now. */
export const bearer = (token: Token): string => `Bearer ${typeof token === "string" ? token : token()}`;

export interface HttpRequest {
  method?: string;
  /** Sent as JSON. */
  json?: unknown;
  /** Sent as `Authorization: Bearer <token>`. */
  token?: Token;
  /** PEM: the CAs an https server's certificate is verified with (default the system's). */
  ca?: string;
  /** More request headers (e.g. If-None-Match). */
  headers?: Record<string, string>;
  /** The whole call, connection included. */
  timeoutMs: number;
}

/** One call; rejects on a connection error or after timeoutMs. No keep-alive: calls are rare. */
export function httpRequest(url: string, options: HttpRequest): Promise<HttpResponse> {
  return new Promise((resolve, reject) => {
    const target = new URL(url);
    const body = options.json === undefined ? undefined : JSON.stringify(options.json);
    const send = target.protocol === "https:" ? https.request : http.request;
    let localAddress: string | undefined;
    const req = send(
      target,
      {
        method: options.method ?? "GET",
        agent: false,
        ...(options.ca !== undefined && target.protocol === "https:" ? { ca: options.ca } : {}),
        headers: {
          ...options.headers,
          ...(options.token !== undefined ? { authorization: bearer(options.token) } : {}),
          ...(body === undefined
            ? {}
            : { "content-type": "application/json", "content-length": Buffer.byteLength(body) }),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("error", reject);
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            text: Buffer.concat(chunks).toString("utf8"),
            localAddress,
            headers: res.headers,
          }),
        );
      },
    );
    const timer = setTimeout(
      () => req.destroy(new Error(`no answer within ${options.timeoutMs} ms`)),
      options.timeoutMs,
    );
    req.on("socket", (socket) => {
      socket.once("connect", () => {
        localAddress = socket.localAddress;
      });
    });
    req.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    req.on("close", () => clearTimeout(timer));
    req.end(body);
  });
}

/** What the module cache downloads with: fetch's shape, as much of it as it uses. */
export type Fetch = (
  url: string,
  init: { signal: AbortSignal; headers?: Record<string, string> },
) => Promise<Response>;

/**
 * fetch() for an https API whose certificate verifies against `ca` (fetch itself takes no CA): a
 * node:https request whose body streams into a Response.
 */
export function fetchTrusting(ca: string): Fetch {
  return (url, init) =>
    new Promise((resolve, reject) => {
      const target = new URL(url);
      const send = target.protocol === "https:" ? https.request : http.request;
      const req = send(
        target,
        {
          agent: false,
          signal: init.signal,
          headers: init.headers ?? {},
          ...(target.protocol === "https:" ? { ca } : {}),
        },
        (res) => {
          const headers = new Headers();
          for (const [name, value] of Object.entries(res.headers)) {
            if (typeof value === "string") headers.set(name, value);
          }
          const status = res.statusCode ?? 0;
          const body =
            status === 204 || status === 304 ? null : (Readable.toWeb(res) as ReadableStream<Uint8Array>);
          resolve(new Response(body, { status, statusText: res.statusMessage ?? "", headers }));
        },
      );
      req.on("error", reject);
      req.end();
    });
}

/** Why a call failed, in a few words: the API's error message, or the connection error. */
export function failureOf(response: HttpResponse | Error): string {
  // Node's own messages name the code and the address ("connect ECONNREFUSED 127.0.0.1:5681").
  if (response instanceof Error) return response.message;
  let message = response.text.trim().slice(0, 300);
  try {
    const body = JSON.parse(response.text) as {
      error?: { message?: string; details?: { path?: string; message?: string }[] };
    };
    if (body.error?.message) {
      message = [
        body.error.message,
        ...(body.error.details ?? []).map((d) => `${d.path ?? ""}: ${d.message ?? ""}`),
      ].join("; ");
    }
  } catch {
    // Not the API's error shape: the text as it came.
  }
  return `HTTP ${response.status}${message ? `: ${message}` : ""}`;
}

/** One of the agent's own endpoints (readiness, metrics), listening. */
export interface LocalServer {
  readonly port: number;
  close(): Promise<void>;
}

/**
 * Listens on host:port (0: a free one), exclusively, and resolves once bound; close() also ends the
 * connections kept alive, so the agent's shutdown never waits on a scraper's idle socket.
 */
export async function listen(server: http.Server, host: string, port: number): Promise<LocalServer> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host, port, exclusive: true }, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
