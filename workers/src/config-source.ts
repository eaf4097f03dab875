// Where the worker's EdgeConfig comes from: the control plane's edge endpoint (HTTP with ETag) or a
// KV key the control plane writes. Both are chosen in wrangler.toml and validated by the one schema.
import { type EdgeConfig, validateEdgeConfig } from "../../schema/edge-config.ts";

/** The part of Cloudflare's KVNamespace the worker uses (kept structural: no runtime types needed). */
export interface KvReader {
  get(key: string, type: "arrayBuffer"): Promise<ArrayBuffer | null>;
}

export interface WorkerEnv {
  /** "http" (default) or "kv". */
  CONFIG_SOURCE?: string;
  /** The control plane's `GET /v1/edge/config`. */
  CONFIG_URL?: string;
  /**
   * The bearer token CONFIG_URL is fetched with: a read-only API token (`wasmesh token create
   * --role read-only`), set as a secret (`wrangler secret put WASMESH_TOKEN`).
   */
  WASMESH_TOKEN?: string;
  /**
   * The worker's name as the control plane lists it (GET /v1/status, the console's proxies page): a
   * DNS label (default "edge"). Sent with every poll as Wasmesh-Edge-Name.
   */
  EDGE_NAME?: string;
  /** How often the configuration is revalidated, in ms (default 5000). */
  CONFIG_REFRESH_MS?: string | number;
  CONFIG_KV?: KvReader;
  /** The KV key holding the EdgeConfig JSON (default "wasmesh-edge-config"). */
  CONFIG_KEY?: string;
}

export type LoadOutcome =
  | { kind: "unchanged" }
  | { kind: "config"; config: EdgeConfig; tag: string }
  /** `tag`, when set, names the rejected document so that it is not fetched and reported again. */
  | { kind: "rejected"; reason: string; tag?: string };

export interface ConfigSource {
  /** For messages: where the configuration comes from. */
  readonly description: string;
  /**
   * Loads the configuration unless it is still the one identified by `tag`. Never throws.
   * `refused`: why the document `tag` names was refused (the worker serves its last good one), which
   * an HTTP source reports to the control plane.
   */
  load(tag: string | undefined, refused?: string): Promise<LoadOutcome>;
}

export interface WorkerSettings {
  source: ConfigSource;
  refreshMs: number;
}

export const DEFAULT_REFRESH_MS = 5_000;
/** Bounds on the revalidation interval: protects the control plane, and keeps staleness bounded. */
export const MIN_REFRESH_MS = 100;
export const MAX_REFRESH_MS = 300_000;
/** A control plane that does not answer within this is treated as unreachable. */
const FETCH_TIMEOUT_MS = 5_000;
/** The key the control plane's KV publisher writes by default (control-plane/edge/kv.ts). */
const DEFAULT_KV_KEY = "wasmesh-edge-config";
export const DEFAULT_EDGE_NAME = "edge";
/** EDGE_NAME: a DNS label (lower case), as the control plane records it. */
const EDGE_NAME = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
/** The most of a rejection's text sent in Wasmesh-Edge-Rejected. */
export const MAX_REJECTION_BYTES = 512;

/** Reads wrangler.toml's vars and bindings; an error says what to fix. */
export function readSettings(
  env: WorkerEnv,
): { ok: true; settings: WorkerSettings } | { ok: false; error: string } {
  const refreshMs = parseRefresh(env.CONFIG_REFRESH_MS);
  if (refreshMs === undefined) {
    return {
      ok: false,
      error: `CONFIG_REFRESH_MS must be an integer from ${MIN_REFRESH_MS} to ${MAX_REFRESH_MS} (got ${JSON.stringify(env.CONFIG_REFRESH_MS)})`,
    };
  }
  const name = env.EDGE_NAME === undefined || env.EDGE_NAME === "" ? DEFAULT_EDGE_NAME : env.EDGE_NAME;
  if (!EDGE_NAME.test(name)) {
    return {
      ok: false,
      error: `EDGE_NAME must be a DNS label: lower-case letters, digits and '-', at most 63, not starting or ending with '-' (got ${JSON.stringify(env.EDGE_NAME)})`,
    };
  }
  const kind = env.CONFIG_SOURCE ?? "http";
  if (kind === "http") {
    const url = env.CONFIG_URL;
    if (!url || !URL.canParse(url))
      return { ok: false, error: "CONFIG_URL must be set to the control plane's /v1/edge/config URL" };
    return {
      ok: true,
      settings: { source: httpSource(url, env.WASMESH_TOKEN || undefined, name), refreshMs },
    };
  }
  if (kind === "kv") {
    if (!env.CONFIG_KV)
      return { ok: false, error: 'CONFIG_SOURCE is "kv" but no CONFIG_KV namespace is bound' };
    return {
      ok: true,
      settings: { source: kvSource(env.CONFIG_KV, env.CONFIG_KEY || DEFAULT_KV_KEY), refreshMs },
    };
  }
  return { ok: false, error: `CONFIG_SOURCE must be "http" or "kv" (got ${JSON.stringify(kind)})` };
}

function parseRefresh(value: string | number | undefined): number | undefined {
  if (value === undefined || value === "") return DEFAULT_REFRESH_MS;
  const ms = Number(value);
  return Number.isInteger(ms) && ms >= MIN_REFRESH_MS && ms <= MAX_REFRESH_MS ? ms : undefined;
}

