// Peak memory of `ryzanstein convert` on a TinyLlama-shape model (22 layers, d 2048, 32 heads,
// 4 KV heads, ff 5632, vocab 32000, F16): HF folder → GGUF, GGUF → GGUF Q8_0, GGUF → HF folder.
// The bound from the conversion issue: peak RSS ≤ 1.2 × the largest tensor + 200 MiB.
//   node bench/convert-memory.mjs [--keep]
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { f32ToF16, GGMLType } from "@ryzanstein/core-tensor";
import { hfTokenizerFromGGUFMetadata } from "@ryzanstein/tokenizers";
import { writeSafetensors } from "../dist/index.js";

const here = dirname(fileURLToPath(import.meta.url));
const cli = resolve(here, "../../cli/bin/ryzanstein.js");
const work = join(here, ".models");
const shape = { layers: 22, dim: 2048, heads: 32, kvHeads: 4, ff: 5632, vocab: 32000 };
const MiB = 2 ** 20;

/** A synthetic SentencePiece vocabulary (the same recipe as test-support's). */
function vocab(size) {
  const tokens = ["<unk>", "<s>", "</s>"];
  const types = [2, 3, 3];
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`);
    types.push(6);
  }
  for (let i = 0; tokens.length < size; i++) {
    tokens.push(`▁w${i}`);
    types.push(1);
  }
  const scores = new Float32Array(size).map((_, i) => -i);
  return {
    "tokenizer.ggml.model": "llama",
    "tokenizer.ggml.tokens": tokens,
    "tokenizer.ggml.scores": scores,
    "tokenizer.ggml.token_type": types,
    "tokenizer.ggml.bos_token_id": 1,
    "tokenizer.ggml.eos_token_id": 2,
  };
}

function writeFolder(dir) {
  mkdirSync(dir, { recursive: true });
  // Values do not matter for memory: tile a small buffer of random F16 values.
  const tile = new Uint16Array(1 << 20).map(() => f32ToF16((Math.random() - 0.5) * 0.1));
  const f16 = (rows, cols) => () => {
    const out = new Uint16Array(rows * cols);
    for (let o = 0; o < out.length; o += tile.length)
      out.set(tile.subarray(0, Math.min(tile.length, out.length - o)), o);
    return new Uint8Array(out.buffer);
  };
  const { dim, heads, kvHeads, ff, vocab: V } = shape;
  const hd = dim / heads;
  const t = (name, rows, cols) => ({
    name,
    type: GGMLType.F16,
    shape: cols ? [rows, cols] : [rows],
    data: f16(rows, cols ?? 1),
  });
  const tensors = [t("model.embed_tokens.weight", V, dim)];
  for (let l = 0; l < shape.layers; l++) {
    const p = `model.layers.${l}.`;
    tensors.push(
      t(`${p}input_layernorm.weight`, dim),
      t(`${p}self_attn.q_proj.weight`, heads * hd, dim),
      t(`${p}self_attn.k_proj.weight`, kvHeads * hd, dim),
      t(`${p}self_attn.v_proj.weight`, kvHeads * hd, dim),
      t(`${p}self_attn.o_proj.weight`, dim, heads * hd),
      t(`${p}post_attention_layernorm.weight`, dim),
      t(`${p}mlp.gate_proj.weight`, ff, dim),
      t(`${p}mlp.up_proj.weight`, ff, dim),
      t(`${p}mlp.down_proj.weight`, dim, ff),
    );
  }
  tensors.push(t("model.norm.weight", dim), t("lm_head.weight", V, dim));
  writeSafetensors(join(dir, "model.safetensors"), tensors);
  writeFileSync(
    join(dir, "config.json"),
    JSON.stringify({
      architectures: ["LlamaForCausalLM"],
      hidden_size: dim,
      intermediate_size: ff,
      num_hidden_layers: shape.layers,
      num_attention_heads: heads,
      num_key_value_heads: kvHeads,
      max_position_embeddings: 2048,
      rms_norm_eps: 1e-5,
      vocab_size: V,
    }),
  );
  const { tokenizerJson, tokenizerConfig } = hfTokenizerFromGGUFMetadata(vocab(V));
  writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(tokenizerJson));
  writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify(tokenizerConfig));
}

/** Runs the CLI and samples the child's peak resident set (VmHWM) until it exits. */
function peakRss(args) {
  return new Promise((resolvePeak, reject) => {
    const child = spawn(process.execPath, [cli, ...args], { stdio: ["ignore", "ignore", "pipe"] });
    let peak = 0;
    let stderr = "";
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    const timer = setInterval(() => {
      try {
        const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"));
        if (m) peak = Math.max(peak, Number(m[1]) * 1024);
      } catch {
        // the child has exited
      }
    }, 10);
    child.on("exit", (code) => {
      clearInterval(timer);
      if (code === 0) resolvePeak(peak);
      else reject(new Error(`convert ${args.join(" ")} failed: ${stderr}`));
    });
  });
}

const folder = join(work, "tinyllama-hf");
const gguf = join(work, "tinyllama-f16.gguf");
const q8 = join(work, "tinyllama-q8_0.gguf");
const back = join(work, "tinyllama-back");
if (!existsSync(join(folder, "model.safetensors"))) {
  process.stderr.write("writing the TinyLlama-shape HF folder (2.2 GB)...\n");
  writeFolder(folder);
}
for (const p of [gguf, q8, back]) rmSync(p, { recursive: true, force: true });

const largest = shape.vocab * shape.dim * 2;
const bound = 1.2 * largest + 200 * MiB;
const rows = [];
for (const [label, args] of [
  ["HF folder → GGUF (F16)", ["convert", folder, gguf]],
  ["GGUF → GGUF Q8_0", ["convert", gguf, q8, "--type", "q8_0"]],
  ["GGUF → HF folder", ["convert", gguf, back, "--to", "hf"]],
]) {
  const started = performance.now();
  const peak = await peakRss(args);
  rows.push({ label, peak, seconds: (performance.now() - started) / 1000 });
}
console.log(
  `largest tensor ${(largest / MiB).toFixed(0)} MiB; bound 1.2 × largest + 200 MiB = ${(bound / MiB).toFixed(0)} MiB`,
);
console.log("| conversion | peak RSS (MiB) | within bound | time (s) |");
console.log("|---|---|---|---|");
for (const r of rows)
  console.log(
    `| ${r.label} | ${(r.peak / MiB).toFixed(0)} | ${r.peak <= bound ? "yes" : "NO"} | ${r.seconds.toFixed(1)} |`,
  );
if (!process.argv.includes("--keep")) rmSync(work, { recursive: true, force: true });
if (rows.some((r) => r.peak > bound)) process.exitCode = 1;
