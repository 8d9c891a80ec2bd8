// QLoRA: a frozen Q4_0/Q8_0/F16 base stays in its format (only adapters and their optimizer state
// are F32), adapter gradients through it match the decoded base, checkpointing (with dropout)
// changes no gradient, and chat records train only on assistant tokens.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ComputeFormat, GGMLType } from "@ryzanstein/core-tensor";
import { writeRandomLlamaGGUF } from "@ryzanstein/test-support";
import { createTokenizerFromGGUF } from "@ryzanstein/tokenizers";
import {
  chatExamples,
  type FrozenModel,
  fillBatch,
  makeWindows,
  nativeOps,
  paramLayout,
  parseChatJsonl,
  referenceOps,
  seededRandom,
  TrainGraph,
} from "@ryzanstein/training";
import { afterAll, describe, expect, it } from "vitest";
import { finetune, LoraAdapters, loadBase } from "../src/index.js";

const dir = mkdtempSync(join(tmpdir(), "rz-qlora-"));
const ops = nativeOps({ threads: 2 });
afterAll(() => {
  ops.kernels.dispose();
  rmSync(dir, { recursive: true, force: true });
});
const spec = { nLayers: 2, dim: 64, nHeads: 4, nKvHeads: 2, ffnDim: 128, vocabSize: 320, contextLength: 64 };
const model = (type: ComputeFormat) => {
  const p = join(dir, `m-${type}.gguf`);
  writeRandomLlamaGGUF(p, { ...spec, type, seed: 3 });
  return p;
};
const TARGETS = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"];

/** The base decoded to flat F32 parameters (what the old loader did), for comparison only. */
function decoded(m: FrozenModel): Float32Array {
  const { specs, total } = paramLayout(spec);
  const flat = new Float32Array(total);
  for (const s of specs) {
    flat.set(
      s.isNorm
        ? (m.norms.get(s.name) as Float32Array)
        : (m.matrices.get(s.name)?.tensor.toF32() as Float32Array),
      s.offset,
    );
  }
  return flat;
}

describe("QLoRA: the base stays quantized", () => {
  it.each([
    ["Q4_0", GGMLType.Q4_0, 18 / 32],
    ["Q8_0", GGMLType.Q8_0, 34 / 32],
    ["F16", GGMLType.F16, 2],
  ] as const)(
    "%s base: weights in their format; adapter gradients match the decoded base",
    (_n, type, bytesPerValue) => {
      const base = loadBase(model(type));
      let values = 0;
      for (const [name, m] of base.weights.matrices) {
        expect(m.native.type).toBe(type);
        // Q8_0/Q4_0 matrices of >= 64 rows are repacked; the rest are read where they are mapped
        expect(m.native.packed).toBe(
          type !== GGMLType.F16 && name !== "token_embd.weight" && m.native.rows >= 64,
        );
        values += m.native.rows * m.native.cols;
      }
      const normBytes = [...base.weights.norms.values()].reduce((t, v) => t + v.byteLength, 0);
      expect(base.weightBytes).toBe(values * bytesPerValue + normBytes);

      const n = 32;
      const tokens = Int32Array.from({ length: n }, (_, i) => (i * 37 + 5) % spec.vocabSize);
      const targets = Int32Array.from({ length: n }, (_, i) => tokens[(i + 1) % n]);
      const grads = (params: FrozenModel | Float32Array) => {
        const ad = new LoraAdapters(base.shape, { rank: 4, alpha: 8, targetModules: TARGETS }, ops, n, 5);
        const r = seededRandom(2);
        for (let i = 0; i < ad.params.length; i++) ad.params[i] = (r() * 2 - 1) * 0.2;
        const g = new TrainGraph(base.shape, 2, 16, ops, ad, { checkpointLayers: true });
        const loss = g.step(params as Float32Array, tokens, targets, undefined, 1 / n, true);
        return { loss, grads: ad.grads.slice() };
      };
      const q = grads(base.weights);
      const f = grads(decoded(base.weights));
      let num = 0;
      let den = 0;
      for (let i = 0; i < q.grads.length; i++) {
        num += (q.grads[i] - f.grads[i]) ** 2;
        den += f.grads[i] ** 2;
      }
      // the only difference: the native forward rounds activations to Q8_0 (F16 for F16 weights) as ggml does
      expect(Math.sqrt(num / den)).toBeLessThan(type === GGMLType.F16 ? 1e-2 : 5e-2);
      expect(Math.abs(q.loss - f.loss) / f.loss).toBeLessThan(1e-2);
    },
  );

  it("fine-tuning a Q4_0 base lowers the held-out loss; only the adapters are F32", () => {
    const base = loadBase(model(GGMLType.Q4_0));
    const pattern = [17, 280, 99, 3, 150, 42, 201, 77];
    const tokens = Int32Array.from({ length: 1200 }, (_, i) => pattern[i % 8] + (i % 24 === 23 ? 1 : 0));
    const r = finetune({
      base,
      tokens,
      lora: { rank: 8, alpha: 16, targetModules: TARGETS },
      training: { seqLen: 32, batchSize: 2, steps: 30, lr: 2e-2, warmup: 3, evalFraction: 0.1, seed: 1 },
      threads: 2,
      checkpointLayers: true,
    });
    expect(r.checkpointLayers).toBe(true);
    expect(r.evalAfter).toBeLessThan(r.evalBefore * 0.5);
    const adapterValues = r.adapters.params.length;
    // per layer: q (64→64), k and v (64→32), o (64→64), gate and up (64→128), down (128→64), rank 8
    expect(adapterValues).toBe(2 * 8 * (128 + 96 + 96 + 128 + 192 + 192 + 192));
    console.log(
      `QLoRA on a random Q4_0 model: held-out loss ${r.evalBefore.toFixed(3)} -> ${r.evalAfter.toFixed(3)}, ` +
        `base ${base.weightBytes} bytes in Q4_0, ${adapterValues} F32 adapter values`,
    );
  });
});

