/**
 * The bridge between HuggingFace `tokenizer.json` / `tokenizer_config.json` and GGUF
 * `tokenizer.ggml.*` metadata, in both directions, as llama.cpp's converter maps them. Tokenizers
 * are always built from GGUF-style metadata, so an HF folder and its GGUF export tokenize alike.
 */
import { TokenizerError } from "./errors.js";
import { lookupPreTokenizer } from "./pre-tokenizers.js";
import { createTokenizerFromGGUF } from "./tokenizer.js";
import { type Tokenizer, TokenType } from "./types.js";

/** The parts of `tokenizer_config.json` that matter here. */
export interface HFTokenizerConfig {
  bos_token?: string | { content: string } | null;
  eos_token?: string | { content: string } | null;
  unk_token?: string | { content: string } | null;
  pad_token?: string | { content: string } | null;
  add_bos_token?: boolean;
  add_eos_token?: boolean;
  chat_template?: string | Array<{ name: string; template: string }>;
  [key: string]: unknown;
}

interface HFAddedToken {
  id: number;
  content: string;
  special?: boolean;
}

interface HFTokenizerJson {
  added_tokens?: HFAddedToken[];
  normalizer?: HFNode | null;
  pre_tokenizer?: HFNode | null;
  post_processor?: HFNode | null;
  decoder?: HFNode | null;
  model?: {
    type?: string;
    vocab?: Record<string, number>;
    merges?: Array<string | [string, string]>;
    byte_fallback?: boolean;
    unk_token?: string | null;
  };
}

interface HFNode {
  type?: string;
  [key: string]: unknown;
}

/** HF pre-tokenizer split patterns and the `tokenizer.ggml.pre` names they stand for. */
const HF_SPLIT_PATTERNS: Record<string, string> = {
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+":
    "llama3",
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+":
    "qwen2",
};
const PRE_TO_HF_PATTERN = Object.fromEntries(Object.entries(HF_SPLIT_PATTERNS).map(([p, n]) => [n, p]));

function tokenContent(v: HFTokenizerConfig["bos_token"]): string | undefined {
  if (v === null || v === undefined) return undefined;
  return typeof v === "string" ? v : v.content;
}

function nodes(n: HFNode | null | undefined): HFNode[] {
  if (!n) return [];
  if (n.type === "Sequence") {
    const list = (n.pretokenizers ?? n.normalizers ?? n.decoders ?? n.processors) as HFNode[] | undefined;
    return (list ?? []).flatMap((x) => nodes(x));
  }
  return [n];
}

/** Which byte-level pre-tokenizer an HF `pre_tokenizer` describes. */
function detectPre(pre: HFNode | null | undefined): string {
  const list = nodes(pre);
  const split = list.find((n) => n.type === "Split");
  if (split) {
    const pattern = (split.pattern as { Regex?: string; String?: string } | undefined)?.Regex;
    const name = pattern ? HF_SPLIT_PATTERNS[pattern] : undefined;
    if (!name) {
      throw new TokenizerError(
        "UNSUPPORTED_PRE_TOKENIZER",
        `tokenizer.json: unrecognised pre-tokenizer split pattern ${JSON.stringify(pattern)}`,
      );
    }
    return name;
  }
  const digits = list.find((n) => n.type === "Digits");
  if (digits?.individual_digits) return "starcoder";
  if (list.some((n) => n.type === "ByteLevel")) return "gpt2";
  throw new TokenizerError(
    "UNSUPPORTED_PRE_TOKENIZER",
    "tokenizer.json: byte-level BPE without a ByteLevel pre-tokenizer",
  );
}

/**
 * Converts a HuggingFace tokenizer (`tokenizer.json`, plus `tokenizer_config.json` when present) to
 * GGUF `tokenizer.ggml.*` metadata (and `tokenizer.chat_template`). SentencePiece-style BPE with
 * byte fallback becomes `llama` (token scores from merge ranks); byte-level BPE becomes `gpt2`
 * with the pre-tokenizer named from its split pattern.
 */
