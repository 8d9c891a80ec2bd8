/** Adapter files: llama.cpp GGUF LoRA and PEFT (`adapter_model.safetensors` + `adapter_config.json`); merging. */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  GGUFValueType,
  type GGUFWriteTensor,
  readGGUF,
  readSafetensors,
  writeGGUF,
} from "@ryzanstein/convert";
import { GGMLType, RyzansteinError, Tensor } from "@ryzanstein/core-tensor";
import { type ModelShape, paramLayout } from "@ryzanstein/training";
import type { LoraAdapters } from "./adapters.js";

/** Adapter weights independent of training state: per base weight, A `[r, in]` and B `[out, r]`. */
export interface LoraWeights {
  /** Rank. */
  rank: number;
  /** Alpha (the update is `(alpha/rank)·B·A`). */
  alpha: number;
  /** By base weight name (GGUF). */
  tensors: Map<string, { a: Float32Array; b: Float32Array; inDim: number; outDim: number }>;
}

/** Copies trained adapters into {@link LoraWeights}. */
export function adapterWeights(ad: LoraAdapters<Float32Array>): LoraWeights {
  const tensors = new Map<string, { a: Float32Array; b: Float32Array; inDim: number; outDim: number }>();
  for (const s of ad.specs) {
    const { a, b } = ad.matrices(s.name);
    tensors.set(s.name, { a: a.slice(), b: b.slice(), inDim: s.inDim, outDim: s.outDim });
  }
  return { rank: ad.rank, alpha: ad.alpha, tensors };
}

/** Writes a llama.cpp GGUF LoRA adapter (`general.type = adapter`, tensors `<weight>.lora_a/b`, F32). */
export function saveGGUFAdapter(path: string, w: LoraWeights, name = "ryzanstein-lora"): void {
  const tensors: GGUFWriteTensor[] = [];
  for (const [base, t] of w.tensors) {
    const stem = base.replace(/\.weight$/, "");
    tensors.push(
      {
        name: `${stem}.weight.lora_a`,
        type: GGMLType.F32,
        shape: [w.rank, t.inDim],
        data: new Uint8Array(t.a.buffer.slice(0)),
      },
      {
        name: `${stem}.weight.lora_b`,
        type: GGMLType.F32,
        shape: [t.outDim, w.rank],
        data: new Uint8Array(t.b.buffer.slice(0)),
      },
    );
  }
  writeGGUF(path, {
    metadata: {
      "general.architecture": "llama",
      "general.type": "adapter",
      "general.name": name,
      "adapter.type": "lora",
      "adapter.lora.alpha": { type: GGUFValueType.FLOAT32, value: w.alpha },
    },
    tensors,
  });
}

/** Reads a GGUF LoRA adapter written by {@link saveGGUFAdapter} or llama.cpp's converter. */
export function loadGGUFAdapter(path: string): LoraWeights {
  const g = readGGUF(path);
  if (g.get("general.type") !== "adapter" || g.get("adapter.type") !== "lora") {
    throw new RyzansteinError("BAD_METADATA", `${path} is not a GGUF LoRA adapter`);
  }
  const tensors: LoraWeights["tensors"] = new Map();
  let rank = 0;
  for (const info of g.tensors) {
    if (!info.name.endsWith(".lora_a")) continue;
    const base = info.name.slice(0, -".lora_a".length);
    const a = g.tensor(info.name);
    const b = g.tensor(`${base}.lora_b`);
    rank = a.shape[0];
    tensors.set(base, { a: a.toF32(), b: b.toF32(), inDim: a.shape[1], outDim: b.shape[0] });
  }
  return { rank, alpha: g.getNumber("adapter.lora.alpha"), tensors };
}

const HF: Record<string, string> = {
  attn_q: "self_attn.q_proj",
  attn_k: "self_attn.k_proj",
  attn_v: "self_attn.v_proj",
  attn_output: "self_attn.o_proj",
  ffn_gate: "mlp.gate_proj",
  ffn_up: "mlp.up_proj",
  ffn_down: "mlp.down_proj",
};

function hfName(gguf: string): { key: string; module: string } {
  if (gguf === "output.weight") return { key: "lm_head", module: "lm_head" };
  const m = /^blk\.(\d+)\.(\w+)\.weight$/.exec(gguf);
  if (!m || !HF[m[2]]) throw new RyzansteinError("INVALID_ARGUMENT", `no Hugging Face name for ${gguf}`);
  return { key: `model.layers.${m[1]}.${HF[m[2]]}`, module: HF[m[2]].split(".")[1] };
}

/**
 * Rows of B between llama.cpp's Q/K layout (RoPE pairs adjacent) and Hugging Face's (halves):
 * `toHf` maps GGUF row `h·hd + 2i + j` to HF row `h·hd + j·hd/2 + i`.
 */
function permuteRows(
  b: Float32Array,
  rows: number,
  cols: number,
  heads: number,
  toHf: boolean,
): Float32Array {
  const out = new Float32Array(b.length);
  const hd = rows / heads;
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < hd / 2; i++) {
      for (let j = 0; j < 2; j++) {
        const g = h * hd + 2 * i + j;
        const f = h * hd + j * (hd / 2) + i;
        const [src, dst] = toHf ? [g, f] : [f, g];
        out.set(b.subarray(src * cols, (src + 1) * cols), dst * cols);
      }
    }
  }
  return out;
}

