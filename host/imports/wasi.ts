// The small WASI subset Envoy gives modules built by Rust, Go or C++ toolchains; output goes to the
// log. AssemblyScript modules built for Proxy-Wasm import none of it.
import { LogLevel } from "../abi.ts";
import type { AbiVm } from "../interfaces.ts";
import { fromUtf8, type HostFunction, u32 } from "../memory.ts";

/** What WASI needs of the VM: memory, the clock, and the log for stdout and stderr. */
export type WasiVm = Pick<AbiVm, "memory" | "clock" | "log" | "contextOrEffective">;

export const WASI_FUNCTIONS = [
  "fd_write",
  "fd_close",
  "fd_seek",
  "fd_fdstat_get",
  "clock_time_get",
  "random_get",
  "environ_get",
  "environ_sizes_get",
  "args_get",
  "args_sizes_get",
  "proc_exit",
  "sched_yield",
] as const;
export const WASI_MODULES = ["wasi_snapshot_preview1", "wasi_unstable"];

/** What an unimplemented WASI function answers. */
export const WASI_ENOSYS = 52;

/** The WASI calls Envoy answers for Rust, Go and C++ modules; output goes to the log. */
export function wasiFunctions(vm: WasiVm): Record<(typeof WASI_FUNCTIONS)[number], HostFunction> {
  const mem = () => vm.memory;
  const EBADF = 8;
  const EFAULT = 21;
  const ENOTSUP = 58;
  const sizes = (countPtr: number, sizePtr: number) =>
    mem().writeU32(u32(countPtr), 0) && mem().writeU32(u32(sizePtr), 0) ? 0 : EFAULT;
  return {
    fd_write(fd: number, iovs: number, iovsLen: number, writtenPtr: number) {
      if (fd !== 1 && fd !== 2) return EBADF;
      const parts: Uint8Array[] = [];
      let total = 0;
      for (let i = 0; i < u32(iovsLen); i++) {
        const iov = mem().read(u32(iovs) + i * 8, 8);
        if (!iov) return EFAULT;
        const view = new DataView(iov.buffer);
        const chunk = mem().read(view.getUint32(0, true), view.getUint32(4, true));
        if (!chunk) return EFAULT;
        parts.push(chunk);
        total += chunk.byteLength;
      }
      const text = parts.map((p) => fromUtf8(p)).join("");
      if (text.length > 0) {
        vm.log(
          fd === 1 ? LogLevel.Info : LogLevel.Error,
          text.replace(/\n$/, ""),
          "module",
          vm.contextOrEffective(),
        );
      }
      return mem().writeU32(u32(writtenPtr), total) ? 0 : EFAULT;
    },
    fd_close: () => 0,
    fd_seek: () => 0,
    fd_fdstat_get(fd: number, statPtr: number) {
      if (fd !== 1 && fd !== 2) return EBADF;
      const stat = new Uint8Array(24);
      stat[8] = 64; // fs_rights_base: FD_WRITE, as Envoy reports
      return mem().write(u32(statPtr), stat) ? 0 : EFAULT;
    },
    clock_time_get(id: number, _precision: bigint, resultPtr: number) {
      if (id !== 0 && id !== 1) return ENOTSUP;
      return mem().writeU64(u32(resultPtr), vm.clock.now()) ? 0 : EFAULT;
    },
    random_get(ptr: number, length: number) {
      const bytes = new Uint8Array(u32(length));
      for (let i = 0; i < bytes.byteLength; i += 65536) crypto.getRandomValues(bytes.subarray(i, i + 65536));
      return mem().write(u32(ptr), bytes) ? 0 : EFAULT;
    },
    environ_get: () => 0,
    environ_sizes_get: sizes,
    args_get: () => 0,
    args_sizes_get: sizes,
    proc_exit(code: number) {
      throw new Error(`the module called proc_exit(${code})`);
    },
    sched_yield: () => 0,
  };
}
