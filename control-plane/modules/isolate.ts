// Module validation off the main thread, with a time limit. The smoke run calls into the uploaded
// module (VM start, configure, one request); a module that loops forever or grows its heap without
// bound would otherwise hang or exhaust the control plane that every sidecar depends on.
import { Worker } from "node:worker_threads";
import type { ValidateOptions, ValidateResult } from "./validate.ts";

export interface IsolationLimits {
  /** Wall-clock bound of the whole validation, default 10 s. */
  timeoutMs?: number;
  /** The worker's JS heap cap (V8 old generation), default 256 MiB. */
  maxHeapMb?: number;
}

export const DEFAULT_VALIDATION_TIMEOUT_MS = 10_000;

export function validateModuleIsolated(
  bytes: Uint8Array,
  options: ValidateOptions = {},
  limits: IsolationLimits = {},
): Promise<ValidateResult> {
  const timeoutMs = limits.timeoutMs ?? DEFAULT_VALIDATION_TIMEOUT_MS;
  const worker = new Worker(new URL("./validate-worker.ts", import.meta.url), {
    workerData: { bytes, options },
    resourceLimits: { maxOldGenerationSizeMb: limits.maxHeapMb ?? 256 },
  });
  const smokeFailure = (message: string): ValidateResult => ({
    ok: false,
    errors: [{ path: "module.smoke", message }],
  });
  return new Promise<ValidateResult>((resolve) => {
    let settled = false;
    const settle = (result: ValidateResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      void worker.terminate();
      resolve(result);
    };
    const timer = setTimeout(
      () => settle(smokeFailure(`did not finish within ${timeoutMs} ms (a loop that never returns?)`)),
      timeoutMs,
    );
    worker.once("message", (result: ValidateResult) => settle(result));
    worker.once("error", (error: Error) =>
      settle(
        smokeFailure(
          (error as NodeJS.ErrnoException).code === "ERR_WORKER_OUT_OF_MEMORY"
            ? "ran out of memory during the smoke run"
            : `validation failed: ${error.message}`,
        ),
      ),
    );
    worker.once("exit", (code) => settle(smokeFailure(`validation stopped unexpectedly (exit ${code})`)));
  });
}
