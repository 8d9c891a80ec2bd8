import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  absmeanScale,
  type ComputeFormat,
  dequantizeRow,
  FORMAT_TRAITS,
  f16ToF32,
  GGMLType,
  quantizeRow,
  quantizeRowTernary,
  ReferenceBackend,
  RyzansteinError,
  Tensor,
  typeName,
} from "../src/index.js";
import { goldenInput } from "./golden-input.js";

/**
 * SHA-256 of ggml's `quantize_row_<type>_ref` output on `goldenInput()`, produced by
 * scripts/ggml-golden.c against node-llama-cpp 3.21.1's libggml-base.so (llama.cpp b-tag of that
 * release). The live test below also runs ggml itself on the same input.
 */
const GGML_SHA256: Partial<Record<ComputeFormat, string>> = {
  [GGMLType.Q4_0]: "01695eeeeab342d6e2ab28ce525f549c65ea21333299afc8a1c3b6c94794aaa6",
  [GGMLType.Q8_0]: "a7c3e2b478eddaf0b5ca2cb3493707e94814996d807d8ad6b71907b2b815d1e1",
  [GGMLType.Q4_1]: "5fe3a785183ca3ceab923e5613be04437921d8f73b03f70cbeed8a4ead305060",
  [GGMLType.Q5_0]: "a3b1d3824def4d4e7dab7761d056490c57c729c608465e01735e716089a21bc2",
  [GGMLType.Q8_1]: "3ec54ac1fe6ebc7241276f56bda2cb76779441f5b34297d8a3c99dffbd3c87e2",
  [GGMLType.Q2_K]: "85c975b44ef377f872d8427efb35f7b4519d692111fa643a3c8e376ee5f1dfda",
  [GGMLType.Q3_K]: "01ab0ff97a6aea0641c4d2a10b5889a24ee14e035feeaa687603e0b81597db82",
  [GGMLType.Q4_K]: "26bd41ff106639a47e7743d55c751676c5443545a96f77ce9d1147de32c2b8eb",
  [GGMLType.Q5_K]: "be657c608cce9f42b5c6a3679dfcde4279ec16139b7824840ebf6958efbcc150",
  [GGMLType.Q6_K]: "f4c02c0440e90ac58b935e41aa790b996d6e0f224b8bb72d089f83cbb9869f62",
  [GGMLType.Q8_K]: "605026ec3e83f5066288609619b0bc99add1f9f091da8cf7d6e0510787fa7182",
  [GGMLType.TQ1_0]: "2993de9c0decb0a7fd01fc78b5a9342908dc4d3ef9703965ba8581cd15d6a221",
  [GGMLType.TQ2_0]: "ed50aeeff36e716f881003cdd0c6722e44e2c208b2e6de6411b2e631f2757d79",
};

function randn(n: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0 || 1;
  const u = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return (s + 0.5) / 4294967296;
  };
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u()) * scale;
  return out;
}

const NEW_FORMATS: ComputeFormat[] = [
  GGMLType.Q4_1,
  GGMLType.Q5_0,
  GGMLType.Q8_1,
  GGMLType.Q2_K,
  GGMLType.Q3_K,
  GGMLType.Q4_K,
  GGMLType.Q5_K,
  GGMLType.Q6_K,
  GGMLType.Q8_K,
  GGMLType.TQ1_0,
  GGMLType.TQ2_0,
];

