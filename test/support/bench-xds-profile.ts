// What the control plane spent its CPU on during bench:xds's pushes: a V8 CPU profile (node
// --cpu-prof, BENCH_CPU_PROF) read only within time windows (the pushes), by function.
//
// A .cpuprofile's timestamps are microseconds of the monotonic clock that process.hrtime() reads
// too (CLOCK_MONOTONIC on Linux), so windows taken in the bench process select the server's samples.
import { readdirSync, readFileSync } from "node:fs";
import { basename, join } from "node:path";

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** A window of the monotonic clock, in microseconds. */
export interface Window {
  from: number;
  to: number;
}

export interface ProfileEntry {
  /** Function name and where it is (file:line), or V8's own (garbage collector), (program). */
  fn: string;
  selfMs: number;
  /** Of the time the thread was busy (not idle) within the windows. */
  selfPct: number;
  /** With everything it called. */
  totalMs: number;
  totalPct: number;
}

export interface PushProfile {
  file: string;
  windows: number;
  /** Main-thread time within the windows the thread was running (not idle). */
  busyMs: number;
  idleMs: number;
  /** By self time, the largest first. */
  top: ProfileEntry[];
  /** Functions named in `watch`, whatever their rank. */
  watched: ProfileEntry[];
}

/** The monotonic clock in microseconds, as a .cpuprofile counts it. */
export const monotonicUs = () => Number(process.hrtime.bigint() / 1000n);

/** The main thread's profile of process `pid` in `dir` (node names it CPU.<date>.<time>.<pid>.<tid>.<n>). */
export function profileFileOf(dir: string, pid: number): string | undefined {
  const mine = readdirSync(dir).filter((f) => f.endsWith(".cpuprofile") && f.includes(`.${pid}.0.`));
  return mine.length > 0 ? join(dir, mine.sort().at(-1) as string) : undefined;
}

const label = (f: CallFrame) =>
  f.url === ""
    ? f.functionName || "(anonymous)"
    : `${f.functionName || "(anonymous)"} ${basename(f.url)}:${f.lineNumber + 1}`;

/** Self and total time by function within `windows`, the top `limit` by self time. */
export function profilePushes(
  file: string,
  windows: readonly Window[],
  watch: readonly string[] = [],
  limit = 15,
): PushProfile {
  const profile = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const node of profile.nodes) {
    byId.set(node.id, node);
    for (const child of node.children ?? []) parent.set(child, node.id);
  }
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  let busy = 0;
  let idle = 0;
  let t = profile.startTime;
  const inWindow = (at: number) => windows.some((w) => at >= w.from && at <= w.to);
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i] ?? 0;
    if (!inWindow(t)) continue;
    // A sample stands for the time until the next one (as Chrome's DevTools count it).
    const weight = (profile.timeDeltas[i + 1] ?? 0) / 1000;
    const node = byId.get(profile.samples[i] as number);
    if (!node) continue;
    const name = node.callFrame.functionName;
    if (name === "(idle)") {
      idle += weight;
      continue;
    }
    busy += weight;
    const key = label(node.callFrame);
    self.set(key, (self.get(key) ?? 0) + weight);
    // Each function once per sample, however often it recurs on the stack.
    const seen = new Set<string>();
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const frame = (byId.get(id) as ProfileNode).callFrame;
      if (frame.functionName === "(root)") break;
      const k = label(frame);
      if (seen.has(k)) continue;
      seen.add(k);
      total.set(k, (total.get(k) ?? 0) + weight);
    }
  }
  const entry = (fn: string): ProfileEntry => ({
    fn,
    selfMs: round(self.get(fn) ?? 0),
    selfPct: round(busy > 0 ? ((self.get(fn) ?? 0) * 100) / busy : 0),
    totalMs: round(total.get(fn) ?? 0),
    totalPct: round(busy > 0 ? ((total.get(fn) ?? 0) * 100) / busy : 0),
  });
  const top = [...self.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, limit)
    .map(([fn]) => entry(fn));
  const watched = [...total.keys()]
    .filter((fn) => watch.some((w) => fn === w || fn.startsWith(`${w} `)))
    .sort((a, b) => (total.get(b) ?? 0) - (total.get(a) ?? 0))
    .map(entry);
  return { file, windows: windows.length, busyMs: round(busy), idleMs: round(idle), top, watched };
}

const round = (n: number) => Math.round(n * 10) / 10;
