import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { GGMLType, RyzansteinError, Tensor } from "@ryzanstein/core-tensor";
import { ggufMetadataFromHFTokenizer, type HFTokenizerConfig } from "@ryzanstein/tokenizers";
import type { GGUFValue } from "./gguf-types.js";
import type { GGUFWriteValue } from "./gguf-writer.js";
import { HF_ARCHITECTURES, type HFArchitecture, type HFConfig } from "./hf-architectures.js";
import { ModelSource, type TensorInfo } from "./model-source.js";
import { openSafetensorsLazy, parseSafetensors, type SafetensorsFile } from "./safetensors.js";

/** Options of {@link openHFModel}. */
export interface OpenHFModelOptions {
  /**
   * Reads a whole safetensors file (pass a memory-mapping reader to run a model). Without it each
   * tensor is read from disk when asked for, which keeps conversion memory to about one tensor.
   */
  readFile?: (path: string) => Uint8Array;
}

interface Entry {
  info: TensorInfo;
  /** Set for tensors the conversion makes rather than reads (`rope_freqs.weight`). */
  made?: Float32Array;
  shard: SafetensorsFile | undefined;
  hfName: string;
  permuteHeads?: number;
  normOffset?: number;
}

function readJson(path: string, what: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new RyzansteinError("IO_ERROR", `cannot read ${what}: ${(e as Error).message}`, {
      file: path,
      cause: e,
    });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new RyzansteinError("BAD_METADATA", `${what} is not valid JSON: ${(e as Error).message}`, {
      file: path,
    });
  }
}

/** The safetensors files of a folder: from `model.safetensors.index.json` when sharded, else every `*.safetensors`. */
export function safetensorsFiles(dir: string): string[] {
  const index = join(dir, "model.safetensors.index.json");
  if (existsSync(index)) {
    const map = (readJson(index, "model.safetensors.index.json") as { weight_map?: Record<string, string> })
      .weight_map;
    if (!map || typeof map !== "object") {
      throw new RyzansteinError("BAD_METADATA", "model.safetensors.index.json has no weight_map", {
        file: index,
      });
    }
    return [...new Set(Object.values(map))].map((f) => join(dir, f));
  }
  return readdirSync(dir)
    .filter((f) => f.endsWith(".safetensors"))
    .sort()
    .map((f) => join(dir, f));
}

/**
 * Reorders the rows of Q/K projections from HF's rotate-half layout to GGUF's interleaved pairs
 * (llama.cpp's `permute`): within each head, GGUF row `2j + c` is HF row `c·hd/2 + j`.
 * `inverse` undoes it (GGUF → HF).
 */
export function permuteHeadRows(
  data: Uint8Array,
  rows: number,
  rowBytes: number,
  heads: number,
  inverse = false,
): Uint8Array {
  const out = new Uint8Array(data.byteLength);
  const hd = rows / heads;
  const half = hd / 2;
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < half; j++) {
      for (let c = 0; c < 2; c++) {
        const gguf = h * hd + 2 * j + c;
        const hf = h * hd + c * half + j;
        const [dst, src] = inverse ? [hf, gguf] : [gguf, hf];
        out.set(data.subarray(src * rowBytes, (src + 1) * rowBytes), dst * rowBytes);
      }
    }
  }
  return out;
}

/**
 * A HuggingFace model folder (`config.json`, `*.safetensors`, `tokenizer.json`,
 * `tokenizer_config.json`) seen through GGUF names: metadata mapped from the config and the
 * tokenizer, tensors renamed, Q/K rows permuted as llama.cpp's converter does. Tensors are views
 * into the safetensors data except Q/K, which are permuted copies made on request.
 */
export class HFModel extends ModelSource {
  /** GGUF metadata derived from the folder. */
  readonly metadata: Record<string, GGUFValue>;
  /** The same metadata with the GGUF types a writer should use. */
  readonly writeMetadata: Record<string, GGUFWriteValue>;
  /** Tensor table under GGUF names. */
  readonly tensors: TensorInfo[];
  /** The folder. */
  readonly file: string;
  /** The parsed `config.json`. */
  readonly config: HFConfig;
  /** The architecture mapping in use. */
  readonly architecture: HFArchitecture;
  private readonly entries: Map<string, Entry>;

  /** @internal Use {@link openHFModel}. */
  constructor(init: {
    dir: string;
    config: HFConfig;
    architecture: HFArchitecture;
    writeMetadata: Record<string, GGUFWriteValue>;
    entries: Map<string, Entry>;
  }) {
    super();
    this.file = init.dir;
    this.config = init.config;
    this.architecture = init.architecture;
    this.writeMetadata = init.writeMetadata;
    this.metadata = Object.fromEntries(
      Object.entries(init.writeMetadata).map(([k, v]) => [
        k,
        typeof v === "object" && v !== null && !Array.isArray(v) && !ArrayBuffer.isView(v) && "type" in v
          ? v.value
          : (v as GGUFValue),
      ]),
    );
    this.entries = init.entries;
    this.tensors = [...init.entries.values()].map((e) => e.info);
  }

  /** The GGUF metadata with the types the writer should use. */
  writableMetadata(): Record<string, GGUFWriteValue> {
    return this.writeMetadata;
  }

