// Time as the module sees it (proxy_get_current_time_nanoseconds) and as ticks are scheduled.
// The host never owns a real timer: whoever embeds it drives ticks (tests by hand, a worker with
// setTimeout), so behaviour over time is deterministic under a manual clock.

export interface Clock {
  /** Wall-clock time in nanoseconds since the Unix epoch. */
  now(): bigint;
  /** Present on manual clocks: moves time forward. ProxyWasmHost.advanceTime needs it. */
  advance?(ms: number): void;
}

// Modules may ask for the time several times per request; within one millisecond the answer is the
// same, so the BigInt conversion is done once per millisecond.
let lastMs = Number.NaN;
let lastNanos = 0n;

export const systemClock: Clock = {
  now: () => {
    const ms = Date.now();
    if (ms !== lastMs) {
      lastMs = ms;
      lastNanos = BigInt(ms) * 1_000_000n;
    }
    return lastNanos;
  },
};

/** A clock that only moves when told to. */
export class ManualClock implements Clock {
  private nanos: bigint;

  constructor(startMs = 1_700_000_000_000) {
    this.nanos = BigInt(startMs) * 1_000_000n;
  }

  now(): bigint {
    return this.nanos;
  }

  advance(ms: number): void {
    this.nanos += BigInt(Math.round(ms * 1_000_000));
  }
}

export const NANOS_PER_MS = 1_000_000n;
