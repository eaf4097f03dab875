// A small file system of a test's own, to fill up: a tmpfs, which only a privileged process (root
// with CAP_SYS_ADMIN, as in this project's containers) may mount. Tests that need one are skipped
// where it cannot be mounted (it.skipIf(!canMountTmpfs())).
import { execFileSync } from "node:child_process";
import { closeSync, mkdirSync, openSync, writeSync } from "node:fs";
import { join } from "node:path";
import { removeDir, tempDir } from "./temp.ts";

let mountable: boolean | undefined;

/** Whether this process may mount a tmpfs (tried once, on a scratch directory). */
export function canMountTmpfs(): boolean {
  if (mountable !== undefined) return mountable;
  const dir = tempDir("tmpfs-probe");
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", dir], { stdio: "ignore" });
    execFileSync("umount", [dir], { stdio: "ignore" });
    mountable = true;
  } catch {
    mountable = false;
  } finally {
    removeDir(dir);
  }
  return mountable;
}

/** A tmpfs of `bytes` on a new directory `tmpfs` under `parent`; call the returned function to unmount. */
export function mountTmpfs(parent: string, bytes: number): { dir: string; unmount: () => void } {
  const dir = join(parent, "tmpfs");
  mkdirSync(dir);
  execFileSync("mount", ["-t", "tmpfs", "-o", `size=${bytes}`, "tmpfs", dir]);
  return { dir, unmount: () => execFileSync("umount", [dir]) };
}

/** Writes `file` until its file system is full (ENOSPC). */
export function fill(file: string): void {
  const fd = openSync(file, "w");
  const chunk = Buffer.alloc(64 * 1024, 1);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOSPC") throw error;
  } finally {
    closeSync(fd);
  }
}
