// Ternary lookup-table kernel (TQ1_0 / TQ2_0 repacked at load, native/ternary_lut.h) on every ISA
// variant this CPU runs: the packed bytes equal the TypeScript reference's, the results equal the
// TypeScript LUT reference and the file-layout dot of the same ISA and of the scalar one bit for
// bit (all in llama.cpp's AVX2 order: per block 8 exact integer lanes, one FMA each, hsum_float_8),
// and stay within the reference backend's tolerance; odd row counts (a padded last tile), several
// token counts, raw random blocks, a TQ2_0 matrix holding the non-ternary code 3 (left in the file
// layout), and released source pages.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { f32ToF16, GGMLType, ReferenceBackend, Tensor, typeName } from "@ryzanstein/core-tensor";
import { afterAll, describe, expect, it } from "vitest";
import { availableIsas, type Isa, mapFile, NativeBackend } from "../src/index.js";
import { loadAddon } from "../src/native.js";
import { ctx, firstMismatch, gen, relErr } from "./helpers.js";
import { lutMatmulRef, packTernaryLut, tlPackedBytes } from "./ternary-lut-ref.js";

const ref = new ReferenceBackend();
const TYPES = [GGMLType.TQ1_0, GGMLType.TQ2_0] as const;
const SHAPES: [number, number][] = [
  [64, 256],
  [67, 512],
  [96, 768],
  [133, 1280],
  [71, 2304],
];
const TOKENS = [1, 2, 3, 5];
const TOL = 2e-4;

/** Random ternary weights (values in {-1, 0, 1} times a per-block scale) in `type`. */
function ternary(type: GGMLType, rows: number, cols: number, g: ReturnType<typeof gen>): Tensor {
  const v = new Float32Array(rows * cols);
  for (let i = 0; i < v.length; i++) v[i] = (g.int(3) - 1) * (0.5 + g.rand());
  return Tensor.fromF32([rows, cols], v, type);
}

/** Raw random blocks: every byte value (TQ2_0 codes limited to 0..2), small f16 scales. */
function rawBlocks(type: GGMLType, rows: number, cols: number, g: ReturnType<typeof gen>): Tensor {
  const bs = type === GGMLType.TQ2_0 ? 66 : 54;
  const data = new Uint8Array(((rows * cols) / 256) * bs);
  for (let b = 0; b < data.length; b += bs) {
    for (let j = 0; j < bs - 2; j++) {
      let q = g.int(256);
      if (type === GGMLType.TQ2_0) q &= ~((q & (q >> 1) & 0x55) << 1); // code 3 -> 1
      data[b + j] = q;
    }
    const d = f32ToF16((g.rand() * 2 - 1) * 0.05);
    data[b + bs - 2] = d & 0xff;
    data[b + bs - 1] = d >> 8;
  }
  return new Tensor(type, [rows, cols], data);
}

