import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readGGUF } from "@ryzanstein/convert";
import { loadModel } from "@ryzanstein/engine";
import { disposeLlamaCpp, fixturesDir, llamaCppGreedy } from "@ryzanstein/test-support";
import { createTokenizerFromGGUF } from "@ryzanstein/tokenizers";
import { initParams, paramLayout, referenceOps, seededRandom, TrainGraph } from "@ryzanstein/training";
import { afterAll, describe, expect, it } from "vitest";
import {
  adapterWeights,
  finetune,
  LoraAdapters,
  loadBase,
  loadGGUFAdapter,
  loadPeft,
  mergeToGGUF,
  resolveTargets,
  saveGGUFAdapter,
  savePeft,
} from "../src/index.js";

const dir = mkdtempSync(join(tmpdir(), "rz-lora-"));
afterAll(async () => {
  await disposeLlamaCpp();
  rmSync(dir, { recursive: true, force: true });
});
const stories = join(fixturesDir(), "models/stories260K.gguf");

// A small dataset in a style stories260K has not seen: a robot who counts.
const names = ["Tim", "Sue", "Ben", "Lily", "Max"];
const things = ["red ball", "big box", "blue cup", "small hat"];
const dataset = Array.from(
  { length: 120 },
  (_, i) =>
    `Robo the robot saw ${names[i % 5]}. Robo said, "Beep! I count ${(i % 4) + 1} ${things[i % 4]}." ${names[i % 5]} said, "Beep beep, Robo!"`,
).join("\n");

describe("LoRA config", () => {
  const weights = paramLayout({
    nLayers: 2,
    dim: 8,
    nHeads: 2,
    nKvHeads: 1,
    ffnDim: 16,
    vocabSize: 10,
    contextLength: 8,
  }).specs.map((s) => s.name);
  it("targets by module name and pattern", () => {
    expect(resolveTargets({ rank: 2, alpha: 4 }, weights)).toEqual([
      "blk.0.attn_q.weight",
      "blk.0.attn_v.weight",
      "blk.1.attn_q.weight",
      "blk.1.attn_v.weight",
    ]);
    expect(resolveTargets({ rank: 2, alpha: 4, targetModules: ["blk.1.ffn_*"] }, weights)).toEqual([
      "blk.1.ffn_gate.weight",
      "blk.1.ffn_up.weight",
      "blk.1.ffn_down.weight",
    ]);
  });
  it("rank 0 and unknown modules are clear errors", () => {
    expect(() => resolveTargets({ rank: 0, alpha: 4 }, weights)).toThrow(/rank must be an integer ≥ 1/);
    expect(() => resolveTargets({ rank: 2, alpha: 4, targetModules: ["q_proj"] }, weights)).toThrow(
      /unknown target module 'q_proj'/,
    );
    expect(() => resolveTargets({ rank: 2, alpha: 4, dropout: 1 }, weights)).toThrow(/dropout/);
  });
});