describe("activation checkpointing with LoRA dropout", () => {
  it("float64 reference: identical adapter gradients with and without checkpointing", () => {
    const shape = {
      nLayers: 3,
      dim: 16,
      nHeads: 4,
      nKvHeads: 2,
      ffnDim: 24,
      vocabSize: 20,
      contextLength: 8,
    };
    const r = seededRandom(4);
    const { total, specs } = paramLayout(shape);
    const p = Float64Array.from({ length: total }, () => (r() * 2 - 1) * 0.3);
    for (const s of specs) if (s.isNorm) p.fill(1, s.offset, s.offset + s.size);
    const tokens = Int32Array.from({ length: 10 }, (_, i) => (i * 7 + 3) % 20);
    const targets = Int32Array.from({ length: 10 }, (_, i) => (i * 5 + 1) % 20);
    const run = (checkpointLayers: boolean) => {
      const ad = new LoraAdapters(
        shape,
        { rank: 3, alpha: 6, dropout: 0.3, targetModules: TARGETS },
        referenceOps,
        10,
        9,
      );
      const rr = seededRandom(1);
      for (let i = 0; i < ad.params.length; i++) ad.params[i] = (rr() * 2 - 1) * 0.3;
      const g = new TrainGraph(shape, 2, 5, referenceOps, ad, { checkpointLayers });
      g.step(p, tokens, targets, undefined, 1, true);
      return ad.grads.slice();
    };
    const a = run(false);
    expect(run(true)).toEqual(a);
    expect(a.some((v) => v !== 0)).toBe(true);
  });
});

