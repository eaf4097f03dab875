// A worker of the validation pool (see isolate.ts): says its OS thread id (so the pool can lower
// the priority of a validation that runs long), then runs validateModule for each job it is
// handed, one at a time, so that the smoke run's calls into uploaded code never stall or crash the
// control plane's event loop.
import { readlinkSync } from "node:fs";
import { parentPort } from "node:worker_threads";
import type { WorkerMessage } from "./isolate.ts";
import { type ValidateOptions, validateModule } from "./validate.ts";

/** This thread's id on Linux ("<pid>/task/<tid>"); undefined elsewhere. */
function threadId(): number | undefined {
  try {
    const tid = Number(readlinkSync("/proc/thread-self").split("/").pop());
    return Number.isInteger(tid) ? tid : undefined;
  } catch {
    return undefined;
  }
}

const post = (message: WorkerMessage) => parentPort?.postMessage(message);
const tid = threadId();
post({ kind: "started", ...(tid !== undefined ? { tid } : {}) });
parentPort?.on("message", async ({ bytes, options }: { bytes: Uint8Array; options: ValidateOptions }) => {
  post({ kind: "result", result: await validateModule(bytes, options) });
});
