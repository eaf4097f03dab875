// Temporary directories for tests. tempDir() makes one and records it; every vitest project runs
// test/support/temp-cleanup.ts, which removes what a test file recorded once the file is done,
// passed or failed. test/support/temp-guard.ts points the temp folder of a whole run at a folder of
// its own and fails the run if anything named wasmesh-* is left in it.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const made = new Set<string>();

/** A new directory `wasmesh-<name>-XXXXXX` in the temp folder, removed after the test file. */
export function tempDir(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `wasmesh-${name}-`));
  made.add(dir);
  return dir;
}

/** Removes a directory now (one tempDir() made, or any other); a missing one is fine. */
export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  made.delete(dir);
}

/** Removes every directory tempDir() made in this process that is still there. */
export function removeTempDirs(): void {
  for (const dir of made) removeDir(dir);
}
