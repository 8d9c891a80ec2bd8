import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import {
  GGMLType,
  llamaFileType,
  quantizeRow,
  RyzansteinError,
  Tensor,
  typeName,
} from "@ryzanstein/core-tensor";
import { afterAll, describe, expect, it } from "vitest";
import {
  GGUFValueType,
  openGGUFLazy,
  parseGGUF,
  readGGUF,
  serializeGGUF,
  writeGGUF,
  writeModelAsGGUF,
} from "../src/index.js";

const fixtures = resolve(__dirname, "../../../../shared/fixtures");
const stories = join(fixtures, "models/stories260K.gguf");
const dir = mkdtempSync(join(tmpdir(), "rz-gguf-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function sample(): Uint8Array {
  return serializeGGUF({
    metadata: {
      "general.architecture": "llama",
      u8: { type: GGUFValueType.UINT8, value: 200 },
      i8: { type: GGUFValueType.INT8, value: -5 },
      u16: { type: GGUFValueType.UINT16, value: 60000 },
      i16: { type: GGUFValueType.INT16, value: -300 },
      u32: 4000000000,
      i32: -70000,
      f32: 0.5,
      bool: true,
      u64: 2n ** 40n,
      i64: -(2n ** 40n),
      f64: { type: GGUFValueType.FLOAT64, value: Math.PI },
      strs: ["a", "ß", ""],
      floats: Float32Array.from([1.5, -2]),
      bools: [true, false],
      nested: {
        type: GGUFValueType.ARRAY,
        elementType: GGUFValueType.ARRAY,
        value: [Int32Array.from([1, 2]), Int32Array.from([3])],
      },
    },
    tensors: [
      {
        name: "a",
        type: GGMLType.F32,
        shape: [2, 3],
        data: new Uint8Array(Float32Array.from([1, 2, 3, 4, 5, 6]).buffer),
      },
      {
        name: "b",
        type: GGMLType.Q8_0,
        shape: [1, 32],
        data: Tensor.fromF32([1, 32], new Float32Array(32).fill(1), GGMLType.Q8_0).data,
      },
    ],
  });
}

describe("GGUF reader", () => {
  it("reads stories260K", () => {
    const f = readGGUF(stories);
    expect(f.version).toBe(3);
    expect(f.getString("general.architecture")).toBe("llama");
    expect(f.getNumber("llama.block_count")).toBe(5);
    expect((f.get("tokenizer.ggml.tokens") as string[]).length).toBe(512);
    expect(f.tensors.length).toBe(48);
    const t = f.tensor("token_embd.weight");
    expect(t.shape).toEqual([512, 64]);
    // zero-copy: the view shares the file buffer
    expect(t.data.buffer).toBe(f.bytes.buffer);
  });

  it("round-trips every metadata value type and tensor bytes", () => {
    const f = parseGGUF(sample());
    expect(f.metadata.u8).toBe(200);
    expect(f.metadata.i8).toBe(-5);
    expect(f.metadata.u16).toBe(60000);
    expect(f.metadata.i16).toBe(-300);
    expect(f.metadata.u32).toBe(4000000000);
    expect(f.metadata.i32).toBe(-70000);
    expect(f.metadata.f32).toBe(0.5);
    expect(f.metadata.bool).toBe(true);
    expect(f.metadata.u64).toBe(2n ** 40n);
    expect(f.metadata.i64).toBe(-(2n ** 40n));
    expect(f.metadata.f64).toBe(Math.PI);
    expect(f.metadata.strs).toEqual(["a", "ß", ""]);
    expect(Array.from(f.metadata.floats as Float32Array)).toEqual([1.5, -2]);
    expect(f.metadata.bools).toEqual([true, false]);
    expect((f.metadata.nested as Int32Array[]).map((a) => Array.from(a))).toEqual([[1, 2], [3]]);
    expect(Array.from(f.tensor("a").toF32())).toEqual([1, 2, 3, 4, 5, 6]);
    expect(f.tensor("b").toF32()[31]).toBeCloseTo(1, 3);
    expect(f.info("b")?.offset).toBe(f.dataOffset + 32); // 24 bytes of "a" padded to 32
  });

  it("re-writes stories260K byte-identically", () => {
    const f = readGGUF(stories);
    const out = join(dir, "copy.gguf");
    const progress: number[] = [];
    writeGGUF(
      out,
      {
        metadata: f.typedMetadata,
        tensors: f.tensors.map((t) => ({ ...t, data: () => f.tensor(t.name).data })),
      },
      (p) => progress.push(p.tensorsDone),
    );
    expect(Buffer.compare(readFileSync(out), readFileSync(stories))).toBe(0);
    expect(progress.at(-1)).toBe(48);
  });

  it("writes atomically: a failed write leaves nothing behind", () => {
    const out = join(dir, "bad.gguf");
    expect(() =>
      writeGGUF(out, {
        metadata: {},
        tensors: [{ name: "x", type: GGMLType.F32, shape: [4], data: new Uint8Array(3) }],
      }),
    ).toThrow(RyzansteinError);
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(dir).filter((n) => n.startsWith("bad.gguf"))).toEqual([]);
  });
});

