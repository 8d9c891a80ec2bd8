import { describe, expect, it } from "vitest";
import {
  bf16ToF32,
  dequantizeRow,
  type FORMAT_TRAITS,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  GGMLType,
  quantizeRow,
  ReferenceBackend,
  RyzansteinError,
  Tensor,
  TYPE_INFO,
  typeFromName,
  typeName,
} from "../src/index.js";

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

describe("half precision", () => {
  it("round-trips every f16 bit pattern", () => {
    for (let h = 0; h < 0x10000; h++) {
      const exp = (h >> 10) & 0x1f;
      if (exp === 31 && (h & 0x3ff) !== 0) continue; // NaN payloads are not preserved
      expect(f32ToF16(f16ToF32(h))).toBe(h);
    }
  });

  it("rounds to nearest even", () => {
    expect(f32ToF16(1 + 2 ** -11)).toBe(0x3c00); // tie → even (down)
    expect(f32ToF16(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie → even (up)
    expect(f32ToF16(65520)).toBe(0x7c00); // overflow → inf
    expect(f16ToF32(f32ToF16(2 ** -24))).toBe(2 ** -24); // smallest subnormal
  });

  it("converts bf16 with ggml's rounding", () => {
    expect(bf16ToF32(f32ToBf16(1))).toBe(1);
    expect(f32ToBf16(Number.NaN) & 0x7fc0).toBe(0x7fc0);
    const x = 1.00390625; // exactly halfway between two bf16 values → even
    expect(bf16ToF32(f32ToBf16(x))).toBe(1);
  });
});

describe("type table", () => {
  it("knows names and sizes", () => {
    expect(typeName(GGMLType.Q4_K)).toBe("q4_K");
    expect(typeFromName("Q8_0")).toBe(GGMLType.Q8_0);
    expect(typeName(99)).toBe("type#99");
    expect(TYPE_INFO[GGMLType.Q6_K]).toEqual({ name: "q6_K", blockSize: 256, typeSize: 210 });
    expect(TYPE_INFO[GGMLType.TQ2_0].typeSize).toBe(66);
  });
});

describe("block formats", () => {
  const tolerances: Record<number, number> = {
    [GGMLType.F32]: 0,
    [GGMLType.F16]: 1e-3,
    [GGMLType.BF16]: 8e-3,
    [GGMLType.Q8_0]: 1e-2,
    [GGMLType.Q4_0]: 0.15,
  };
  for (const [type, tol] of Object.entries(tolerances)) {
    const t = Number(type) as keyof typeof FORMAT_TRAITS;
    it(`${typeName(t)}: quantize → dequantize relative error ≤ ${tol}`, () => {
      const x = randn(32 * 37, 1234 + t);
      const back = dequantizeRow(t, quantizeRow(t, x), x.length);
      let num = 0;
      let den = 0;
      for (let i = 0; i < x.length; i++) {
        num += (x[i] - back[i]) ** 2;
        den += x[i] ** 2;
      }
      expect(Math.sqrt(num / den)).toBeLessThanOrEqual(tol);
    });
  }

  it("q8_0 layout: f16 scale then 32 int8", () => {
    const x = new Float32Array(32).map((_, i) => i - 16);
    const q = quantizeRow(GGMLType.Q8_0, x);
    expect(q.length).toBe(34);
    expect(f16ToF32(q[0] | (q[1] << 8))).toBeCloseTo(16 / 127, 4);
    expect((q[2] << 24) >> 24).toBe(-127);
  });

  it("q4_0 layout: low nibbles hold elements 0-15, high nibbles 16-31", () => {
    const x = new Float32Array(32);
    x[0] = -8; // max magnitude, negative: d = -8 / -8 = 1
    x[16] = 7;
    const q = quantizeRow(GGMLType.Q4_0, x);
    expect(f16ToF32(q[0] | (q[1] << 8))).toBe(1);
    expect(q[2] & 0xf).toBe(0); // -8 + 8
    expect(q[2] >> 4).toBe(15); // 7 + 8
  });
});

describe("Tensor", () => {
  it("checks shapes and sizes", () => {
    expect(() => new Tensor(GGMLType.Q4_0, [2, 33], new Uint8Array(10))).toThrow(RyzansteinError);
    expect(() => new Tensor(GGMLType.F32, [2, 2], new Uint8Array(3))).toThrow(/needs 16/);
    const t = Tensor.fromF32([3, 64], randn(192, 5), GGMLType.Q8_0);
    expect(t.rowBytes).toBe(68);
    expect(t.strides).toEqual([68, 34 / 32]);
    expect(t.row(1).byteLength).toBe(68);
    expect(t.toF32().length).toBe(192);
  });
});

describe("ReferenceBackend", () => {
  const b = new ReferenceBackend();
  it("matmul over f32 weights is an exact dot product", () => {
    const w = Tensor.fromF32([2, 3], Float32Array.from([1, 2, 3, 4, 5, 6]));
    const y = new Float32Array(2);
    b.matmul(y, w, Float32Array.from([1, 0, -1]), 1);
    expect(Array.from(y)).toEqual([-2, -2]);
  });

  it("rmsNorm, softmax, swiglu and add", () => {
    const y = new Float32Array(2);
    b.rmsNorm(y, Float32Array.from([3, 4]), Float32Array.from([1, 2]), 1, 2, 0);
    expect(y[0]).toBeCloseTo(3 / Math.sqrt(12.5), 6);
    const s = Float32Array.from([0, Math.log(3)]);
    b.softmax(s, 1, 2);
    expect(s[1]).toBeCloseTo(0.75, 6);
    const g = new Float32Array(1);
    b.swiglu(g, Float32Array.from([1]), Float32Array.from([2]), 1);
    expect(g[0]).toBeCloseTo((2 * 1) / (1 + Math.exp(-1)), 6);
    b.add(g, g, Float32Array.from([1]), 1);
    expect(g[0]).toBeCloseTo(1 + 2 / (1 + Math.exp(-1)), 6);
  });

  it("rope rotates pairs by position", () => {
    const x = Float32Array.from([1, 0, 1, 0]);
    b.rope(x, 1, Int32Array.from([1]), {
      nHeads: 1,
      headDim: 4,
      nDims: 4,
      freqBase: 10000,
      freqScale: 1,
      neox: false,
    });
    expect(x[0]).toBeCloseTo(Math.cos(1), 6);
    expect(x[1]).toBeCloseTo(Math.sin(1), 6);
    expect(x[2]).toBeCloseTo(Math.cos(0.01), 6);
  });

  it("attention attends causally", () => {
    const p = { nHeads: 1, nKvHeads: 1, headDim: 1, scale: 1 };
    const out = new Float32Array(2);
    b.attention(
      out,
      Float32Array.from([1, 1]),
      Float32Array.from([0, 0]),
      Float32Array.from([2, 4]),
      Int32Array.from([0, 1]),
      2,
      p,
    );
    expect(Array.from(out)).toEqual([2, 3]);
  });
});
