// A private, real Jaeger v2 for the tracing tests (issue 18): the binary scripts/install-jaeger.sh
// builds into .tools/jaeger (JAEGER_BIN overrides), started on a configuration of its own with
// memory storage, every port a free loopback one, and stopped with the test file.
//
// Jaeger v2 is an OpenTelemetry Collector build: the configuration names receivers (OTLP gRPC and
// HTTP, Zipkin), an exporter into a storage backend (memory) and the extensions that own the
// storage and serve the query API (jaeger_storage, jaeger_query). Everything else the embedded
// all-in-one configuration (cmd/jaeger/internal/all-in-one.yaml) turns on is left out so that two
// can run side by side: no Jaeger-protocol receivers (14250, 14268, 6831, 6832), no
// remote_sampling (5778, 5779), healthcheckv2 (13133), expvar (27777) or zpages (27778), and the
// Collector's own metrics (Prometheus on 8888) off. The query extension's tracing of itself is off
// too: it would export its own spans over OTLP to localhost:4318, whoever listens there. The UI is
// served on the query HTTP port, and its gRPC API needs a port of its own.
import { type ChildProcess, spawn } from "node:child_process";
import { accessSync, constants, createWriteStream, writeFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { freePort, REPO_ROOT } from "./envoy.ts";
import { tempDir } from "./temp.ts";
import { until } from "./wait.ts";

/** The binary the tests start: JAEGER_BIN, else what scripts/install-jaeger.sh builds. */
export const JAEGER_BIN = process.env.JAEGER_BIN ?? join(REPO_ROOT, ".tools", "jaeger", "jaeger");

// ---------------------------------------------------------------------------------------------
// The query API's JSON (GET /api/traces, /api/traces/{id}): Jaeger's v1 UI model.

export interface JaegerTag {
  key: string;
  /** "string", "bool", "int64", "float64" or "binary". */
  type: string;
  value: string | number | boolean;
}

export interface JaegerReference {
  /** "CHILD_OF" or "FOLLOWS_FROM". */
  refType: string;
  traceID: string;
  spanID: string;
}

export interface JaegerLog {
  timestamp: number;
  fields: JaegerTag[];
}

export interface JaegerSpan {
  /** 32 lowercase hex digits (this harness pads Jaeger's 16-digit form of ids whose upper half is 0). */
  traceID: string;
  /** 16 lowercase hex digits. */
  spanID: string;
  operationName: string;
  /** The parent (CHILD_OF) and any links; empty for a root span. */
  references: JaegerReference[];
  /** Microseconds since the epoch. */
  startTime: number;
  /** Microseconds. */
  duration: number;
  tags: JaegerTag[];
  logs: JaegerLog[];
  /** A key of the trace's `processes`. */
  processID: string;
  warnings: string[] | null;
  flags?: number;
}

export interface JaegerProcess {
  serviceName: string;
  tags: JaegerTag[];
}

export interface JaegerTrace {
  /** 32 lowercase hex digits, as in OTLP and W3C traceparent. */
  traceID: string;
  spans: JaegerSpan[];
  processes: Record<string, JaegerProcess>;
  warnings: string[] | null;
}

export interface JaegerTracesOptions {
  /** At most this many traces (Jaeger's default: 100). */
  limit?: number;
  /** Only traces that started within this long before now: "500ms", "30s", "15m", "1h", "2d". */
  lookback?: string;
}

export interface Jaeger {
  /** OTLP over gRPC: "127.0.0.1:<port>". */
  readonly otlpGrpcAddress: string;
  /** OTLP over HTTP (protobuf or JSON): "http://127.0.0.1:<port>/v1/traces". */
  readonly otlpHttpUrl: string;
  /** Zipkin v2 JSON: "http://127.0.0.1:<port>/api/v2/spans". */
  readonly zipkinUrl: string;
  /** The query API and UI: "http://127.0.0.1:<port>" (the API under /api). */
  readonly queryUrl: string;
  /** The services that have reported spans. */
  services(): Promise<string[]>;
  /** The traces with a span of `service` (newest first, as Jaeger returns them). */
  traces(service: string, opts?: JaegerTracesOptions): Promise<JaegerTrace[]>;
  /** One trace by its id (32 or 16 hex digits), or undefined when Jaeger has none. */
  trace(traceId: string): Promise<JaegerTrace | undefined>;
  /**
   * Polls traces(service) until `predicate` holds for the list (e.g. `(ts) => ts.some(...)`) and
   * returns that list; throws after `timeoutMs` with what Jaeger last had and its log's tail.
   */
  waitForTraces(
    service: string,
    predicate: (traces: JaegerTrace[]) => boolean,
    timeoutMs?: number,
  ): Promise<JaegerTrace[]>;
  /** The tail of Jaeger's output (stdout and stderr, also in jaeger.log in its temp dir). */
  logs(): string;
  /** Kills Jaeger and waits for it to exit. */
  stop(): Promise<void>;
}

/** The binary to start, or an error saying how to build it. */
export function jaegerBinary(): string {
  try {
    accessSync(JAEGER_BIN, constants.X_OK);
  } catch {
    throw new Error(
      `jaeger not found at ${JAEGER_BIN}. Run \`bash scripts/install-jaeger.sh\` (or \`./dev setup\`) ` +
        "to build it, or set JAEGER_BIN to a Jaeger v2 binary.",
    );
  }
  return JAEGER_BIN;
}

interface Ports {
  otlpGrpc: number;
  otlpHttp: number;
  zipkin: number;
  queryHttp: number;
  queryGrpc: number;
}

/** The Collector configuration (JSON is YAML, so no YAML writer is needed). */
export function jaegerConfig(ports: Ports): object {
  const at = (port: number) => `127.0.0.1:${port}`;
  return {
    service: {
      extensions: ["jaeger_storage", "jaeger_query"],
      pipelines: {
        traces: { receivers: ["otlp", "zipkin"], processors: [], exporters: ["jaeger_storage_exporter"] },
      },
      telemetry: {
        resource: { "service.name": "jaeger" },
        metrics: { level: "none" },
        logs: { level: "info" },
      },
    },
    extensions: {
      jaeger_storage: { backends: { memstore: { memory: { max_traces: 100_000 } } } },
      jaeger_query: {
        storage: { traces: "memstore" },
        enable_tracing: false,
        http: { endpoint: at(ports.queryHttp) },
        grpc: { endpoint: at(ports.queryGrpc) },
      },
    },
    receivers: {
      otlp: {
        protocols: { grpc: { endpoint: at(ports.otlpGrpc) }, http: { endpoint: at(ports.otlpHttp) } },
      },
      zipkin: { endpoint: at(ports.zipkin) },
    },
    exporters: { jaeger_storage_exporter: { trace_storage: "memstore" } },
  };
}

// Every started Jaeger is killed when this Node process exits, stopped or not.
const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const child of live) {
      try {
        child.kill("SIGKILL");
      } catch {
        // already gone
      }
    }
  });
}