export function ggufMetadataFromHFTokenizer(
  tokenizerJson: unknown,
  config: HFTokenizerConfig = {},
): Record<string, unknown> {
  const json = tokenizerJson as HFTokenizerJson;
  const model = json?.model;
  if (model?.type !== "BPE" || typeof model.vocab !== "object" || model.vocab === null) {
    throw new TokenizerError(
      "UNSUPPORTED_TOKENIZER",
      `tokenizer.json: only BPE models are supported (got ${JSON.stringify(model?.type ?? null)})`,
    );
  }
  const added = json.added_tokens ?? [];
  let size = 0;
  for (const id of Object.values(model.vocab)) size = Math.max(size, id + 1);
  for (const t of added) size = Math.max(size, t.id + 1);
  const tokens = new Array<string>(size);
  for (const [text, id] of Object.entries(model.vocab)) {
    if (!Number.isInteger(id) || id < 0)
      throw new TokenizerError("BAD_METADATA", `tokenizer.json: bad id for ${JSON.stringify(text)}`);
    tokens[id] = text;
  }
  for (const t of added) tokens[t.id] = t.content;
  for (let i = 0; i < size; i++) if (tokens[i] === undefined) tokens[i] = `[PAD${i}]`;

  const merges = (model.merges ?? []).map((m) => (Array.isArray(m) ? `${m[0]} ${m[1]}` : m));
  const spm = model.byte_fallback === true;
  const types = new Int32Array(size).fill(TokenType.Normal);
  for (let i = 0; i < size; i++) {
    if (tokens[i].startsWith("[PAD")) types[i] = TokenType.Unused;
    else if (spm && /^<0x[0-9A-F]{2}>$/.test(tokens[i])) types[i] = TokenType.Byte;
  }
  for (const t of added) types[t.id] = t.special ? TokenType.Control : TokenType.UserDefined;
  const id = (text: string | undefined): number | undefined =>
    text === undefined ? undefined : tokens.indexOf(text);
  const unk = id(tokenContent(config.unk_token) ?? model.unk_token ?? undefined);
  if (unk !== undefined && unk >= 0) types[unk] = TokenType.Unknown;

  const meta: Record<string, unknown> = {
    "tokenizer.ggml.tokens": tokens,
    "tokenizer.ggml.token_type": types,
  };
  if (spm) {
    // SentencePiece merges by the score of the merged piece: rank the pieces as the merges do.
    const scores = new Float32Array(size);
    const ranked = new Set<string>();
    merges.forEach((m, rank) => {
      const piece = m.replace(" ", "");
      if (!ranked.has(piece)) {
        ranked.add(piece);
        const pid = model.vocab?.[piece];
        if (pid !== undefined) scores[pid] = -rank - 1;
      }
    });
    meta["tokenizer.ggml.model"] = "llama";
    meta["tokenizer.ggml.scores"] = scores;
    const prepends =
      nodes(json.normalizer).some((n) => n.type === "Prepend") ||
      nodes(json.pre_tokenizer).some(
        (n) => n.type === "Metaspace" && n.prepend_scheme !== "never" && n.add_prefix_space !== false,
      );
    meta["tokenizer.ggml.add_space_prefix"] = prepends;
  } else {
    meta["tokenizer.ggml.model"] = "gpt2";
    meta["tokenizer.ggml.pre"] = detectPre(json.pre_tokenizer);
    meta["tokenizer.ggml.merges"] = merges;
  }
  const setId = (key: string, text: string | undefined) => {
    const i = id(text);
    if (i !== undefined && i >= 0) meta[`tokenizer.ggml.${key}`] = i;
  };
  setId("bos_token_id", tokenContent(config.bos_token));
  setId("eos_token_id", tokenContent(config.eos_token));
  setId("unknown_token_id", tokenContent(config.unk_token) ?? model.unk_token ?? undefined);
  setId("padding_token_id", tokenContent(config.pad_token));
  if (config.add_bos_token !== undefined) meta["tokenizer.ggml.add_bos_token"] = config.add_bos_token;
  else if (!spm)
    meta["tokenizer.ggml.add_bos_token"] = postProcessorAddsBos(
      json.post_processor,
      tokenContent(config.bos_token),
    );
  if (config.add_eos_token !== undefined) meta["tokenizer.ggml.add_eos_token"] = config.add_eos_token;
  const template = Array.isArray(config.chat_template)
    ? config.chat_template.find((t) => t.name === "default")?.template
    : config.chat_template;
  if (typeof template === "string") meta["tokenizer.chat_template"] = template;
  return meta;
}

function postProcessorAddsBos(post: HFNode | null | undefined, bos: string | undefined): boolean {
  if (!bos) return false;
  return nodes(post).some(
    (n) => n.type === "TemplateProcessing" && JSON.stringify(n.single ?? []).includes(JSON.stringify(bos)),
  );
}

/** Builds a {@link Tokenizer} from HuggingFace `tokenizer.json` and `tokenizer_config.json` contents. */
export function createTokenizerFromHF(tokenizerJson: unknown, config: HFTokenizerConfig = {}): Tokenizer {
  return createTokenizerFromGGUF(ggufMetadataFromHFTokenizer(tokenizerJson, config));
}

const asArray = (v: unknown): unknown[] =>
  Array.isArray(v) ? v : v && typeof v === "object" ? Array.from(v as ArrayLike<unknown>) : [];

/**
 * The reverse: writes GGUF tokenizer metadata as HuggingFace `tokenizer.json` and
 * `tokenizer_config.json` objects. SentencePiece vocabularies get the merges their scores imply.
 */
