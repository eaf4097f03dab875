// Local upstream services for Envoy tests: an HTTP server on 127.0.0.1 that names itself in every
// answer (body and `x-upstream` header) and records what it received.
import http, { type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";

export interface RecordedRequest {
  method: string;
  path: string;
  /** As Node parsed them: lower-case names; repeated headers joined or as arrays. */
  headers: IncomingHttpHeaders;
  /** The request body as text ("" for none). */
  body: string;
}

export interface UpstreamOptions {
  /** Answers with `x-upstream: <name>` and body `<name>`. */
  name: string;
  /** Response status, fixed or computed per request. Default 200. */
  status?: number | (() => number);
  /** Delay before answering, in ms. Default 0. */
  delayMs?: number;
  /**
   * Runs before the answer, e.g. a call to the next service as an app in a call chain makes it; its
   * status, when it returns one, is the answer's (a failed call fails the request, as in an app).
   */
  before?: (request: RecordedRequest) => Promise<number | undefined>;
}

export interface Upstream {
  readonly name: string;
  readonly port: number;
  /** http://127.0.0.1:<port> */
  readonly url: string;
  /** Requests received since start or the last reset(). */
  readonly count: number;
  readonly requests: readonly RecordedRequest[];
  reset(): void;
  setStatus(status: number | (() => number)): void;
  setDelay(ms: number): void;
  close(): Promise<void>;
}

export async function startUpstream(options: UpstreamOptions): Promise<Upstream> {
  let status = options.status ?? 200;
  let delayMs = options.delayMs ?? 0;
  let requests: RecordedRequest[] = [];

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      requests.push({
        method: req.method ?? "",
        path: req.url ?? "",
        headers: req.headers,
        body: Buffer.concat(chunks).toString("utf8"),
      });
      const recorded = requests[requests.length - 1] as RecordedRequest;
      let code = typeof status === "function" ? status() : status;
      const answer = () => {
        if (res.destroyed) return;
        res.writeHead(code, {
          "content-type": "text/plain; charset=utf-8",
          "content-length": Buffer.byteLength(options.name),
          "x-upstream": options.name,
        });
        res.end(options.name);
      };
      const respond = () => {
        if (delayMs > 0) setTimeout(answer, delayMs);
        else answer();
      };
      if (options.before === undefined) respond();
      else
        options.before(recorded).then(
          (next) => {
            if (next !== undefined) code = next;
            respond();
          },
          () => {
            code = 502;
            respond();
          },
        );
    });
  });
  // Envoy keeps upstream connections open for reuse (idle timeout 1 h). Node's default 5 s
  // keep-alive would close them under Envoy's feet and turn the next request into a 503 race.
  server.keepAliveTimeout = 300_000;
  server.headersTimeout = 301_000;
  server.requestTimeout = 0;

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: "127.0.0.1", port: 0 }, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  let closing: Promise<void> | undefined;

  return {
    name: options.name,
    port,
    url: `http://127.0.0.1:${port}`,
    get count() {
      return requests.length;
    },
    get requests() {
      return requests;
    },
    reset() {
      requests = [];
    },
    setStatus(next) {
      status = next;
    },
    setDelay(ms) {
      delayMs = ms;
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
