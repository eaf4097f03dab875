// The conformance table's vocabulary, shared by the host suite, the Envoy suite and the edge
// worker's suite, and its one convention for header bytes.
import { expect } from "vitest";
import { fromUtf8 } from "../../host/memory.ts";
import type { MeshRequest } from "./mesh-host.ts";

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