export function hfTokenizerFromGGUFMetadata(meta: Record<string, unknown>): {
  tokenizerJson: object;
  tokenizerConfig: HFTokenizerConfig;
} {
  const tokens = asArray(meta["tokenizer.ggml.tokens"]) as string[];
  if (tokens.length === 0) throw new TokenizerError("MISSING_METADATA", "tokenizer.ggml.tokens is missing");
  const types = asArray(meta["tokenizer.ggml.token_type"]).map(Number);
  const model = meta["tokenizer.ggml.model"];
  const vocab: Record<string, number> = {};
  const added: Array<
    HFAddedToken & { single_word: boolean; lstrip: boolean; rstrip: boolean; normalized: boolean }
  > = [];
  tokens.forEach((t, i) => {
    const type = types[i] ?? TokenType.Normal;
    if (type === TokenType.Control || type === TokenType.UserDefined || type === TokenType.Unknown) {
      added.push({
        id: i,
        content: t,
        special: type !== TokenType.UserDefined,
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: false,
      });
    }
    if (!(t in vocab)) vocab[t] = i;
  });
  const idOf = (key: string): string | null => {
    const v = meta[`tokenizer.ggml.${key}`];
    const i = typeof v === "bigint" ? Number(v) : (v as number | undefined);
    return i !== undefined && i >= 0 && i < tokens.length ? tokens[i] : null;
  };
  const config: HFTokenizerConfig = {
    bos_token: idOf("bos_token_id"),
    eos_token: idOf("eos_token_id"),
    unk_token: idOf("unknown_token_id"),
    pad_token: idOf("padding_token_id"),
  };
  if (meta["tokenizer.ggml.add_bos_token"] !== undefined)
    config.add_bos_token = Boolean(meta["tokenizer.ggml.add_bos_token"]);
  else if (model === "llama") config.add_bos_token = true;
  if (meta["tokenizer.ggml.add_eos_token"] !== undefined)
    config.add_eos_token = Boolean(meta["tokenizer.ggml.add_eos_token"]);
  if (typeof meta["tokenizer.chat_template"] === "string")
    config.chat_template = meta["tokenizer.chat_template"] as string;

  if (model === "llama") {
    const scores = asArray(meta["tokenizer.ggml.scores"]).map(Number);
    const index = new Map<string, number>();
    tokens.forEach((t, i) => {
      if ((types[i] ?? 1) === TokenType.Normal && !index.has(t)) index.set(t, i);
    });
    // Every split of a normal piece into two normal pieces is a merge, ranked by the piece's score.
    const merges: Array<{ left: string; right: string; score: number; id: number }> = [];
    for (const [piece, i] of index) {
      const chars = Array.from(piece);
      for (let k = 1; k < chars.length; k++) {
        const left = chars.slice(0, k).join("");
        const right = chars.slice(k).join("");
        if (index.has(left) && index.has(right)) merges.push({ left, right, score: scores[i] ?? 0, id: i });
      }
    }
    merges.sort((a, b) => b.score - a.score || a.id - b.id);
    const addSpacePrefix = meta["tokenizer.ggml.add_space_prefix"] !== false;
    return {
      tokenizerJson: {
        version: "1.0",
        added_tokens: added,
        normalizer: addSpacePrefix
          ? {
              type: "Sequence",
              normalizers: [
                { type: "Prepend", prepend: "▁" },
                { type: "Replace", pattern: { String: " " }, content: "▁" },
              ],
            }
          : { type: "Replace", pattern: { String: " " }, content: "▁" },
        pre_tokenizer: null,
        post_processor: null,
        decoder: {
          type: "Sequence",
          decoders: [
            { type: "Replace", pattern: { String: "▁" }, content: " " },
            { type: "ByteFallback" },
            { type: "Fuse" },
            ...(addSpacePrefix ? [{ type: "Strip", content: " ", start: 1, stop: 0 }] : []),
          ],
        },
        model: {
          type: "BPE",
          dropout: null,
          unk_token: config.unk_token ?? null,
          continuing_subword_prefix: null,
          end_of_word_suffix: null,
          fuse_unk: true,
          byte_fallback: true,
          vocab,
          merges: merges.map((m) => [m.left, m.right]),
        },
      },
      tokenizerConfig: config,
    };
  }
  if (model === "gpt2") {
    const preName = String(meta["tokenizer.ggml.pre"] ?? "gpt2");
    const pre = lookupPreTokenizer(preName)?.name ?? preName;
    const pattern = PRE_TO_HF_PATTERN[pre];
    if (!pattern && pre !== "gpt2" && pre !== "default") {
      throw new TokenizerError(
        "UNSUPPORTED_PRE_TOKENIZER",
        `cannot express pre-tokenizer ${pre} in tokenizer.json yet`,
      );
    }
    const byteLevel = { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: !pattern };
    return {
      tokenizerJson: {
        version: "1.0",
        added_tokens: added,
        normalizer: null,
        pre_tokenizer: pattern
          ? {
              type: "Sequence",
              pretokenizers: [
                { type: "Split", pattern: { Regex: pattern }, behavior: "Isolated", invert: false },
                byteLevel,
              ],
            }
          : byteLevel,
        post_processor: { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
        decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
        model: {
          type: "BPE",
          dropout: null,
          unk_token: null,
          continuing_subword_prefix: "",
          end_of_word_suffix: "",
          fuse_unk: false,
          byte_fallback: false,
          vocab,
          merges: asArray(meta["tokenizer.ggml.merges"]).map((m) => String(m).split(" ") as [string, string]),
        },
      },
      tokenizerConfig: config,
    };
  }
  throw new TokenizerError(
    "UNSUPPORTED_TOKENIZER",
    `cannot write tokenizer model ${String(model)} as tokenizer.json`,
  );
}