/**
 * A rejection's text as a header value: printable ASCII only (CR and LF would end the header, and
 * fetch refuses characters beyond Latin-1), control characters as spaces and anything else as "?",
 * at most `maxBytes`.
 */
export function headerSafe(text: string, maxBytes = MAX_REJECTION_BYTES): string {
  return (
    text
      // biome-ignore lint/suspicious/noControlCharactersInRegex: removing them is the point
      .replace(/[\x00-\x1f\x7f]+/g, " ")
      .replace(/[^\x20-\x7e]/g, "?")
      .trim()
      .slice(0, maxBytes)
  );
}

/**
 * GET with If-None-Match: a 304 costs the control plane nothing and the worker nothing. With the
 * API token as a bearer token, when there is one. Each poll names the worker (Wasmesh-Edge-Name)
 * and, while it holds a document it refused, why (Wasmesh-Edge-Rejected), for GET /v1/status.
 */
export function httpSource(url: string, token?: string, name = DEFAULT_EDGE_NAME): ConfigSource {
  return {
    description: url,
    async load(tag, refused) {
      const rejected = refused !== undefined ? headerSafe(refused) : "";
      const etag = tag?.startsWith(ETAG) ? tag.slice(ETAG.length) : undefined;
      let response: Response;
      try {
        response = await fetch(url, {
          headers: {
            accept: "application/json",
            "wasmesh-edge-name": name,
            ...(rejected !== "" ? { "wasmesh-edge-rejected": rejected } : {}),
            ...(token !== undefined ? { authorization: `Bearer ${token}` } : {}),
            ...(etag !== undefined ? { "if-none-match": etag } : {}),
          },
          signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
        });
      } catch (error) {
        return { kind: "rejected", reason: `${url} is unreachable: ${describe(error)}` };
      }
      if (response.status === 304) return { kind: "unchanged" };
      if (!response.ok) {
        await response.body?.cancel();
        const hint =
          response.status === 401 || response.status === 403
            ? token === undefined
              ? ": the control plane needs a token; set the WASMESH_TOKEN secret to a read-only one (wasmesh token create --role read-only)"
              : ": WASMESH_TOKEN was refused (revoked, expired, or a dataplane token); give it a read-only token"
            : "";
        return { kind: "rejected", reason: `${url} answered ${response.status}${hint}` };
      }
      let bytes: ArrayBuffer;
      try {
        bytes = await response.arrayBuffer();
      } catch (error) {
        return { kind: "rejected", reason: `${url}: reading the body failed: ${describe(error)}` };
      }
      // Without an ETag the body itself identifies the document.
      const served = response.headers.get("etag");
      const identity = served !== null ? `${ETAG}${served}` : `${BODY}${lenient.decode(bytes)}`;
      if (identity === tag) return { kind: "unchanged" };
      return parse(bytes, url, identity);
    },
  };
}

/** KV has no conditional reads; the value's text identifies it, so an unchanged value is not reparsed. */
export function kvSource(kv: KvReader, key: string): ConfigSource {
  const where = `KV key ${JSON.stringify(key)}`;
  return {
    description: where,
    async load(tag) {
      let bytes: ArrayBuffer | null;
      try {
        bytes = await kv.get(key, "arrayBuffer");
      } catch (error) {
        return { kind: "rejected", reason: `${where}: read failed: ${describe(error)}` };
      }
      if (bytes === null) return { kind: "rejected", reason: `${where} does not exist` };
      const identity = `${BODY}${lenient.decode(bytes)}`;
      if (identity === tag) return { kind: "unchanged" };
      return parse(bytes, where, identity);
    },
  };
}

const ETAG = "etag:";
const BODY = "body:";

/** Decodes anything (invalid bytes become U+FFFD): only to tell documents apart. */
const lenient = new TextDecoder();
/**
 * Refuses bytes that are not UTF-8: decoding them leniently would hand the module a configuration
 * other than the one sent (U+FFFD in place of each bad byte), which it may well accept.
 */
const strict = new TextDecoder("utf-8", { fatal: true });

function parse(bytes: ArrayBuffer, where: string, tag: string): LoadOutcome {
  let text: string;
  try {
    text = strict.decode(bytes);
  } catch {
    return { kind: "rejected", reason: `${where} served a body that is not UTF-8`, tag };
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return { kind: "rejected", reason: `${where} served invalid JSON: ${describe(error)}`, tag };
  }
  const result = validateEdgeConfig(value);
  if (!result.ok) {
    const errors = result.errors.slice(0, 5).map((e) => `${e.path}: ${e.message}`);
    return {
      kind: "rejected",
      reason: `${where} served an invalid edge configuration: ${errors.join("; ")}`,
      tag,
    };
  }
  // What the schema's pattern lets through but fetch could not use (e.g. "http://[::1").
  const tracing = result.config.tracing;
  if (tracing !== undefined && !URL.canParse(tracing.url)) {
    return {
      kind: "rejected",
      reason: `${where} served an invalid edge configuration: tracing.url: not a URL: ${JSON.stringify(tracing.url)}`,
      tag,
    };
  }
  return { kind: "config", config: result.config, tag };
}

export function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
