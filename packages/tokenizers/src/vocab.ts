/**
 * Vocabulary loading from GGUF `tokenizer.ggml.*` metadata (internal), following llama.cpp's
 * `llama_vocab::impl::load`: token attributes, special token ids and their defaults, EOG detection.
 */
import { TokenizerError } from "./errors.js";
import { lookupPreTokenizer, type PreTokenizerSpec } from "./pre-tokenizers.js";
import { type TokenizerModel, TokenType } from "./types.js";

/** Token attribute bits, as llama.cpp's `llama_token_attr`. */
export const Attr = {
  Undefined: 0,
  Unknown: 1 << 0,
  Unused: 1 << 1,
  Normal: 1 << 2,
  Control: 1 << 3,
  UserDefined: 1 << 4,
  Byte: 1 << 5,
} as const;

/** Everything the tokenizers need, resolved from metadata. */
export interface Vocab {
  model: TokenizerModel;
  pre: PreTokenizerSpec | null;
  tokens: string[];
  scores: Float32Array;
  attrs: Uint8Array;
  textToId: Map<string, number>;
  /** merge "left right" → rank (gpt2 only) */
  bpeRanks: Map<string, number>;
  bosId: number | null;
  eosId: number | null;
  eotId: number | null;
  eomId: number | null;
  unkId: number | null;
  sepId: number | null;
  padId: number | null;
  addBos: boolean;
  addEos: boolean;
  addSpacePrefix: boolean;
  cleanSpaces: boolean;
  eog: Set<number>;
  /** control / user-defined / unknown token ids, longest text (in UTF-8 bytes) first */
  specialTokens: number[];
}

const K = "tokenizer.ggml.";

function isArrayLike(v: unknown): v is ArrayLike<unknown> {
  return (
    Array.isArray(v) ||
    (ArrayBuffer.isView(v) && !(v instanceof DataView)) ||
    (typeof v === "object" && v !== null && typeof (v as { length?: unknown }).length === "number")
  );
}

