// Envoy enum values for the resources' plain objects. encodeMessage() checks objects with
// protobufjs's verify(), which takes enum values only as numbers, so generators write numbers,
// looked up by name in the loaded protos (never typed in by hand, so they cannot drift). The names
// are typed (EnvoyEnums, generated from the same protos): a misspelled one does not compile.
import { envoyProtos } from "./protos.ts";
import type { ConfigSource, EnvoyEnums } from "./types.generated.ts";

const cache = new Map<string, number>();

/** The number of `value` in the enum `enumName` (full proto name), e.g. ("envoy.config.core.v3.ApiVersion", "V3"). */
export function envoyEnum<E extends keyof EnvoyEnums>(enumName: E, value: EnvoyEnums[E]): number {
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
export function adsConfigSource(): ConfigSource {
  return { ads: {}, resource_api_version: envoyEnum("envoy.config.core.v3.ApiVersion", "V3") };
}
