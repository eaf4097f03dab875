// A stand-in for the control plane's module bytes route, GET /v1/modules/<name>/<sha256>.wasm, that
// a test can make misbehave: count requests per digest, serve damaged bytes (a tampered blob), drop
// connections or answer an error status, or forward what it does not hold to a real API. With a
// real API behind it, it passes every other request through: a front for the whole API (an HTTP
// cache or proxy between an agent and the control plane) that only the module bytes go wrong in.
import { createHash } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";

export const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

export interface ModuleServer {
  /** http://127.0.0.1:<port>: what the agent's `api` option points to. */
  readonly url: string;
  readonly port: number;
  /** Serves these bytes under their digest (any module name). */
  add(bytes: Uint8Array): void;
  /** Requests for a digest (any answer), or for every digest. */
  fetches(sha?: string): number;
  /**
   * Digests, or module names, whose bytes are served with their last byte changed: what a
   * compromised server would do.
   */
  readonly tamper: Set<string>;
  /**
   * The next requests' fate, one entry per request, in order: "reset" destroys the connection
   * without an answer, a number answers that status, a Fault waits and may tamper this once.
   */
  readonly faults: ("reset" | number | Fault)[];
  close(): Promise<void>;
}

/** One request's fate: answered only once `wait` settles, with damaged bytes if `tamper`. */
export interface Fault {
  wait?: Promise<unknown>;
  tamper?: boolean;
}

export interface ModuleServerOptions {
  /**
   * A real API to ask for digests not added here (their bytes pass through, tampered if listed);
   * every request that is not for module bytes is passed to it as it is.
   */
  upstream?: string;
}

const MODULE_PATH = /^\/v1\/modules\/([a-z0-9-]+)\/([0-9a-f]{64})\.wasm$/;

export async function startModuleServer(options: ModuleServerOptions = {}): Promise<ModuleServer> {
  const blobs = new Map<string, Uint8Array>();
  const counts = new Map<string, number>();
  const tamper = new Set<string>();
  const faults: ("reset" | number | Fault)[] = [];
  const server = http.createServer(async (req, res) => {
    const [, name, sha] = MODULE_PATH.exec(req.url ?? "") ?? [];
    if (name === undefined || sha === undefined) {
      if (options.upstream) passThrough(options.upstream, req, res);
      else res.writeHead(404).end();
      return;
    }
    counts.set(sha, (counts.get(sha) ?? 0) + 1);
    const fault = faults.shift();
    if (fault === "reset") {
      req.socket.destroy();
      return;
    }
    if (typeof fault === "number") {
      res.writeHead(fault).end();
      return;
    }
    await fault?.wait;
    let bytes = blobs.get(sha);
    if (bytes === undefined && options.upstream) {
      // With the agent's token, as the agent sent it.
      const authorization = req.headers.authorization;
      const answer = await fetch(
        `${options.upstream}${req.url}`,
        authorization ? { headers: { authorization } } : {},
      );
      if (!answer.ok) {
        res.writeHead(answer.status).end(await answer.text());
        return;
      }
      bytes = new Uint8Array(await answer.arrayBuffer());
    }
    if (bytes === undefined) {
      res.writeHead(404).end();
      return;
    }
    const body = Buffer.from(bytes);
    if (fault?.tamper || tamper.has(sha) || tamper.has(name)) flipLastByte(body);
    res.writeHead(200, { "content-type": "application/wasm", "content-length": body.length }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    add: (bytes) => void blobs.set(sha256(bytes), bytes),
    fetches: (sha) =>
      sha === undefined ? [...counts.values()].reduce((a, b) => a + b, 0) : (counts.get(sha) ?? 0),
    tamper,
    faults,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** The request to `upstream` as it came, and its answer back as it came (502 if it cannot be had). */
function passThrough(upstream: string, req: http.IncomingMessage, res: http.ServerResponse): void {
  const target = new URL(req.url ?? "/", upstream);
  const forwarded = http.request(
    target,
    { method: req.method, headers: { ...req.headers, host: target.host }, agent: false },
    (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    },
  );
  forwarded.on("error", (error) => {
    if (!res.headersSent) res.writeHead(502).end(error.message);
    else res.destroy(error);
  });
  req.pipe(forwarded);
}

/** Same length, other content: a digest check must catch it. */
export function flipLastByte(bytes: Uint8Array): void {
  const last = bytes.length - 1;
  bytes[last] = (bytes[last] ?? 0) ^ 0xff;
}

/** The module with a custom section appended: the same code under another sha256. */
export function moduleVariant(bytes: Uint8Array, label: string): Uint8Array<ArrayBuffer> {
  const leb = (n: number) => {
    const out: number[] = [];
    do {
      out.push((n & 0x7f) | (n > 0x7f ? 0x80 : 0));
      n >>>= 7;
    } while (n > 0);
    return out;
  };
  const name = new TextEncoder().encode("wasmesh-test");
  const content = [...leb(name.length), ...name, ...new TextEncoder().encode(label)];
  return new Uint8Array([...bytes, 0, ...leb(content.length), ...content]);
}
