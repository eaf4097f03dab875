// What the meshes' observability resources (Istio's Telemetry, Kuma's MeshTrace and MeshAccessLog)
// share on their way to wasmesh's Tracing and AccessLog: percentages, span tags, a backend's URL.
import { type AccessLog, TRACING_PROTOCOLS, type Tracing, type TracingProtocol } from "../resources/index.ts";
import { type Context, isObj } from "./fields.ts";

export type TraceTag = NonNullable<Tracing["spec"]["tags"]>[number];
export type AccessLogBackend = AccessLog["spec"]["backends"][number];

/** A percentage from 0 to 100: a number, or a decimal written as a string (Kuma's IntOrString). */
export function percentOf(ctx: Context, value: unknown, path: string): number | undefined {
  const n =
    typeof value === "number"
      ? value
      : typeof value === "string" && /^\s*\d+(\.\d+)?\s*%?\s*$/.test(value)
        ? Number.parseFloat(value)
        : Number.NaN;
  if (!Number.isFinite(n) || n < 0 || n > 100) {
    ctx.error(path, `must be a percentage from 0 to 100 (got ${JSON.stringify(value)})`);
    return undefined;
  }
  const hundredths = Math.round(n * 100) / 100;
  if (hundredths !== n) {
    ctx.warn(path, `${n}% is rounded to ${hundredths}% (Envoy samples to a hundredth of a percent)`);
  }
  return hundredths;
}

const TAG_NAME = /^[A-Za-z0-9_.:/-]{1,128}$/;
const HEADER_NAME = /^[a-z0-9!#$%&'*+.^_`|~-]{1,256}$/;

/** A span tag from a header (lower-cased) with an optional default, or undefined after an error. */
export function headerTag(
  ctx: Context,
  name: string,
  header: unknown,
  fallback: unknown,
  at: { tag: string; header: string; fallback: string },
): TraceTag | undefined {
  if (!TAG_NAME.test(name)) {
    ctx.error(at.tag, `'${name}' is no tag name wasmesh takes (letters, digits, _.:/-, at most 128)`);
    return undefined;
  }
  const h = typeof header === "string" ? header.toLowerCase() : "";
  if (!HEADER_NAME.test(h)) {
    ctx.error(at.header, "must be a request header name");
    return undefined;
  }
  if (fallback !== undefined && typeof fallback !== "string") {
    ctx.error(at.fallback, "must be a string");
    return undefined;
  }
  return { name, header: h, ...(fallback !== undefined ? { default: fallback } : {}) };
}

/** A span tag with a fixed value, or undefined after an error. */
export function literalTag(
  ctx: Context,
  name: string,
  value: unknown,
  at: { tag: string; literal: string },
): TraceTag | undefined {
  if (!TAG_NAME.test(name)) {
    ctx.error(at.tag, `'${name}' is no tag name wasmesh takes (letters, digits, _.:/-, at most 128)`);
    return undefined;
  }
  if (typeof value !== "string" && typeof value !== "number" && typeof value !== "boolean") {
    ctx.error(at.literal, "must be a string");
    return undefined;
  }
  return { name, literal: String(value) };
}

/** `<protocol> <url>` (the annotation's form) as a Tracing backend, or why not. */
export function parseBackend(
  text: unknown,
): { ok: true; backend: NonNullable<Tracing["spec"]["backend"]> } | { ok: false; message: string } {
  const parts = typeof text === "string" ? text.trim().split(/\s+/) : [];
  const [protocol, url] = parts;
  if (parts.length !== 2 || !(TRACING_PROTOCOLS as readonly string[]).includes(protocol as string)) {
    return {
      ok: false,
      message: `must be '<protocol> <url>', the protocol one of ${TRACING_PROTOCOLS.join(", ")} (e.g. 'otlp-grpc http://otel-collector.observability:4317')`,
    };
  }
  if (!/^https?:\/\//.test(url as string) || !URL.canParse(url as string)) {
    return { ok: false, message: `'${url}' is no http(s) URL` };
  }
  return { ok: true, backend: { protocol: protocol as TracingProtocol, url: url as string } };
}

/** Kuma's `tags` list ({name, literal} | {name, header: {name, default}}) as span tags. */
export function kumaTags(ctx: Context, value: unknown, path: string): TraceTag[] | undefined {
  if (!Array.isArray(value)) {
    ctx.error(path, "must be a list of tags");
    return undefined;
  }
  const out: TraceTag[] = [];
  let failed = false;
  value.forEach((t, i) => {
    const at = `${path}[${i}]`;
    const tag = isObj(t) ? t : {};
    const name = typeof tag.name === "string" ? tag.name : "";
    let made: TraceTag | undefined;
    if (tag.literal !== undefined && tag.header === undefined)
      made = literalTag(ctx, name, tag.literal, { tag: `${at}.name`, literal: `${at}.literal` });
    else if (isObj(tag.header) && tag.literal === undefined)
      made = headerTag(ctx, name, tag.header.name, tag.header.default, {
        tag: `${at}.name`,
        header: `${at}.header.name`,
        fallback: `${at}.header.default`,
      });
    else ctx.error(at, "must have a name and exactly one of literal, header");
    if (made === undefined) failed = true;
    else out.push(made);
  });
  return failed ? undefined : out;
}
