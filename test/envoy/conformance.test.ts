// The conformance table through a real Envoy; test/filters/conformance.test.ts runs the same
// vectors through the TypeScript host and test/workers/worker.test.ts through the edge worker.
// Header bytes go out as Node's http sends its strings, one byte per character.
import { afterAll, beforeAll, describe, it } from "vitest";
import meshConfig from "../conformance/mesh-config.json" with { type: "json" };
import table from "../conformance/vectors.json" with { type: "json" };
import { type ConformanceVector, expectDecision, observedAt, requestFor } from "../support/conformance.ts";
import { type MeshEnvoy, startMeshEnvoy } from "../support/mesh-envoy.ts";

describe("conformance vectors through Envoy", () => {
  let mesh: MeshEnvoy;
  beforeAll(async () => {
    mesh = await startMeshEnvoy({ config: meshConfig });
  });
  afterAll(async () => {
    await mesh?.stop();
  });

  for (const vector of table.vectors as ConformanceVector[]) {
    it(vector.name, async () => {
      mesh.v1.reset();
      mesh.v2.reset();
      const response = await mesh.send(requestFor(vector, "latin1"));
      expectDecision(vector, observedAt(response, [mesh.v1, mesh.v2]), "latin1");
    });
  }
});
