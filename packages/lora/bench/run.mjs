// Runs a TypeScript bench script: bundles it with esbuild (packages stay external) into
// ../.bench-out/, then runs it with node. Usage: node bench/run.mjs bench/throughput.ts [args...]
import { spawnSync } from "node:child_process";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const [entry, ...args] = process.argv.slice(2);
if (!entry) {
  console.error("usage: node bench/run.mjs bench/SCRIPT.ts [args...]");
  process.exit(2);
}
const outfile = join(here, "..", ".bench-out", `${basename(entry, ".ts")}.mjs`);
await build({
  entryPoints: [entry],
  bundle: true,
  platform: "node",
  format: "esm",
  packages: "external",
  outfile,
  target: "node20",
  logLevel: "warning",
});
const r = spawnSync(process.execPath, ["--expose-gc", outfile, ...args], { stdio: "inherit" });
process.exit(r.status ?? 1);
