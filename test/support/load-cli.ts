// startLoad (load.ts) as a process, for load that must come from inside a pod's network namespace
// (play-kubelet.ts): the options as JSON in argv[2], the result as one JSON line on stdout.
import { startLoad } from "./load.ts";

const options = JSON.parse(process.argv[2] ?? "{}");
const result = await startLoad(options).result;
process.stdout.write(
  `${JSON.stringify({
    ...result,
    statuses: Object.fromEntries(result.statuses),
    byUpstream: Object.fromEntries(result.byUpstream),
    latenciesMs: [],
  })}\n`,
);
