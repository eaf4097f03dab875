import { defineConfig } from "vitest/config";

// Five projects: fast suites run in parallel; suites that start real Envoy processes, a private
// Kubernetes API server, the edge worker in workerd, or a headless Chromium (the console) run one
// file at a time so they never compete for the two cores.
// Every project removes the temp directories a test file made with tempDir() once the file is done
// (test/support/temp.ts); the run's temp folder is its own and must end empty (temp-guard.ts).
const setupFiles = ["test/support/temp-cleanup.ts"];

export default defineConfig({
  test: {
    // The root config's global setup runs once per run, for whichever projects run.
    globalSetup: ["test/support/temp-guard.ts"],
    projects: [
      {
        test: {
          name: "fast",
          include: [
            "test/unit/**/*.test.ts",
            "test/filters/**/*.test.ts",
            "test/host/**/*.test.ts",
            "test/sdk/**/*.test.ts",
            "test/control-plane/**/*.test.ts",
            "test/dataplane/**/*.test.ts",
          ],
          testTimeout: 30_000,
          setupFiles,
        },
      },
      {
        test: {
          name: "envoy",
          include: ["test/envoy/**/*.test.ts"],
          testTimeout: 120_000,
          hookTimeout: 120_000,
          fileParallelism: false,
          setupFiles,
        },
      },
      {
        // A private kube-apiserver and etcd (test/support/kubernetes.ts) per file: one file at a time.
        test: {
          name: "kubernetes",
          include: ["test/kubernetes/**/*.test.ts"],
          testTimeout: 60_000,
          hookTimeout: 120_000,
          fileParallelism: false,
          setupFiles,
        },
      },
      {
        // The edge worker in real workerd (miniflare), built once by the global setup with
        // `npm run build:worker`; one file at a time, as each starts its own workerd.
        test: {
          name: "workers",
          include: ["test/workers/**/*.test.ts"],
          globalSetup: ["test/workers/global-setup.ts"],
          setupFiles,
          testTimeout: 30_000,
          hookTimeout: 60_000,
          fileParallelism: false,
        },
      },
      {
        // The web console (gui/, served at /gui) in a real headless Chromium (Debian's chromium,
        // scripts/install-chromium.sh) driven by playwright-core, against `wasmesh server`; the
        // global setup builds the console (npm run build:gui). One file at a time: a browser each.
        test: {
          name: "gui",
          include: ["test/gui/**/*.test.ts"],
          globalSetup: ["test/gui/global-setup.ts"],
          setupFiles,
          testTimeout: 60_000,
          hookTimeout: 60_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
