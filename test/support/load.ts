// A bounded HTTP load generator for tests and benchmarks. Loopback only: it refuses any URL whose
// host is not 127.0.0.0/8, ::1 or localhost, so it can never be pointed at someone else's server.
import http from "node:http";
import net from "node:net";

export interface LoadOptions {
  url: string;
  headers?: Record<string, string>;
  /** Per-request headers (merged over `headers`); i is the request's index, 0-based. */
  headersFor?: (i: number) => Record<string, string>;
  method?: string;
  /** Total number of requests (bounded: 1 … 10,000,000). */
  requests: number;
  /** Requests in flight at once; also the keep-alive agent's maxSockets. */
  concurrency: number;
  /** Per-request timeout; a request that takes longer counts as an error. */
  timeoutMs: number;
  /**
   * Paces request starts at this many per second (request i starts no earlier than i / rate s after
   * the run began), for steady load over a known time instead of as fast as possible.
   */
  ratePerSecond?: number;
  /** A response header whose value (or "") is recorded for every answer, in completion order. */
  recordHeader?: string;
}

export interface LoadResult {
  /** 2xx answers. */
  ok: number;
  /** Answers with any other status. */
  non2xx: number;
  /** No answer: connection errors, resets, timeouts. */
  errors: number;
  /** The first few error messages, for assertions and debugging. */
  errorMessages: string[];
  statuses: Map<number, number>;
  /** Answers by their `x-upstream` response header ("" when absent). */
  byUpstream: Map<string, number>;
  /** Values of options.recordHeader, in completion order (empty without that option). */
  recorded: string[];
  /** Latency of every answered request, in completion order. */
  latenciesMs: number[];
  p50: number;
  p99: number;
  /** Answered requests per second over the whole run. */
  rps: number;
  durationMs: number;
  /** TCP connections the load opened (kept alive and reused: at most `concurrency` while none closes). */
  connections: number;
  /**
   * Of those, the ones that closed before the run ended (closed by the server, reset, or destroyed
   * by a timeout): 0 when every connection was held open to the end.
   */
  connectionsClosed: number;
}

const MAX_REQUESTS = 10_000_000;

/** True for 127.0.0.0/8, ::1 (also IPv4-mapped ::ffff:127.x) and "localhost". */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, "").toLowerCase();
  if (host === "localhost" || host === "localhost.") return true;
  if (net.isIPv4(host)) return host.split(".")[0] === "127";
  if (net.isIPv6(host)) {
    if (host === "::1" || host === "0:0:0:0:0:0:0:1") return true;
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(host);
    return mapped?.[1] !== undefined && mapped[1].split(".")[0] === "127";
  }
  return false;
}

function checkedUrl(url: string): URL {
  const parsed = new URL(url);
  if (parsed.protocol !== "http:")
    throw new Error(`runLoad: only http: URLs are supported, got ${parsed.protocol}`);
  if (!isLoopbackHost(parsed.hostname)) {
    throw new Error(
      `runLoad: refusing non-loopback host ${parsed.hostname}; load is only ever sent to this machine`,
    );
  }
  return parsed;
}

/** Nearest-rank percentile of already sorted values (0 for none). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))] ?? 0;
}

export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  return startLoad(options).result;
}

export interface RunningLoad {
  /** The counts so far (ok, non2xx, errors, statuses, byUpstream, recorded), for waiting on. */
  readonly progress: Readonly<LoadResult>;
  /** The whole run's result, once every request has its answer (or error). */
  readonly result: Promise<LoadResult>;
  /**
   * Starts no more requests (for a run whose end is an event rather than a count); `result` then
   * resolves once those in flight are answered.
   */
  stop(): Promise<LoadResult>;
}

/**
 * Starts the load and returns at once: a test waits on `progress` (e.g. until enough answers came
 * before it changes something) instead of sleeping, then on `result`.
 */
