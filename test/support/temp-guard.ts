// The global setup of the root vitest config, run once for the whole run whatever projects it has:
// the run gets a temp folder of its own (TMPDIR, inherited by the test workers, created after it,
// and every process they start), so what tests leave behind is told apart from other runs on the
// machine. At the end, anything named wasmesh-* left in it fails the run, naming it, and the folder
// is kept for a look. Otherwise it is removed, with what other tools cached there. XDG_CONFIG_HOME
// points into it too, so that the credentials file `wasmesh server` writes is the run's.
import { chmodSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export default function guardTempDirs(): () => void {
  const previous = process.env.TMPDIR;
  const runDir = mkdtempSync(join(tmpdir(), "wasmesh-test-run-"));
  // As /tmp: some tests run the control plane as another user, on a directory they chown to it.
  chmodSync(runDir, 0o1777);
  process.env.TMPDIR = runDir;
  // `wasmesh server` saves its admin token in the user's credentials file: the run's, not the user's.
  const previousConfig = process.env.XDG_CONFIG_HOME;
  process.env.XDG_CONFIG_HOME = join(runDir, "config");
  return () => {
    if (previous === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = previous;
    if (previousConfig === undefined) delete process.env.XDG_CONFIG_HOME;
    else process.env.XDG_CONFIG_HOME = previousConfig;
    const left = leftovers(runDir);
    if (left.length === 0) {
      rmSync(runDir, { recursive: true, force: true });
      return;
    }
    // vitest only logs an error thrown here: the exit code says it too.
    process.exitCode = 1;
    throw new Error(
      `tests left ${left.length} temporary ${left.length === 1 ? "entry" : "entries"} in ${runDir}: ${left.join(", ")}. ` +
        "Make them with tempDir() (test/support/temp.ts), or remove them in an afterEach/afterAll. " +
        "(An Envoy that failed to start keeps its wasmesh-envoy-* directory for a post-mortem, named in that test's error; so does WASMESH_KEEP_ENVOY=1.)",
    );
  };
}

function leftovers(runDir: string): string[] {
  const keptEnvoys = process.env.WASMESH_KEEP_ENVOY === "1";
  return readdirSync(runDir).filter(
    (name) => name.startsWith("wasmesh-") && !(keptEnvoys && name.startsWith("wasmesh-envoy-")),
  );
}
