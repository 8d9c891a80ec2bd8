import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import {
  type ComputeFormat,
  FORMAT_TRAITS,
  GGMLType,
  isComputeFormat,
  llamaFileType,
  RyzansteinError,
  Tensor,
  TYPE_INFO,
  typeName,
} from "@ryzanstein/core-tensor";
import { hfTokenizerFromGGUFMetadata } from "@ryzanstein/tokenizers";
import type { GGUFFile } from "./gguf-reader.js";
import { GGUFValueType } from "./gguf-types.js";
import { type WriteProgress, writeGGUF } from "./gguf-writer.js";
import { GGUF_TO_HF_ARCHITECTURE, HF_ARCHITECTURES } from "./hf-architectures.js";
import { permuteHeadRows } from "./hf-model.js";
import type { ModelSource } from "./model-source.js";
import { writeSafetensors } from "./safetensors.js";

/** Options of {@link writeModelAsGGUF}. */
export interface ExportGGUFOptions {
  /** Format of the weight matrices (default: keep each tensor's own). Norms and other vectors stay F32. */
  type?: ComputeFormat;
  /** Called after each tensor. */
  onProgress?: (p: WriteProgress) => void;
  /**
   * The format for a matrix whose rows (`cols` wide) do not fit `requested`'s blocks
   * (default F16; the CLI passes quant-strategies' nearest-fitting rule).
   */
  fallback?: (requested: ComputeFormat, cols: number) => ComputeFormat;
}

/** A tensor that could not take the requested format, and what it got instead. */
export interface FormatFallback {
  /** Tensor name. */
  name: string;
  /** The format asked for. */
  requested: string;
  /** The format written. */
  written: string;
}

/** Re-encodes a tensor row block by row block so only one row block is in floats at a time. */
function convertTensor(t: Tensor, type: ComputeFormat): Uint8Array {
  if (t.type === type) return t.data;
  if (!isComputeFormat(t.type)) {
    throw new RyzansteinError(
      "UNSUPPORTED_TENSOR_TYPE",
      `tensor ${t.name}: cannot convert from ${typeName(t.type)}`,
    );
  }
  const src = FORMAT_TRAITS[t.type];
  const dst = FORMAT_TRAITS[type];
  const cols = t.cols;
  const outRow = (cols / dst.blockSize) * dst.typeSize;
  const out = new Uint8Array(t.rows * outRow);
  const row = new Float32Array(cols);
  for (let r = 0; r < t.rows; r++) {
    src.dequantizeRow(t.data, r * t.rowBytes, row, 0, cols);
    dst.quantizeRowRef(row, 0, out, r * outRow, cols);
  }
  return out;
}

/**
 * Writes any model source (a GGUF file, a HuggingFace folder) as a GGUF file that llama.cpp loads,
 * streaming one tensor at a time and renaming into place at the end. Matrices whose rows do not fit
 * the requested block format fall back (to F16 unless `options.fallback` says otherwise; reported
 * in the result).
 */
export function writeModelAsGGUF(
  source: ModelSource,
  outPath: string,
  options: ExportGGUFOptions = {},
): { fallbacks: FormatFallback[] } {
  const fallbacks: FormatFallback[] = [];
  const fileType = options.type === undefined ? undefined : llamaFileType(options.type);
  if (options.type !== undefined && fileType === undefined) {
    throw new RyzansteinError(
      "UNSUPPORTED_TENSOR_TYPE",
      `${typeName(options.type)} is an activation format; llama.cpp cannot store weights in it`,
    );
  }
  const plan = source.tensors.map((info) => {
    let type = info.type;
    if (options.type !== undefined && info.shape.length === 2 && isComputeFormat(info.type)) {
      type = options.type;
      if (info.shape[1] % TYPE_INFO[type].blockSize !== 0) {
        type = options.fallback?.(options.type, info.shape[1]) ?? GGMLType.F16;
        fallbacks.push({ name: info.name, requested: typeName(options.type), written: typeName(type) });
      }
    }
    return { info, type };
  });
  const metadata = { ...source.writableMetadata() };
  if (fileType !== undefined) metadata["general.file_type"] = { type: GGUFValueType.UINT32, value: fileType };
  writeGGUF(
    outPath,
    {
      metadata,
      tensors: plan.map(({ info, type }) => ({
        name: info.name,
        type,
        shape: info.shape,
        data: () =>
          type === info.type
            ? source.tensor(info.name).data
            : convertTensor(source.tensor(info.name), type as ComputeFormat),
      })),
    },
    options.onProgress,
  );
  return { fallbacks };
}

/**
 * Writes a GGUF model as a HuggingFace folder (`config.json`, `model.safetensors`,
 * `tokenizer.json`, `tokenizer_config.json`), undoing the Q/K permutation. Float tensors only
 * (F32/F16/BF16). The folder appears under its final name only when complete.
 */
