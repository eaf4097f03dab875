// Buffers the module reads with proxy_get_buffer_bytes and writes with proxy_set_buffer_bytes.
import { Status } from "./abi.ts";

export interface HostBuffer {
  bytes(): Uint8Array;
  /** Envoy's Buffer::copyFrom(start, length, data). */
  set(start: number, length: number, data: Uint8Array): Status;
}

/** Configuration and other host-owned bytes: readable, never writable (Envoy: BadArgument). */
export class ConstBuffer implements HostBuffer {
  private readonly data: Uint8Array;

  constructor(data: Uint8Array) {
    this.data = data;
  }

  bytes(): Uint8Array {
    return this.data;
  }

  set(): Status {
    return Status.BadArgument;
  }
}

export const EMPTY_BUFFER = new ConstBuffer(new Uint8Array(0));

/**
 * A body chunk (or the buffered body). Envoy supports three edits only: prepend (start 0,
 * length 0), replace everything (start 0, length >= size) and append (start >= size).
 */
export class BodyBuffer implements HostBuffer {
  private data: Uint8Array;

  constructor(data: Uint8Array) {
    this.data = data;
  }

  bytes(): Uint8Array {
    return this.data;
  }

  set(start: number, length: number, data: Uint8Array): Status {
    if (start === 0) {
      if (length === 0) this.data = concat(data, this.data);
      else if (length >= this.data.byteLength) this.data = data.slice();
      else return Status.BadArgument;
      return Status.Ok;
    }
    if (start >= this.data.byteLength) {
      this.data = concat(this.data, data);
      return Status.Ok;
    }
    return Status.BadArgument;
  }
}

export function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a, 0);
  out.set(b, a.byteLength);
  return out;
}
