/**
 * Byte-level BPE pre-tokenizers: regex sets translated from llama.cpp's `llm_tokenizer_bpe`
 * (src/llama-vocab.cpp), one registry entry per set, with the `tokenizer.ggml.pre` names that
 * select it.
 *
 * Semantics follow llama.cpp's `unicode_regex_split`: the regexes of a set are applied in order;
 * each one splits every piece produced so far into its matches and the text between matches (which
 * is kept as pieces too). JS regexes run with the `u` flag; `\s`/`\S` are rewritten to
 * `\p{White_Space}`/`\P{White_Space}`, the whitespace set llama.cpp's Unicode tables use.
 */

/** One pre-tokenizer: a regex set plus the vocabulary flags llama.cpp sets with it. */
export interface PreTokenizerSpec {
  /** Canonical name (a registry key). */
  readonly name: string;
  /** `tokenizer.ggml.pre` values that select this entry (including the canonical name). */
  readonly aliases: readonly string[];
  /** Regex sources in llama.cpp's dialect (`\s`, `\p{L}`, ...), applied in order. */
  readonly regexes: readonly string[];
  /** Whether decoding applies llama.cpp's `clean_spaces` by default. */
  readonly cleanSpaces: boolean;
  /** If a whole pre-token is in the vocabulary, emit it without running merges (llama3 style). */
  readonly ignoreMerges: boolean;
  /** Default for `add_bos_token` when the key is absent. */
  readonly addBos: boolean;
}

const CONTRACTIONS_CI = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])";
const GPT2 = String.raw`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`;
const LLAMA3 = String.raw`${CONTRACTIONS_CI}|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;
const QWEN2 = String.raw`${CONTRACTIONS_CI}|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;
// cased letters (Unicode LC), written as escapes so no editor or tool can normalize them
const DEEPSEEK_LLM_LETTERS =
  "\\s?[A-Za-z\u{B5}\u{C0}-\u{D6}\u{D8}-\u{F6}\u{F8}-\u{1BA}\u{1BC}-\u{1BF}\u{1C4}-\u{293}\u{295}-\u{2AF}\u{370}-\u{373}\u{376}\u{377}\u{37B}-\u{37D}\u{37F}\u{386}\u{388}-\u{38A}\u{38C}\u{38E}-\u{3A1}\u{3A3}-\u{3F5}\u{3F7}-\u{481}\u{48A}-\u{52F}\u{531}-\u{556}\u{10A0}-\u{10C5}\u{13A0}-\u{13F5}\u{13F8}-\u{13FD}\u{1C90}-\u{1CBA}\u{1CBD}-\u{1CBF}\u{1D00}-\u{1D2B}\u{1D6B}-\u{1D77}\u{1D79}-\u{1D9A}\u{1E00}-\u{1F15}\u{1F18}-\u{1F1D}\u{1F20}-\u{1F45}\u{1F48}-\u{1F4D}\u{1F50}-\u{1F57}\u{1F59}\u{1F5B}\u{1F5D}\u{1F5F}-\u{1F7D}\u{1F80}-\u{1FB4}\u{1FB6}-\u{1FBC}\u{1FBE}\u{1FC2}-\u{1FC4}\u{1FC6}-\u{1FCC}\u{1FD0}-\u{1FD3}\u{1FD6}-\u{1FDB}\u{1FE0}-\u{1FEC}\u{1FF2}-\u{1FF4}\u{1FF6}-\u{1FFC}\u{2102}\u{2107}\u{210A}-\u{2113}\u{2115}\u{2119}-\u{211D}\u{2124}\u{2126}\u{2128}\u{212A}-\u{212D}\u{212F}-\u{2134}\u{2139}\u{213C}-\u{213F}\u{2145}-\u{2149}\u{214E}\u{2183}\u{2184}\u{2C00}-\u{2C7B}\u{2C7E}-\u{2CE4}\u{2CEB}-\u{2CEE}\u{2CF2}\u{2CF3}\u{A640}-\u{A66D}\u{A680}-\u{A69B}\u{A722}-\u{A76F}\u{A771}-\u{A787}\u{A78B}-\u{A78E}\u{AB70}-\u{ABBF}\u{FB00}-\u{FB06}\u{FB13}-\u{FB17}\u{FF21}-\u{FF3A}\u{FF41}-\u{FF5A}\u{10400}-\u{1044F}\u{104B0}-\u{104D3}\u{104D8}-\u{104FB}\u{10C80}-\u{10CB2}\u{10CC0}-\u{10CF2}\u{118A0}-\u{118DF}\u{1E900}-\u{1E943}]+";
const CJK_HANGUL = "[一-龥ࠀ-一가-퟿]+";
const UPPER = String.raw`((?=[\p{L}])([^a-z]))`;
const LOWER = String.raw`((?=[\p{L}])([^A-Z]))`;

