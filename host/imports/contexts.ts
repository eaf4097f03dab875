// Contexts: which context later calls act on, and a root context's deferred shutdown.
import { Status } from "../abi.ts";
import { u32 } from "../memory.ts";
import { abiArea } from "./calls.ts";

export const contexts = abiArea(["proxy_set_effective_context", "proxy_done"], (vm, abi) => ({
  proxy_set_effective_context(contextId: number) {
    return vm.setEffectiveContext(u32(contextId));
  },

  // Envoy finds the pending plugin by its key, so any context of the plugin may call this.
  proxy_done() {
    return abi.context().root?.done() ?? Status.NotFound;
  },
}));
