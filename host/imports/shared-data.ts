// Shared data (key/value with CAS) and shared queues, partitioned by vm_id.
import { Status } from "../abi.ts";
import { u32 } from "../memory.ts";
import { abiArea } from "./calls.ts";

export const sharedData = abiArea(
  [
    "proxy_get_shared_data",
    "proxy_set_shared_data",
    "proxy_register_shared_queue",
    "proxy_resolve_shared_queue",
    "proxy_dequeue_shared_queue",
    "proxy_enqueue_shared_queue",
  ],
  (vm, abi) => ({
    proxy_get_shared_data(keyPtr: number, keySize: number, ptrPtr: number, sizePtr: number, casPtr: number) {
      const entry = vm.sharedData.get(abi.string(keyPtr, keySize), vm.vmId);
      if (!entry) return Status.NotFound;
      abi.returnBytes(entry.value, ptrPtr, sizePtr);
      return abi.returnU32(casPtr, entry.cas);
    },

    proxy_set_shared_data(keyPtr: number, keySize: number, valuePtr: number, valueSize: number, cas: number) {
      const key = abi.string(keyPtr, keySize);
      const value = abi.bytes(valuePtr, valueSize);
      return vm.sharedData.set(key, value, u32(cas), vm.vmId);
    },

    // Queues belong to the root context: on_queue_ready is delivered there.
    proxy_register_shared_queue(namePtr: number, nameSize: number, tokenPtr: number) {
      const name = abi.string(namePtr, nameSize);
      const context = abi.context();
      const owner = context.root?.id ?? context.id;
      return abi.returnU32(tokenPtr, vm.sharedData.registerQueue(vm.vmId, name, vm, owner));
    },

    proxy_resolve_shared_queue(
      vmIdPtr: number,
      vmIdSize: number,
      namePtr: number,
      nameSize: number,
      tokenPtr: number,
    ) {
      const vmId = abi.string(vmIdPtr, vmIdSize);
      const name = abi.string(namePtr, nameSize);
      const token = vm.sharedData.resolveQueue(vmId === "" ? vm.vmId : vmId, name);
      if (token === 0) return Status.NotFound;
      return abi.returnU32(tokenPtr, token);
    },

    proxy_dequeue_shared_queue(token: number, ptrPtr: number, sizePtr: number) {
      const { status, value } = vm.sharedData.dequeue(u32(token));
      if (status !== Status.Ok || !value) return status;
      return abi.returnBytes(value, ptrPtr, sizePtr);
    },

    proxy_enqueue_shared_queue(token: number, ptr: number, size: number) {
      return vm.sharedData.enqueue(u32(token), abi.bytes(ptr, size));
    },
  }),
);
