import { GGMLType } from "@ryzanstein/core-tensor";
import { describe, expect, it } from "vitest";
import { clipBlocks, dequantizeMatrix, gptqQuantize, gptqSupports, rtnQuantize } from "../src/index.js";
import { correlatedInputs, normal, outputError, statsOf } from "./helpers.js";

describe("GPTQ", () => {
  const rows = 32;
  const cols = 256; // one K-quant super-block per row
  const g = normal(7);
  const w = Float32Array.from({ length: rows * cols }, () => 0.05 * g());
  const inputs = correlatedInputs(640, cols, 3);
  const calib = inputs.subarray(0, 512 * cols);
  const held = inputs.subarray(512 * cols); // same distribution, rows GPTQ did not see
  const stats = statsOf(calib, 512, cols);

  const formats = [
    ["Q4_0", GGMLType.Q4_0],
    ["Q8_0", GGMLType.Q8_0],
    ["Q4_1", GGMLType.Q4_1],
    ["Q5_0", GGMLType.Q5_0],
    ["Q2_K", GGMLType.Q2_K],
    ["Q3_K", GGMLType.Q3_K],
    ["Q4_K", GGMLType.Q4_K],
    ["Q5_K", GGMLType.Q5_K],
    ["Q6_K", GGMLType.Q6_K],
  ] as const;
  for (const [name, type] of formats) {
    for (const actOrder of [false, true]) {
      it(`${name}${actOrder ? " act-order" : ""}: lower layer output error ‖WX − ŴX‖ than RTN on correlated data`, () => {
        expect(gptqSupports(type)).toBe(true);
        const rtn = dequantizeMatrix(rtnQuantize(w, rows, cols, type), rows, cols, type);
        const data = gptqQuantize(w, rows, cols, type, stats, { actOrder, batchSize: 64 });
        const gptq = dequantizeMatrix(data, rows, cols, type);
        const eRtn = outputError(w, rtn, held, rows, cols, 128);
        const eGptq = outputError(w, gptq, held, rows, cols, 128);
        // On held-out inputs from the same distribution GPTQ cuts the error well below RTN's.
        expect(eGptq).toBeLessThan(0.5 * eRtn);
      });
    }
  }

  it("group sizes 32/64/128: scales fixed per group, every one beats RTN, 32 is the per-block default", () => {
    const type = GGMLType.Q4_0;
    const rtn = dequantizeMatrix(rtnQuantize(w, rows, cols, type), rows, cols, type);
    const eRtn = outputError(w, rtn, held, rows, cols, 128);
    const byGroup = new Map<number, Uint8Array>();
    for (const groupSize of [32, 64, 128]) {
      const data = gptqQuantize(w, rows, cols, type, stats, { groupSize, batchSize: 64 });
      byGroup.set(groupSize, data);
      const err = outputError(w, dequantizeMatrix(data, rows, cols, type), held, rows, cols, 128);
      expect(err, `group ${groupSize}`).toBeLessThan(0.5 * eRtn);
    }
    expect(byGroup.get(32)).toEqual(gptqQuantize(w, rows, cols, type, stats, { batchSize: 64 }));
    // A larger group fixes later blocks' scales before their columns receive the error of earlier
    // ones, so the bytes differ.
    expect(byGroup.get(128)).not.toEqual(byGroup.get(32));
    // A K-quant's 256-column block is the smallest group it can have: 64 means the block.
    expect(gptqQuantize(w, rows, cols, GGMLType.Q4_K, stats, { groupSize: 64 })).toEqual(
      gptqQuantize(w, rows, cols, GGMLType.Q4_K, stats),
    );
    for (const bad of [0, 48, 100, 16])
      expect(() => gptqQuantize(w, rows, cols, type, stats, { groupSize: bad })).toThrow(
        /group size must be 32, 64, 128/,
      );
  });

  it("AWQ block clipping lowers the Hessian-weighted output error of RTN", () => {
    for (const type of [GGMLType.Q4_0, GGMLType.Q4_K] as const) {
      const clipped = w.slice();
      clipBlocks(clipped, rows, cols, type, stats);
      const rtn = dequantizeMatrix(rtnQuantize(w, rows, cols, type), rows, cols, type);
      const awq = dequantizeMatrix(rtnQuantize(clipped, rows, cols, type), rows, cols, type);
      expect(outputError(w, awq, held, rows, cols, 128)).toBeLessThan(
        outputError(w, rtn, held, rows, cols, 128),
      );
    }
  });

  it("rejects a Hessian of the wrong width and formats without a column codec", () => {
    expect(() =>
      gptqQuantize(w, rows, cols, GGMLType.Q4_0, statsOf(calib.subarray(0, 64 * 64), 64, 64)),
    ).toThrow(/Hessian of 64 columns/);
    expect(() => gptqQuantize(w, rows, cols, GGMLType.F16, stats)).toThrow(/cannot write/);
  });
});