export function startLoad(options: LoadOptions): RunningLoad {
  const url = checkedUrl(options.url);
  if (!Number.isInteger(options.requests) || options.requests < 0 || options.requests > MAX_REQUESTS) {
    throw new Error(`runLoad: requests must be an integer in 0 … ${MAX_REQUESTS}, got ${options.requests}`);
  }
  if (!Number.isInteger(options.concurrency) || options.concurrency < 1 || options.concurrency > 1024) {
    throw new Error(`runLoad: concurrency must be an integer in 1 … 1024, got ${options.concurrency}`);
  }
  const agent = new http.Agent({ keepAlive: true, maxSockets: options.concurrency });
  const host = url.hostname.replace(/^\[|\]$/g, "");
  const port = url.port === "" ? 80 : Number(url.port);
  const path = `${url.pathname}${url.search}`;
  const method = options.method ?? "GET";

  const result: LoadResult = {
    ok: 0,
    non2xx: 0,
    errors: 0,
    errorMessages: [],
    statuses: new Map(),
    byUpstream: new Map(),
    recorded: [],
    latenciesMs: [],
    p50: 0,
    p99: 0,
    rps: 0,
    durationMs: 0,
    connections: 0,
    connectionsClosed: 0,
  };
  const bump = <K>(map: Map<K, number>, key: K) => map.set(key, (map.get(key) ?? 0) + 1);
  // A reused keep-alive socket is handed to the next request again: count each one once.
  const sockets = new WeakSet<net.Socket>();

  const one = (i: number) =>
    new Promise<void>((resolve) => {
      const start = performance.now();
      let settled = false;
      const settle = (error?: Error) => {
        if (settled) return;
        settled = true;
        if (error) {
          result.errors += 1;
          if (result.errorMessages.length < 10) result.errorMessages.push(error.message);
        }
        resolve();
      };
      const req = http.request(
        {
          host,
          port,
          path,
          method,
          agent,
          headers: { ...options.headers, ...options.headersFor?.(i) },
          timeout: options.timeoutMs,
        },
        (res) => {
          res.on("data", () => {});
          res.on("error", (error) => settle(error));
          res.on("end", () => {
            if (settled) return;
            const status = res.statusCode ?? 0;
            result.latenciesMs.push(performance.now() - start);
            bump(result.statuses, status);
            const upstream = res.headers["x-upstream"];
            bump(result.byUpstream, Array.isArray(upstream) ? upstream.join(",") : (upstream ?? ""));
            if (options.recordHeader) {
              const value = res.headers[options.recordHeader.toLowerCase()];
              result.recorded.push(Array.isArray(value) ? value.join(",") : (value ?? ""));
            }
            if (status >= 200 && status < 300) result.ok += 1;
            else result.non2xx += 1;
            settle();
          });
        },
      );
      req.on("socket", (socket) => {
        if (sockets.has(socket)) return;
        sockets.add(socket);
        result.connections += 1;
        socket.once("close", () => {
          if (!ending) result.connectionsClosed += 1;
        });
      });
      req.on("timeout", () => req.destroy(new Error(`request ${i} timed out after ${options.timeoutMs} ms`)));
      req.on("error", (error) => settle(error));
      req.end();
    });

  let next = 0;
  let stopped = false;
  /** Set once every request is answered: the load closes its connections itself then. */
  let ending = false;
  const rate = options.ratePerSecond;
  if (rate !== undefined && !(rate > 0)) throw new Error(`runLoad: ratePerSecond must be > 0, got ${rate}`);
  const done = run();
  return {
    progress: result,
    result: done,
    stop() {
      stopped = true;
      return done;
    },
  };

  async function run(): Promise<LoadResult> {
    const started = performance.now();
    const worker = async () => {
      while (next < options.requests && !stopped) {
        const i = next;
        next += 1;
        if (rate !== undefined) {
          const wait = started + (i * 1000) / rate - performance.now();
          if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
          if (stopped) return;
        }
        await one(i);
      }
    };
    try {
      await Promise.all(
        Array.from({ length: Math.min(options.concurrency, Math.max(1, options.requests)) }, worker),
      );
    } finally {
      ending = true;
      agent.destroy();
    }
    result.durationMs = performance.now() - started;
    const sorted = [...result.latenciesMs].sort((a, b) => a - b);
    result.p50 = percentile(sorted, 50);
    result.p99 = percentile(sorted, 99);
    const answered = result.ok + result.non2xx;
    result.rps = result.durationMs > 0 ? (answered * 1000) / result.durationMs : 0;
    return result;
  }
}

/** n requests one after another on one keep-alive connection. */
export function sequential(url: string, n: number, headers?: Record<string, string>): Promise<LoadResult> {
  return runLoad({ url, headers: headers ?? {}, requests: n, concurrency: 1, timeoutMs: 10_000 });
}