describe.each(availableIsas())("isa=%s: ternary lookup-table kernel", (isa: Isa) => {
  const packed = new NativeBackend({ isa, threads: 2, repack: true });
  const file = new NativeBackend({ isa, threads: 2, repack: false });
  const scalar = new NativeBackend({ isa: "scalar", threads: 1, repack: false });
  afterAll(() => {
    packed.dispose();
    file.dispose();
    scalar.dispose();
  });

  for (const type of TYPES) {
    const name = typeName(type);
    for (const [rows, cols] of SHAPES) {
      it(`${name} [${rows}x${cols}], n = ${TOKENS.join(",")}: LUT = TS LUT reference = file-layout dots, bit for bit`, () => {
        const g = gen(`${isa}/tl/${name}/${rows}x${cols}`);
        const w = ternary(type, rows, cols, g);
        expect(packed.prepareWeight(w, false)).toBe(true);
        const bytes = loadAddon().repackWeights(type, w.data, rows, cols, false);
        expect(bytes).not.toBeNull();
        expect(bytes?.byteLength).toBe(tlPackedBytes(rows, cols));
        const want = packTernaryLut(type, w.data, rows, cols);
        expect(Buffer.compare(Buffer.from(bytes as Uint8Array), Buffer.from(want))).toBe(0);
        for (const n of TOKENS) {
          const x = g.uniform(n * cols, 3);
          const got = new Float32Array(n * rows).fill(Number.NaN);
          const dot = new Float32Array(n * rows).fill(Number.NaN);
          const own = new Float32Array(n * rows).fill(Number.NaN);
          const r = new Float32Array(n * rows);
          packed.matmul(got, w, x, n);
          scalar.matmul(dot, w, x, n);
          file.matmul(own, w, x, n);
          ref.matmul(r, w, x, n);
          const what = `${isa} ${name} [${rows}x${cols}] n=${n}`;
          expect(firstMismatch(got, lutMatmulRef(want, rows, cols, x, n)), ctx(`TS LUT ${what}`)).toBe(-1);
          expect(firstMismatch(got, dot), ctx(`scalar dot ${what}`)).toBe(-1);
          expect(firstMismatch(got, own), ctx(`${isa} file-layout dot ${what}`)).toBe(-1);
          expect(relErr(got, r), ctx(`reference ${what}`)).toBeLessThanOrEqual(TOL);
        }
      });
    }

    it(`${name}: activations whose int8 sums could overflow one chunk (three-chunk path), bit for bit`, () => {
      // Q8_K maps a block's largest magnitude to ∓127: all-equal values give quants of -127
      // (high nibble -8), and 127 with 7.94 elsewhere gives -8 (low nibble -8). Either way a
      // lane's groups 5..10 could exceed int8 in one chunk, so the kernel must keep three chunks.
      const g = gen(`${isa}/tl-extreme/${name}`);
      const rows = 67;
      const cols = 512;
      const w = ternary(type, rows, cols, g);
      expect(packed.prepareWeight(w, false)).toBe(true);
      const n = 3;
      const x = g.uniform(n * cols, 3);
      for (let e = 0; e < cols; e++) {
        x[e] = 1;
        x[cols + e] = e % 32 === 0 ? 127 : 7.94;
      }
      const got = new Float32Array(n * rows).fill(Number.NaN);
      const dot = new Float32Array(n * rows).fill(Number.NaN);
      const own = new Float32Array(n * rows).fill(Number.NaN);
      packed.matmul(got, w, x, n);
      scalar.matmul(dot, w, x, n);
      file.matmul(own, w, x, n);
      const lut = lutMatmulRef(packTernaryLut(type, w.data, rows, cols), rows, cols, x, n);
      expect(firstMismatch(got, lut), ctx(`TS LUT extreme ${name}`)).toBe(-1);
      expect(firstMismatch(got, dot), ctx(`${isa} extreme ${name}`)).toBe(-1);
      expect(firstMismatch(got, own), ctx(`${isa} extreme ${name}, file-layout dot`)).toBe(-1);
    });

    it(`${name} over raw random blocks, 70 rows, 9 tokens`, () => {
      const g = gen(`${isa}/tl-raw/${name}`);
      const w = rawBlocks(type, 70, 512, g);
      expect(packed.prepareWeight(w, false)).toBe(true);
      const x = g.uniform(9 * 512, 10);
      const got = new Float32Array(9 * 70);
      const dot = new Float32Array(9 * 70);
      const own = new Float32Array(9 * 70);
      packed.matmul(got, w, x, 9);
      scalar.matmul(dot, w, x, 9);
      file.matmul(own, w, x, 9);
      expect(firstMismatch(got, dot), ctx(`${isa} raw ${name}`)).toBe(-1);
      expect(firstMismatch(got, own), ctx(`${isa} raw ${name}, file-layout dot`)).toBe(-1);
    });
  }

  it("keeps a TQ2_0 matrix holding the code 3 (weight +2) in the file layout", () => {
    const g = gen(`${isa}/tl-code3`);
    const w = ternary(GGMLType.TQ2_0, 64, 256, g);
    w.data[5 * 66 + 7] |= 0x0c; // one 2-bit field = 3
    expect(loadAddon().repackWeights(GGMLType.TQ2_0, w.data, 64, 256, false)).toBeNull();
    expect(packed.prepareWeight(w, false)).toBe(false);
    const x = g.uniform(2 * 256);
    const got = new Float32Array(2 * 64);
    const want = new Float32Array(2 * 64);
    packed.matmul(got, w, x, 2);
    ref.matmul(want, w, x, 2);
    expect(relErr(got, want), ctx(`${isa} code 3`)).toBeLessThanOrEqual(TOL);
  });

  it("keeps LUT-packed matrices off the fused path; matmulQuantized still reads them correctly", () => {
    const g = gen(`${isa}/tl-fused`);
    const rows = 64;
    const cols = 512;
    const n = 3;
    const w = ternary(GGMLType.TQ2_0, rows, cols, g);
    const layout = scalar.activationLayout(w);
    expect(layout).toBeGreaterThanOrEqual(0);
    expect(packed.prepareWeight(w, false)).toBe(true);
    expect(packed.activationLayout(w)).toBe(-1);
    const x = g.uniform(n * cols, 2);
    const norm = Float32Array.from({ length: cols }, () => 1);
    const act = packed.createActivations(layout, cols, n);
    packed.rmsNormQuantize(act, x, norm, n, cols, 1e-5);
    const xn = new Float32Array(n * cols);
    packed.rmsNorm(xn, x, norm, n, cols, 1e-5);
    const got = new Float32Array(n * rows);
    const same = new Float32Array(n * rows);
    const want = new Float32Array(n * rows);
    packed.matmulQuantized(got, w, act, n);
    // the same bytes as a tensor that was never repacked: the file-layout kernel, bit for bit
    packed.matmulQuantized(same, new Tensor(GGMLType.TQ2_0, [rows, cols], w.data), act, n);
    ref.matmul(want, w, xn, n);
    expect(firstMismatch(got, same), ctx(`${isa} matmulQuantized over a LUT-packed tensor`)).toBe(-1);
    expect(relErr(got, want), ctx(`${isa} matmulQuantized vs reference`)).toBeLessThanOrEqual(TOL);
  });

  it("leaves ternary matrices alone when repacking is off or they are small", () => {
    const g = gen(`${isa}/tl-skip`);
    expect(scalar.prepareWeight(ternary(GGMLType.TQ2_0, 64, 256, g), false)).toBe(false);
    expect(packed.prepareWeight(ternary(GGMLType.TQ1_0, 63, 256, g), false)).toBe(false);
  });
});

