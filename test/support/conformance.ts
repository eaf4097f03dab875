// The conformance tables' vocabulary, shared by the host suite, the Envoy suite and the edge
// worker's suite, and their one convention for header bytes; the invalid configurations, shared by
// the module's, the API's and the edge worker's suites.
import { expect } from "vitest";
import { fromUtf8 } from "../../host/memory.ts";
import invalidConfigs from "../conformance/invalid-configs.json" with { type: "json" };
import type { MeshRequest } from "./mesh-host.ts";
import type { Upstream } from "./upstreams.ts";

/** A case of test/conformance/invalid-configs.json (its description says what each field means). */
export interface InvalidConfigCase {
  name: string;
  config?: unknown;
  /** The configuration as text, when it is not JSON the table can hold as a value. */
  raw?: string;
  /** The configuration as bytes (base64), when they are not UTF-8. */
  rawBase64?: string;
  /** The field the module and (for `by: "both"`) the JSON Schema name. */
  path: string;
  by: "both" | "module";
  reason?: string;
  /** The field the API names, when not `spec.configuration.<path>`. */
  apiPath?: string;
  /** A Route rule that produces the case, for the API's runner. */
  route?: unknown;
  routePath?: string;
}

export const INVALID_CONFIG_CASES = invalidConfigs.cases as readonly InvalidConfigCase[];

/** A case's configuration as the bytes a proxy would be given. */
export function invalidConfigBytes(c: InvalidConfigCase): Buffer {
  if (c.rawBase64 !== undefined) return Buffer.from(c.rawBase64, "base64");
  return Buffer.from(c.raw ?? JSON.stringify(c.config), "utf8");
}

export interface ConformanceVector {
  name: string;
  request: MeshRequest;
  expect: {
    status: number;
    cluster: string | null;
    requestHeaders?: Record<string, string | null>;
    responseHeaders?: Record<string, string>;
  };
}

export interface ObservedDecision {
  status: number;
  cluster: string | null;
  /** What the upstream received; null when no upstream saw the request. */
  upstreamHeaders: Map<string, string> | null;
  responseHeaders: Map<string, string>;
}

/**
 * What a proxy in front of real upstreams decided: the status, which upstream answered (null when
 * none, "both" when more than one did) and what it received.
 */
export function observedAt(
  response: { status: number; headers: Map<string, string> },
  upstreams: readonly Upstream[],
): ObservedDecision {
  const answered = upstreams.filter((u) => u.count > 0);
  const upstream = answered[0];
  const received = upstream?.requests[0];
  return {
    status: response.status,
    cluster: answered.length === 1 && upstream ? upstream.name : answered.length === 0 ? null : "both",
    upstreamHeaders: received
      ? new Map(Object.entries(received.headers).map(([k, v]) => [k, String(v)]))
      : null,
    responseHeaders: response.headers,
  };
}

/**
 * Header bytes in the table. A JSON string is text, and HTTP header values are bytes (any from
 * 0x80 is allowed, UTF-8 or not). So a header name or value and the authority in the table are the
 * UTF-8 of the string, except that `\xHH` (in JSON "\\xHH") is the single byte 0xHH and `\\` (in
 * JSON "\\\\") a backslash: "tester\\xff" is the bytes of "tester" and then 0xff.
 */
export function tableBytes(text: string): Uint8Array {
  const bytes: number[] = [];
  const encoder = new TextEncoder();
  for (let i = 0; i < text.length; i++) {
    if (text[i] !== "\\") {
      const end = text.indexOf("\\", i);
      const run = end < 0 ? text.slice(i) : text.slice(i, end);
      bytes.push(...encoder.encode(run));
      i += run.length - 1;
      continue;
    }
    const hex = /^x([0-9a-fA-F]{2})/.exec(text.slice(i + 1));
    if (hex) {
      bytes.push(Number.parseInt(hex[1] as string, 16));
      i += 3;
    } else if (text[i + 1] === "\\") {
      bytes.push(0x5c);
      i += 1;
    } else throw new Error(`conformance table: '\\' must start \\xHH or \\\\ in ${JSON.stringify(text)}`);
  }
  return Uint8Array.from(bytes);
}

/** How a runner's strings carry header bytes. */
export type HeaderStrings =
  /**
   * One character per byte (Latin-1), as Node's http sends and receives header strings: the Envoy
   * and edge worker runners talk to their proxy and origins through it.
   */
  | "latin1"
  /** The TypeScript host's strings (host/memory.ts): UTF-8, each ill-formed byte an escape. */
  | "host";

/** A header name or value of the table as a runner's string. */
export function headerString(text: string, as: HeaderStrings): string {
  const bytes = tableBytes(text);
  return as === "host" ? fromUtf8(bytes) : Buffer.from(bytes).toString("latin1");
}

/** The vector's request with its header bytes as the runner's strings. */
export function requestFor(vector: ConformanceVector, as: HeaderStrings): MeshRequest {
  const { request } = vector;
  return {
    ...request,
    ...(request.authority !== undefined ? { authority: headerString(request.authority, as) } : {}),
    ...(request.headers !== undefined
      ? {
          headers: Object.fromEntries(
            Object.entries(request.headers).map(([name, value]) => [
              headerString(name, as),
              headerString(value, as),
            ]),
          ),
        }
      : {}),
  };
}

export function expectDecision(
  vector: ConformanceVector,
  observed: ObservedDecision,
  as: HeaderStrings,
): void {
  const want = vector.expect;
  expect({ status: observed.status, cluster: observed.cluster }, vector.name).toEqual({
    status: want.status,
    cluster: want.cluster,
  });
  for (const [name, value] of Object.entries(want.requestHeaders ?? {})) {
    expect(observed.upstreamHeaders, `${vector.name}: upstream saw the request`).not.toBeNull();
    expect(observed.upstreamHeaders?.get(name) ?? null, `${vector.name}: upstream header ${name}`).toBe(
      value === null ? null : headerString(value, as),
    );
  }
  for (const [name, value] of Object.entries(want.responseHeaders ?? {})) {
    expect(observed.responseHeaders.get(name) ?? null, `${vector.name}: response header ${name}`).toBe(
      headerString(value, as),
    );
  }
}
