// The TypeScript types of the Envoy messages wasmesh emits (control-plane/envoy/types.generated.ts):
// current with the pinned protos, and strict where translate/ needs them to be. The @ts-expect-error
// lines are checked by `npm run typecheck`: if the types let one of these through, the directive is
// unused and the typecheck fails.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  type Cluster,
  EXTENSION_TYPE,
  encodeMessage,
  envoyEnum,
  type Listener,
  TYPE_URL,
} from "../../control-plane/envoy/index.ts";
import { generateEnvoyTypes, TYPES_FILE } from "../../scripts/gen-envoy-types.ts";

describe("the generated Envoy types", () => {
  it("are what scripts/gen-envoy-types.ts writes from the pinned protos", () => {
    // Not toBe: a 3,000-line diff would bury the message.
    const current = readFileSync(TYPES_FILE, "utf8") === generateEnvoyTypes();
    expect(current, "control-plane/envoy/types.generated.ts is stale: run npm run gen:envoy-types").toBe(
      true,
    );
  });

  it("refuse at compile time what encodeMessage refuses at run time", () => {
    const cluster: Cluster = {
      name: "c",
      // @ts-expect-error a misspelled field
      conect_timeout: { seconds: 1 },
    };
    expect(() => encodeMessage(TYPE_URL.cluster, cluster)).toThrow("has no field 'conect_timeout'");

    const listener: Listener = {
      name: "l",
      filter_chains: [
        {
          filters: [
            {
              name: "hcm",
              // @ts-expect-error a misspelled field inside an Any, typed by its "@type"
              typed_config: { "@type": EXTENSION_TYPE.httpConnectionManager, stat_prefx: "l" },
            },
          ],
        },
      ],
    };
    expect(() => encodeMessage(TYPE_URL.listener, listener)).toThrow("has no field 'stat_prefx'");

    // 64-bit integers as numbers: verify() refuses the decimal strings fromObject would take.
    // @ts-expect-error a string for an int64
    const timeout: Cluster = { name: "c", connect_timeout: { seconds: "1" } };
    expect(() => encodeMessage(TYPE_URL.cluster, timeout)).toThrow("integer|Long expected");
  });

  it("type enum names, and envoyEnum looks them up", () => {
    expect(envoyEnum("envoy.config.cluster.v3.Cluster.DiscoveryType", "EDS")).toBe(3);
    // @ts-expect-error a value the enum does not have
    expect(() => envoyEnum("envoy.config.cluster.v3.Cluster.DiscoveryType", "DNS")).toThrow(
      "has no value DNS",
    );
  });
});
