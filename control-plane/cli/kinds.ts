// The resource kinds as the CLI names them on the command line and in API paths.
import type { Kind } from "../resources/index.ts";
import { CliError } from "./client.ts";

/**
 * The resource kinds, in the resource model's order. Listed rather than imported: the model loads
 * TypeBox and the YAML parser, a cost every command would pay at start. `satisfies` keeps each name
 * a real kind; test/control-plane/cli.test.ts checks that none is missing.
 */
export const KINDS = [
  "Service",
  "Workload",
  "Route",
  "CircuitBreaker",
  "AccessRule",
  "MeshPolicy",
  "WasmModule",
  "WasmPlugin",
] as const satisfies readonly Kind[];

/** Resolves `route`, `Routes`, `meshpolicy`… to a kind, or fails naming the accepted ones. */
export function resolveKind(value: string): Kind {
  const wanted = value.toLowerCase();
  const kind = KINDS.find((k) => {
    const lower = k.toLowerCase();
    return wanted === lower || wanted === `${lower}s` || wanted === lower.replace(/y$/, "ies");
  });
  if (!kind) throw new CliError(`unknown kind '${value}'; kinds: ${KINDS.join(", ")}`, 2);
  return kind;
}

/** The API's path segment for a kind (see control-plane/api). */
export function kindPath(kind: Kind): string {
  const lower = kind.toLowerCase();
  return lower.endsWith("y") ? `${lower.slice(0, -1)}ies` : `${lower}s`;
}
