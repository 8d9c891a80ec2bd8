import { defineConfig } from "tsup";

export default defineConfig({
  entry: ["src/index.ts"],
  format: ["esm", "cjs"],
  dts: true,
  sourcemap: true,
  clean: true,
  shims: true,
  target: "node20",
  // The llama.cpp peer is an ESM-only devDependency loaded with a dynamic import(); never bundle it.
  external: ["node-llama-cpp"],
});
