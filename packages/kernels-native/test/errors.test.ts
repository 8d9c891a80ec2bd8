import { GGMLType, RyzansteinError, Tensor } from "@ryzanstein/core-tensor";
import { afterAll, describe, expect, it } from "vitest";
import { availableIsas, ISAS, NativeBackend } from "../src/index.js";
import { loadAddon } from "../src/native.js";

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof RyzansteinError) return e.code;
    return `non-RyzansteinError: ${String(e)}`;
  }
  return "no error";
}

describe("bad arguments throw RyzansteinError before reaching C++", () => {
  const nb = new NativeBackend({ threads: 2 });
  afterAll(() => nb.dispose());
  const w = Tensor.fromF32([4, 64], new Float32Array(256).fill(0.25), GGMLType.Q8_0);

  it("matmul", () => {
    expect(code(() => nb.matmul(new Float32Array(4), w, new Float32Array(64), 1))).toBe("no error");
    expect(code(() => nb.matmul(new Float32Array(3), w, new Float32Array(64), 1))).toBe("SHAPE_MISMATCH");
    expect(code(() => nb.matmul(new Float32Array(4), w, new Float32Array(63), 1))).toBe("SHAPE_MISMATCH");
    expect(code(() => nb.matmul(new Float32Array(4), w, new Float64Array(64) as never, 1))).toBe(
      "INVALID_ARGUMENT",
    );
    expect(code(() => nb.matmul(new Float32Array(4), w, new Float32Array(64), 1.5))).toBe("INVALID_ARGUMENT");
    expect(code(() => nb.matmul(new Float32Array(4), w, new Float32Array(64), -1))).toBe("INVALID_ARGUMENT");
    const q51 = new Tensor(GGMLType.Q5_1, [2, 32], new Uint8Array(48));
    expect(code(() => nb.matmul(new Float32Array(2), q51, new Float32Array(32), 1))).toBe(
      "UNSUPPORTED_TENSOR_TYPE",
    );
    const shared = new Float32Array(128);
    expect(code(() => nb.matmul(shared.subarray(0, 4), w, shared.subarray(2, 66), 1))).toBe(
      "INVALID_ARGUMENT",
    );
    expect(
      code(() =>
        nb.matmul(new Float32Array(4), { type: 8, shape: [4, 64] } as never, new Float32Array(64), 1),
      ),
    ).toBe("INVALID_ARGUMENT");
  });

  it("getRows", () => {
    expect(code(() => nb.getRows(new Float32Array(64), w, Int32Array.of(3)))).toBe("no error");
    expect(code(() => nb.getRows(new Float32Array(64), w, Int32Array.of(4)))).toBe("OUT_OF_BOUNDS");
    expect(code(() => nb.getRows(new Float32Array(64), w, Int32Array.of(-1)))).toBe("OUT_OF_BOUNDS");
    expect(code(() => nb.getRows(new Float32Array(64), w, Int32Array.of(1, 2)))).toBe("SHAPE_MISMATCH");
    expect(code(() => nb.getRows(new Float32Array(64), w, [1] as never))).toBe("INVALID_ARGUMENT");
  });

  it("element-wise ops", () => {
    const a = new Float32Array(10);
    expect(code(() => nb.rmsNorm(a, a, a, 2, 5, 1e-5))).toBe("no error");
    expect(code(() => nb.rmsNorm(a, a, a, 3, 5, 1e-5))).toBe("SHAPE_MISMATCH");
    expect(code(() => nb.rmsNorm(a, a, a, 2, 5, Number.NaN))).toBe("INVALID_ARGUMENT");
    expect(code(() => nb.softmax(a, 2, 6))).toBe("SHAPE_MISMATCH");
    expect(code(() => nb.swiglu(a, a, new Float32Array(9), 10))).toBe("SHAPE_MISMATCH");
    expect(code(() => nb.add(a, a, a, 11))).toBe("SHAPE_MISMATCH");
    const rp = { nHeads: 1, headDim: 10, nDims: 10, freqBase: 10000, freqScale: 1, neox: false };
    expect(code(() => nb.rope(a, 1, Int32Array.of(3), rp))).toBe("no error");
    expect(code(() => nb.rope(a, 1, Int32Array.of(3), { ...rp, nDims: 7 }))).toBe("INVALID_ARGUMENT");
    expect(code(() => nb.rope(a, 1, Int32Array.of(3), { ...rp, nDims: 12 }))).toBe("INVALID_ARGUMENT");
    expect(code(() => nb.rope(a, 1, Int32Array.of(3), { ...rp, freqBase: 0 }))).toBe("INVALID_ARGUMENT");
    expect(code(() => nb.rope(a, 2, Int32Array.of(3), rp))).toBe("SHAPE_MISMATCH");
  });

  it("attention", () => {
    const p = { nHeads: 4, nKvHeads: 2, headDim: 8, scale: 0.35 };
    const q = new Float32Array(32);
    const kv = new Float32Array(5 * 16);
    expect(code(() => nb.attention(new Float32Array(32), q, kv, kv, Int32Array.of(4), 1, p))).toBe(
      "no error",
    );
    expect(code(() => nb.attention(new Float32Array(32), q, kv, kv, Int32Array.of(5), 1, p))).toBe(
      "OUT_OF_BOUNDS",
    );
    expect(code(() => nb.attention(new Float32Array(32), q, kv, kv, Int32Array.of(-1), 1, p))).toBe(
      "OUT_OF_BOUNDS",
    );
    expect(
      code(() => nb.attention(new Float32Array(32), q, kv, kv, Int32Array.of(0), 1, { ...p, nKvHeads: 3 })),
    ).toBe("INVALID_ARGUMENT");
    expect(code(() => nb.attention(new Float32Array(31), q, kv, kv, Int32Array.of(0), 1, p))).toBe(
      "SHAPE_MISMATCH",
    );
    expect(
      code(() =>
        nb.attention(new Float32Array(32), q, kv, kv, Int32Array.of(0), 1, { ...p, scale: Number.NaN }),
      ),
    ).toBe("INVALID_ARGUMENT");
  });
});

