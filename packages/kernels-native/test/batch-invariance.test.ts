// Continuous batching needs a row's result not to depend on the rows batched with it (the server
// compares batched requests with the same requests run alone): on every ISA variant, each row of a
// matmul over n activation rows must equal, bit for bit, the same row multiplied alone.
import { GGMLType, Tensor } from "@ryzanstein/core-tensor";
import { afterAll, describe, expect, it } from "vitest";
import { availableIsas, type Isa, NativeBackend } from "../src/index.js";
import { gen } from "./helpers.js";

const FORMATS = [
  ["f32", GGMLType.F32],
  ["f16", GGMLType.F16],
  ["q8_0", GGMLType.Q8_0],
  ["q4_0", GGMLType.Q4_0],
] as const;

describe.each(availableIsas())("isa=%s: matmul rows are batch-invariant", (isa: Isa) => {
  const nb = new NativeBackend({ isa, threads: 2 });
  afterAll(() => nb.dispose());

  for (const [name, type] of FORMATS) {
    for (const [rows, cols] of [
      [72, 96],
      [13, 160],
    ] as const) {
      it(`${name} ${rows}x${cols}, n = 1..9 rows against each row alone`, () => {
        const g = gen(`${isa}/invariant/${name}/${rows}/${cols}`);
        const w = Tensor.fromF32([rows, cols], g.uniform(rows * cols, 1), type);
        nb.prepareWeight(w, false);
        const alone = new Float32Array(rows);
        for (const n of [2, 3, 4, 5, 7, 9]) {
          const x = g.uniform(n * cols, 2);
          const y = new Float32Array(n * rows);
          nb.matmul(y, w, x, n);
          for (let t = 0; t < n; t++) {
            nb.matmul(alone, w, x.slice(t * cols, (t + 1) * cols), 1);
            expect(Array.from(y.subarray(t * rows, (t + 1) * rows)), `n=${n} row ${t}`).toEqual(
              Array.from(alone),
            );
          }
        }
      });
    }
  }
});

// The RMS norm runs several rows' sums of squares side by side (native rms_norm_rows_t): a row's
// output, and its quantized activations, must not depend on which rows share its group.
describe.each(availableIsas())("isa=%s: rmsNorm rows are batch-invariant", (isa: Isa) => {
  const nb = new NativeBackend({ isa, threads: 2 });
  afterAll(() => nb.dispose());

  for (const cols of [96, 768]) {
    it(`rmsNorm and rmsNormQuantize [${cols}], n = 1..9 rows against each row alone`, () => {
      const g = gen(`${isa}/invariant/rmsnorm/${cols}`);
      const norm = g.uniform(cols, 1.5);
      const w = Tensor.fromF32([8, cols], g.uniform(8 * cols, 1), GGMLType.Q4_0);
      nb.prepareWeight(w, false);
      const layout = nb.activationLayout(w);
      const alone = new Float32Array(cols);
      const aloneAct = nb.createActivations(layout, cols, 1);
      const aloneY = new Float32Array(8);
      for (const n of [2, 3, 4, 5, 7, 9]) {
        const x = g.uniform(n * cols, 3);
        const y = new Float32Array(n * cols);
        nb.rmsNorm(y, x, norm, n, cols, 1e-5);
        const act = nb.createActivations(layout, cols, n);
        nb.rmsNormQuantize(act, x, norm, n, cols, 1e-5);
        const mm = new Float32Array(n * 8);
        nb.matmulQuantized(mm, w, act, n);
        for (let t = 0; t < n; t++) {
          const xt = x.slice(t * cols, (t + 1) * cols);
          nb.rmsNorm(alone, xt, norm, 1, cols, 1e-5);
          expect(Array.from(y.subarray(t * cols, (t + 1) * cols)), `n=${n} row ${t}`).toEqual(
            Array.from(alone),
          );
          nb.rmsNormQuantize(aloneAct, xt, norm, 1, cols, 1e-5);
          nb.matmulQuantized(aloneY, w, aloneAct, 1);
          expect(Array.from(mm.subarray(t * 8, (t + 1) * 8)), `quantized n=${n} row ${t}`).toEqual(
            Array.from(aloneY),
          );
        }
      }
    });
  }
});