describe("GGUF bad input", () => {
  const good = sample();
  const code = (bytes: Uint8Array): string => {
    try {
      parseGGUF(bytes);
      return "OK";
    } catch (e) {
      expect(e).toBeInstanceOf(RyzansteinError);
      return (e as RyzansteinError).code;
    }
  };
  const patch = (at: number, bytes: number[]) => {
    const b = good.slice();
    b.set(bytes, at);
    return b;
  };
  const u64 = (v: bigint) => Array.from(new Uint8Array(BigUint64Array.from([v]).buffer));

  it("wrong magic", () => expect(code(patch(0, [0x47, 0x47, 0x4d, 0x4c]))).toBe("BAD_MAGIC"));
  it("unsupported version", () => expect(code(patch(4, [1, 0, 0, 0]))).toBe("UNSUPPORTED_VERSION"));
  it("truncated header", () => expect(code(good.subarray(0, 40))).toBe("TRUNCATED"));
  it("truncated tensor data", () => expect(code(good.subarray(0, good.length - 40))).toBe("TRUNCATED"));
  it("absurd tensor count", () => expect(code(patch(8, u64(2n ** 60n)))).toBe("ABSURD_SIZE"));
  it("metadata count past the end of the file", () =>
    expect(code(patch(16, u64(2n ** 20n)))).toBe("TRUNCATED"));
  it("empty file", () => expect(code(new Uint8Array(0))).toBe("BAD_MAGIC"));

  it("unknown tensor type and out-of-bounds offsets", () => {
    const f = parseGGUF(good);
    // Locate tensor "b"'s info record: name length (8) + "b" + n_dims (4) + dims (2×8) + type (4) + offset (8).
    const nameAt = Buffer.from(good).indexOf(Buffer.from([1, 0, 0, 0, 0, 0, 0, 0, 0x62, 2, 0, 0, 0]));
    expect(nameAt).toBeGreaterThan(0);
    const typeAt = nameAt + 8 + 1 + 4 + 16;
    expect(code(patch(typeAt, [99, 0, 0, 0]))).toBe("UNKNOWN_TENSOR_TYPE");
    expect(code(patch(typeAt + 4, u64(BigInt(f.bytes.length))))).toBe("OUT_OF_BOUNDS");
    expect(code(patch(typeAt + 4, u64(0n)))).toBe("OUT_OF_BOUNDS"); // overlaps tensor "a"
  });
});