export function writeModelAsHF(
  source: GGUFFile,
  outDir: string,
  onProgress?: (p: WriteProgress) => void,
): void {
  const ggufArch = source.getString("general.architecture");
  const hfName = GGUF_TO_HF_ARCHITECTURE[ggufArch];
  if (!hfName) {
    throw new RyzansteinError(
      "UNSUPPORTED_ARCHITECTURE",
      `cannot export architecture ${ggufArch} to HuggingFace yet`,
      { file: source.file },
    );
  }
  const arch = HF_ARCHITECTURES[hfName];
  const config = arch.configFromMetadata(source.metadata);
  config.vocab_size = source.info("token_embd.weight")?.shape[0];
  config.tie_word_embeddings = !source.has("output.weight");
  // GGUF name → HF name, by asking the forward mapping about every HF name the layout can have.
  const layers = Number(config.num_hidden_layers);
  const hfNames = ["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"];
  for (let l = 0; l < layers; l++) {
    for (const part of [
      "input_layernorm",
      "post_attention_layernorm",
      "pre_feedforward_layernorm",
      "post_feedforward_layernorm",
    ])
      hfNames.push(`model.layers.${l}.${part}.weight`);
    for (const p of ["q_proj", "k_proj", "v_proj", "o_proj"])
      hfNames.push(`model.layers.${l}.self_attn.${p}.weight`);
    for (const p of ["gate_proj", "up_proj", "down_proj", "gate_up_proj"])
      hfNames.push(`model.layers.${l}.mlp.${p}.weight`);
    hfNames.push(`model.layers.${l}.self_attn.qkv_proj.weight`);
  }
  const reverse = new Map<string, { hf: string; permuteHeads?: number; normOffset?: number }>();
  for (const hf of hfNames) {
    const m = arch.mapTensor(hf, config);
    if (m) reverse.set(m.gguf, { hf, permuteHeads: m.permuteHeads, normOffset: m.normOffset });
  }
  // Tensors derived from the config (rope_freqs.weight) have no checkpoint name: the config carries them.
  const stored = source.tensors.filter((t) => t.name !== "rope_freqs.weight");
  const tensors = stored.map((info) => {
    const target = reverse.get(info.name);
    if (!target)
      throw new RyzansteinError("BAD_METADATA", `tensor ${info.name} has no HuggingFace name`, {
        file: source.file,
      });
    if (![GGMLType.F32, GGMLType.F16, GGMLType.BF16].includes(info.type)) {
      throw new RyzansteinError(
        "UNSUPPORTED_TENSOR_TYPE",
        `tensor ${info.name} is ${typeName(info.type)}; export to HuggingFace takes F32, F16 or BF16 models`,
        { file: source.file },
      );
    }
    return {
      name: target.hf,
      type: target.normOffset !== undefined ? GGMLType.F32 : info.type,
      shape: info.shape,
      data: () => {
        const t = source.tensor(info.name);
        if (target.normOffset !== undefined) {
          const values = t.toF32();
          for (let i = 0; i < values.length; i++) values[i] -= target.normOffset;
          return new Uint8Array(values.buffer);
        }
        return target.permuteHeads
          ? permuteHeadRows(t.data, t.rows, t.rowBytes, target.permuteHeads, true)
          : t.data;
      },
    };
  });
  if (existsSync(outDir)) {
    throw new RyzansteinError(
      "INVALID_ARGUMENT",
      `output folder ${outDir} already exists; choose a new name`,
    );
  }
  const bytesTotal = tensors.reduce((a, t) => a + Tensor.byteSize(t.type, t.shape), 0);
  const tmp = `${outDir}.tmp-${process.pid}-${Date.now()}`;
  try {
    mkdirSync(dirname(tmp), { recursive: true });
    mkdirSync(tmp);
    const { tokenizerJson, tokenizerConfig } = hfTokenizerFromGGUFMetadata(source.metadata);
    writeFileSync(join(tmp, "config.json"), `${JSON.stringify(config, null, 2)}\n`);
    writeFileSync(join(tmp, "tokenizer.json"), JSON.stringify(tokenizerJson));
    writeFileSync(join(tmp, "tokenizer_config.json"), `${JSON.stringify(tokenizerConfig, null, 2)}\n`);
    let done = 0;
    let bytesDone = 0;
    writeSafetensors(
      join(tmp, "model.safetensors"),
      tensors.map((t) => ({
        ...t,
        data: () => {
          const d = t.data();
          done++;
          bytesDone += d.byteLength;
          onProgress?.({ tensorsDone: done, tensorsTotal: tensors.length, bytesDone, bytesTotal });
          return d;
        },
      })),
      { format: "pt" },
    );
    renameSync(tmp, outDir);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}
