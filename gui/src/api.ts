// The console's view of the control plane: the same HTTP API the CLI reads (GET /v1/...), polled,
// with the token the user gave (kept in sessionStorage) as `Authorization: Bearer`. The types are
// the API's JSON as the console reads it; the console imports nothing of control-plane/ (it talks
// HTTP, as any client does: .dependency-cruiser.cjs).
import { useEffect, useRef, useState } from "preact/hooks";

export type Labels = Record<string, string>;

export interface Resource<S> {
  kind: string;
  metadata: { name: string; labels?: Labels; resourceVersion?: string; updatedAt?: string };
  spec: S;
}

export interface ServiceSpec {
  ports: { name: string; port: number; protocol: string }[];
  description?: string;
  mtls?: { mode: string };
}
export interface WorkloadSpec {
  service: string;
  address: string;
  port: number;
  labels?: Labels;
  zone?: string;
  appPort?: number;
  mtls?: boolean;
}
export interface Destination {
  service: string;
  subset?: Labels;
  weight?: number;
}
export interface RouteRule {
  name: string;
  match?: Record<string, unknown>;
  destinations: Destination[];
  sticky?: { header?: string; cookie?: string };
  timeoutMs?: number;
  retries?: { attempts: number; on?: string[]; perTryTimeoutMs?: number };
  fault?: { abort?: { status: number; percent: number }; delay?: { ms: number; percent: number } };
}
export interface RouteSpec {
  service: string;
  rules: RouteRule[];
}
export interface CircuitBreakerSpec {
  service: string;
  subset?: Labels;
  consecutiveErrors?: number;
  intervalMs?: number;
  baseEjectionMs?: number;
  maxEjectionMs?: number;
  maxEjectionPercent?: number;
  maxConcurrent?: number;
  fallback?: { service: string; subset?: Labels };
}
export interface AccessRuleSpec {
  source: string;
  destination: string;
  action: "allow" | "deny";
}
export interface MeshPolicySpec {
  defaultAccess: "allow" | "deny";
  mtls?: { mode: string };
}
export interface WasmModuleSpec {
  sha256: string;
  size: number;
  abiVersion: string;
  description?: string;
}
export interface WasmPluginSpec {
  module: string;
  services: string[];
  direction?: "inbound" | "outbound";
  priority?: number;
}
export interface ImportedResourceSpec {
  source: { apiVersion: string; kind: string; name: string; namespace?: string };
  produced: { kind: string; name: string }[];
  warnings?: string[];
}

/** GET /v1/status: a proxy connected to the xDS server. */
export interface ProxyStatus {
  nodeId: string;
  service: string;
  labels: Labels;
  protocol: "sotw" | "delta";
  peer: string;
  connectedAt: string;
  sent: Record<string, string>;
  acked: Record<string, string>;
  syncedVersion?: string;
  lastRejection?: { typeUrl: string; version: string; message: string; at: string };
  nacks: number;
}

/** GET /v1/status: an edge worker that polled GET /v1/edge/config in the last 10 minutes. */
export interface EdgeStatus {
  name: string;
  tokenId: string;
  /** Null: none yet, or not known (it refused the document it fetched). */
  servingVersion: string | null;
  currentVersion: string;
  current: boolean;
  lastPollAt: string;
  /** By the control plane's clock: the browser's may differ. */
  lastPollAgoMs: number;
  polls: number;
  lastRejection?: { reason: string; version: string | null; at: string };
}

/** GET /v1/traffic: what the sidecars report of the last window (absent while the API answers 404). */
export interface Traffic {
  windowSeconds: number;
  generatedAt: string;
  edges: {
    source: string;
    destination: string;
    subset: Labels | null;
    cluster: string;
    requestsPerSecond: number;
    errorsPerSecond: number;
    requests: number;
    errors: number;
  }[];
  circuits: { service: string; subset: Labels | null; cluster: string; open: boolean; proxies: string[] }[];
  denials: { source: string; rule: string; count: number }[];
  proxies: { node: string; service: string; reportedAt: string }[];
}

/** GET /v1/proxies/<node>/config?type=extensions: each Wasm filter's module and code digest. */
export interface ProxyWasm {
  filter: string;
  module: string;
  delivery: "inline" | "file";
  codeSha256: string;
  sha256?: string;
}

export interface Mesh {
  services: Resource<ServiceSpec>[];
  workloads: Resource<WorkloadSpec>[];
  routes: Resource<RouteSpec>[];
  breakers: Resource<CircuitBreakerSpec>[];
  accessRules: Resource<AccessRuleSpec>[];
  policies: Resource<MeshPolicySpec>[];
  modules: Resource<WasmModuleSpec>[];
  plugins: Resource<WasmPluginSpec>[];
  imported: Resource<ImportedResourceSpec>[];
  proxies: ProxyStatus[];
  /** Edge workers (absent from a control plane that does not list them: none). */
  edges: EdgeStatus[];
  /** Null while GET /v1/traffic answers 404 (a control plane without it): nothing is shown. */
  traffic: Traffic | null;
  /** Wasm filters each connected proxy was sent, by node id (fetched again when its revision moves). */
  wasm: Record<string, ProxyWasm[]>;
  /** When this snapshot was read. */
  readAt: Date;
}

