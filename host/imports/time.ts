// Time: the host clock, and the tick timer.
import { Status } from "../abi.ts";
import { u32 } from "../memory.ts";
import { abiArea } from "./calls.ts";

export const time = abiArea(
  ["proxy_get_current_time_nanoseconds", "proxy_set_tick_period_milliseconds"],
  (vm, abi) => ({
    proxy_get_current_time_nanoseconds(retPtr: number) {
      return abi.returnU64(retPtr, vm.clock.now());
    },

    // Envoy sets the timer of the root context, whichever context calls.
    proxy_set_tick_period_milliseconds(period: number) {
      abi.context().root?.setTickPeriod(u32(period));
      return Status.Ok;
    },
  }),
);
