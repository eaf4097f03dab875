// Waiting in tests for something to happen: poll a condition until it holds or a deadline passes.
// A test that must show something did NOT happen does not sleep: it waits for a later event that
// could only come after it (a barrier, e.g. AdsClient.barrier()), or for a counter.

/**
 * Polls `check` every `intervalMs` until it returns true; throws "timed out waiting for <what>"
 * once `timeoutMs` has passed (`what` may be a function, for a message with the latest state). An
 * exception thrown by `check` ends the wait at once (e.g. a process that exited).
 */
export async function until(
  what: string | (() => string),
  check: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
  intervalMs = 20,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${typeof what === "string" ? what : what()}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** Retries the assertions in `check` until they pass; after `timeoutMs`, rethrows their last failure. */
export async function eventually(check: () => void | Promise<void>, timeoutMs = 10_000): Promise<void> {
  let failure: unknown;
  const passes = async () => {
    try {
      await check();
      return true;
    } catch (error) {
      failure = error;
      return false;
    }
  };
  try {
    await until("the assertions to pass", passes, timeoutMs, 100);
  } catch (timeout) {
    throw failure ?? timeout;
  }
}
