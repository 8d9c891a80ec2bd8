import type { ViteUserConfig } from "vitest/config";

/** Test settings every package shares: one worker at a time keeps memory bounded and timing tests honest. */
export const sharedTestConfig: NonNullable<ViteUserConfig["test"]> = {
  include: ["test/**/*.test.ts"],
  testTimeout: 120_000,
  hookTimeout: 120_000,
  pool: "forks",
  maxWorkers: 1,
  fileParallelism: false,
  coverage: {
    provider: "v8",
    include: ["src/**/*.ts"],
    reporter: ["text-summary", "json-summary"],
  },
};
