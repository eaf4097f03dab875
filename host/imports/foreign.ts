// Foreign functions: host functions the module calls by name (clear_route_cache among them).
import { LogLevel, Status } from "../abi.ts";
import { u32 } from "../memory.ts";
import type { ForeignFunction } from "../types.ts";
import { abiArea } from "./calls.ts";

const EMPTY = new Uint8Array(0);

export const foreign = abiArea(["proxy_call_foreign_function", "proxy_clear_route_cache"], (vm, abi) => ({
  proxy_call_foreign_function(
    namePtr: number,
    nameSize: number,
    argsPtr: number,
    argsSize: number,
    resultPtrPtr: number,
    resultSizePtr: number,
  ) {
    const name = abi.string(namePtr, nameSize);
    const args = abi.bytes(argsPtr, argsSize);
    const fn = vm.foreignFunctions.get(name);
    if (!fn) return Status.NotFound;
    const context = abi.context();
    context.countForeignCall(name);
    let returned: ReturnType<ForeignFunction>;
    try {
      returned = fn(args, { name, contextId: context.id });
    } catch (error) {
      vm.log(LogLevel.Error, `foreign function ${name} threw: ${String(error)}`, "host", context);
      return Status.InternalFailure;
    }
    let status: Status = Status.Ok;
    let data: Uint8Array = EMPTY;
    if (returned instanceof Uint8Array) data = returned;
    else if (returned !== undefined) {
      status = returned.status;
      data = returned.data ?? EMPTY;
    }
    // Envoy writes the result only where the module asked for it (non-null pointers).
    if (u32(resultPtrPtr) !== 0) abi.returnU32(resultPtrPtr, abi.copyIn(data));
    if (u32(resultSizePtr) !== 0) abi.returnU32(resultSizePtr, data.byteLength);
    return status;
  },

  // 0.1.0's form of the clear_route_cache foreign function.
  proxy_clear_route_cache() {
    abi.context().countForeignCall("clear_route_cache");
    return Status.Ok;
  },
}));