const LOOKBACK = /^(\d+)(ms|s|m|h|d)$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

function lookbackMs(lookback: string): number {
  const match = LOOKBACK.exec(lookback);
  if (!match) throw new Error(`lookback "${lookback}": expected a number and ms, s, m, h or d, e.g. "1h"`);
  return Number(match[1]) * (UNIT_MS[match[2] as string] as number);
}

/** Jaeger prints a trace id whose upper 64 bits are 0 as 16 digits; OTLP's form is 32. */
function fullTraceId(id: string): string {
  return id.padStart(32, "0");
}

function normalise(trace: JaegerTrace): JaegerTrace {
  trace.traceID = fullTraceId(trace.traceID);
  for (const span of trace.spans ?? []) {
    span.traceID = fullTraceId(span.traceID);
    for (const reference of span.references ?? []) reference.traceID = fullTraceId(reference.traceID);
  }
  return trace;
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    socket.setTimeout(1000);
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.once("connect", () => done(true));
    socket.once("timeout", () => done(false));
    socket.once("error", () => done(false));
  });
}

/** Starts Jaeger on free loopback ports; resolves once the query API and every receiver answer. */
export async function startJaeger(): Promise<Jaeger> {
  const bin = jaegerBinary();
  const dir = tempDir("jaeger");
  const ports: Ports = {
    otlpGrpc: await freePort(),
    otlpHttp: await freePort(),
    zipkin: await freePort(),
    queryHttp: await freePort(),
    queryGrpc: await freePort(),
  };
  const configPath = join(dir, "config.yaml");
  writeFileSync(configPath, `${JSON.stringify(jaegerConfig(ports), null, 2)}\n`);

  const logPath = join(dir, "jaeger.log");
  const log = createWriteStream(logPath);
  let output = "";
  const keep = (chunk: Buffer) => {
    log.write(chunk);
    output = (output + chunk.toString("utf8")).slice(-64_000);
  };
  const tail = () => `${output.slice(-4000)}\n(all of it in ${logPath})`;

  installExitHook();
  const child = spawn(bin, ["--config", `file:${configPath}`], { stdio: ["ignore", "pipe", "pipe"] });
  live.add(child);
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  let spawnError: Error | undefined;
  child.once("error", (error) => {
    spawnError = error;
  });
  const exited = new Promise<void>((resolve) =>
    child.once("close", () => {
      live.delete(child);
      log.end();
      resolve();
    }),
  );
  const running = () => child.exitCode === null && child.signalCode === null && spawnError === undefined;
  const stop = async () => {
    if (running()) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
    } else if (spawnError === undefined) {
      await exited;
    }
  };

  const queryUrl = `http://127.0.0.1:${ports.queryHttp}`;
  const getJson = async <T>(path: string): Promise<{ status: number; body: T | undefined }> => {
    const response = await fetch(`${queryUrl}${path}`, { signal: AbortSignal.timeout(5000) });
    const text = await response.text();
    let body: T | undefined;
    try {
      body = JSON.parse(text) as T;
    } catch {
      body = undefined;
    }
    if (response.status !== 200 && response.status !== 404) {
      throw new Error(`jaeger GET ${path}: ${response.status} ${text.slice(0, 500)}\n${tail()}`);
    }
    return { status: response.status, body };
  };

  try {
    await until(
      () => `jaeger (${bin}) to be ready on ${queryUrl}; its output:\n${tail()}`,
      async () => {
        if (spawnError) throw new Error(`jaeger (${bin}) did not start: ${spawnError.message}`);
        if (!running()) throw new Error(`jaeger exited (${child.exitCode ?? child.signalCode}):\n${tail()}`);
        try {
          const response = await fetch(`${queryUrl}/api/services`, { signal: AbortSignal.timeout(2000) });
          await response.arrayBuffer();
          if (response.status !== 200) return false;
        } catch {
          return false;
        }
        // The receivers start after the extensions: wait for them too.
        for (const port of [ports.otlpGrpc, ports.otlpHttp, ports.zipkin]) {
          if (!(await canConnect(port))) return false;
        }
        return true;
      },
      60_000,
      100,
    );
  } catch (error) {
    await stop();
    throw error;
  }

  const services = async (): Promise<string[]> => {
    const { body } = await getJson<{ data: string[] | null }>("/api/services");
    return body?.data ?? [];
  };

  const traces = async (service: string, opts: JaegerTracesOptions = {}): Promise<JaegerTrace[]> => {
    const params = new URLSearchParams({ service });
    if (opts.limit !== undefined) params.set("limit", String(opts.limit));
    if (opts.lookback !== undefined) {
      // The API takes a start time in microseconds; the UI's "lookback" is its own.
      params.set("start", String((Date.now() - lookbackMs(opts.lookback)) * 1000));
    }
    const { status, body } = await getJson<{ data: JaegerTrace[] | null }>(`/api/traces?${params}`);
    if (status === 404) return [];
    return (body?.data ?? []).map(normalise);
  };

  const trace = async (traceId: string): Promise<JaegerTrace | undefined> => {
    const { status, body } = await getJson<{ data: JaegerTrace[] | null }>(
      `/api/traces/${encodeURIComponent(traceId)}`,
    );
    const found = status === 200 ? body?.data?.[0] : undefined;
    return found === undefined ? undefined : normalise(found);
  };

  const waitForTraces = async (
    service: string,
    predicate: (traces: JaegerTrace[]) => boolean,
    timeoutMs = 15_000,
  ): Promise<JaegerTrace[]> => {
    let last: JaegerTrace[] = [];
    await until(
      () =>
        `traces of service "${service}" in jaeger (${queryUrl}) to match; it has ${last.length}: ` +
        `${JSON.stringify(last.map(summary)).slice(0, 3000)}\njaeger's output:\n${tail()}`,
      async () => {
        if (!running()) throw new Error(`jaeger exited (${child.exitCode ?? child.signalCode}):\n${tail()}`);
        last = await traces(service, { limit: 1000 });
        return predicate(last);
      },
      timeoutMs,
      100,
    );
    return last;
  };

  return {
    otlpGrpcAddress: `127.0.0.1:${ports.otlpGrpc}`,
    otlpHttpUrl: `http://127.0.0.1:${ports.otlpHttp}/v1/traces`,
    zipkinUrl: `http://127.0.0.1:${ports.zipkin}/api/v2/spans`,
    queryUrl,
    services,
    traces,
    trace,
    waitForTraces,
    logs: () => output,
    stop,
  };
}

/** A trace in a line, for error messages: its id and each span's service and operation. */
function summary(trace: JaegerTrace): string {
  const spans = trace.spans.map(
    (span) => `${trace.processes[span.processID]?.serviceName}:${span.operationName}`,
  );
  return `${trace.traceID} [${spans.join(", ")}]`;
}
