// Q4_1, Q5_0, K-quant and ternary kernels: every ISA variant against core-tensor's reference
// (activations quantized to Q8_1 / Q8_0 / Q8_K exactly as ggml does, integer block sums exact, so
// only the float summation order differs), on fresh random inputs with odd row counts.
import {
  f32ToF16,
  GGMLType,
  quantizeRow,
  ReferenceBackend,
  RyzansteinError,
  Tensor,
  typeName,
} from "@ryzanstein/core-tensor";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { availableIsas, type Isa, NativeBackend } from "../src/index.js";
import { ctx, gen, relErr } from "./helpers.js";

const ref = new ReferenceBackend();

/** Each format, its block size and where its f16 scales sit in a block (for raw random blocks). */
const KFORMATS = [
  { type: GGMLType.Q4_1, block: 32, bytes: 20, scales: [0, 2] },
  { type: GGMLType.Q5_0, block: 32, bytes: 22, scales: [0] },
  { type: GGMLType.Q2_K, block: 256, bytes: 84, scales: [80, 82] },
  { type: GGMLType.Q3_K, block: 256, bytes: 110, scales: [108] },
  { type: GGMLType.Q4_K, block: 256, bytes: 144, scales: [0, 2] },
  { type: GGMLType.Q5_K, block: 256, bytes: 176, scales: [0, 2] },
  { type: GGMLType.Q6_K, block: 256, bytes: 210, scales: [208] },
  { type: GGMLType.TQ1_0, block: 256, bytes: 54, scales: [52] },
  { type: GGMLType.TQ2_0, block: 256, bytes: 66, scales: [64] },
] as const;

const TOL = 2e-4;

function rawBlocks(
  f: (typeof KFORMATS)[number],
  rows: number,
  cols: number,
  g: ReturnType<typeof gen>,
): Tensor {
  const data = new Uint8Array(((rows * cols) / f.block) * f.bytes);
  for (let b = 0; b < data.length; b += f.bytes) {
    for (let j = 0; j < f.bytes; j++) data[b + j] = g.int(256);
    for (const o of f.scales) {
      const d = f32ToF16((g.rand() * 2 - 1) * 0.02);
      data[b + o] = d & 0xff;
      data[b + o + 1] = d >> 8;
    }
  }
  return new Tensor(f.type, [rows, cols], data);
}

describe.each(availableIsas())("isa=%s", (isa: Isa) => {
  let nb: NativeBackend;
  beforeAll(() => {
    nb = new NativeBackend({ isa, threads: 2 });
  });
  afterAll(() => nb.dispose());

  for (const f of KFORMATS) {
    const name = typeName(f.type);
    const shapes: [number, number][] = [
      [37, f.block * 2],
      [7, f.block],
      [1, f.block * 3],
      [65, f.block * 4],
    ];
    it(`matmul ${name}: quantized random weights, rows 37/7/1/65, n = 1, 4, 5`, () => {
      for (const [rows, cols] of shapes) {
        const g = gen(`${isa}/kmatmul/${name}/${rows}x${cols}`);
        const w = Tensor.fromF32([rows, cols], g.uniform(rows * cols, 0.1), f.type);
        for (const n of [1, 4, 5]) {
          const x = g.uniform(n * cols, 2);
          const want = new Float32Array(n * rows);
          const got = new Float32Array(n * rows).fill(Number.NaN);
          ref.matmul(want, w, x, n);
          nb.matmul(got, w, x, n);
          expect(relErr(got, want), ctx(`${isa} ${name} [${rows}x${cols}] n=${n}`)).toBeLessThanOrEqual(TOL);
        }
      }
    });

    it(`matmul ${name}: raw random blocks (every byte value), n = 3`, () => {
      const g = gen(`${isa}/kraw/${name}`);
      const rows = 23;
      const cols = f.block * 2;
      const w = rawBlocks(f, rows, cols, g);
      const x = g.uniform(3 * cols, 5);
      const want = new Float32Array(3 * rows);
      const got = new Float32Array(3 * rows);
      ref.matmul(want, w, x, 3);
      nb.matmul(got, w, x, 3);
      expect(relErr(got, want), ctx(`${isa} raw ${name}`)).toBeLessThanOrEqual(TOL);
    });

    it(`getRows ${name} equals the reference decode`, () => {
      const g = gen(`${isa}/kgetrows/${name}`);
      const rows = 11;
      const cols = f.block * 2;
      const table = rawBlocks(f, rows, cols, g);
      const ids = Int32Array.from([0, rows - 1, 3, 3, g.int(rows)]);
      const want = new Float32Array(ids.length * cols);
      const got = new Float32Array(ids.length * cols);
      ref.getRows(want, table, ids);
      nb.getRows(got, table, ids);
      expect(relErr(got, want), ctx(`${isa} getRows ${name}`)).toBeLessThanOrEqual(1e-6);
    });
  }

  it("rejects activation-only formats and rows that do not fill a block", () => {
    const q8k = new Tensor(GGMLType.Q8_K, [1, 256], new Uint8Array(292));
    expect(() => nb.matmul(new Float32Array(1), q8k, new Float32Array(256), 1)).toThrow(RyzansteinError);
    const bad = {
      type: GGMLType.Q4_K,
      shape: [1, 128],
      data: new Uint8Array(144),
      name: "bad",
    } as unknown as Tensor;
    expect(() => nb.matmul(new Float32Array(1), bad, new Float32Array(128), 1)).toThrow(/block size 256/);
  });
});

describe("native quantizers", () => {
  it("Q4_K and Q6_K bytes equal core-tensor's port of ggml's reference (zeros and constants included)", () => {
    const nb = new NativeBackend({ threads: 2 });
    try {
      const g = gen("native-quantize");
      const rows = 9;
      const cols = 512;
      const x = g.uniform(rows * cols, 0.3);
      x.fill(0, 256, 512); // an all-zero block
      x.fill(0.25, 1024, 1280); // a constant block
      for (const t of [GGMLType.Q4_K, GGMLType.Q6_K] as const) {
        const got = nb.quantize(t, x, rows, cols);
        expect(got && Buffer.compare(got, quantizeRow(t, x)), ctx(typeName(t))).toBe(0);
      }
      expect(nb.quantize(GGMLType.Q4_0, x, rows, cols)).toBeUndefined();
      expect(() => nb.quantize(GGMLType.Q4_K, x, rows, 100)).toThrow(RyzansteinError);
    } finally {
      nb.dispose();
    }
  });
});