describe("ggml bit-exactness", () => {
  const x = goldenInput();
  for (const t of [GGMLType.Q4_0, GGMLType.Q8_0, ...NEW_FORMATS] as ComputeFormat[]) {
    it(`${typeName(t)}: quantizeRowRef reproduces ggml's bytes`, () => {
      const ours = quantizeRow(t, x);
      expect(ours.length).toBe((x.length / FORMAT_TRAITS[t].blockSize) * FORMAT_TRAITS[t].typeSize);
      expect(createHash("sha256").update(ours).digest("hex")).toBe(GGML_SHA256[t]);
    });
  }

  const lib = join(
    import.meta.dirname,
    "../../../node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-base.so",
  );
  it("matches ggml's quantize and dequantize run live (libggml-base.so of node-llama-cpp)", () => {
    expect(existsSync(lib), lib).toBe(true);
    const dir = mkdtempSync(join(tmpdir(), "ryz-golden-"));
    try {
      // The harness is built here with the system C compiler (the one the native addon needs).
      const harness = join(dir, "ggml-golden");
      execFileSync("cc", [
        "-O1",
        "-o",
        harness,
        join(import.meta.dirname, "../scripts/ggml-golden.c"),
        "-ldl",
      ]);
      writeFileSync(join(dir, "in.f32"), new Uint8Array(x.buffer));
      for (const t of [GGMLType.Q4_0, GGMLType.Q8_0, ...NEW_FORMATS] as ComputeFormat[]) {
        execFileSync(harness, [lib, typeName(t), join(dir, "in.f32"), join(dir, "out.bin")]);
        const ref = new Uint8Array(readFileSync(join(dir, "out.bin")));
        const ours = quantizeRow(t, x);
        expect(Buffer.compare(ours, ref.subarray(0, ours.length)), typeName(t)).toBe(0);
        const back = new Float32Array(ref.slice(ours.length).buffer);
        // ggml has no dequantize_row_q8_1: the harness then writes the quantized bytes only.
        if (back.length > 0) expect(dequantizeRow(t, ours, x.length), typeName(t)).toEqual(back);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("round trips", () => {
  // Relative RMS error bound of quantize → dequantize on Gaussian data (ggml's own figures are
  // ~0.5x these; the bounds catch layout or scale mistakes, which give errors near 1).
  const bounds: Array<[ComputeFormat, number]> = [
    [GGMLType.Q4_1, 0.12],
    [GGMLType.Q5_0, 0.06],
    [GGMLType.Q8_1, 0.01],
    [GGMLType.Q2_K, 0.45],
    [GGMLType.Q3_K, 0.22],
    [GGMLType.Q4_K, 0.12],
    [GGMLType.Q5_K, 0.06],
    [GGMLType.Q6_K, 0.03],
    [GGMLType.Q8_K, 0.01],
  ];
  for (const [t, bound] of bounds) {
    it(`${typeName(t)}: relative RMS error ≤ ${bound}`, () => {
      const x = randn(256 * 9, 77 + t, 0.7);
      const back = dequantizeRow(t, quantizeRow(t, x), x.length);
      let err = 0;
      let ref = 0;
      for (let i = 0; i < x.length; i++) {
        err += (back[i] - x[i]) ** 2;
        ref += x[i] ** 2;
      }
      expect(Math.sqrt(err / ref)).toBeLessThan(bound);
      expect(Math.sqrt(err / ref)).toBeGreaterThan(0);
    });
  }

  for (const t of [GGMLType.TQ1_0, GGMLType.TQ2_0] as const) {
    it(`${typeName(t)}: ternary values round-trip exactly`, () => {
      const codes = randn(256 * 5, 5 + t).map((v) => (v > 0.5 ? 1 : v < -0.5 ? -1 : 0));
      const scale = 0.0625; // exact in f16
      const x = codes.map((c) => c * scale);
      expect(dequantizeRow(t, quantizeRow(t, x), x.length)).toEqual(x);
      expect(dequantizeRow(t, quantizeRowTernary(t, x, scale), x.length)).toEqual(x);
    });
  }

  it("absmean ternarization follows BitNet b1.58 (round(x / mean|x|) clamped to ±1)", () => {
    const x = randn(512, 9);
    const gamma = absmeanScale(x);
    const back = dequantizeRow(GGMLType.TQ2_0, quantizeRowTernary(GGMLType.TQ2_0, x, gamma), x.length);
    const q = quantizeRowTernary(GGMLType.TQ2_0, x, gamma);
    const d = f16ToF32(q[64] | (q[65] << 8));
    expect(Math.abs(d - gamma)).toBeLessThan(1e-3 * gamma);
    const round = (v: number) => Math.sign(v) * Math.round(Math.abs(v));
    for (let i = 0; i < x.length; i++) {
      expect(back[i] + 0).toBe(Math.max(-1, Math.min(1, round(x[i] / d))) * d + 0);
    }
    expect(() => quantizeRowTernary(GGMLType.TQ1_0, new Float32Array(100), 1)).toThrow(RyzansteinError);
  });
});

describe("byte layouts", () => {
  it("TQ2_0: element e sits in byte 32·(e>>7) + (e&31), bits 2·((e>>5)&3); d last", () => {
    const block = new Uint8Array(66);
    block[64] = 0x00;
    block[65] = 0x3c; // d = 1
    block[32 + 5] = 2 << 4; // e = 128 + 2·32 + 5 = 197 → +1
    block[7] = 0; // e = 7 → -1
    for (let i = 0; i < 64; i++) if (i !== 37 && i !== 7) block[i] = 0x55; // all zeros (code 1)
    block[37] |= 0x01 | 0x04 | 0x40; // the other three elements of byte 37 → 0
    const v = dequantizeRow(GGMLType.TQ2_0, block, 256);
    expect(v[197]).toBe(1);
    expect([v[7], v[39], v[71], v[103]]).toEqual([-1, -1, -1, -1]);
    expect(v.filter((a) => a !== 0).length).toBe(5);
  });

  it("Q4_K: 6-bit scales and mins of sub-blocks 0..7 and nibble order", () => {
    const block = new Uint8Array(144);
    block[1] = 0x3c; // d = 1
    block[3] = 0x3c; // dmin = 1
    block[4 + 0] = 3; // scale 0 = 3
    block[4 + 4] = 1; // min 0 = 1
    block[4 + 8] = 0x25; // scale 4 low bits 5, min 4 low bits 2
    block[4 + 0] |= 1 << 6; // scale 4 high bits 1 → 21
    block[16] = 0x0f; // element 0 = 15, element 32 = 0
    block[16 + 64] = 0xf0; // element 128 (sub-block 4, low nibble) = 0; element 160 = 15
    const v = dequantizeRow(GGMLType.Q4_K, block, 256);
    expect(v[0]).toBe(3 * 15 - 1);
    expect(v[1]).toBe(-1);
    expect(v[128]).toBe(-2);
    expect(v[160]).toBe(0); // sub-block 5: scale 0, min 0
  });

  it("Q6_K: code of element e from ql/qh and the int8 scale of e>>4", () => {
    const block = new Uint8Array(210);
    block[208] = 0x00;
    block[209] = 0x3c; // d = 1
    for (let i = 0; i < 16; i++) block[192 + i] = i === 6 ? 0xfe : 1; // scale 6 = -2
    for (let i = 0; i < 128; i++) block[i] = 0; // codes 0 → -32 + ...
    for (let i = 0; i < 64; i++) block[128 + i] = 0xaa; // high bits 2 → code 32 → value 0
    block[0] = 0x70; // element 64 (k = 2: ql[l] high nibble) → 7
    const v = dequantizeRow(GGMLType.Q6_K, block, 256);
    expect(v[64]).toBe(7);
    expect(v[0]).toBe(0);
    block[128 + 0] = 0xa8; // element 0's high bits 0 → code -32
    expect(dequantizeRow(GGMLType.Q6_K, block, 256)[0]).toBe(-32);
    expect(dequantizeRow(GGMLType.Q6_K, block, 256)[64 + 32]).toBe(-2 * 0); // sub-block 6, code 0
  });
});

describe("vecDotType pairing and reference matmul", () => {
  const pairs: Array<[ComputeFormat, ComputeFormat]> = [
    [GGMLType.Q4_1, GGMLType.Q8_1],
    [GGMLType.Q5_0, GGMLType.Q8_0],
    [GGMLType.Q2_K, GGMLType.Q8_K],
    [GGMLType.Q3_K, GGMLType.Q8_K],
    [GGMLType.Q4_K, GGMLType.Q8_K],
    [GGMLType.Q5_K, GGMLType.Q8_K],
    [GGMLType.Q6_K, GGMLType.Q8_K],
    [GGMLType.TQ1_0, GGMLType.Q8_K],
    [GGMLType.TQ2_0, GGMLType.Q8_K],
  ];
  for (const [t, act] of pairs) {
    it(`${typeName(t)} × ${typeName(act)}: vecDotRef equals the dot of the dequantized rows`, () => {
      expect(FORMAT_TRAITS[t].vecDotType).toBe(act);
      const n = 512;
      const w = quantizeRow(t, randn(n, 3 + t, 0.5));
      const xq = quantizeRow(act, randn(n, 4 + t));
      const wf = dequantizeRow(t, w, n);
      const xf = dequantizeRow(act, xq, n);
      let want = 0;
      let mag = 0;
      for (let i = 0; i < n; i++) {
        want += wf[i] * xf[i];
        mag += Math.abs(wf[i] * xf[i]);
      }
      const got = FORMAT_TRAITS[t].vecDotRef(n, w, 0, xq, 0);
      // Q8_1 keeps d·Σq as f16 (ggml's layout), so Q4_1's min term is rounded; the rest is exact.
      const tol = t === GGMLType.Q4_1 ? 2e-3 : 1e-5;
      expect(Math.abs(got - want)).toBeLessThan(tol * mag);
    });

    it(`${typeName(t)}: ReferenceBackend.matmul approximates the float product`, () => {
      const rows = 5;
      const cols = 256 * 2;
      const wv = randn(rows * cols, 11 + t, 0.1);
      const w = Tensor.fromF32([rows, cols], wv, t);
      const x = randn(2 * cols, 12 + t);
      const y = new Float32Array(2 * rows);
      new ReferenceBackend().matmul(y, w, x, 2);
      const wd = w.toF32();
      for (let k = 0; k < 2; k++) {
        for (let r = 0; r < rows; r++) {
          let s = 0;
          let mag = 0;
          for (let c = 0; c < cols; c++) {
            s += wd[r * cols + c] * x[k * cols + c];
            mag += Math.abs(wd[r * cols + c] * x[k * cols + c]);
          }
          expect(Math.abs(y[k * rows + r] - s)).toBeLessThan(0.02 * mag + 1e-6);
        }
      }
    });
  }
});
