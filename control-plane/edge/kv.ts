// Publishes the edge configuration into a Cloudflare Workers KV key, the production alternative to
// workers polling GET /v1/edge/config: the worker reads the key through its KV binding. After each
// committed change the server calls notify(); the publisher PUTs the configuration through
// Cloudflare's REST API when its version differs from the last one published, in the background
// (xDS pushes never wait for it), retrying transient failures with capped exponential backoff.
import type { EdgeConfigSource, EdgeState } from "./source.ts";

export const DEFAULT_KV_API_BASE = "https://api.cloudflare.com/client/v4";
export const DEFAULT_KV_KEY = "wasmesh-edge-config";

export interface KvTarget {
  accountId: string;
  namespaceId: string;
  /** Default DEFAULT_KV_KEY. */
  key?: string;
  /** An API token with Workers KV Storage:Edit. Sent as a Bearer token, never logged. */
  token: string;
  /** Default DEFAULT_KV_API_BASE; another base for tests or an API proxy. */
  apiBase?: string;
}

export interface KvPublisherOptions extends KvTarget {
  source: EdgeConfigSource;
  log: (line: string) => void;
  /** First retry delay, doubled per failure up to maxMs (each delay jittered down to half). */
  backoff?: { initialMs: number; maxMs: number };
  /** Per-request limit. Default 30 s. */
  timeoutMs?: number;
  fetch?: typeof fetch;
}

export interface KvPublisher {
  /** A change was committed: publish the configuration if its version moved. Never blocks. */
  notify(): void;
  /** The version last written successfully, if any. */
  readonly published: string | undefined;
  /** Resolves when nothing is queued or in flight (for tests and shutdown). */
  idle(): Promise<void>;
  /** Stops retrying and aborts a request in flight. */
  close(): Promise<void>;
}

/** The KV REST endpoint of one key; the key is a path segment, so it is encoded. */
export function kvValueUrl(target: KvTarget): string {
  const base = (target.apiBase ?? DEFAULT_KV_API_BASE).replace(/\/+$/, "");
  const segment = encodeURIComponent;
  return `${base}/accounts/${segment(target.accountId)}/storage/kv/namespaces/${segment(target.namespaceId)}/values/${segment(target.key ?? DEFAULT_KV_KEY)}`;
}

type Attempt = { ok: true } | { ok: false; retry: boolean; reason: string };

/**
 * `text` with the token, and any bearer credential, replaced by [redacted]: what Cloudflare or a
 * proxy answers may quote the request's Authorization header, and answers are logged.
 */
export function redactSecrets(text: string, secrets: readonly string[]): string {
  let redacted = text;
  for (const secret of secrets) if (secret.length > 0) redacted = redacted.split(secret).join("[redacted]");
  return redacted.replace(/\b(bearer)\s+(?!\[redacted\])[^\s"',;]+/gi, "$1 [redacted]");
}

export function createKvPublisher(options: KvPublisherOptions): KvPublisher {
  const { source } = options;
  // Every line this publisher logs, whatever it quotes (answers, errors, stacks), without the token.
  const log = (line: string) => options.log(redactSecrets(line, [options.token]));
  const url = kvValueUrl(options);
  const doFetch = options.fetch ?? fetch;
  const backoff = options.backoff ?? { initialMs: 1_000, maxMs: 60_000 };
  const timeoutMs = options.timeoutMs ?? 30_000;
  const where = `KV ${options.namespaceId}/${options.key ?? DEFAULT_KV_KEY}`;

  let published: string | undefined;
  let dirty = false;
  let closed = false;
  let running: Promise<void> | undefined;
  const stop = new AbortController();

  function notify(): void {
    if (closed) return;
    dirty = true;
    running ??= loop()
      .catch((error: unknown) => log(`edge: publishing to ${where} stopped: ${(error as Error).stack}`))
      .finally(() => {
        running = undefined;
      });
  }

  /** Runs until the latest configuration is published or cannot be; one request at a time. */
  async function loop(): Promise<void> {
    let failures = 0;
    while (dirty && !closed) {
      dirty = false;
      let state: EdgeState;
      try {
        state = await source.current();
      } catch (error) {
        // No configuration for this revision (or the store failed): nothing to publish until the
        // next change; the key keeps the last good one, which is what workers should run.
        log(`edge: not publishing to ${where}: ${(error as Error).message}`);
        continue;
      }
      if (state.config.version === published) continue;
      const attempt = await put(state.body);
      if (closed) return;
      if (attempt.ok) {
        published = state.config.version;
        failures = 0;
        log(`edge: published version ${published} (revision ${state.revision}) to ${where}`);
        continue;
      }
      if (!attempt.retry) {
        // A 4xx other than 408/429 (bad token, unknown namespace): retrying will not help; the next
        // change tries again.
        log(`edge: publishing to ${where} failed, not retrying: ${attempt.reason}`);
        continue;
      }
      const delay = delayFor(failures++);
      log(`edge: publishing to ${where} failed, retrying in ${delay} ms: ${attempt.reason}`);
      dirty = true; // retry with whatever is current then, which may be newer
      await sleep(delay);
    }
  }

  async function put(body: string): Promise<Attempt> {
    let response: Response;
    try {
      response = await doFetch(url, {
        method: "PUT",
        // The raw body is the value; the multipart form is needed only to attach metadata.
        headers: { authorization: `Bearer ${options.token}`, "content-type": "text/plain; charset=utf-8" },
        body,
        signal: AbortSignal.any([stop.signal, AbortSignal.timeout(timeoutMs)]),
      });
    } catch (error) {
      const cause = (error as { cause?: { code?: string } }).cause?.code;
      return { ok: false, retry: true, reason: cause ?? (error as Error).message };
    }
    const text = await response.text().catch(() => "");
    if (response.ok && cloudflareSuccess(text)) return { ok: true };
    const retry = response.ok || response.status >= 500 || response.status === 408 || response.status === 429;
    return { ok: false, retry, reason: `HTTP ${response.status}${cloudflareErrors(text)}` };
  }

  function delayFor(failures: number): number {
    const full = Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.min(failures, 30));
    // Jitter, so that replicas publishing the same change do not retry in step.
    return Math.round(full / 2 + (Math.random() * full) / 2);
  }

  function sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      stop.signal.addEventListener("abort", done, { once: true });
      function done() {
        clearTimeout(timer);
        stop.signal.removeEventListener("abort", done);
        resolve();
      }
    });
  }

  return {
    notify,
    get published() {
      return published;
    },
    async idle() {
      while (running) await running;
    },
    async close() {
      closed = true;
      stop.abort();
      await running;
    },
  };
}

/** Cloudflare's v4 envelope says `success: false` on some errors answered with a 200. */
function cloudflareSuccess(text: string): boolean {
  try {
    const body = JSON.parse(text) as { success?: unknown };
    return body.success !== false;
  } catch {
    return true; // not the envelope: the status decides
  }
}

/** `: <code> <message>; …` from the v4 envelope, for the log. */
function cloudflareErrors(text: string): string {
  try {
    const body = JSON.parse(text) as { errors?: { code?: number; message?: string }[] };
    const errors = (body.errors ?? []).map((e) => `${e.code ?? ""} ${e.message ?? ""}`.trim());
    return errors.length > 0 ? `: ${errors.join("; ")}` : "";
  } catch {
    return text.length > 0 ? `: ${text.slice(0, 200)}` : "";
  }
}
