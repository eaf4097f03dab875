// What the Proxy-Wasm functions share: the context a call acts on, reading arguments from the
// module's memory and writing results back, checking enum arguments, and answering a refused call
// with its status. A failed check throws a Refusal, which guarded() turns into the status the
// module gets back, so each function reads as its semantics in the order Envoy checks (arguments,
// then memory, then the operation). Refusals are preallocated plain objects: throwing one captures
// no stack, so a refused call costs little more than a returned status.
import { MAX_BUFFER_TYPE, MAX_MAP_TYPE, Status, StreamType } from "../abi.ts";
import type { HeaderMap } from "../headers.ts";
import type { AbiContext, AbiVm } from "../interfaces.ts";
import { type HostFunction, u32 } from "../memory.ts";

/** A host call ended early: the module gets `status`. */
class Refusal {
  readonly status: Status;

  constructor(status: Status) {
    this.status = status;
  }

  toString(): string {
    return `host call refused with status ${this.status}`;
  }
}

const REFUSALS = new Map<Status, Refusal>(
  Object.values(Status).map((status): [Status, Refusal] => [status, new Refusal(status)]),
);

/** Ends the host call: the module gets `status`. Only inside a guarded function. */
function refuse(status: Status): never {
  throw REFUSALS.get(status) as Refusal;
}

/** The functions, each answering a refusal's status instead of trapping on it. */
export function guarded<T extends Record<string, HostFunction>>(functions: T): T {
  const out: Record<string, HostFunction> = {};
  for (const [name, fn] of Object.entries(functions)) {
    out[name] = (...args: never[]) => {
      try {
        return fn(...args);
      } catch (error) {
        if (error instanceof Refusal) return error.status;
        throw error;
      }
    };
  }
  return out as T;
}

/** The checks and conversions of a host call, for one VM. Failures refuse the call. */
export class HostCalls {
  readonly #vm: AbiVm;

  constructor(vm: AbiVm) {
    this.#vm = vm;
  }

  /** The context the call acts on: the effective one if the module set one, else the current. */
  context(): AbiContext {
    return this.#vm.contextOrEffective();
  }

  /** The text at ptr (InvalidMemoryAccess outside the memory). */
  string(ptr: number, size: number): string {
    return this.#vm.memory.readString(u32(ptr), u32(size)) ?? refuse(Status.InvalidMemoryAccess);
  }

  /** A copy of the bytes at ptr (InvalidMemoryAccess outside the memory). */
  bytes(ptr: number, size: number): Uint8Array {
    return this.#vm.memory.read(u32(ptr), u32(size)) ?? refuse(Status.InvalidMemoryAccess);
  }

  /** Hands bytes to the module: allocated, with pointer and size stored at ptrPtr and sizePtr. */
  returnBytes(data: Uint8Array, ptrPtr: number, sizePtr: number): Status {
    return this.#vm.memory.returnBytes(data, u32(ptrPtr), u32(sizePtr)) ? Status.Ok : this.#outside();
  }

  returnString(text: string, ptrPtr: number, sizePtr: number): Status {
    return this.#vm.memory.returnString(text, u32(ptrPtr), u32(sizePtr)) ? Status.Ok : this.#outside();
  }

  returnU32(ptr: number, value: number): Status {
    return this.#vm.memory.writeU32(u32(ptr), value) ? Status.Ok : this.#outside();
  }

  returnU64(ptr: number, value: bigint): Status {
    return this.#vm.memory.writeU64(u32(ptr), value) ? Status.Ok : this.#outside();
  }

  /** Copies bytes into an allocation of the module: its address (0 for none). */
  copyIn(data: Uint8Array): number {
    return this.#vm.memory.copyIn(data) ?? this.#outside();
  }

  /** An enum argument: BadArgument past its last member. */
  member(value: number, last: number): number {
    return u32(value) > last ? refuse(Status.BadArgument) : u32(value);
  }

  mapType(type: number): number {
    return this.member(type, MAX_MAP_TYPE);
  }

  bufferType(type: number): number {
    return this.member(type, MAX_BUFFER_TYPE);
  }

  streamType(type: number): number {
    return this.member(type, StreamType.Upstream);
  }

  /** The map of `type` the context may write now (BadArgument when none). */
  writableMap(type: number): HeaderMap {
    return this.context().mutableMap(type) ?? refuse(Status.BadArgument);
  }

  #outside(): never {
    return refuse(Status.InvalidMemoryAccess);
  }
}

/** One ABI area: the functions it provides, and how to make them for a VM. */
export interface AbiArea<Name extends string> {
  readonly names: readonly Name[];
  functions(vm: AbiVm, abi: HostCalls): Record<Name, HostFunction>;
}

/** An area whose functions are exactly `names` (a missing or an unlisted one does not compile). */
export function abiArea<const Name extends string, Functions extends Record<Name, HostFunction>>(
  names: readonly Name[],
  functions: (vm: AbiVm, abi: HostCalls) => Functions & Record<Exclude<keyof Functions, Name>, never>,
): AbiArea<Name> {
  return { names, functions };
}
