// Scores the shipped GGUF (as `ryzanstein run` loads it, Q8_0) on the same held-out split the
// trainer used, and prints a greedy and a sampled continuation. Run after scripts/train.sh:
//   node packages/default-model/scripts/evaluate.mjs /tmp/ryzanstein-default-model/kjv.txt
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadModel, openModelFile } from "@ryzanstein/engine";
import { createTokenizerFromGGUF } from "@ryzanstein/tokenizers";
import { makeWindows, ngramBaselines } from "@ryzanstein/training";

const here = dirname(fileURLToPath(import.meta.url));
const config = JSON.parse(readFileSync(join(here, "../train-config.json"), "utf8"));
const modelPath = join(here, "../model/kjv-4m-q8_0.gguf");
const text = readFileSync(process.argv[2] ?? "/tmp/ryzanstein-default-model/kjv.txt", "utf8");
const gguf = openModelFile(modelPath);
const tok = createTokenizerFromGGUF(gguf.metadata);
const tokens = Int32Array.from(tok.encode(text));
const { seqLen, evalFraction } = config.training;
const { eval: ev } = makeWindows(tokens, seqLen, evalFraction ?? 0.02);
const vocab = gguf.metadata["tokenizer.ggml.tokens"].length;
const tokenBytes = gguf.metadata["tokenizer.ggml.tokens"].map((t, i) =>
  gguf.metadata["tokenizer.ggml.token_type"][i] === 3 ? 0 : Array.from(t).length,
);
const base = ngramBaselines(ev, vocab, tokenBytes);

const model = await loadModel(modelPath, { threads: 2 });
let nats = 0;
for (const s of ev.starts) {
  const input = Array.from(tokens.subarray(s, s + seqLen));
  const logits = await model.logits(input);
  for (let i = 0; i < seqLen; i++) {
    const row = logits.subarray(i * vocab, (i + 1) * vocab);
    let mx = -Infinity;
    for (const v of row) mx = Math.max(mx, v);
    let sum = 0;
    for (const v of row) sum += Math.exp(v - mx);
    nats += mx + Math.log(sum) - row[tokens[s + i + 1]];
  }
}
const bpb = (n) => n / Math.LN2 / base.bytes;
const out = {
  heldOutTokens: base.tokens,
  heldOutBytes: base.bytes,
  heldOutLoss: nats / base.tokens,
  bitsPerByte: { model: bpb(nats), unigram: bpb(base.unigramNats), bigram: bpb(base.bigramNats) },
};
console.log(JSON.stringify(out, null, 2));
for (const [label, opts] of [
  ["greedy", { maxTokens: 60, temperature: 0 }],
  ["sampled (temperature 0.8, seed 1)", { maxTokens: 60, temperature: 0.8, seed: 1 }],
]) {
  let s = "";
  for await (const t of model.generate("In the beginning", opts)) s += t.text;
  console.log(`\n--- ${label}:\nIn the beginning${s}`);
}
await model.dispose();
