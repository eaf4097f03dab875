// Properties (proxy_get_property): paths of segments, looked up in layers of plain objects, values
// serialized the way Envoy serializes CEL values.
import { encodePairs } from "./headers.ts";
import { utf8 } from "./memory.ts";

/**
 * A property value. Strings are UTF-8, Uint8Array raw bytes, integers 8-byte little-endian int64
 * (other numbers float64), booleans one byte. Objects and arrays are maps and lists, which Envoy
 * returns in the header-pairs wire format (a list as pairs with empty values).
 */
export type PropertyValue =
  | string
  | Uint8Array
  | number
  | bigint
  | boolean
  | PropertyTree
  | readonly PropertyValue[];
export interface PropertyTree {
  readonly [segment: string]: PropertyValue | undefined;
}

/** Splits a path as it arrives from the module: segments separated by NUL bytes. */
export function splitPath(path: string): string[] {
  return path.split("\0");
}

function isTree(value: PropertyValue): value is PropertyTree {
  return typeof value === "object" && !(value instanceof Uint8Array) && !Array.isArray(value);
}

export function lookup(tree: PropertyTree, path: readonly string[]): PropertyValue | undefined {
  let value: PropertyValue | undefined = tree;
  for (const segment of path) {
    if (value === undefined) return undefined;
    if (Array.isArray(value)) {
      if (!/^\d+$/.test(segment)) return undefined;
      value = (value as readonly PropertyValue[])[Number(segment)];
    } else if (isTree(value as PropertyValue)) {
      value = Object.hasOwn(value as PropertyTree, segment) ? (value as PropertyTree)[segment] : undefined;
    } else {
      return undefined;
    }
  }
  return value;
}

/** Looks a path up in layers, the first layer holding it winning. */
export function lookupLayers(
  layers: readonly PropertyTree[],
  path: readonly string[],
): PropertyValue | undefined {
  for (const layer of layers) {
    const value = lookup(layer, path);
    if (value !== undefined) return value;
  }
  return undefined;
}

export function serializeProperty(value: PropertyValue): Uint8Array {
  if (typeof value === "string") return utf8(value);
  if (value instanceof Uint8Array) return value.slice();
  if (typeof value === "boolean") return Uint8Array.of(value ? 1 : 0);
  if (typeof value === "number" || typeof value === "bigint") {
    const out = new Uint8Array(8);
    const view = new DataView(out.buffer);
    if (typeof value === "bigint") view.setBigInt64(0, BigInt.asIntN(64, value), true);
    else if (Number.isInteger(value)) view.setBigInt64(0, BigInt(value), true);
    else view.setFloat64(0, value, true);
    return out;
  }
  if (Array.isArray(value)) {
    return encodePairs((value as readonly PropertyValue[]).map((item) => [serializeProperty(item), ""]));
  }
  const entries = Object.entries(value as PropertyTree).filter(
    (entry): entry is [string, PropertyValue] => entry[1] !== undefined,
  );
  return encodePairs(entries.map(([k, v]) => [k, serializeProperty(v)]));
}
