import { defineConfig } from "tsup";

export default defineConfig({
  entry: ["src/main.ts", "src/fused-ab.ts"],
  format: ["esm"],
  dts: false,
  sourcemap: true,
  clean: true,
  target: "node20",
  // The llama.cpp peer is loaded with a dynamic import(); never bundle it.
  external: ["node-llama-cpp"],
});
