// Repacked (8-row interleaved) Q4_0 / Q8_0 weights and the register-tiled kernels, on every ISA
// variant this CPU runs: against ReferenceBackend, against the same backend without repacking, at
// shapes whose rows are not a multiple of the interleave (tail rows) and token counts that are not
// a multiple of the tile, and with the source pages released.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { f32ToF16, GGMLType, ReferenceBackend, Tensor } from "@ryzanstein/core-tensor";
import { afterAll, describe, expect, it } from "vitest";
import { availableIsas, type Isa, mapFile, NativeBackend } from "../src/index.js";
import { ctx, gen, MATMUL_TOL, relErr } from "./helpers.js";

const ref = new ReferenceBackend();
const FORMATS = [
  { type: GGMLType.Q8_0, name: "q8_0" },
  { type: GGMLType.Q4_0, name: "q4_0" },
] as const;
const SHAPES: [number, number][] = [
  [64, 32],
  [67, 96],
  [72, 256],
  [133, 160],
  [200, 1024],
];
const TOKENS = [1, 2, 3, 4, 5, 9, 50];

/** Raw random blocks (every byte value) with small f16 scales. */
function rawBlocks(type: GGMLType, rows: number, cols: number, g: ReturnType<typeof gen>): Tensor {
  const bs = type === GGMLType.Q8_0 ? 34 : 18;
  const data = new Uint8Array((rows * cols * bs) / 32);
  for (let b = 0; b < data.length; b += bs) {
    const d = f32ToF16((g.rand() * 2 - 1) * 0.05);
    data[b] = d & 0xff;
    data[b + 1] = d >> 8;
    for (let j = 2; j < bs; j++) data[b + j] = g.int(256);
  }
  return new Tensor(type, [rows, cols], data);
}

describe.each(availableIsas())("isa=%s: repacked Q4_0 / Q8_0", (isa: Isa) => {
  const packed = new NativeBackend({ isa, threads: 2, repack: true });
  const plain = new NativeBackend({ isa, threads: 2, repack: false });
  afterAll(() => {
    packed.dispose();
    plain.dispose();
  });

  for (const f of FORMATS) {
    for (const [rows, cols] of SHAPES) {
      it(`${f.name} [${rows}x${cols}], n = ${TOKENS.join(",")}: packed = plain = reference`, () => {
        const g = gen(`${isa}/packed/${f.name}/${rows}x${cols}`);
        const w = Tensor.fromF32([rows, cols], g.uniform(rows * cols), f.type);
        expect(packed.prepareWeight(w, false)).toBe(true);
        expect(plain.prepareWeight(w, false)).toBe(false);
        for (const n of TOKENS) {
          const x = g.uniform(n * cols, 3);
          const want = new Float32Array(n * rows);
          const a = new Float32Array(n * rows).fill(Number.NaN);
          const b = new Float32Array(n * rows).fill(Number.NaN);
          ref.matmul(want, w, x, n);
          packed.matmul(a, w, x, n);
          plain.matmul(b, w, x, n);
          const what = `${isa} ${f.name} [${rows}x${cols}] n=${n}`;
          expect(relErr(a, want), ctx(`packed ${what}`)).toBeLessThanOrEqual(MATMUL_TOL[f.name]);
          expect(relErr(b, want), ctx(`tiled ${what}`)).toBeLessThanOrEqual(MATMUL_TOL[f.name]);
        }
      });
    }
    it(`${f.name} over raw random blocks (all byte values), 136 rows`, () => {
      const g = gen(`${isa}/packed-raw/${f.name}`);
      const w = rawBlocks(f.type, 136, 128, g);
      packed.prepareWeight(w, false);
      const x = g.uniform(6 * 128, 10);
      const want = new Float32Array(6 * 136);
      const got = new Float32Array(6 * 136);
      ref.matmul(want, w, x, 6);
      packed.matmul(got, w, x, 6);
      expect(relErr(got, want), ctx(`${isa} raw packed ${f.name}`)).toBeLessThanOrEqual(MATMUL_TOL[f.name]);
    });
  }

  // The multi-token Q4_0 kernel runs tiles of up to 8 tokens (one more tile for the 2..7 left) and a
  // lone token through the decode kernel; every count must agree with the reference and give each
  // token's row bit for bit as that token alone (the float order is the same per output).
  for (const [rows, cols] of [
    [64, 96],
    [75, 1056],
  ] as const) {
    it(`q4_0 [${rows}x${cols}], n = 1..17: tiles = reference, each row = the token alone`, () => {
      const g = gen(`${isa}/packed-tiles/${rows}x${cols}`);
      const w = Tensor.fromF32([rows, cols], g.uniform(rows * cols), GGMLType.Q4_0);
      expect(packed.prepareWeight(w, false)).toBe(true);
      const alone = new Float32Array(rows);
      for (let n = 1; n <= 17; n++) {
        const x = g.uniform(n * cols, 3);
        const want = new Float32Array(n * rows);
        const got = new Float32Array(n * rows).fill(Number.NaN);
        ref.matmul(want, w, x, n);
        packed.matmul(got, w, x, n);
        expect(relErr(got, want), ctx(`${isa} q4_0 tiles [${rows}x${cols}] n=${n}`)).toBeLessThanOrEqual(
          MATMUL_TOL.q4_0,
        );
        for (let t = 0; t < n; t++) {
          packed.matmul(alone, w, x.slice(t * cols, (t + 1) * cols), 1);
          expect(Array.from(got.subarray(t * rows, (t + 1) * rows)), `n=${n} token ${t}`).toEqual(
            Array.from(alone),
          );
        }
      }
    });
  }

  it("leaves small matrices and other formats in the file layout", () => {
    const g = gen(`${isa}/packed-skip`);
    expect(packed.prepareWeight(Tensor.fromF32([63, 64], g.uniform(63 * 64), GGMLType.Q4_0), false)).toBe(
      false,
    );
    expect(packed.prepareWeight(Tensor.fromF32([64, 64], g.uniform(64 * 64), GGMLType.F16), false)).toBe(
      false,
    );
  });
});