type Entry = Omit<PreTokenizerSpec, "cleanSpaces" | "ignoreMerges" | "addBos"> &
  Partial<Pick<PreTokenizerSpec, "cleanSpaces" | "ignoreMerges" | "addBos">>;

const ENTRIES: Entry[] = [
  {
    name: "default",
    aliases: ["default"],
    regexes: [String.raw`[\p{P}\$\+<=>\^~\|]+`, GPT2, String.raw`\p{N}+`, "[0-9][0-9][0-9]"],
  },
  {
    name: "gpt2",
    aliases: [
      "gpt-2",
      "phi-2",
      "jina-es",
      "jina-de",
      "gigachat",
      "jina-v2-es",
      "jina-v2-de",
      "a.x-4.0",
      "mellum",
      "modern-bert",
      "exaone4",
      "jina-v1-en",
      "jina-v2-code",
      "roberta-bpe",
      "mpt",
      "olmo",
      "jais",
      "trillion",
      "granite-docling",
    ],
    regexes: [GPT2],
  },
  {
    name: "llama3",
    aliases: [
      "llama3",
      "llama-v3",
      "llama-bpe",
      "falcon3",
      "falcon-h1",
      "pixtral",
      "midm-2.0",
      "lfm2",
      "jina-v5-nano",
    ],
    regexes: [LLAMA3],
    ignoreMerges: true,
    addBos: true,
  },
  // dbrx / smaug use the llama3 regex without llama3's ignore_merges / add_bos tweaks
  { name: "dbrx", aliases: ["dbrx", "smaug-bpe"], regexes: [LLAMA3] },
  { name: "chatglm4", aliases: ["glm4", "chatglm-bpe"], regexes: [LLAMA3] },
  {
    name: "deepseek-llm",
    aliases: ["deepseek-llm"],
    regexes: [
      "[\r\n]",
      DEEPSEEK_LLM_LETTERS,
      "\\s?[!-/:-~！-／：-～‘-‟　-。]+",
      "\\s+$",
      CJK_HANGUL,
      String.raw`\p{N}+`,
    ],
    cleanSpaces: false,
  },
  {
    name: "deepseek-coder",
    aliases: ["deepseek-coder"],
    regexes: ["[\r\n]", String.raw`\s?\p{L}+`, String.raw`\s?\p{P}+`, CJK_HANGUL, String.raw`\p{N}`],
    cleanSpaces: false,
  },
  {
    name: "deepseek-v3",
    aliases: ["deepseek-v3", "hunyuan-dense", "joyai-llm", "hy_v4"],
    regexes: [
      String.raw`\p{N}{1,3}`,
      "[一-龥぀-ゟ゠-ヿ]+",
      String.raw`[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_` +
        "`" +
        String.raw`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`,
    ],
    cleanSpaces: false,
  },
  {
    name: "falcon",
    aliases: ["falcon"],
    regexes: [String.raw`[\p{P}\$\+<=>\^~\|` + "`" + "]+", GPT2, "[0-9][0-9][0-9]"],
  },
  {
    name: "starcoder",
    aliases: ["starcoder", "refact", "codeshell", "exaone", "minerva-7b", "mellum2"],
    regexes: [String.raw`\p{N}`, GPT2],
  },
  // same regexes as starcoder, but llama.cpp turns clean_spaces off for these
  {
    name: "smollm",
    aliases: ["smollm", "command-r"],
    regexes: [String.raw`\p{N}`, GPT2],
    cleanSpaces: false,
  },
  {
    name: "qwen2",
    aliases: ["qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "hunyuan", "solar-open"],
    regexes: [QWEN2],
    cleanSpaces: false,
  },
  // llama.cpp keeps clean_spaces on for these qwen2-regex vocabularies
  { name: "stablelm2", aliases: ["stablelm2", "megrez"], regexes: [QWEN2] },
  {
    name: "qwen35",
    aliases: ["qwen35"],
    regexes: [
      String.raw`${CONTRACTIONS_CI}|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`,
    ],
    cleanSpaces: false,
  },
  { name: "poro", aliases: ["poro-chat"], regexes: [" ?[^(\\s|.,!?…。，、।۔،)]+"], cleanSpaces: false },
  { name: "bloom", aliases: ["bloom", "gpt3-finnish"], regexes: [" ?[^(\\s|.,!?…。，、।۔،)]+"] },
  {
    name: "viking",
    aliases: ["viking"],
    regexes: [" ?[^(\\s|.,!?…。，、।۔،)]+", String.raw`\p{N}`],
    cleanSpaces: false,
  },
  {
    name: "tekken",
    aliases: ["tekken"],
    regexes: [
      String.raw`[^\r\n\p{L}\p{N}]?${UPPER}*${LOWER}+|[^\r\n\p{L}\p{N}]?${UPPER}+${LOWER}*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`,
    ],
    cleanSpaces: false,
    ignoreMerges: true,
    addBos: true,
  },
  {
    name: "gpt-4o",
    aliases: ["gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"],
    regexes: [
      String.raw`[^\r\n\p{L}\p{N}]?${UPPER}*${LOWER}+${CONTRACTIONS_CI}?|[^\r\n\p{L}\p{N}]?${UPPER}+${LOWER}*${CONTRACTIONS_CI}?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`,
    ],
    cleanSpaces: false,
  },
  {
    name: "seed-coder",
    aliases: ["seed-coder"],
    regexes: [
      String.raw`${CONTRACTIONS_CI}|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+`,
    ],
    cleanSpaces: false,
  },
  {
    name: "bailingmoe",
    aliases: ["bailingmoe", "bailingmoe2", "llada-moe"],
    regexes: [
      String.raw`'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+`,
    ],
    cleanSpaces: false,
  },
  { name: "grok-2", aliases: ["grok-2"], regexes: [QWEN2], cleanSpaces: false },
  {
    name: "ufakzeka",
    aliases: ["ufakzeka"],
    regexes: [String.raw`[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`],
    cleanSpaces: false,
  },
];

/** Rewrite llama.cpp regex dialect to a JS `u`-flag regex source (`\s` → `\p{White_Space}`). */
export function toJsRegexSource(src: string): string {
  let out = "";
  for (let i = 0; i < src.length; i++) {
    const c = src[i];
    if (c === "\\" && i + 1 < src.length) {
      const n = src[i + 1];
      if (n === "s") out += String.raw`\p{White_Space}`;
      else if (n === "S") out += String.raw`\P{White_Space}`;
      else out += c + n;
      i++;
    } else {
      out += c;
    }
  }
  return out;
}

function freeze(e: Entry): PreTokenizerSpec {
  const aliases = e.aliases.includes(e.name) ? e.aliases : [e.name, ...e.aliases];
  return Object.freeze({
    name: e.name,
    aliases: Object.freeze([...aliases]),
    regexes: Object.freeze([...e.regexes]),
    cleanSpaces: e.cleanSpaces ?? true,
    ignoreMerges: e.ignoreMerges ?? false,
    addBos: e.addBos ?? false,
  });
}

/** Every pre-tokenizer, keyed by canonical name. */
export const PRE_TOKENIZERS: Readonly<Record<string, PreTokenizerSpec>> = Object.freeze(
  Object.fromEntries(ENTRIES.map((e) => [e.name, freeze(e)])),
);

const BY_ALIAS = new Map<string, PreTokenizerSpec>();
for (const spec of Object.values(PRE_TOKENIZERS)) {
  for (const a of spec.aliases) BY_ALIAS.set(a, spec);
}

/**
 * Find the pre-tokenizer selected by a `tokenizer.ggml.pre` value (canonical names work too).
 * Returns undefined for unknown names.
 */
export function lookupPreTokenizer(name: string): PreTokenizerSpec | undefined {
  return BY_ALIAS.get(name) ?? PRE_TOKENIZERS[name];
}

const compiled = new Map<string, RegExp[]>();

function compile(spec: PreTokenizerSpec): RegExp[] {
  let r = compiled.get(spec.name);
  if (!r) {
    r = spec.regexes.map((s) => new RegExp(toJsRegexSource(s), "gu"));
    compiled.set(spec.name, r);
  }
  return r;
}

/**
 * Split text into pre-tokens (words) with a pre-tokenizer, as llama.cpp's `unicode_regex_split`
 * does before byte-level encoding. Concatenating the result gives back `text`.
 *
 * @param text - input text (no special tokens)
 * @param spec - a registry entry or a `tokenizer.ggml.pre` name
 */
export function preTokenize(text: string, spec: PreTokenizerSpec | string): string[] {
  const s = typeof spec === "string" ? lookupPreTokenizer(spec) : spec;
  if (!s) throw new Error(`unknown pre-tokenizer '${String(spec)}'`);
  let pieces = text.length > 0 ? [text] : [];
  for (const re of compile(s)) {
    const next: string[] = [];
    for (const piece of pieces) {
      re.lastIndex = 0;
      let last = 0;
      for (;;) {
        const m = re.exec(piece);
        if (m === null) break;
        const start = m.index;
        const len = m[0].length;
        if (len === 0) {
          // zero-length match: move on by one code point, like a regex iterator does
          re.lastIndex = start + ((piece.codePointAt(start) ?? 0) > 0xffff ? 2 : 1);
          if (re.lastIndex > piece.length) break;
          continue;
        }
        if (start > last) next.push(piece.slice(last, start));
        next.push(m[0]);
        last = start + len;
      }
      if (last < piece.length) next.push(piece.slice(last));
    }
    pieces = next;
  }
  return pieces;
}
