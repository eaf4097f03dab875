import { defineConfig } from "vitest/config";

// Three projects: fast suites run in parallel; suites that start real Envoy processes, and the
// edge worker's suites in workerd, run one file at a time so they never compete for the two cores.
export default defineConfig({
  test: {
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
          ],
          testTimeout: 30_000,
        },
      },
      {
        test: {
          name: "envoy",
          include: ["test/envoy/**/*.test.ts"],
          testTimeout: 120_000,
          hookTimeout: 120_000,
          fileParallelism: false,
        },
      },
      {
        // The edge worker in real workerd (miniflare), built once by the global setup with
        // `npm run build:worker`; one file at a time, as each starts its own workerd.
        test: {
          name: "workers",
          include: ["test/workers/**/*.test.ts"],
          globalSetup: ["test/workers/global-setup.ts"],
          testTimeout: 30_000,
          hookTimeout: 60_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
