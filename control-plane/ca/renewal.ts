// When a workload renews its certificate: at half of its lifetime plus a random part of it (by
// default up to a tenth, so between 50% and 60%), as Istio's agent renews at half life with jitter:
// certificates issued together (a fleet restarted at once) are not all renewed in the same second,
// and at the latest a certificate still has 40% of its life, hours by default, for retries while the
// control plane is away. Pure: the agent gives the clock and the randomness.

export interface Validity {
  notBefore: Date;
  notAfter: Date;
}

export interface RenewalOptions {
  /** Largest extra share of the lifetime after the half (default 0.1); within 0..0.4. */
  jitter?: number;
  /** A number in [0, 1) (default Math.random). */
  random?: () => number;
}

export const DEFAULT_RENEWAL_JITTER = 0.1;
const MAX_JITTER = 0.4;

/** The time to renew a certificate of this validity. */
export function renewalTime(validity: Validity, options: RenewalOptions = {}): Date {
  const jitter = options.jitter ?? DEFAULT_RENEWAL_JITTER;
  if (!(jitter >= 0 && jitter <= MAX_JITTER)) {
    throw new RangeError(`renewal jitter must be within 0..${MAX_JITTER} (got ${jitter})`);
  }
  const random = (options.random ?? Math.random)();
  if (!(random >= 0 && random < 1)) throw new RangeError(`random() must be within [0, 1) (got ${random})`);
  const start = validity.notBefore.getTime();
  const lifetime = validity.notAfter.getTime() - start;
  // A certificate already expired, or without a lifetime, is renewed at once.
  if (!(lifetime > 0)) return new Date(start);
  // Two terms, so that rounding never lifts the jittered share to its bound.
  return new Date(start + Math.floor(lifetime / 2) + Math.floor(lifetime * jitter * random));
}

/** Milliseconds from `now` until the renewal: 0 when it is due (or past). */
export function renewalDelayMs(validity: Validity, now: number, options: RenewalOptions = {}): number {
  return Math.max(0, renewalTime(validity, options).getTime() - now);
}