function qkHeads(name: string, shape: ModelShape): number {
  if (name.endsWith("attn_q.weight")) return shape.nHeads;
  if (name.endsWith("attn_k.weight")) return shape.nKvHeads;
  return 0;
}

/**
 * Writes a PEFT adapter directory: `adapter_model.safetensors` (Hugging Face names and Q/K row
 * order) and `adapter_config.json`.
 */
export function savePeft(dir: string, w: LoraWeights, shape: ModelShape, dropout = 0): void {
  mkdirSync(dir, { recursive: true });
  const header: Record<string, unknown> = {};
  const blobs: Float32Array[] = [];
  let off = 0;
  const modules = new Set<string>();
  for (const [name, t] of w.tensors) {
    const { key, module } = hfName(name);
    modules.add(module);
    const heads = qkHeads(name, shape);
    const b = heads ? permuteRows(t.b, t.outDim, w.rank, heads, true) : t.b;
    for (const [suffix, data, dims] of [
      ["lora_A", t.a, [w.rank, t.inDim]],
      ["lora_B", b, [t.outDim, w.rank]],
    ] as const) {
      header[`base_model.model.${key}.${suffix}.weight`] = {
        dtype: "F32",
        shape: dims,
        data_offsets: [off, off + data.byteLength],
      };
      blobs.push(data);
      off += data.byteLength;
    }
  }
  let json = Buffer.from(JSON.stringify(header), "utf8");
  const pad = (8 - (json.length % 8)) % 8;
  json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const file = join(dir, "adapter_model.safetensors");
  writeFileSync(
    `${file}.tmp`,
    Buffer.concat([len, json, ...blobs.map((b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength))]),
  );
  renameSync(`${file}.tmp`, file);
  const config = {
    peft_type: "LORA",
    task_type: "CAUSAL_LM",
    r: w.rank,
    lora_alpha: w.alpha,
    lora_dropout: dropout,
    target_modules: [...modules],
    bias: "none",
    fan_in_fan_out: false,
  };
  writeFileSync(join(dir, "adapter_config.json"), `${JSON.stringify(config, null, 2)}\n`);
}

/** Reads a PEFT adapter directory back into GGUF names and row order. */
export function loadPeft(dir: string, shape: ModelShape): LoraWeights {
  const cfg = JSON.parse(readFileSync(join(dir, "adapter_config.json"), "utf8")) as {
    r: number;
    lora_alpha: number;
  };
  const st = readSafetensors(join(dir, "adapter_model.safetensors"));
  const tensors: LoraWeights["tensors"] = new Map();
  for (const s of paramLayout(shape).specs) {
    if (s.shape.length !== 2 || s.name === "token_embd.weight") continue;
    const { key } = hfName(s.name);
    const aName = `base_model.model.${key}.lora_A.weight`;
    if (!st.tensors.some((t) => t.name === aName)) continue;
    const a = st.tensor(aName).toF32();
    let b = st.tensor(`base_model.model.${key}.lora_B.weight`).toF32();
    const [outDim, inDim] = s.shape;
    const heads = qkHeads(s.name, shape);
    if (heads) b = permuteRows(b, outDim, cfg.r, heads, false);
    tensors.set(s.name, { a, b, inDim, outDim });
  }
  return { rank: cfg.r, alpha: cfg.lora_alpha, tensors };
}

/** `W + (alpha/rank)·B·A` for one weight `[out, in]` (a new array). */
export function mergedWeight(
  w: Float32Array,
  t: { a: Float32Array; b: Float32Array; inDim: number; outDim: number },
  rank: number,
  alpha: number,
): Float32Array {
  const out = w.slice();
  const scale = alpha / rank;
  for (let o = 0; o < t.outDim; o++) {
    for (let k = 0; k < rank; k++) {
      const bk = scale * t.b[o * rank + k];
      if (bk === 0) continue;
      const row = o * t.inDim;
      const arow = k * t.inDim;
      for (let i = 0; i < t.inDim; i++) out[row + i] += bk * t.a[arow + i];
    }
  }
  return out;
}

/**
 * Writes `base` with the adapter merged in. Merged weights are stored as F32 (re-quantizing would
 * round the update away); every other tensor and all metadata are copied unchanged.
 *
 * @throws RyzansteinError `SHAPE_MISMATCH` when the adapter does not fit the base.
 */
export function mergeToGGUF(basePath: string, w: LoraWeights, outPath: string): void {
  const g = readGGUF(basePath);
  for (const [name, t] of w.tensors) {
    const info = g.info(name);
    if (!info || info.shape[0] !== t.outDim || info.shape[1] !== t.inDim) {
      throw new RyzansteinError(
        "SHAPE_MISMATCH",
        `the adapter does not fit ${basePath}: ${name} is ${info ? info.shape.join("×") : "missing"}, the adapter expects ${t.outDim}×${t.inDim}`,
      );
    }
  }
  const tensors: GGUFWriteTensor[] = g.tensors.map((info) => {
    const t = w.tensors.get(info.name);
    if (!t)
      return {
        name: info.name,
        type: info.type,
        shape: info.shape,
        data: () => g.bytes.subarray(info.offset, info.offset + info.byteLength),
      };
    return {
      name: info.name,
      type: GGMLType.F32,
      shape: info.shape,
      data: () =>
        Tensor.fromF32(
          info.shape,
          mergedWeight(g.tensor(info.name).toF32(), t, w.rank, w.alpha),
          GGMLType.F32,
        ).data,
    };
  });
  writeGGUF(outPath, { metadata: { ...g.typedMetadata }, tensors });
}
