import { LogLevel, proxy_log } from "./abi";

// AssemblyScript calls `abort` on failed assertions, out-of-bounds accesses and explicit throws.
// No proxy provides `env.abort`, so asconfig.json routes it here (`--use abort=...`): we log the
// reason through the Proxy-Wasm logger and trap, which Envoy reports as a Wasm panic for this VM.
export function proxyAbort(message: string | null, fileName: string | null, line: u32, column: u32): void {
  const text =
    "wasmesh: abort: " +
    (message !== null ? message : "(no message)") +
    " at " +
    (fileName !== null ? fileName : "?") +
    ":" +
    line.toString() +
    ":" +
    column.toString();
  const bytes = String.UTF8.encode(text);
  proxy_log(LogLevel.Critical, changetype<usize>(bytes), bytes.byteLength);
  unreachable();
}