  /** A `Tensor` under its GGUF name. */
  tensor(name: string): Tensor {
    const e = this.entries.get(name);
    if (!e) return this.missingTensor(name);
    if (e.made) return new Tensor(GGMLType.F32, e.info.shape, new Uint8Array(e.made.buffer), name);
    if (!e.shard) return this.missingTensor(name);
    const view = e.shard.tensor(e.hfName);
    if (e.normOffset !== undefined) {
      const values = view.toF32();
      for (let i = 0; i < values.length; i++) values[i] += e.normOffset;
      return new Tensor(GGMLType.F32, view.shape, new Uint8Array(values.buffer), name);
    }
    if (!e.permuteHeads) return new Tensor(view.type, view.shape, view.data, name);
    const rows = view.shape[0];
    if (rows % (2 * e.permuteHeads) !== 0) {
      throw new RyzansteinError(
        "SHAPE_MISMATCH",
        `${e.hfName}: ${rows} rows do not split into ${e.permuteHeads} heads`,
        {
          file: this.file,
        },
      );
    }
    return new Tensor(
      view.type,
      view.shape,
      permuteHeadRows(view.data, rows, view.rowBytes, e.permuteHeads),
      name,
    );
  }
}

/** Opens a HuggingFace model folder for running or converting. */
export function openHFModel(dir: string, options: OpenHFModelOptions = {}): HFModel {
  const read = options.readFile;
  const configPath = join(dir, "config.json");
  if (!existsSync(configPath))
    throw new RyzansteinError("MODEL_NOT_FOUND", "no config.json in the folder", { file: dir });
  const config = readJson(configPath, "config.json") as HFConfig;
  const archName = Array.isArray(config.architectures) ? String(config.architectures[0]) : undefined;
  const architecture = archName ? HF_ARCHITECTURES[archName] : undefined;
  if (!architecture) {
    throw new RyzansteinError(
      "UNSUPPORTED_ARCHITECTURE",
      `config.json: architecture ${JSON.stringify(archName ?? null)} is not supported (supported: ${Object.keys(HF_ARCHITECTURES).join(", ")})`,
      { file: configPath },
    );
  }
  const writeMetadata = architecture.metadata(config, configPath);

  const tokenizerPath = join(dir, "tokenizer.json");
  if (!existsSync(tokenizerPath)) {
    throw new RyzansteinError(
      "MISSING_METADATA",
      "tokenizer.json is missing (a sentencepiece tokenizer.model alone is not supported)",
      {
        file: dir,
      },
    );
  }
  const tokenizerConfigPath = join(dir, "tokenizer_config.json");
  const tokenizerConfig = existsSync(tokenizerConfigPath)
    ? (readJson(tokenizerConfigPath, "tokenizer_config.json") as HFTokenizerConfig)
    : {};
  try {
    Object.assign(
      writeMetadata,
      ggufMetadataFromHFTokenizer(readJson(tokenizerPath, "tokenizer.json"), tokenizerConfig),
    );
  } catch (e) {
    if (e instanceof RyzansteinError) throw e;
    throw new RyzansteinError("BAD_METADATA", `tokenizer.json: ${(e as Error).message}`, {
      file: tokenizerPath,
      cause: e,
    });
  }

  const files = safetensorsFiles(dir);
  if (files.length === 0)
    throw new RyzansteinError("MODEL_NOT_FOUND", "no *.safetensors files in the folder", { file: dir });
  const entries = new Map<string, Entry>();
  for (const path of files) {
    const shard = read ? parseSafetensors(read(path), { file: path }) : openSafetensorsLazy(path);
    for (const t of shard.tensors) {
      const mapping = architecture.mapTensor(t.name, config);
      if (!mapping) continue;
      const tensor = shard.tensor(t.name); // validates the dtype
      const expected = architecture.expectedShape(mapping.gguf, config);
      if (expected && expected.shape.join(",") !== tensor.shape.join(",")) {
        throw new RyzansteinError(
          "SHAPE_MISMATCH",
          `${t.name} (${mapping.gguf}) has shape [${tensor.shape}], but config.json (${expected.keys}) implies [${expected.shape}]`,
          { file: path },
        );
      }
      // Offset norms are decoded to F32 with the offset added.
      const type = mapping.normOffset !== undefined ? GGMLType.F32 : tensor.type;
      entries.set(mapping.gguf, {
        info: {
          name: mapping.gguf,
          type,
          shape: [...tensor.shape],
          byteLength: Tensor.byteSize(type, tensor.shape),
        },
        shard,
        hfName: t.name,
        permuteHeads: mapping.permuteHeads,
        normOffset: mapping.normOffset,
      });
    }
  }
  for (const extra of architecture.extraTensors?.(config) ?? []) {
    entries.set(extra.name, {
      info: {
        name: extra.name,
        type: GGMLType.F32,
        shape: [extra.values.length],
        byteLength: extra.values.byteLength,
      },
      made: extra.values,
      shard: undefined,
      hfName: extra.name,
    });
  }
  if (!entries.has("token_embd.weight")) {
    throw new RyzansteinError("MISSING_METADATA", "the safetensors files have no model.embed_tokens.weight", {
      file: dir,
    });
  }
  return new HFModel({ dir, config, architecture, writeMetadata, entries });
}
