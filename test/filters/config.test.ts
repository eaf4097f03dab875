// Invalid configurations: the module must refuse each case naming the field (and saying why, where
// the case says), and the JSON Schema must refuse the structural ones naming the same field. Valid
// examples must pass both. The same cases run through the API (test/control-plane/invalid-configs.test.ts)
// and the edge worker (test/workers/invalid-configs.test.ts).
import { describe, expect, it } from "vitest";
import { validateFilterConfig } from "../../schema/filter-config.ts";
import meshConfig from "../conformance/mesh-config.json" with { type: "json" };
import { INVALID_CONFIG_CASES, invalidConfigBytes } from "../support/conformance.ts";
import { configureMesh } from "../support/mesh-host.ts";

describe("invalid plugin configuration", () => {
  for (const c of INVALID_CONFIG_CASES) {
    it(`module refuses: ${c.name}`, async () => {
      const result = await configureMesh(invalidConfigBytes(c));
      expect(result.ok, c.name).toBe(false);
      expect(result.error).toMatch(/^wasmesh: invalid plugin configuration: /);
      expect(result.error.replace("wasmesh: invalid plugin configuration: ", "")).toMatch(
        new RegExp(`^${c.path.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: `),
      );
      if (c.reason !== undefined) expect(result.error).toContain(c.reason);
    });
    if (c.by === "both") {
      it(`schema refuses: ${c.name}`, () => {
        const result = validateFilterConfig(c.config);
        expect(result.ok).toBe(false);
        if (!result.ok) expect(result.errors.map((e) => e.path)).toContain(c.path);
      });
    }
  }

  it("accepts the conformance configuration in both", async () => {
    expect(validateFilterConfig(meshConfig).ok).toBe(true);
    expect((await configureMesh(JSON.stringify(meshConfig))).ok).toBe(true);
  });

  it("accepts an empty configuration (every stage off)", async () => {
    expect(validateFilterConfig({}).ok).toBe(true);
    expect((await configureMesh("{}")).ok).toBe(true);
  });
});
