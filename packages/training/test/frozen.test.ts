// Frozen base weights in their storage formats (QLoRA) and activation checkpointing: the frozen
// kernels on every ISA against the reference (file and repacked layouts, odd shapes), and a whole
// model with checkpointing giving the same gradients as without.
import { GGMLType, ReferenceBackend, Tensor } from "@ryzanstein/core-tensor";
import { availableIsas, type FrozenWeight, NativeTrainKernels } from "@ryzanstein/kernels-native";
import { afterAll, describe, expect, it } from "vitest";
import {
  type FrozenMatrix,
  type FrozenModel,
  initParams,
  nativeOps,
  paramLayout,
  referenceOps,
  seededRandom,
  TrainGraph,
} from "../src/index.js";

const rand = seededRandom(7);
const randn = (n: number, scale = 1) => Float32Array.from({ length: n }, () => (rand() * 2 - 1) * scale);
const natives = availableIsas().map((isa) => ({ isa, ops: nativeOps({ isa, threads: 2 }) }));
afterAll(() => {
  for (const n of natives) n.ops.kernels.dispose();
});

const maxAbs = (a: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
};
const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};

function frozen(t: Tensor, packed: boolean): FrozenMatrix {
  const [rows, cols] = t.shape;
  const w: FrozenWeight = { type: t.type, rows, cols, data: t.data, packed: false };
  return { tensor: t, native: packed ? NativeTrainKernels.repack(w, false) : w };
}

const FORMATS = [
  ["F32", GGMLType.F32, 70],
  ["F16", GGMLType.F16, 70],
  ["BF16", GGMLType.BF16, 70],
  ["Q8_0", GGMLType.Q8_0, 96],
  ["Q4_0", GGMLType.Q4_0, 96],
] as const;

describe.each(natives)("frozen weights, native $isa against the reference", ({ ops }) => {
  it.each(FORMATS)("%s: forward, input gradient and row lookup", (_name, type, cols) => {
    // 75 rows: nine groups of 8 plus a tail of 3 in the repacked layout
    const rows = 75;
    const t = Tensor.fromF32([rows, cols], randn(rows * cols), type);
    const decoded = t.toF32();
    const layouts = type === GGMLType.Q8_0 || type === GGMLType.Q4_0 ? [false, true] : [false];
    for (const packed of layouts) {
      const w = frozen(t, packed);
      expect(w.native.packed).toBe(packed);
      for (const n of [1, 7, 37]) {
        // forward: the inference matmul, against the reference backend (same activation rounding)
        const x = randn(n * cols);
        const y = new Float32Array(n * rows);
        ops.linearFrozen(y, x, w, n);
        const yRef = new Float32Array(n * rows);
        new ReferenceBackend().matmul(yRef, t, x, n);
        expect(maxDiff(y, yRef) / maxAbs(yRef)).toBeLessThan(1e-5);
        // input gradient: dy·W with W decoded exactly, accumulating and not
        const dy = randn(n * rows);
        for (const accumulate of [false, true]) {
          const dx = randn(n * cols);
          const dx64 = Float64Array.from(dx);
          referenceOps.linearBackwardInput(
            dx64,
            Float64Array.from(dy),
            Float64Array.from(decoded),
            n,
            cols,
            rows,
            accumulate,
          );
          ops.linearFrozenBackwardInput(dx, dy, w, n, accumulate);
          expect(maxDiff(dx, dx64) / maxAbs(dx64)).toBeLessThan(1e-5);
        }
      }
      const ids = Int32Array.from([0, 74, 3, 3, 41]);
      const e = new Float32Array(ids.length * cols);
      ops.embeddingFrozen(e, w, ids, ids.length);
      for (let i = 0; i < ids.length; i++)
        expect(e.subarray(i * cols, (i + 1) * cols)).toEqual(
          decoded.subarray(ids[i] * cols, (ids[i] + 1) * cols),
        );
    }
  });

  it("bad frozen weights are typed errors", () => {
    const t = Tensor.fromF32([8, 64], randn(8 * 64), GGMLType.Q4_0);
    const w = frozen(t, false);
    const y = new Float32Array(8);
    expect(() =>
      ops.kernels.linearFrozen(
        y,
        new Float32Array(64),
        { ...w.native, data: w.native.data.subarray(0, 10) },
        1,
      ),
    ).toThrow(/too short/);
    expect(() =>
      ops.kernels.linearFrozenBackwardInput(new Float32Array(64), y, { ...w.native, cols: 48 }, 1),
    ).toThrow(/multiple of the q4_0 block size/i);
    expect(() =>
      ops.kernels.embeddingFrozen(new Float32Array(64), w.native, Int32Array.from([8]), 1),
    ).toThrow(/outside the table/);
  });
});

