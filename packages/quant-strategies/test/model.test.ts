import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ComputeFormat, GGMLType, isRyzansteinError } from "@ryzanstein/core-tensor";
import { ModelSession, openModelFile } from "@ryzanstein/engine";
import { writeRandomLlamaGGUF } from "@ryzanstein/test-support";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  applyAwq,
  type CalibrationData,
  collectCalibration,
  type FloatModel,
  quantizedModelSource,
  quantizeModel,
  readFloatModel,
  serializeQuantizedModel,
} from "../src/index.js";
import { uniform } from "./helpers.js";

const dir = mkdtempSync(join(tmpdir(), "rz-quant-"));
const path = join(dir, "rand.gguf");
let float: FloatModel;
let calibration: CalibrationData;

// Multi-head attention (no GQA) so the V → O folding is exercised too; untied output.
const SHAPE = { nLayers: 2, dim: 64, nHeads: 4, nKvHeads: 4, ffnDim: 128, vocabSize: 300, seed: 5 };

beforeAll(() => {
  writeRandomLlamaGGUF(path, { ...SHAPE, type: GGMLType.F32 });
  float = readFloatModel(openModelFile(path));
  const u = uniform(9);
  const tokens = [1, ...Array.from({ length: 383 }, () => 3 + Math.floor(u() * 296))];
  calibration = collectCalibration(openModelFile(path), tokens, { ctx: 128, threads: 1 });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function logitsOf(source: ReturnType<typeof quantizedModelSource>, tokens: number[]): Float32Array {
  const s = new ModelSession(source, { contextSize: 64, kvCache: "f32", threads: 1 });
  try {
    return s.logits(tokens);
  } finally {
    s.dispose();
  }
}

describe("calibration", () => {
  it("collects Hessians and samples for every input group", () => {
    for (const g of [
      "blk.0.attn_in",
      "blk.0.attn_out",
      "blk.0.ffn_in",
      "blk.0.ffn_act",
      "blk.1.ffn_act",
      "output_in",
    ]) {
      const s = calibration.inputs.get(g);
      expect(s, g).toBeDefined();
      expect(s?.count).toBe(384);
      expect(s?.sampleCount).toBe(256);
    }
    expect(calibration.inputs.get("blk.0.ffn_act")?.cols).toBe(128);
  });

  it("sees every input group of a quantized model too (its forward pass fuses norm and quantization)", () => {
    // With Q8_0 weights the engine's fused steps hand the matmuls quantized activations; the
    // calibration must still see the float inputs of every matrix, or GPTQ/AWQ silently fall back.
    const q8 = join(dir, "rand-q8.gguf");
    writeRandomLlamaGGUF(q8, { ...SHAPE, type: GGMLType.Q8_0 });
    const u = uniform(3);
    const tokens = [1, ...Array.from({ length: 127 }, () => 3 + Math.floor(u() * 296))];
    const c = collectCalibration(openModelFile(q8), tokens, { ctx: 128, threads: 1 });
    const groups = ["attn_in", "attn_out", "ffn_in", "ffn_act"].flatMap((p) => [`blk.0.${p}`, `blk.1.${p}`]);
    for (const g of [...groups, "output_in"]) expect(c.inputs.get(g)?.count, g).toBe(128);
  });

  it("refuses calibration text that is too short", () => {
    try {
      collectCalibration(openModelFile(path), [1, 2, 3], {});
      expect.unreachable();
    } catch (e) {
      expect(isRyzansteinError(e, "INSUFFICIENT_DATA")).toBe(true);
      expect((e as Error).message).toMatch(/too short: 3 tokens/);
    }
  });
});

describe("AWQ", () => {
  it("folding the scales leaves the float model's outputs unchanged", () => {
    const scaled = quantizeModel(float, { type: GGMLType.F32 }); // a copy
    const model = readFloatModel(quantizedModelSource(scaled));
    const before = model.byName.get("blk.0.attn_norm.weight")?.values.slice();
    const results = applyAwq(model, calibration, () => GGMLType.Q4_0, { clip: false });
    expect(results.length).toBe(2 * 4 + 1); // per layer: qkv, o, gate/up, down; plus the classifier
    expect(results.some((r) => r.alpha > 0)).toBe(true);
    for (const r of results) expect(r.awqError).toBeLessThanOrEqual(r.rtnError);
    expect(model.byName.get("blk.0.attn_norm.weight")?.values).not.toEqual(before);
    const tokens = [1, 40, 77, 120, 5, 260, 33, 90];
    const a = logitsOf(quantizedModelSource(quantizeModel(float, { type: GGMLType.F32 })), tokens);
    const b = logitsOf(quantizedModelSource(quantizeModel(model, { type: GGMLType.F32 })), tokens);
    let num = 0;
    let den = 0;
    for (let i = 0; i < a.length; i++) {
      num += (a[i] - b[i]) ** 2;
      den += a[i] ** 2;
    }
    expect(Math.sqrt(num / den)).toBeLessThan(1e-5);
  });
});

describe("mixed and auto", () => {
  const uniformBytes = (type: ComputeFormat) => quantizeModel(float, { type, strategy: "rtn" }).fileBytes;

  it("mixed stays within the size budget and spends it on the sensitive tensors", () => {
    const q4 = uniformBytes(GGMLType.Q4_0);
    const q8 = uniformBytes(GGMLType.Q8_0);
    const target = Math.round((q4 + q8) / 2);
    const q = quantizeModel(float, {
      type: GGMLType.Q4_0,
      strategy: "mixed",
      calibration,
      targetBytes: target,
    });
    expect(q.fileBytes).toBeLessThanOrEqual(target);
    expect(serializeQuantizedModel(q).length).toBe(q.fileBytes);
    const written = new Set(q.report.filter((r) => r.method !== "copy").map((r) => r.written));
    // The budget lies between uniform Q4_0 and Q8_0: some matrices get more bits than others.
    expect(written.size).toBeGreaterThan(1);
    expect([...written].some((t) => ["q5_0", "q5_K", "q6_K", "q8_0"].includes(t))).toBe(true);
    expect(q.report.filter((r) => r.method === "gptq").length).toBeGreaterThan(0);
    // At equal size (the default budget) mixed is never larger than uniform Q4_0.
    const equal = quantizeModel(float, { type: GGMLType.Q4_0, strategy: "mixed", calibration });
    expect(equal.fileBytes).toBeLessThanOrEqual(q4);
  });

  it("mixed and auto refuse a size target below the smallest plan", () => {
    for (const strategy of ["mixed", "auto"] as const) {
      try {
        quantizeModel(float, { type: GGMLType.Q4_0, strategy, calibration, targetBytes: 20_000 });
        expect.unreachable();
      } catch (e) {
        expect(isRyzansteinError(e, "TARGET_UNREACHABLE")).toBe(true);
      }
    }
  });

  it("auto picks the smallest format within the perplexity bound, and errors when none is", () => {
    // Pretend only Q8_0 keeps the increase under 2 %: auto must walk up to it.
    const evaluate = (c: { report: Array<{ written: string; method: string }> }) =>
      c.report.every((r) => r.method === "copy" || r.written === "q8_0") ? 0.001 : 0.05;
    const q = quantizeModel(float, {
      type: GGMLType.Q4_0,
      strategy: "auto",
      calibration,
      maxPerplexityIncrease: 0.02,
      evaluate,
    });
    // Every candidate of the first passing size is all Q8_0; on a tie the mixed candidate wins.
    expect(q.strategy).toBe("auto→mixed");
    expect(q.report.filter((r) => r.method !== "copy").every((r) => r.written === "q8_0")).toBe(true);
    // This model's rows do not fit 256-wide blocks: the Q6_K rung already falls back to Q8_0.
    expect(q.notes.at(-1)).toMatch(/chose mixed at the size of q6_K/);
    try {
      quantizeModel(float, {
        type: GGMLType.Q4_0,
        strategy: "auto",
        calibration,
        maxPerplexityIncrease: 0.02,
        evaluate: () => 0.5,
      });
      expect.unreachable();
    } catch (e) {
      expect(isRyzansteinError(e, "TARGET_UNREACHABLE")).toBe(true);
      expect((e as Error).message).toMatch(/no format keeps the perplexity increase within 2\.00%/);
    }
  });

  it("auto picks the strategy and the per-tensor formats that meet the bound at the smallest size", () => {
    // Only AWQ candidates pass: auto stops at the smallest size and returns the AWQ encoding.
    const awq = quantizeModel(float, {
      type: GGMLType.Q4_0,
      strategy: "auto",
      calibration,
      maxPerplexityIncrease: 0.02,
      evaluate: (c) => (c.strategy === "awq" ? 0.01 : 0.3),
    });
    expect(awq.strategy).toBe("auto→awq");
    // Q2_K is the smallest size rung (ternary formats are not candidates).
    expect(awq.fileBytes).toBe(uniformBytes(GGMLType.Q2_K));
    // Only plans with more than one format pass: the mixed planner's per-tensor plan is chosen,
    // at the first size where it differs from the uniform plan.
    const perTensor = quantizeModel(float, {
      type: GGMLType.Q4_0,
      strategy: "auto",
      calibration,
      maxPerplexityIncrease: 0.02,
      evaluate: (c) =>
        new Set(c.report.filter((r) => r.method !== "copy").map((r) => r.written)).size > 1 ? 0.01 : 0.3,
    });
    expect(perTensor.strategy).toBe("auto→mixed");
    expect(
      new Set(perTensor.report.filter((r) => r.method !== "copy").map((r) => r.written)).size,
    ).toBeGreaterThan(1);
    // The lowest increase among one size's passing candidates wins.
    const lowest = quantizeModel(float, {
      type: GGMLType.Q4_0,
      strategy: "auto",
      calibration,
      maxPerplexityIncrease: 0.02,
      evaluate: (c) => ({ mixed: 0.015, gptq: 0.005, awq: 0.01 })[c.strategy] ?? 1,
    });
    expect(lowest.strategy).toBe("auto→gptq");
  });

  it("strategies that need calibration say so; unknown strategies list the choices", () => {
    expect(() => quantizeModel(float, { type: GGMLType.Q4_0, strategy: "gptq" })).toThrow(
      /needs calibration text/,
    );
    expect(() => quantizeModel(float, { type: GGMLType.Q4_0, strategy: "nope" as "rtn" })).toThrow(
      /rtn, gptq, awq, mixed, auto/,
    );
  });
});
