// Runs validateModule in a worker thread (see isolate.ts): the smoke run executes uploaded code,
// which must not be able to stall or crash the control plane's event loop.
import { parentPort, workerData } from "node:worker_threads";
import { type ValidateOptions, validateModule } from "./validate.ts";

const { bytes, options } = workerData as { bytes: Uint8Array; options: ValidateOptions };
parentPort?.postMessage(await validateModule(bytes, options));