const TOKEN_KEY = "wasmesh.token";
export const savedToken = (): string | null => sessionStorage.getItem(TOKEN_KEY);
export const saveToken = (token: string | null): void => {
  if (token === null) sessionStorage.removeItem(TOKEN_KEY);
  else sessionStorage.setItem(TOKEN_KEY, token);
};

/** The API refused the token (or wants one): the console asks for one. */
export class Unauthorized extends Error {}

async function get<T>(path: string, optional = false): Promise<T | null> {
  const token = savedToken();
  const response = await fetch(path, {
    headers: { accept: "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    cache: "no-store",
  });
  if (response.status === 401) throw new Unauthorized(await messageOf(response));
  if (optional && (response.status === 404 || response.status === 503)) return null;
  if (!response.ok) throw new Error(`GET ${path}: ${response.status} ${await messageOf(response)}`);
  return (await response.json()) as T;
}

async function messageOf(response: Response): Promise<string> {
  const text = await response.text();
  try {
    return (JSON.parse(text) as { error?: { message?: string } }).error?.message ?? text;
  } catch {
    return text;
  }
}

const list = async <S>(plural: string) =>
  ((await get<{ items: Resource<S>[] }>(`/v1/${plural}`)) as { items: Resource<S>[] }).items;

/** Wasm filters by node, kept while a proxy's acknowledged revision stays the same. */
const wasmCache = new Map<string, { key: string; wasm: ProxyWasm[] }>();

async function wasmOf(proxies: ProxyStatus[]): Promise<Record<string, ProxyWasm[]>> {
  const out: Record<string, ProxyWasm[]> = {};
  await Promise.all(
    proxies.map(async (p) => {
      const key = `${p.connectedAt} ${p.syncedVersion ?? ""} ${JSON.stringify(p.acked)}`;
      const cached = wasmCache.get(p.nodeId);
      if (cached?.key === key) {
        out[p.nodeId] = cached.wasm;
        return;
      }
      const config = await get<{ wasm: ProxyWasm[] }>(
        `/v1/proxies/${encodeURIComponent(p.nodeId)}/config?type=extensions`,
        true,
      ).catch((error: unknown) => {
        if (error instanceof Unauthorized) throw error;
        return null;
      });
      const wasm = config?.wasm ?? [];
      wasmCache.set(p.nodeId, { key, wasm });
      out[p.nodeId] = wasm;
    }),
  );
  return out;
}

export async function readMesh(): Promise<Mesh> {
  const [services, workloads, routes, breakers, accessRules, policies, modules, plugins, imported] =
    await Promise.all([
      list<ServiceSpec>("services"),
      list<WorkloadSpec>("workloads"),
      list<RouteSpec>("routes"),
      list<CircuitBreakerSpec>("circuitbreakers"),
      list<AccessRuleSpec>("accessrules"),
      list<MeshPolicySpec>("meshpolicies"),
      list<WasmModuleSpec>("wasmmodules"),
      list<WasmPluginSpec>("wasmplugins"),
      list<ImportedResourceSpec>("importedresources"),
    ]);
  const [status, traffic] = await Promise.all([
    get<{ proxies: ProxyStatus[]; edges?: EdgeStatus[] }>("/v1/status"),
    get<Traffic>("/v1/traffic", true),
  ]);
  const proxies = status?.proxies ?? [];
  return {
    services,
    workloads,
    routes,
    breakers,
    accessRules,
    policies,
    modules,
    plugins,
    imported,
    proxies,
    edges: status?.edges ?? [],
    traffic,
    wasm: await wasmOf(proxies),
    readAt: new Date(),
  };
}

export const POLL_MS = 1500;

export type Polled =
  | { state: "loading" }
  | { state: "unauthorized"; message: string }
  | { state: "ready"; mesh: Mesh; error?: string }
  | { state: "failed"; error: string };

/**
 * The mesh, read again every POLL_MS while the page is open (a changed route shows without a
 * reload); `generation` restarts it (after a new token).
 */
export function useMesh(generation: number): Polled {
  const [polled, setPolled] = useState<Polled>({ state: "loading" });
  const last = useRef<Mesh | null>(null);
  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const tick = async () => {
      try {
        const mesh = await readMesh();
        if (stopped) return;
        last.current = mesh;
        setPolled({ state: "ready", mesh });
      } catch (error) {
        if (stopped) return;
        const message = error instanceof Error ? error.message : String(error);
        if (error instanceof Unauthorized) {
          setPolled({ state: "unauthorized", message });
          return; // until a token is given
        }
        // Keep showing the last snapshot, with what failed.
        setPolled(
          last.current
            ? { state: "ready", mesh: last.current, error: message }
            : { state: "failed", error: message },
        );
      }
      if (!stopped) timer = setTimeout(tick, POLL_MS);
    };
    void tick();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [generation]);
  return polled;
}

/** `version=v1,zone=a`, or `all` for no subset. */
export const subsetText = (subset: Labels | null | undefined): string => {
  const entries = Object.entries(subset ?? {});
  return entries.length === 0 ? "all" : entries.map(([k, v]) => `${k}=${v}`).join(",");
};

/** Whether labels carry every key and value of a subset. */
export const selects = (subset: Labels | null | undefined, labels: Labels | undefined): boolean =>
  Object.entries(subset ?? {}).every(([k, v]) => labels?.[k] === v);

export const sameSubset = (a: Labels | null | undefined, b: Labels | null | undefined): boolean =>
  subsetText(a) === subsetText(b);
