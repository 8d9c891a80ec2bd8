// The fused steps (RMSNorm + activation quantization, SwiGLU + quantization, RoPE + KV-cache write)
// change no bit: a random-weight Llama run with fusion on and off gives identical logits and KV
// caches, through Model.forward (chunked prefill and decode) and through the batched BatchRunner.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ComputeFormat, GGMLType, typeName } from "@ryzanstein/core-tensor";
import { NativeBackend } from "@ryzanstein/kernels-native";
import { writeRandomLlamaGGUF } from "@ryzanstein/test-support";
import { afterAll, describe, expect, it } from "vitest";
import {
  BatchRunner,
  Model,
  openModelFile,
  PagedKvCache,
  readLlamaWeights,
  readModelConfig,
  withAdapter,
} from "../src/index.js";

const dir = mkdtempSync(join(tmpdir(), "rz-fused-"));
const backend = new NativeBackend({ threads: 2 });
afterAll(() => {
  backend.dispose();
  rmSync(dir, { recursive: true, force: true });
});

const VOCAB = 512;

function models(type: ComputeFormat) {
  const path = join(dir, `rand-${typeName(type)}.gguf`);
  writeRandomLlamaGGUF(path, {
    nLayers: 2,
    dim: 256,
    nHeads: 4,
    nKvHeads: 2,
    ffnDim: 512,
    vocabSize: VOCAB,
    type,
    seed: 11,
    std: 0.06,
  });
  const gguf = openModelFile(path);
  const config = readModelConfig(gguf);
  const weights = readLlamaWeights(gguf, config);
  return {
    fused: new Model(config, weights, backend, { fused: true }),
    plain: new Model(config, weights, backend, { fused: false }),
  };
}

function sameBits(a: Float32Array, b: Float32Array): boolean {
  return (
    Buffer.compare(
      new Uint8Array(a.buffer, a.byteOffset, a.byteLength),
      new Uint8Array(b.buffer, b.byteOffset, b.byteLength),
    ) === 0
  );
}

const prompt = Array.from({ length: 23 }, (_, i) => 3 + ((i * 97) % (VOCAB - 3)));

describe("fused vs unfused forward pass (native, 2 threads)", () => {
  for (const type of [GGMLType.Q4_0, GGMLType.Q8_0, GGMLType.Q4_K, GGMLType.Q5_0, GGMLType.F16] as const) {
    it(`${typeName(type)}: identical logits and KV cache`, () => {
      const { fused, plain } = models(type);
      expect(plain.fusion).toBeUndefined();
      // Float weights keep their matmuls unfused; RoPE + the cache write fuse for every format.
      expect(fused.fusion?.ropeStore).toBe(true);
      const quantized = type !== GGMLType.F16;
      expect(
        fused.fusion?.layers.every((l) => (l.attn >= 0 && l.ffn >= 0 && l.down >= 0) === quantized),
      ).toBe(true);
      for (const kv of ["f16", "f32"] as const) {
        const cf = fused.createContext(64, 8, kv); // prompt in chunks of 8
        const cp = plain.createContext(64, 8, kv);
        const lf = fused.forward(cf, prompt, "last").slice();
        const lp = plain.forward(cp, prompt, "last").slice();
        expect(sameBits(lf, lp), `${typeName(type)} ${kv} prefill`).toBe(true);
        for (let step = 0; step < 4; step++) {
          const t = 3 + step * 31;
          const df = fused.forward(cf, [t], "all").slice();
          const dp = plain.forward(cp, [t], "all").slice();
          expect(sameBits(df, dp), `${typeName(type)} ${kv} decode ${step}`).toBe(true);
        }
        for (let l = 0; l < fused.config.nLayers; l++) {
          expect(Buffer.compare(new Uint8Array(cf.keys[l].buffer), new Uint8Array(cp.keys[l].buffer))).toBe(
            0,
          );
          expect(
            Buffer.compare(new Uint8Array(cf.values[l].buffer), new Uint8Array(cp.values[l].buffer)),
          ).toBe(0);
        }
      }
    });
  }

  it("Q4_0, batched: BatchRunner gives identical logits with and without fusion", () => {
    const { fused, plain } = models(GGMLType.Q4_0);
    const run = (model: Model) => {
      const runner = new BatchRunner(model, new PagedKvCache(model, 24, 4, "f16"), 32, 3, 32);
      const out: Float32Array[] = [];
      const a = prompt.slice(0, 11);
      const b = prompt.slice(5, 12);
      out.push(
        runner
          .forward([
            { tokens: a.slice(0, 6), start: 0, blockTable: [7, 2, 19], logits: true },
            { tokens: b, start: 0, blockTable: [4, 11], logits: true },
          ])
          .logits.slice(),
      );
      out.push(
        runner
          .forward([
            { tokens: a.slice(6), start: 6, blockTable: [7, 2, 19], logits: true },
            { tokens: [9], start: 7, blockTable: [4, 11], logits: true },
          ])
          .logits.slice(),
      );
      return out;
    };
    const f = run(fused);
    const p = run(plain);
    for (let i = 0; i < f.length; i++) expect(sameBits(f[i], p[i]), `step ${i}`).toBe(true);
  });

  it("a LoRA-wrapped backend keeps the matmuls unfused (the adapter terms stay)", () => {
    const path = join(dir, "rand-q8_0-lora.gguf");
    writeRandomLlamaGGUF(path, {
      nLayers: 1,
      dim: 64,
      nHeads: 2,
      nKvHeads: 2,
      ffnDim: 128,
      vocabSize: VOCAB,
      type: GGMLType.Q8_0,
      seed: 3,
    });
    const gguf = openModelFile(path);
    const config = readModelConfig(gguf);
    const weights = readLlamaWeights(gguf, config);
    const rank = 2;
    const lora = {
      rank,
      alpha: 4,
      tensors: new Map([
        [
          "blk.0.attn_q.weight",
          {
            a: new Float32Array(rank * 64).fill(0.01),
            b: new Float32Array(64 * rank).fill(0.02),
            inDim: 64,
            outDim: 64,
          },
        ],
      ]),
    };
    const wrapped = withAdapter(backend, weights, lora);
    const m = new Model(config, weights, wrapped, { fused: true });
    expect(m.fusion?.layers.length ?? 0).toBe(0);
    const ref = new Model(config, weights, wrapped, { fused: false });
    const a = m.forward(m.createContext(16, 8), prompt.slice(0, 5)).slice();
    const b = ref.forward(ref.createContext(16, 8), prompt.slice(0, 5)).slice();
    expect(sameBits(a, b)).toBe(true);
  });
});
