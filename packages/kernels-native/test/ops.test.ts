import { f32ToF16, GGMLType, ReferenceBackend, Tensor } from "@ryzanstein/core-tensor";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { availableIsas, bestIsa, type Isa, NativeBackend } from "../src/index.js";
import { ctx, FORMATS, firstMismatch, gen, MATMUL_TOL, relErr, SEED } from "./helpers.js";

const ISA_LIST = availableIsas();
const ref = new ReferenceBackend();
console.log(`kernels-native: ISA variants under test on this CPU: ${ISA_LIST.join(", ")} (seed ${SEED})`);

it("lists the variants this CPU runs (scalar always, best last)", () => {
  expect(ISA_LIST[0]).toBe("scalar");
  expect(ISA_LIST[ISA_LIST.length - 1]).toBe(bestIsa());
  expect(new Set(ISA_LIST).size).toBe(ISA_LIST.length);
});

/** Random raw Q8_0 / Q4_0 blocks (every byte pattern, including q = -128), with sane f16 scales. */
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

describe.each(ISA_LIST)("isa=%s", (isa: Isa) => {
  let nb: NativeBackend;
  beforeAll(() => {
    nb = new NativeBackend({ isa, threads: 2 });
  });
  afterAll(() => nb.dispose());

  it("reports its variant", () => {
    expect(nb.isa).toBe(isa);
    expect(nb.name).toBe(`native-${isa}`);
    expect(nb.threads).toBe(2);
  });

  for (const f of FORMATS) {
    const shapes: [number, number][] = f.block
      ? [
          [37, 256],
          [7, 96],
          [1, 32],
          [65, 64],
          [19, 1024],
        ]
      : [
          [37, 45],
          [7, 17],
          [1, 1],
          [33, 256],
          [5, 100],
          [19, 1030],
        ];
    for (const [rows, cols] of shapes) {
      it(`matmul ${f.name} rows=${rows} cols=${cols} n=1,3,7`, () => {
        const g = gen(`${isa}/matmul/${f.name}/${rows}x${cols}`);
        const w = Tensor.fromF32([rows, cols], g.uniform(rows * cols), f.type);
        for (const n of [1, 3, 7]) {
          const x = g.uniform(n * cols, 3);
          const want = new Float32Array(n * rows);
          const got = new Float32Array(n * rows).fill(Number.NaN);
          ref.matmul(want, w, x, n);
          nb.matmul(got, w, x, n);
          expect(
            relErr(got, want),
            ctx(`${isa} matmul ${f.name} [${rows}x${cols}] n=${n}`),
          ).toBeLessThanOrEqual(MATMUL_TOL[f.name]);
        }
      });
    }
    if (f.block) {
      it(`matmul ${f.name} over raw random blocks (all byte values) n=4`, () => {
        const g = gen(`${isa}/matmul-raw/${f.name}`);
        const rows = 23;
        const cols = 160;
        const w = rawBlocks(f.type, rows, cols, g);
        const x = g.uniform(4 * cols, 10);
        const want = new Float32Array(4 * rows);
        const got = new Float32Array(4 * rows);
        ref.matmul(want, w, x, 4);
        nb.matmul(got, w, x, 4);
        expect(relErr(got, want), ctx(`${isa} raw ${f.name}`)).toBeLessThanOrEqual(MATMUL_TOL[f.name]);
      });
    }
    it(`getRows ${f.name} is exact`, () => {
      const g = gen(`${isa}/getRows/${f.name}`);
      const rows = 29;
      const cols = f.block ? 96 : 43;
      const table = Tensor.fromF32([rows, cols], g.uniform(rows * cols, 2), f.type);
      const ids = Int32Array.from([0, rows - 1, 5, 5, ...Array.from({ length: 9 }, () => g.int(rows))]);
      const want = new Float32Array(ids.length * cols);
      const got = new Float32Array(ids.length * cols);
      ref.getRows(want, table, ids);
      nb.getRows(got, table, ids);
      expect(Array.from(got), ctx(`${isa} getRows ${f.name}`)).toEqual(Array.from(want));
    });
  }

  it("matmul with n = 0 leaves y untouched", () => {
    const w = Tensor.fromF32([3, 32], new Float32Array(96).fill(1), GGMLType.Q8_0);
    const y = new Float32Array(3).fill(7);
    nb.matmul(y, w, new Float32Array(0), 0);
    expect(Array.from(y)).toEqual([7, 7, 7]);
  });

  for (const dim of [1, 45, 64, 4099]) {
    it(`rmsNorm dim=${dim} n=1,3,7 (and in place)`, () => {
      const g = gen(`${isa}/rms/${dim}`);
      const weight = g.uniform(dim, 2);
      for (const n of [1, 3, 7]) {
        const x = g.uniform(n * dim, 5);
        const want = new Float32Array(n * dim);
        const got = new Float32Array(n * dim);
        ref.rmsNorm(want, x, weight, n, dim, 1e-5);
        nb.rmsNorm(got, x, weight, n, dim, 1e-5);
        expect(relErr(got, want), ctx(`${isa} rmsNorm dim=${dim} n=${n}`)).toBeLessThanOrEqual(1e-5);
        nb.rmsNorm(x, x, weight, n, dim, 1e-5);
        expect(relErr(x, want), ctx(`${isa} rmsNorm in place`)).toBeLessThanOrEqual(1e-5);
      }
    });
  }

  const ropeCases = [
    { nHeads: 1, headDim: 2, nDims: 2, freqBase: 10000, freqScale: 1 },
    { nHeads: 3, headDim: 64, nDims: 64, freqBase: 10000, freqScale: 1 },
    { nHeads: 5, headDim: 48, nDims: 32, freqBase: 500000, freqScale: 0.25 },
    { nHeads: 4, headDim: 128, nDims: 128, freqBase: 1000000, freqScale: 1 },
  ];
  for (const neox of [false, true]) {
    for (const c of ropeCases) {
      it(`rope ${neox ? "neox" : "normal"} heads=${c.nHeads} headDim=${c.headDim} nDims=${c.nDims} n=1,3,7`, () => {
        const g = gen(`${isa}/rope/${neox}/${c.nHeads}/${c.headDim}/${c.nDims}`);
        const p = { ...c, neox };
        for (const n of [1, 3, 7]) {
          const x = g.uniform(n * c.nHeads * c.headDim, 2);
          const positions = Int32Array.from({ length: n }, (_, i) => (i === 0 ? 0 : g.int(8192)));
          const want = x.slice();
          const got = x.slice();
          ref.rope(want, n, positions, p);
          nb.rope(got, n, positions, p);
          expect(relErr(got, want), ctx(`${isa} rope n=${n}`)).toBeLessThanOrEqual(1e-6);
        }
      });
    }
  }

  for (const dim of [1, 7, 33, 1000]) {
    it(`softmax dim=${dim} n=1,3,7`, () => {
      const g = gen(`${isa}/softmax/${dim}`);
      for (const n of [1, 3, 7]) {
        const x = g.uniform(n * dim, 30);
        const want = x.slice();
        const got = x.slice();
        ref.softmax(want, n, dim);
        nb.softmax(got, n, dim);
        expect(relErr(got, want), ctx(`${isa} softmax dim=${dim} n=${n}`)).toBeLessThanOrEqual(1e-5);
      }
    });
  }

  for (const dim of [1, 7, 33, 1000, 32003]) {
    it(`argmax dim=${dim} n=1,3,7: random rows, ties, NaN and -Infinity`, () => {
      const g = gen(`${isa}/argmax/${dim}`);
      for (const n of [1, 3, 7]) {
        const x = g.uniform(n * dim, 30);
        for (let t = 0; t < n; t++) {
          const o = t * dim;
          if (t === 1) x[o + g.int(dim)] = Number.NaN; // never the answer
          if (t === 2) x.fill(Number.NEGATIVE_INFINITY, o, o + dim); // nothing above -Infinity: 0
          if (t === 3 && dim > 2) x[o + dim - 1] = x[o + 1] = 1000; // a tie: the first wins
          if (t === 4) x.fill(Number.NaN, o, o + dim);
          if (t === 5) x[o + dim - 1] = 1000; // in the scalar tail of the vector loop
          if (t === 6 && dim > 1400) x[o + 700] = x[o + dim - 700] = 1000; // a tie across vector chunks
        }
        const want = new Int32Array(n);
        const got = new Int32Array(n).fill(-1);
        ref.argmax(want, x, n, dim);
        nb.argmax(got, x, n, dim);
        expect(Array.from(got), ctx(`${isa} argmax dim=${dim} n=${n}`)).toEqual(Array.from(want));
        if (n === 7 && dim > 2) {
          expect(want[2]).toBe(0);
          expect(want[3]).toBe(1);
          expect(want[4]).toBe(0);
          expect(want[5]).toBe(dim - 1);
          if (dim > 1400) expect(want[6]).toBe(700);
        }
      }
    });
  }

  it("argmax refuses an ids array shorter than n", () => {
    expect(() => nb.argmax(new Int32Array(1), new Float32Array(8), 2, 4)).toThrow(/ids/);
  });

  for (const len of [1, 13, 1000, 100003]) {
    it(`swiglu len=${len} (and aliased outputs)`, () => {
      const g = gen(`${isa}/swiglu/${len}`);
      const gate = g.uniform(len, 12);
      const up = g.uniform(len, 3);
      const want = new Float32Array(len);
      const got = new Float32Array(len);
      ref.swiglu(want, gate, up, len);
      nb.swiglu(got, gate, up, len);
      expect(relErr(got, want), ctx(`${isa} swiglu len=${len}`)).toBeLessThanOrEqual(1e-5);
      const g2 = gate.slice();
      nb.swiglu(g2, g2, up, len);
      expect(relErr(g2, want), ctx(`${isa} swiglu y=gate`)).toBeLessThanOrEqual(1e-5);
      const u2 = up.slice();
      nb.swiglu(u2, gate, u2, len);
      expect(relErr(u2, want), ctx(`${isa} swiglu y=up`)).toBeLessThanOrEqual(1e-5);
    });
  }

  for (const len of [1, 15, 200003]) {
    it(`add len=${len} is exact (and aliased)`, () => {
      const g = gen(`${isa}/add/${len}`);
      const a = g.uniform(len, 100);
      const b = g.uniform(len, 100);
      const want = new Float32Array(len);
      const got = new Float32Array(len);
      ref.add(want, a, b, len);
      nb.add(got, a, b, len);
      expect(firstMismatch(got, want), ctx(`${isa} add len=${len}`)).toBe(-1);
      nb.add(a, a, b, len);
      expect(firstMismatch(a, want), ctx(`${isa} add in place`)).toBe(-1);
    });
  }

  const attnCases = [
    { nHeads: 1, nKvHeads: 1, headDim: 8, ctxLen: 1 },
    { nHeads: 3, nKvHeads: 1, headDim: 16, ctxLen: 9 },
    { nHeads: 6, nKvHeads: 2, headDim: 20, ctxLen: 40 },
    { nHeads: 5, nKvHeads: 5, headDim: 64, ctxLen: 300 },
    { nHeads: 4, nKvHeads: 2, headDim: 33, ctxLen: 17 },
    { nHeads: 8, nKvHeads: 2, headDim: 128, ctxLen: 1100 },
  ];
  for (const c of attnCases) {
    it(`attention heads=${c.nHeads}/${c.nKvHeads} headDim=${c.headDim} ctx=${c.ctxLen} n=1,3,7`, () => {
      const g = gen(`${isa}/attn/${c.nHeads}/${c.nKvHeads}/${c.headDim}/${c.ctxLen}`);
      const p = { ...c, scale: 1 / Math.sqrt(c.headDim) };
      const kvRow = c.nKvHeads * c.headDim;
      const k = g.uniform(c.ctxLen * kvRow, 3);
      const v = g.uniform(c.ctxLen * kvRow, 2);
      for (const n of [1, 3, 7]) {
        // prefill-style consecutive positions ending at the cache end, or random decode positions
        const consecutive = g.rand() < 0.5 && n <= c.ctxLen;
        const positions = Int32Array.from({ length: n }, (_, i) =>
          consecutive ? c.ctxLen - n + i : g.int(c.ctxLen),
        );
        const q = g.uniform(n * c.nHeads * c.headDim, 3);
        const want = new Float32Array(q.length);
        const got = new Float32Array(q.length);
        ref.attention(want, q, k, v, positions, n, p);
        nb.attention(got, q, k, v, positions, n, p);
        expect(
          relErr(got, want),
          ctx(`${isa} attention n=${n} positions=${Array.from(positions)}`),
        ).toBeLessThanOrEqual(2e-5);
      }
    });
  }
});