describe("releasing the source pages of a mapped tensor", () => {
  const dir = mkdtempSync(join(tmpdir(), "ryz-packed-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("drops the mapped pages, still reads them correctly, and never releases heap memory", () => {
    const g = gen("release");
    const rows = 512;
    const cols = 1024;
    const src = Tensor.fromF32([rows, cols], g.uniform(rows * cols), GGMLType.Q4_0);
    const file = join(dir, "w.bin");
    const pad = new Uint8Array(4096 + 96); // an unaligned start inside the mapping
    writeFileSync(file, Buffer.concat([pad, src.data]));
    const mapped = mapFile(file);
    const w = new Tensor(
      GGMLType.Q4_0,
      [rows, cols],
      mapped.subarray(pad.length, pad.length + src.data.length),
    );
    const nb = new NativeBackend({ threads: 2 });
    expect(nb.prepareWeight(w, true)).toBe(true);
    expect(nb.repackedBytes.made).toBe(src.data.length);
    expect(nb.repackedBytes.released).toBe(src.data.length);
    // The released pages read back from the file, unchanged.
    expect(Buffer.compare(Buffer.from(w.data), Buffer.from(src.data))).toBe(0);
    const x = g.uniform(3 * cols);
    const want = new Float32Array(3 * rows);
    const got = new Float32Array(3 * rows);
    ref.matmul(want, src, x, 3);
    nb.matmul(got, w, x, 3);
    expect(relErr(got, want)).toBeLessThanOrEqual(MATMUL_TOL.q4_0);
    // A heap tensor is never released (MADV_DONTNEED would zero it).
    const heap = Tensor.fromF32([rows, cols], g.uniform(rows * cols), GGMLType.Q8_0);
    const copy = heap.data.slice();
    expect(nb.prepareWeight(heap, true)).toBe(true);
    expect(nb.repackedBytes.released).toBe(src.data.length);
    expect(Buffer.compare(Buffer.from(heap.data), Buffer.from(copy))).toBe(0);
    nb.dispose();
  });
});

describe("memoryBandwidth", () => {
  it("measures positive read and copy bandwidth", () => {
    const nb = new NativeBackend({ threads: 2 });
    const r = nb.memoryBandwidth(8 * 1024 * 1024, 2);
    expect(r.readBytesPerSecond).toBeGreaterThan(1e8);
    expect(r.copyBytesPerSecond).toBeGreaterThan(1e8);
    nb.dispose();
  });
});
