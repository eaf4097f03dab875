// Buffers: bodies, configurations and http call responses, read and written by range.
import { BufferType, Status } from "../abi.ts";
import { u32 } from "../memory.ts";
import { abiArea } from "./calls.ts";

const EMPTY = new Uint8Array(0);

export const buffers = abiArea(
  ["proxy_get_buffer_bytes", "proxy_set_buffer_bytes", "proxy_get_buffer_status", "proxy_get_configuration"],
  (_vm, abi) => ({
    proxy_get_buffer_bytes(type: number, start: number, maxSize: number, ptrPtr: number, sizePtr: number) {
      const buffer = abi.context().buffer(abi.bufferType(type));
      if (!buffer) return Status.NotFound;
      const bytes = buffer.bytes();
      const from = u32(start);
      // Envoy never over-reads: the range is clipped to the buffer (and may be empty).
      const length = from > bytes.byteLength ? 0 : Math.min(u32(maxSize), bytes.byteLength - from);
      return abi.returnBytes(bytes.subarray(from, from + length), ptrPtr, sizePtr);
    },

    proxy_set_buffer_bytes(type: number, start: number, size: number, dataPtr: number, dataSize: number) {
      const buffer = abi.context().buffer(abi.bufferType(type));
      if (!buffer) return Status.NotFound;
      return buffer.set(u32(start), u32(size), abi.bytes(dataPtr, dataSize));
    },

    proxy_get_buffer_status(type: number, lengthPtr: number, flagsPtr: number) {
      const buffer = abi.context().buffer(abi.bufferType(type));
      if (!buffer) return Status.NotFound;
      abi.returnU32(lengthPtr, buffer.bytes().byteLength);
      return abi.returnU32(flagsPtr, 0);
    },

    // 0.1.0: the plugin configuration while configuring, else the VM configuration.
    proxy_get_configuration(ptrPtr: number, sizePtr: number) {
      const context = abi.context();
      const buffer =
        context.buffer(BufferType.PluginConfiguration) ?? context.buffer(BufferType.VmConfiguration);
      return abi.returnBytes(buffer?.bytes() ?? EMPTY, ptrPtr, sizePtr);
    },
  }),
);
