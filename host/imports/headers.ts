// Header maps: request and response headers and trailers, gRPC metadata, http call responses.
import { Status } from "../abi.ts";
import { decodePairs, encodePairs } from "../headers.ts";
import { abiArea } from "./calls.ts";

const EMPTY = new Uint8Array(0);

export const headers = abiArea(
  [
    "proxy_get_header_map_pairs",
    "proxy_set_header_map_pairs",
    "proxy_get_header_map_value",
    "proxy_replace_header_map_value",
    "proxy_remove_header_map_value",
    "proxy_add_header_map_value",
    "proxy_get_header_map_size",
  ],
  (vm, abi) => ({
    // An absent map reads as empty (Envoy's headerMapToPairs(nullptr)); empty data is a null pointer.
    proxy_get_header_map_pairs(type: number, ptrPtr: number, sizePtr: number) {
      const pairs = abi.context().constMap(abi.mapType(type))?.pairs() ?? [];
      return abi.returnBytes(pairs.length === 0 ? EMPTY : encodePairs(pairs), ptrPtr, sizePtr);
    },

    // Envoy's toPairs turns malformed data into no pairs, which empties the map.
    proxy_set_header_map_pairs(type: number, ptr: number, size: number) {
      const mapType = abi.mapType(type);
      const pairs = decodePairs(abi.bytes(ptr, size)) ?? [];
      abi.writableMap(mapType).setAll(pairs);
      return Status.Ok;
    },

    proxy_get_header_map_value(
      type: number,
      keyPtr: number,
      keySize: number,
      ptrPtr: number,
      sizePtr: number,
    ) {
      const mapType = abi.mapType(type);
      const key = abi.string(keyPtr, keySize);
      const context = abi.context();
      const legacy = vm.abiVersion === "0.1.0"; // 0.1.0 answered Ok with an empty value
      const map = context.constMap(mapType);
      if (!map) {
        if (!context.accessLogPhase) return Status.BadArgument;
        if (!legacy) return Status.NotFound;
      }
      const value = map?.get(key);
      if (value === undefined && !legacy) return Status.NotFound;
      return abi.returnString(value ?? "", ptrPtr, sizePtr);
    },

    proxy_replace_header_map_value(
      type: number,
      keyPtr: number,
      keySize: number,
      valuePtr: number,
      valueSize: number,
    ) {
      const mapType = abi.mapType(type);
      const key = abi.string(keyPtr, keySize);
      const value = abi.string(valuePtr, valueSize);
      abi.writableMap(mapType).replace(key, value);
      return Status.Ok;
    },

    proxy_remove_header_map_value(type: number, keyPtr: number, keySize: number) {
      const mapType = abi.mapType(type);
      const key = abi.string(keyPtr, keySize);
      abi.writableMap(mapType).remove(key);
      return Status.Ok;
    },

    proxy_add_header_map_value(
      type: number,
      keyPtr: number,
      keySize: number,
      valuePtr: number,
      valueSize: number,
    ) {
      const mapType = abi.mapType(type);
      const key = abi.string(keyPtr, keySize);
      const value = abi.string(valuePtr, valueSize);
      abi.writableMap(mapType).add(key, value);
      return Status.Ok;
    },

    // Envoy answers the map's byte size (names plus values), from the writable map only.
    proxy_get_header_map_size(type: number, retPtr: number) {
      return abi.returnU32(retPtr, abi.writableMap(abi.mapType(type)).byteSize());
    },
  }),
);