describe("chat records: loss on assistant tokens only", () => {
  const base = loadBase(model(GGMLType.F32));
  const tok = createTokenizerFromGGUF(base.tokenizer);
  const jsonl = [
    {
      messages: [
        { role: "user", content: "hi robo" },
        { role: "assistant", content: "beep boop" },
      ],
    },
    {
      messages: [
        { role: "system", content: "be brief" },
        { role: "user", content: "count" },
        { role: "assistant", content: "one two" },
        { role: "user", content: "more" },
        { role: "assistant", content: "three" },
      ],
    },
  ]
    .map((r) => JSON.stringify(r))
    .join("\n");

  it("malformed records name their line", () => {
    expect(() => parseChatJsonl(`${jsonl}\n{"messages": oops}\n`, "c.jsonl")).toThrow(
      /c\.jsonl:3: malformed JSON/,
    );
    expect(() => parseChatJsonl('{"messages": [{"role": "user", "content": "x"}]}', "c.jsonl")).toThrow(
      /c\.jsonl:1: .*no assistant message/,
    );
    expect(() => parseChatJsonl('\n{"messages": [{"role": "robot", "content": "x"}]}', "c.jsonl")).toThrow(
      /c\.jsonl:2: message 1 needs a role/,
    );
  });

  it.each([
    ["the plain format", undefined],
    [
      "a ChatML template",
      "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
    ],
  ])("%s: the mask covers the assistant turns; masked positions give no gradient", (_n, template) => {
    const ex = chatExamples(parseChatJsonl(jsonl), tok, template);
    expect(ex.conversations).toBe(2);
    // the trained tokens decode to the assistant turns (and, in the plain format, their EOS)
    const trained = [...ex.tokens].filter((_, i) => ex.mask[i] === 1);
    const text = tok.decode(trained.filter((t) => t !== tok.eosId));
    for (const a of ["beep boop", "one two", "three"]) expect(text).toContain(a);
    for (const u of ["hi robo", "count", "more", "be brief", "user"]) expect(text).not.toContain(u);
    if (!template) expect(trained.filter((t) => t === tok.eosId)).toHaveLength(3);

    // a window over the examples: masked targets are -1
    const seq = ex.tokens.length - 1;
    const { train } = makeWindows(ex.tokens, seq, 0, ex.mask);
    const inputs = new Int32Array(seq);
    const targets = new Int32Array(seq);
    fillBatch(train, [0], inputs, targets);
    const count = targets.filter((t) => t >= 0).length;
    expect(count).toBe(ex.mask.subarray(1).reduce((a, b) => a + b, 0));
    const complement = Int32Array.from(targets, (t, i) => (t >= 0 ? -1 : ex.tokens[i + 1]));
    const all = Int32Array.from(ex.tokens.subarray(1));

    // float64 graph on the decoded base: loss and adapter gradients split exactly by position
    const params = Float64Array.from(decoded(base.weights));
    const ad = new LoraAdapters(
      base.shape,
      { rank: 2, alpha: 4, targetModules: ["attn_q", "ffn_down"] },
      referenceOps,
      seq,
      3,
    );
    const rr = seededRandom(8);
    for (let i = 0; i < ad.params.length; i++) ad.params[i] = (rr() * 2 - 1) * 0.1;
    const g = new TrainGraph(base.shape, 1, seq, referenceOps, ad);
    const run = (t: Int32Array) => {
      ad.grads.fill(0);
      const loss = g.step(params, inputs, t, undefined, 1, true);
      return { loss, grads: ad.grads.slice() };
    };
    const m = run(targets);
    const c = run(complement);
    const a = run(all);
    expect(Math.abs(m.loss + c.loss - a.loss)).toBeLessThan(1e-9 * a.loss);
    let diff = 0;
    let changed = 0;
    for (let i = 0; i < a.grads.length; i++) {
      diff = Math.max(diff, Math.abs(m.grads[i] + c.grads[i] - a.grads[i]));
      changed = Math.max(changed, Math.abs(m.grads[i] - a.grads[i]));
    }
    expect(diff).toBeLessThan(1e-10); // masked positions add nothing to the masked gradients
    expect(changed).toBeGreaterThan(1e-6); // ...and they would have contributed

    // the loss fine-tuning reports is the mean over the assistant tokens, matching per-position CE
    // (checked on the shorter plain format: one forward pass per position)
    if (template) return;
    let perPosition = 0;
    for (let i = 0; i < seq; i++) {
      if (targets[i] < 0) continue;
      const one = Int32Array.from(targets, (t, j) => (j === i ? t : -1));
      perPosition += g.step(params, inputs, one);
    }
    expect(Math.abs(m.loss / count - perPosition / count)).toBeLessThan(1e-9);
  });
});