describe("ternary LUT copy of a mapped tensor", () => {
  const dir = mkdtempSync(join(tmpdir(), "ryz-tl-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("replaces the released file pages (1.8125 bits per weight) and reads the same results", () => {
    const g = gen("tl-release");
    const rows = 256;
    const cols = 2048;
    const src = ternary(GGMLType.TQ2_0, rows, cols, g);
    const file = join(dir, "w.bin");
    const pad = new Uint8Array(4096 + 160);
    writeFileSync(file, Buffer.concat([pad, src.data]));
    const mapped = mapFile(file);
    const w = new Tensor(
      GGMLType.TQ2_0,
      [rows, cols],
      mapped.subarray(pad.length, pad.length + src.data.length),
    );
    const nb = new NativeBackend({ threads: 2 });
    expect(nb.prepareWeight(w, true)).toBe(true);
    expect(nb.repackedBytes.made).toBe((rows * cols * 1.8125) / 8);
    expect(nb.repackedBytes.released).toBe((rows * cols * 1.8125) / 8);
    expect(Buffer.compare(Buffer.from(w.data), Buffer.from(src.data))).toBe(0);
    const x = g.uniform(3 * cols);
    const want = new Float32Array(3 * rows);
    const got = new Float32Array(3 * rows);
    ref.matmul(want, src, x, 3);
    nb.matmul(got, w, x, 3);
    expect(relErr(got, want)).toBeLessThanOrEqual(TOL);
    nb.dispose();
  });
});
