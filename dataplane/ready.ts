// The agent's readiness endpoint, for a Kubernetes readiness probe or a script:
// GET http://127.0.0.1:<ready-port>/ready (or another address: a kubelet probes the pod's IP) answers 200 when the sidecar can take traffic, otherwise
// 503 with the reason as text. The check runs on each request, so the answer is never stale.
import http from "node:http";
import { type LocalServer, listen } from "./http.ts";

export type Readiness = { ready: true } | { ready: false; reason: string };

export type ReadinessServer = LocalServer;

export async function startReadiness(
  port: number,
  check: () => Promise<Readiness>,
  host = "127.0.0.1",
): Promise<ReadinessServer> {
  const server = http.createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://localhost").pathname;
    if (path !== "/ready" || (req.method !== "GET" && req.method !== "HEAD")) {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found: GET /ready\n");
      return;
    }
    check().then(
      (state) => {
        const text = state.ready ? "ready\n" : `not ready: ${state.reason}\n`;
        res.writeHead(state.ready ? 200 : 503, { "content-type": "text/plain" }).end(text);
      },
      (error: unknown) => {
        res.writeHead(503, { "content-type": "text/plain" }).end(`not ready: ${(error as Error).message}\n`);
      },
    );
  });
  return listen(server, host, port);
}
