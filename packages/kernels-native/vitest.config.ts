import { defineConfig } from "vitest/config";
import { sharedTestConfig } from "../../vitest.shared";

// Verbose: every test is listed, so the log shows which ISA variants ran (test names carry `isa=`).
export default defineConfig({ test: { ...sharedTestConfig, reporters: ["verbose"] } });