function getString(meta: Record<string, unknown>, key: string): string | undefined {
  const v = meta[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string")
    throw new TokenizerError("BAD_METADATA", `${key} must be a string, got ${typeof v}`);
  return v;
}

function getBool(meta: Record<string, unknown>, key: string): boolean | undefined {
  const v = meta[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v === "boolean") return v;
  if (typeof v === "number" || typeof v === "bigint") return v !== 0 && v !== 0n;
  throw new TokenizerError("BAD_METADATA", `${key} must be a boolean, got ${typeof v}`);
}

function getInt(meta: Record<string, unknown>, key: string): number | undefined {
  const v = meta[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v === "bigint") return Number(v);
  if (typeof v === "number" && Number.isInteger(v)) return v;
  throw new TokenizerError("BAD_METADATA", `${key} must be an integer, got ${String(v)}`);
}

function getNumberArray(
  meta: Record<string, unknown>,
  key: string,
  n: number,
): ArrayLike<unknown> | undefined {
  const v = meta[key];
  if (v === undefined || v === null) return undefined;
  if (!isArrayLike(v) || typeof v === "string")
    throw new TokenizerError("BAD_METADATA", `${key} must be an array`);
  if (v.length < n) {
    throw new TokenizerError(
      "BAD_METADATA",
      `${key} has ${v.length} entries but the vocabulary has ${n} tokens`,
    );
  }
  return v;
}

function typeToAttr(t: number): number {
  switch (t) {
    case TokenType.Normal:
      return Attr.Normal;
    case TokenType.Unknown:
      return Attr.Unknown;
    case TokenType.Control:
      return Attr.Control;
    case TokenType.UserDefined:
      return Attr.UserDefined;
    case TokenType.Unused:
      return Attr.Unused;
    case TokenType.Byte:
      return Attr.Byte;
    default:
      return Attr.Undefined;
  }
}

const EOT_TEXTS = new Set([
  "<|eot_id|>",
  "<|im_end|>",
  "<|end|>",
  "<end_of_turn>",
  "<|endoftext|>",
  "<|end_of_text|>",
  "<EOT>",
  "_<EOT>",
  "[EOT]",
  "<｜end▁of▁sentence｜>",
  "<end_of_utterance>",
]);
const EOG_TEXTS = new Set([
  "<|eot_id|>",
  "<|im_end|>",
  "<|end|>",
  "<|return|>",
  "<|call|>",
  "<|flush|>",
  "<|calls|>",
  "<end_of_turn>",
  "<|endoftext|>",
  "</s>",
  "<|eom_id|>",
  "<EOT>",
  "_<EOT>",
  "[EOT]",
  "[EOS]",
  "<|end_of_text|>",
  "<end_of_utterance>",
  "<eos>",
  "<turn|>",
  "<|tool_response>",
  "<｜end▁of▁sentence｜>",
  "[e~[",
]);
const FIM_PAD_TEXTS = new Set(["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"]);
const FIM_REP_TEXTS = new Set(["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"]);
const FIM_SEP_TEXTS = new Set(["<|file_sep|>"]);

const utf8 = new TextEncoder();

/** Build a {@link Vocab} from GGUF metadata; throws {@link TokenizerError} on bad input. */
export function loadVocab(meta: Record<string, unknown>): Vocab {
  if (typeof meta !== "object" || meta === null) {
    throw new TokenizerError("BAD_METADATA", "metadata must be an object of GGUF key/values");
  }
  const modelName = getString(meta, `${K}model`);
  if (modelName === undefined) throw new TokenizerError("MISSING_METADATA", `${K}model is missing`);
  if (modelName !== "llama" && modelName !== "gpt2") {
    throw new TokenizerError(
      "UNSUPPORTED_TOKENIZER",
      `tokenizer model '${modelName}' is not supported (supported: 'llama' SentencePiece BPE, 'gpt2' byte-level BPE)`,
    );
  }
  const model: TokenizerModel = modelName;

  // --- tokens, scores, types
  const rawTokens = meta[`${K}tokens`];
  if (rawTokens === undefined || rawTokens === null)
    throw new TokenizerError("MISSING_METADATA", `${K}tokens is missing`);
  if (!isArrayLike(rawTokens) || typeof rawTokens === "string") {
    throw new TokenizerError("BAD_METADATA", `${K}tokens must be an array of strings`);
  }
  const n = rawTokens.length;
  if (n === 0) throw new TokenizerError("BAD_METADATA", `${K}tokens is empty`);
  const tokens: string[] = new Array(n);
  const textToId = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const raw = rawTokens[i];
    if (typeof raw !== "string") throw new TokenizerError("BAD_METADATA", `${K}tokens[${i}] is not a string`);
    const t = raw.length === 0 ? `[EMPTY_${i}]` : raw;
    const prev = textToId.get(t);
    if (prev !== undefined) {
      throw new TokenizerError(
        "BAD_METADATA",
        `duplicate token in vocabulary: '${t}' has ids ${prev} and ${i}`,
      );
    }
    textToId.set(t, i);
    tokens[i] = t;
  }
  const scores = new Float32Array(n);
  const rawScores = getNumberArray(meta, `${K}scores`, n);
  if (rawScores) for (let i = 0; i < n; i++) scores[i] = Number(rawScores[i]);
  const attrs = new Uint8Array(n).fill(Attr.Normal);
  const rawTypes = getNumberArray(meta, `${K}token_type`, n);
  if (rawTypes) for (let i = 0; i < n; i++) attrs[i] = typeToAttr(Number(rawTypes[i]));

  // --- model defaults (llama.cpp load())
  let pre: PreTokenizerSpec | null = null;
  const bpeRanks = new Map<string, number>();
  let ids: Record<"bos" | "eos" | "unk" | "sep" | "pad" | "mask", number | null>;
  let addBos: boolean;
  let addEos = false;
  let addSpacePrefix: boolean;
  let cleanSpaces: boolean;
  if (model === "llama") {
    ids = { bos: 1, eos: 2, unk: 0, sep: null, pad: null, mask: null };
    addBos = true;
    addSpacePrefix = true;
    cleanSpaces = false;
  } else {
    const preName = getString(meta, `${K}pre`) ?? "default";
    const spec = lookupPreTokenizer(preName);
    if (!spec) {
      throw new TokenizerError(
        "UNSUPPORTED_PRE_TOKENIZER",
        `unknown pre-tokenizer type '${preName}' (${K}pre); see PRE_TOKENIZERS for the supported names`,
      );
    }
    pre = spec;
    const merges = meta[`${K}merges`];
    if (merges === undefined || merges === null)
      throw new TokenizerError("MISSING_METADATA", `${K}merges is missing (required for gpt2 tokenizers)`);
    if (!isArrayLike(merges) || typeof merges === "string")
      throw new TokenizerError("BAD_METADATA", `${K}merges must be an array of strings`);
    for (let i = 0; i < merges.length; i++) {
      const m = merges[i];
      if (typeof m !== "string") throw new TokenizerError("BAD_METADATA", `${K}merges[${i}] is not a string`);
      const pos = m.indexOf(" ", 1);
      if (pos < 0)
        throw new TokenizerError("BAD_METADATA", `${K}merges[${i}] '${m}' is not of the form 'left right'`);
      const left = m.slice(0, pos);
      const right = m.slice(pos + 1);
      if (!textToId.has(left) || !textToId.has(right)) {
        throw new TokenizerError(
          "BAD_METADATA",
          `${K}merges[${i}] '${m}' references a token that is not in the vocabulary`,
        );
      }
      const key = `${left} ${right}`;
      if (!bpeRanks.has(key)) bpeRanks.set(key, i);
    }
    ids = { bos: 11, eos: 11, unk: null, sep: null, pad: null, mask: null };
    addBos = spec.addBos;
    addSpacePrefix = false;
    cleanSpaces = spec.cleanSpaces;
  }
  addSpacePrefix = getBool(meta, `${K}add_space_prefix`) ?? addSpacePrefix;

  // --- special token ids: defaults outside the vocabulary are disabled, bad overrides are ignored
  const readId = (def: number | null, ...keys: string[]): number | null => {
    let id = def !== null && def >= n ? null : def;
    for (const key of keys) {
      const v = getInt(meta, K + key);
      if (v === undefined) continue;
      if (v >= 0 && v < n) id = v;
      break;
    }
    return id;
  };
  const bosId = readId(ids.bos, "bos_token_id");
  const eosId = readId(ids.eos, "eos_token_id");
  let eotId = readId(null, "eot_token_id");
  let eomId = readId(null, "eom_token_id");
  const unkId = readId(ids.unk, "unknown_token_id");
  const sepId = readId(ids.sep, "seperator_token_id", "separator_token_id");
  const padId = readId(ids.pad, "padding_token_id");
  let fimPad = readId(null, "fim_pad_token_id");
  let fimRep = readId(null, "fim_rep_token_id");
  let fimSep = readId(null, "fim_sep_token_id");

  addBos = getBool(meta, `${K}add_bos_token`) ?? addBos;
  addEos = getBool(meta, `${K}add_eos_token`) ?? addEos;
  if (addBos && bosId === null)
    throw new TokenizerError("BAD_METADATA", `${K}add_bos_token is true, but ${K}bos_token_id is not set`);
  if (addEos && eosId === null)
    throw new TokenizerError("BAD_METADATA", `${K}add_eos_token is true, but ${K}eos_token_id is not set`);

  // --- auto-detect special tokens by text (llama.cpp workaround), marking them as control
  const markControl = (id: number) => {
    attrs[id] |= Attr.Control;
  };
  for (let id = 0; id < n; id++) {
    const t = tokens[id];
    if (eotId === null && EOT_TEXTS.has(t)) {
      eotId = id;
      markControl(id);
    }
    if (eomId === null && t === "<|eom_id|>") {
      eomId = id;
      markControl(id);
    }
    if (fimPad === null && FIM_PAD_TEXTS.has(t)) {
      fimPad = id;
      markControl(id);
    }
    if (fimRep === null && FIM_REP_TEXTS.has(t)) {
      fimRep = id;
      markControl(id);
    }
    if (fimSep === null && FIM_SEP_TEXTS.has(t)) {
      fimSep = id;
      markControl(id);
    }
  }
  for (let id = 0; id < n; id++) {
    if (attrs[id] & Attr.Control && tokens[id].includes("unused")) attrs[id] |= Attr.Unused;
  }
  const eog = new Set<number>();
  for (const id of [fimPad, fimRep, fimSep]) if (id !== null) eog.add(id);
  for (let id = 0; id < n; id++) {
    if (EOG_TEXTS.has(tokens[id])) {
      eog.add(id);
      markControl(id);
    }
  }
  for (const id of [eosId, eotId, eomId]) if (id !== null) eog.add(id);

  // --- special token cache (for parseSpecial partitioning), longest first
  const specialTokens: number[] = [];
  const byteLen = new Map<number, number>();
  for (let id = 0; id < n; id++) {
    if (attrs[id] & (Attr.Control | Attr.UserDefined | Attr.Unknown)) {
      specialTokens.push(id);
      byteLen.set(id, utf8.encode(tokens[id]).length);
    }
  }
  specialTokens.sort((a, b) => (byteLen.get(b) as number) - (byteLen.get(a) as number) || a - b);

  return {
    model,
    pre,
    tokens,
    scores,
    attrs,
    textToId,
    bpeRanks,
    bosId,
    eosId,
    eotId,
    eomId,
    unkId,
    sepId,
    padId,
    addBos,
    addEos,
    addSpacePrefix,
    cleanSpaces,
    eog,
    specialTokens,
  };
}