const shape = { nLayers: 3, dim: 64, nHeads: 4, nKvHeads: 2, ffnDim: 96, vocabSize: 40, contextLength: 16 };

/** A frozen model from flat parameters, every matrix stored as `type`. */
function frozenModel(p: Float32Array, type: GGMLType, packed: boolean): FrozenModel {
  const matrices = new Map<string, FrozenMatrix>();
  const norms = new Map<string, Float32Array>();
  for (const s of paramLayout(shape).specs) {
    const v = p.subarray(s.offset, s.offset + s.size);
    if (s.isNorm) norms.set(s.name, v.slice());
    else {
      const t = Tensor.fromF32(s.shape, v.slice(), type);
      matrices.set(s.name, frozen(t, packed && s.name !== "token_embd.weight"));
    }
  }
  return { matrices, norms };
}

describe("activation checkpointing and frozen models in the training graph", () => {
  const p = initParams(shape, 3).map((x) => x * 8);
  for (const s of paramLayout(shape).specs) if (s.isNorm) p.fill(1.05, s.offset, s.offset + s.size);
  const tokens = Int32Array.from({ length: 24 }, (_, i) => (i * 7 + 3) % 40);
  const targets = Int32Array.from({ length: 24 }, (_, i) => (i % 5 === 4 ? -1 : (i * 5 + 1) % 40));

  it.each(natives)(
    "$isa: gradients with checkpointing are bit-identical; it holds one layer's activations",
    ({ ops }) => {
      const plain = new TrainGraph(shape, 2, 12, ops);
      const ckpt = new TrainGraph(shape, 2, 12, ops, undefined, { checkpointLayers: true });
      const g1 = new Float32Array(p.length);
      const g2 = new Float32Array(p.length);
      const l1 = plain.step(p, tokens, targets, g1, 0.1);
      const l2 = ckpt.step(p, tokens, targets, g2, 0.1);
      expect(l2).toBe(l1);
      expect(g2).toEqual(g1);
      expect(ckpt.activationBytes).toBeLessThan(plain.activationBytes);
    },
  );

  it("float64 reference: checkpointing gives the same gradients", () => {
    const p64 = Float64Array.from(p);
    const g1 = new Float64Array(p.length);
    const g2 = new Float64Array(p.length);
    new TrainGraph(shape, 2, 12, referenceOps).step(p64, tokens, targets, g1);
    new TrainGraph(shape, 2, 12, referenceOps, undefined, { checkpointLayers: true }).step(
      p64,
      tokens,
      targets,
      g2,
    );
    expect(g2).toEqual(g1);
  });

  it.each(natives)(
    "$isa: a frozen F32 model gives the flat model's loss; quantized ones stay close",
    ({ ops }) => {
      const g = new TrainGraph(shape, 2, 12, ops, undefined, { checkpointLayers: true });
      const flat = g.step(p, tokens, targets);
      const f32 = g.step(frozenModel(p, GGMLType.F32, false), tokens, targets);
      expect(Math.abs(f32 - flat) / flat).toBeLessThan(1e-5);
      for (const type of [GGMLType.F16, GGMLType.Q8_0, GGMLType.Q4_0]) {
        const m = frozenModel(p, type, true);
        const q = g.step(m, tokens, targets);
        // the float64 reference of the same stored weights (no activation rounding)
        const ref = new TrainGraph(shape, 2, 12, referenceOps).step(m, tokens, targets);
        expect(Math.abs(q - ref) / ref).toBeLessThan(type === GGMLType.Q4_0 ? 2e-2 : 1e-2);
      }
      expect(() =>
        g.step(frozenModel(p, GGMLType.F32, false), tokens, targets, new Float32Array(p.length)),
      ).toThrow(/no parameter gradients/);
    },
  );
});