describe("construction", () => {
  it("rejects bad thread counts and unknown ISAs", () => {
    expect(code(() => new NativeBackend({ threads: 0 }))).toBe("INVALID_ARGUMENT");
    expect(code(() => new NativeBackend({ threads: 1.5 }))).toBe("INVALID_ARGUMENT");
    expect(code(() => new NativeBackend({ isa: "neon" as never }))).toBe("INVALID_ARGUMENT");
  });

  it("rejects an ISA this CPU lacks with a clear message", () => {
    const missing = ISAS.filter((i) => !availableIsas().includes(i));
    console.log(`ISAs this CPU lacks: ${missing.join(", ") || "(none)"}`);
    for (const isa of missing) {
      expect(() => new NativeBackend({ isa })).toThrowError(/not supported by this CPU/);
      expect(code(() => new NativeBackend({ isa }))).toBe("INVALID_ARGUMENT");
    }
  });

  it("honours RYZANSTEIN_ISA, and the option wins over it", () => {
    const saved = process.env.RYZANSTEIN_ISA;
    try {
      process.env.RYZANSTEIN_ISA = "scalar";
      const a = new NativeBackend({ threads: 1 });
      expect(a.isa).toBe("scalar");
      expect(a.name).toBe("native-scalar");
      a.dispose();
      const best = availableIsas().at(-1);
      const b = new NativeBackend({ threads: 1, isa: best });
      expect(b.isa).toBe(best);
      b.dispose();
      process.env.RYZANSTEIN_ISA = "sse9";
      expect(() => new NativeBackend({ threads: 1 })).toThrowError(/RYZANSTEIN_ISA/);
    } finally {
      if (saved === undefined) delete process.env.RYZANSTEIN_ISA;
      else process.env.RYZANSTEIN_ISA = saved;
    }
  });

  it("throws INVALID_ARGUMENT after dispose (and dispose twice is harmless)", () => {
    const nb = new NativeBackend({ threads: 2 });
    nb.dispose();
    nb.dispose();
    expect(code(() => nb.add(new Float32Array(1), new Float32Array(1), new Float32Array(1), 1))).toBe(
      "INVALID_ARGUMENT",
    );
  });
});

describe("the raw addon rejects bad calls with JS errors, never a crash", () => {
  const addon = loadAddon();
  const e = new addon.NativeEngine(2, "scalar");
  afterAll(() => e.dispose());
  const f = new Float32Array(8);
  const cases: [string, () => void][] = [
    ["string for a buffer", () => e.add("x" as never, f, f, 8)],
    ["short buffer", () => e.add(f, f, f, 9)],
    ["negative length", () => e.add(f, f, f, -1)],
    ["fractional length", () => e.softmax(f, 1.5, 2)],
    ["wrong typed array", () => e.rmsNorm(f, new Float64Array(8) as never, f, 1, 8, 1e-5)],
    ["unsupported type id", () => e.matmul(f, 7, new Uint8Array(100), 1, 32, f, 0)],
    ["short weights", () => e.matmul(f, 0, new Uint8Array(10), 2, 4, f, 1)],
    ["id out of range", () => e.getRows(f, 0, new Uint8Array(32), 2, 4, Int32Array.of(2))],
    ["bad nDims", () => e.rope(f, 1, Int32Array.of(0), 1, 8, 3, 10000, 1, false)],
    ["cache too short", () => e.attention(f, f, f, f, Int32Array.of(3), 1, 1, 1, 8, 1)],
    ["heads not a multiple", () => e.attention(f, f, f, f, Int32Array.of(0), 1, 3, 2, 1, 1)],
    ["unknown isa", () => new addon.NativeEngine(1, "avx9")],
    ["zero threads", () => new addon.NativeEngine(0, "scalar")],
  ];
  for (const [name, fn] of cases) {
    it(name, () => {
      expect(fn).toThrowError(/./);
    });
  }
});