describe("GGUF fuzzing", () => {
  it("random mutations either parse or fail with a typed error, quickly", () => {
    const base = readFileSync(stories).subarray(0, 20000); // header + a little data (then it is truncated)
    const full = sample();
    let seed = 12345;
    const rand = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    const outcomes = new Map<string, number>();
    const started = Date.now();
    for (let i = 0; i < 3000; i++) {
      const src = i % 2 ? base : full;
      const b = src.slice();
      const flips = 1 + rand(8);
      for (let j = 0; j < flips; j++) {
        const at = rand(Math.min(b.length, i % 3 === 0 ? 64 : b.length));
        b[at] = rand(4) === 0 ? 0xff : rand(256);
      }
      const cut = rand(5) === 0 ? rand(b.length) : b.length;
      const t0 = Date.now();
      let outcome = "OK";
      try {
        parseGGUF(b.subarray(0, cut));
      } catch (e) {
        if (!(e instanceof RyzansteinError))
          throw new Error(`case ${i}: untyped error ${(e as Error).stack}`);
        outcome = e.code;
      }
      expect(Date.now() - t0).toBeLessThan(1000);
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    }
    expect(Date.now() - started).toBeLessThan(60_000);
    expect(outcomes.size).toBeGreaterThan(3);
  });
});

describe("lazy reading", () => {
  it("openGGUFLazy reads the header only and each tensor on demand, growing past a 1 MiB header", async () => {
    const { openGGUFLazy } = await import("../src/index.js");
    for (const path of [stories, join(fixtures, "tokenizers/ggml-vocab-gpt-2.gguf")]) {
      const lazy = openGGUFLazy(path);
      const whole = readGGUF(path);
      expect(lazy.bytes.byteLength).toBeLessThan(readFileSync(path).byteLength + 1);
      expect(Object.keys(lazy.metadata)).toEqual(Object.keys(whole.metadata));
      for (const t of whole.tensors)
        expect(Buffer.compare(lazy.tensor(t.name).data, whole.tensor(t.name).data)).toBe(0);
    }
    // stories260K's header fits in 1 MiB, so its tensors come from separate reads.
    const lazy = openGGUFLazy(stories);
    expect(lazy.bytes.byteLength).toBe(1 << 20);
    expect(lazy.tensor("blk.4.ffn_norm.weight").data.buffer).not.toBe(lazy.bytes.buffer); // past the first MiB
  });

  it("openGGUFLazy still rejects truncated files", async () => {
    const { openGGUFLazy } = await import("../src/index.js");
    const cut = join(dir, "cut.gguf");
    writeFileSync(cut, readFileSync(stories).subarray(0, 600_000));
    expect(() => openGGUFLazy(cut)).toThrow(/runs past the end/);
  });
});

describe("writeModelAsGGUF with the K-quant and ternary formats", () => {
  it("writes Q4_K / TQ2_0 bytes equal to the traits quantizer, falls back per tensor, refuses activation formats", () => {
    const dir = mkdtempSync(join(tmpdir(), "rz-export-k-"));
    try {
      const values = Float32Array.from({ length: 3 * 256 }, (_, i) => Math.sin(i * 0.37) * 0.1);
      const narrow = Float32Array.from({ length: 2 * 100 }, (_, i) => Math.cos(i) * 0.1);
      const src = join(dir, "src.gguf");
      writeGGUF(src, {
        metadata: { "general.architecture": "llama" },
        tensors: [
          {
            name: "wide.weight",
            type: GGMLType.F32,
            shape: [3, 256],
            data: () => new Uint8Array(values.buffer),
          },
          {
            name: "narrow.weight",
            type: GGMLType.F32,
            shape: [2, 100],
            data: () => new Uint8Array(narrow.buffer),
          },
        ],
      });
      const source = openGGUFLazy(src);
      for (const type of [GGMLType.Q4_K, GGMLType.TQ2_0] as const) {
        const out = join(dir, `out-${type}.gguf`);
        const { fallbacks } = writeModelAsGGUF(source, out, { type });
        const written = openGGUFLazy(out);
        expect(written.tensor("wide.weight").type).toBe(type);
        expect(Buffer.compare(written.tensor("wide.weight").data, quantizeRow(type, values))).toBe(0);
        expect(fallbacks).toEqual([{ name: "narrow.weight", requested: typeName(type), written: "f16" }]);
        expect(written.metadata["general.file_type"]).toBe(llamaFileType(type));
      }
      expect(() => writeModelAsGGUF(source, join(dir, "bad.gguf"), { type: GGMLType.Q8_K })).toThrow(
        /activation format/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
