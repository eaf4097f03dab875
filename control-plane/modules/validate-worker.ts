// A worker of the validation pool (see isolate.ts): says its OS thread id (so the pool can lower
// the priority of a validation that runs long), then runs each job it is handed, one at a time: a
// module's validation (validateModule), or configurations loaded into a module it keeps warm
// (configure.ts), so that calls into uploaded code never stall or crash the control plane's event
// loop.
import { readlinkSync } from "node:fs";
import { parentPort } from "node:worker_threads";
import { ConfigureSession } from "./configure.ts";
import type { WorkerMessage, WorkerRequest } from "./isolate.ts";
import { validateModule } from "./validate.ts";

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
const session = new ConfigureSession();
parentPort?.on("message", async (request: WorkerRequest) => {
  if (request.kind === "validate") {
    post({ kind: "result", result: await validateModule(request.bytes, request.options) });
  } else {
    post({ kind: "configured", result: await session.run(request.job) });
  }
});
