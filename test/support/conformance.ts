// The conformance table's vocabulary, shared by the host suite and the Envoy suite.
import { expect } from "vitest";
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

export function expectDecision(vector: ConformanceVector, observed: ObservedDecision): void {
  const want = vector.expect;
  expect({ status: observed.status, cluster: observed.cluster }, vector.name).toEqual({
    status: want.status,
    cluster: want.cluster,
  });
  for (const [name, value] of Object.entries(want.requestHeaders ?? {})) {
    expect(observed.upstreamHeaders, `${vector.name}: upstream saw the request`).not.toBeNull();
    expect(observed.upstreamHeaders?.get(name) ?? null, `${vector.name}: upstream header ${name}`).toBe(
      value,
    );
  }
  for (const [name, value] of Object.entries(want.responseHeaders ?? {})) {
    expect(observed.responseHeaders.get(name) ?? null, `${vector.name}: response header ${name}`).toBe(value);
  }
}
