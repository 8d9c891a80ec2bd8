import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import { afterAll, expect, it } from "vitest";
import { NativeBackend } from "../src/index.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const distEsm = path.join(root, "dist/index.js");
const distCjs = path.join(root, "dist/index.cjs");
const dir = mkdtempSync(path.join(os.tmpdir(), "ryz-worker-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// Each worker builds a backend, runs a Q4_0 matmul, swiglu and attention and posts the results.
const body = (load: string) => `
  ${load}
  const { parentPort, workerData } = require("node:worker_threads");
  const nb = new NativeBackend({ threads: 2, isa: workerData.isa });
  const w = Tensor.fromF32([3, 64], Float32Array.from({ length: 192 }, (_, i) => Math.sin(i)), GGMLType.Q4_0);
  const y = new Float32Array(6);
  nb.matmul(y, w, Float32Array.from({ length: 128 }, (_, i) => Math.cos(i)), 2);
  const s = new Float32Array(4);
  nb.swiglu(s, Float32Array.of(1, 2, 3, 4), Float32Array.of(1, 1, 1, 1), 4);
  const o = new Float32Array(8);
  nb.attention(o, new Float32Array(8).fill(1), new Float32Array(16).fill(1), Float32Array.from({ length: 16 }, (_, i) => i), Int32Array.of(1), 1, { nHeads: 1, nKvHeads: 1, headDim: 8, scale: 0.3 });
  parentPort.postMessage({ name: nb.name, y: Array.from(y), s: Array.from(s), o: Array.from(o) });
  nb.dispose();
`;

function runWorker(
  file: string,
  isa: string,
): Promise<{ name: string; y: number[]; s: number[]; o: number[] }> {
  return new Promise((resolve, reject) => {
    const w = new Worker(file, { workerData: { isa } });
    w.once("message", resolve);
    w.once("error", reject);
    w.once("exit", (c) => c !== 0 && reject(new Error(`worker exited with ${c}`)));
  });
}

it("loads in worker threads from both the ESM and the CJS build, several at once", async () => {
  expect(existsSync(distEsm) && existsSync(distCjs), "run `npm run build` first: this test uses dist/").toBe(
    true,
  );
  const cjs = path.join(dir, "w.cjs");
  writeFileSync(
    cjs,
    body(`const { NativeBackend } = require(${JSON.stringify(distCjs)});
          const { Tensor, GGMLType } = require(require.resolve("@ryzanstein/core-tensor", { paths: [${JSON.stringify(root)}] }));`),
  );
  const esm = path.join(dir, "w.mjs");
  writeFileSync(
    esm,
    body(`import { createRequire } from "node:module";
          const require = createRequire(import.meta.url);
          const { NativeBackend } = await import(${JSON.stringify(pathToFileURL(distEsm).href)});
          const { Tensor, GGMLType } = await import(require.resolve("@ryzanstein/core-tensor", { paths: [${JSON.stringify(root)}] }).replace(/\\.cjs$/, ".js"));`),
  );
  const main = new NativeBackend({ threads: 1 });
  const isa = main.isa;
  main.dispose();
  const results = await Promise.all([runWorker(cjs, isa), runWorker(esm, isa), runWorker(cjs, "scalar")]);
  for (const r of results) {
    expect(r.y.every(Number.isFinite)).toBe(true);
    expect(r.s[0]).toBeCloseTo(1 / (1 + Math.exp(-1)), 5);
    // equal keys: uniform weights over v rows 0 and 1
    expect(r.o[3]).toBeCloseTo((3 + 11) / 2, 4);
  }
  expect(results[0].name).toBe(`native-${isa}`);
  expect(results[2].name).toBe("native-scalar");
  expect(results[1].y).toEqual(results[0].y);
  for (let i = 0; i < 6; i++) expect(results[2].y[i]).toBeCloseTo(results[0].y[i], 4);
});
