import { defineConfig } from "vitest/config";

// Two projects: fast suites run in parallel; suites that start real Envoy processes
// run one file at a time so that two Envoys never compete for the two cores.
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
    ],
  },
});