describe("LoRA gradients (float64 reference, finite differences)", () => {
  it("adapter gradients on every module of a GQA model", () => {
    const shape = {
      nLayers: 2,
      dim: 16,
      nHeads: 4,
      nKvHeads: 2,
      ffnDim: 24,
      vocabSize: 20,
      contextLength: 8,
    };
    const base = Float64Array.from(initParams(shape, 4), (x) => x * 10);
    for (const s of paramLayout(shape).specs) if (s.isNorm) base.fill(1, s.offset, s.offset + s.size);
    const ad = new LoraAdapters(
      shape,
      { rank: 3, alpha: 6, targetModules: ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_*", "output"] },
      referenceOps,
      10,
    );
    const rand = seededRandom(9);
    for (let i = 0; i < ad.params.length; i++) ad.params[i] = (rand() * 2 - 1) * 0.3;
    const g = new TrainGraph(shape, 2, 5, referenceOps, ad);
    const tokens = Int32Array.from({ length: 10 }, (_, i) => (i * 7 + 3) % 20);
    const targets = Int32Array.from({ length: 10 }, (_, i) => (i * 5 + 1) % 20);
    ad.grads.fill(0);
    g.step(base, tokens, targets, undefined, 1, true);
    const analytic = ad.grads.slice();
    let err = 0;
    let scale = 0;
    for (let i = 0; i < ad.params.length; i += 3) {
      const o = ad.params[i];
      ad.params[i] = o + 1e-5;
      const lp = g.step(base, tokens, targets);
      ad.params[i] = o - 1e-5;
      const lm = g.step(base, tokens, targets);
      ad.params[i] = o;
      err = Math.max(err, Math.abs((lp - lm) / 2e-5 - analytic[i]));
      scale = Math.max(scale, Math.abs(analytic[i]));
    }
    expect(err / scale).toBeLessThan(1e-6);
  });
});

describe("LoRA on stories260K", () => {
  it("fine-tuning lowers held-out loss; the GGUF adapter gives the same greedy tokens in llama.cpp as our merged model", async () => {
    const base = loadBase(stories);
    const tok = createTokenizerFromGGUF(base.tokenizer);
    const tokens = Int32Array.from(tok.encode(dataset));
    const r = finetune({
      base,
      tokens,
      lora: { rank: 8, alpha: 16, targetModules: ["attn_q", "attn_v", "ffn_up", "ffn_down"] },
      training: { seqLen: 64, batchSize: 4, steps: 40, lr: 1e-2, warmup: 4, evalFraction: 0.15, seed: 1 },
      threads: 2,
    });
    expect(r.evalAfter).toBeLessThan(r.evalBefore - 0.5);
    console.log(
      `stories260K LoRA r=8: held-out loss ${r.evalBefore.toFixed(3)} -> ${r.evalAfter.toFixed(3)} nats/token in ${r.seconds.toFixed(1)} s`,
    );

    const weights = adapterWeights(r.adapters);
    const adapterPath = join(dir, "robo.gguf");
    saveGGUFAdapter(adapterPath, weights);
    const back = loadGGUFAdapter(adapterPath);
    expect(back.rank).toBe(8);
    expect(back.alpha).toBe(16);
    expect(back.tensors.get("blk.0.attn_q.weight")?.b).toEqual(weights.tensors.get("blk.0.attn_q.weight")?.b);

    // merged weights equal base + (alpha/r)·B·A
    const merged = join(dir, "merged.gguf");
    mergeToGGUF(stories, weights, merged);
    const m = readGGUF(merged).tensor("blk.2.ffn_down.weight").toF32();
    const w0 = readGGUF(stories).tensor("blk.2.ffn_down.weight").toF32();
    const t = weights.tensors.get("blk.2.ffn_down.weight");
    if (!t) throw new Error("missing adapter");
    let d = 0;
    for (const [o, i] of [
      [0, 0],
      [17, 100],
      [63, 171],
    ]) {
      let u = 0;
      for (let k = 0; k < 8; k++) u += t.b[o * 8 + k] * t.a[k * t.inDim + i];
      d = Math.max(d, Math.abs(m[o * t.inDim + i] - (w0[o * t.inDim + i] + 2 * u)));
    }
    expect(d).toBeLessThan(1e-6);

    // llama.cpp with the adapter vs our engine with the merged weights
    const prompt = tok.encode("Robo the robot saw", { addBos: true });
    const trace = await llamaCppGreedy(stories, prompt, 16, { topK: 5, threads: 1, lora: adapterPath });
    const model = await loadModel(merged, { threads: 1, worker: false });
    const seq = [...prompt, ...trace.steps.map((s) => s.token)];
    const logits = await model.logits(seq.slice(0, -1));
    await model.dispose();
    const V = base.shape.vocabSize;
    let maxDiff = 0;
    let compared = 0;
    for (let s = 0; s < 16; s++) {
      const row = logits.subarray((prompt.length - 1 + s) * V, (prompt.length + s) * V);
      let mx = -Infinity;
      for (const v of row) mx = Math.max(mx, v);
      let sum = 0;
      for (const v of row) sum += Math.exp(v - mx);
      const lse = mx + Math.log(sum);
      if (trace.steps[s].top2Gap < 0.05) continue;
      compared++;
      let best = 0;
      for (let i = 1; i < V; i++) if (row[i] > row[best]) best = i;
      expect(best).toBe(trace.steps[s].token);
      for (const c of trace.steps[s].top)
        maxDiff = Math.max(maxDiff, Math.abs(row[c.token] - lse - c.logprob));
    }
    expect(compared).toBeGreaterThan(8);
    expect(maxDiff).toBeLessThan(0.05);
    console.log(
      `llama.cpp + GGUF adapter vs our merged model: ${compared} steps, max |Δ log p| ${maxDiff.toExponential(2)}`,
    );
    expect(tok.decode(trace.steps.map((s) => s.token))).toMatch(/Robo|Beep|said/);

    // the adapter applied beside the base at inference (no merged copy; in the engine worker)
    // (F32 KV caches on both sides: F16 rounding of K/V built from differently summed floats
    // would hide the bound)
    const unmerged = await loadModel(stories, { threads: 1, lora: weights, kvCache: "f32" });
    const l2 = await unmerged.logits(seq.slice(0, -1));
    await unmerged.dispose();
    const mergedF32 = await loadModel(merged, { threads: 1, worker: false, kvCache: "f32" });
    const l1 = await mergedF32.logits(seq.slice(0, -1));
    await mergedF32.dispose();
    let unmergedDiff = 0;
    for (let i = 0; i < l1.length; i++) unmergedDiff = Math.max(unmergedDiff, Math.abs(l2[i] - l1[i]));
    expect(unmergedDiff).toBeLessThan(1e-4);
    console.log(`unmerged adapter vs merged model: max |Δ logit| ${unmergedDiff.toExponential(2)}`);

    // PEFT round trip (Hugging Face names, Q/K rows permuted and back)
    savePeft(join(dir, "peft"), weights, base.shape);
    const cfg = JSON.parse(readFileSync(join(dir, "peft/adapter_config.json"), "utf8"));
    expect(cfg).toMatchObject({ peft_type: "LORA", r: 8, lora_alpha: 16 });
    expect(cfg.target_modules.sort()).toEqual(["down_proj", "q_proj", "up_proj", "v_proj"]);
    const peft = loadPeft(join(dir, "peft"), base.shape);
    for (const [name, w] of weights.tensors) {
      expect(peft.tensors.get(name)?.a).toEqual(w.a);
      expect(peft.tensors.get(name)?.b).toEqual(w.b);
    }
  });

  it("an adapter for another base is refused and nothing is written", () => {
    const w = {
      rank: 2,
      alpha: 2,
      tensors: new Map([
        [
          "blk.0.attn_q.weight",
          { a: new Float32Array(2 * 32), b: new Float32Array(32 * 2), inDim: 32, outDim: 32 },
        ],
      ]),
    };
    const out = join(dir, "bad-merge.gguf");
    expect(() => mergeToGGUF(stories, w, out)).toThrow(/does not fit/);
    expect(existsSync(out)).toBe(false);
  });

  it("an adapter for another base is refused at inference too", async () => {
    const w = {
      rank: 2,
      alpha: 2,
      tensors: new Map([
        [
          "blk.0.attn_q.weight",
          { a: new Float32Array(2 * 32), b: new Float32Array(32 * 2), inDim: 32, outDim: 32 },
        ],
      ]),
    };
    await expect(loadModel(stories, { threads: 1, worker: false, lora: w })).rejects.toThrow(/does not fit/);
  });
});
