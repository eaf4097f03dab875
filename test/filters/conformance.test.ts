// The conformance table through the TypeScript host. test/envoy/conformance.test.ts runs the same
// vectors through a real Envoy and test/workers/worker.test.ts through the edge worker; all must
// reach the decisions the table states. Header bytes reach the host as its strings carry them.
import { beforeAll, describe, expect, it } from "vitest";
import meshConfig from "../conformance/mesh-config.json" with { type: "json" };
import table from "../conformance/vectors.json" with { type: "json" };
import { type ConformanceVector, expectDecision, requestFor } from "../support/conformance.ts";
import { MeshUnderTest } from "../support/mesh-host.ts";

describe("conformance vectors through the TypeScript host", () => {
  let mesh: MeshUnderTest;
  beforeAll(async () => {
    mesh = await MeshUnderTest.start(meshConfig);
  });

  for (const vector of table.vectors as ConformanceVector[]) {
    it(vector.name, () => {
      const decision = mesh.request(requestFor(vector, "host"));
      expectDecision(
        vector,
        {
          status: decision.status,
          cluster: decision.cluster,
          upstreamHeaders: decision.upstreamHeaders,
          responseHeaders: decision.responseHeaders,
        },
        "host",
      );
    });
  }

  it("covers local replies and upstream answers alike", () => {
    const vectors = table.vectors as ConformanceVector[];
    expect(vectors.filter((v) => v.expect.cluster === null).length).toBeGreaterThanOrEqual(3);
    expect(vectors.filter((v) => v.expect.cluster === "v2").length).toBeGreaterThanOrEqual(5);
  });
});
