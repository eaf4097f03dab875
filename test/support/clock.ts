/** A clock the tests move by hand, so time-based behaviour is deterministic. */
export class ManualClock {
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
