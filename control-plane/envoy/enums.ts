// Envoy enum values for the resources' plain objects. encodeMessage() checks objects with
// protobufjs's verify(), which takes enum values only as numbers, so generators write numbers,
// looked up by name in the loaded protos (never typed in by hand, so they cannot drift).
import { envoyProtos } from "./protos.ts";

const cache = new Map<string, number>();

/** The number of `value` in the enum `enumName` (full proto name), e.g. ("envoy.config.core.v3.ApiVersion", "V3"). */
export function envoyEnum(enumName: string, value: string): number {
  const key = `${enumName}.${value}`;
  let number = cache.get(key);
  if (number === undefined) {
    number = envoyProtos().lookupEnum(enumName).values[value];
    if (number === undefined) throw new Error(`${enumName} has no value ${value}`);
    cache.set(key, number);
  }
  return number;
}

/** Everything after the bootstrap arrives over the one ADS stream. */
export function adsConfigSource(): Record<string, unknown> {
  return { ads: {}, resource_api_version: envoyEnum("envoy.config.core.v3.ApiVersion", "V3") };
}
