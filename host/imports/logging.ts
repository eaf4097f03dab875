// Logging: what the module logs goes to the VM's log, at the level the host reports.
import { LogLevel, Status } from "../abi.ts";
import { abiArea } from "./calls.ts";

export const logging = abiArea(["proxy_log", "proxy_get_log_level"], (vm, abi) => ({
  proxy_log(level: number, ptr: number, size: number) {
    const message = abi.string(ptr, size);
    const checked = abi.member(level, LogLevel.Critical) as LogLevel;
    vm.log(checked, message, "module", abi.context());
    return Status.Ok;
  },

  proxy_get_log_level(retPtr: number) {
    return abi.returnU32(retPtr, vm.logLevel);
  },
}));
