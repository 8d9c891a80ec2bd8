import { describe, expect, it } from "vitest";
import { lookupPreTokenizer, PRE_TOKENIZERS, preTokenize } from "../src/index.js";

// Expected splits are derived by hand from llama.cpp's regex lists and its custom gpt2/llama3
// splitters (unicode.cpp): each regex splits every piece into matches and in-between text.
const split = (name: string, text: string) => preTokenize(text, name);

describe("pre-tokenizer registry", () => {
  it.each([
    ["default", "default"],
    ["gpt-2", "gpt2"],
    ["mpt", "gpt2"],
    ["olmo", "gpt2"],
    ["llama3", "llama3"],
    ["llama-bpe", "llama3"],
    ["llama-v3", "llama3"],
    ["qwen2", "qwen2"],
    ["deepseek-r1-qwen", "qwen2"],
    ["deepseek-llm", "deepseek-llm"],
    ["deepseek-coder", "deepseek-coder"],
    ["starcoder", "starcoder"],
    ["refact", "starcoder"],
    ["smollm", "smollm"],
    ["command-r", "smollm"],
    ["falcon", "falcon"],
    ["tekken", "tekken"],
    ["gpt-4o", "gpt-4o"],
    ["dbrx", "dbrx"],
  ])("%s → %s", (alias, canonical) => {
    expect(lookupPreTokenizer(alias)?.name).toBe(canonical);
  });

  it("returns undefined for unknown names", () => {
    expect(lookupPreTokenizer("no-such-pre")).toBeUndefined();
  });

  it("llama.cpp flags travel with the entries", () => {
    expect(PRE_TOKENIZERS.llama3.ignoreMerges).toBe(true);
    expect(PRE_TOKENIZERS.llama3.addBos).toBe(true);
    expect(PRE_TOKENIZERS.gpt2.cleanSpaces).toBe(true);
    expect(PRE_TOKENIZERS.qwen2.cleanSpaces).toBe(false);
    expect(PRE_TOKENIZERS.smollm.regexes).toEqual(PRE_TOKENIZERS.starcoder.regexes);
  });

  const tricky =
    "Hello world's 'RE 1234567  x\n\n\t y ¿Qué? 你好世界 こんにちは 🦙🦙 HelloWorld DON'T\r\n  end  ";
  it.each(Object.keys(PRE_TOKENIZERS))("%s compiles and its pieces concatenate back to the input", (name) => {
    const pieces = split(name, tricky);
    expect(pieces.join("")).toBe(tricky);
    expect(pieces.every((p) => p.length > 0)).toBe(true);
  });
});

describe("gpt2", () => {
  it("splits contractions, words, numbers and trailing-space runs", () => {
    expect(split("gpt-2", "Hello world's 123   abc\n\n  x")).toEqual([
      "Hello",
      " world",
      "'s",
      " 123",
      "  ",
      " abc",
      "\n\n ",
      " x",
    ]);
  });
  it("contractions are case-sensitive", () => {
    expect(split("gpt-2", "I'M you're")).toEqual(["I", "'", "M", " you", "'re"]);
  });
  it("keeps CJK runs and emojis together", () => {
    expect(split("gpt-2", "你好世界 こんにちは 🦙🦙!")).toEqual(["你好世界", " こんにちは", " 🦙🦙!"]);
  });
  it("uses the Unicode White_Space set (U+0085 is whitespace, as in llama.cpp)", () => {
    expect(split("gpt-2", "a\u0085\u0085b")).toEqual(["a", "\u0085", "\u0085", "b"]);
  });
  it("whitespace at the end is one piece", () => {
    expect(split("gpt-2", "a   ")).toEqual(["a", "   "]);
    expect(split("gpt-2", "   ")).toEqual(["   "]);
  });
});

describe("llama3", () => {
  it("splits digits in groups of 1-3 and contractions case-insensitively", () => {
    expect(split("llama3", "I'm 12345 DON'T\n\n  go")).toEqual([
      "I",
      "'m",
      " ",
      "123",
      "45",
      " DON",
      "'T",
      "\n\n",
      " ",
      " go",
    ]);
  });
  it("attaches one leading non-letter to a word and newlines to punctuation", () => {
    expect(split("llama3", "(hello) world!\n\nok")).toEqual(["(hello", ")", " world", "!\n\n", "ok"]);
  });
  it("keeps a whitespace run that ends in newlines together", () => {
    expect(split("llama3", "a \t\n b")).toEqual(["a", " \t\n", " b"]);
  });
  it("handles emojis and CJK", () => {
    expect(split("llama3", "🦙 你好 1000000")).toEqual(["🦙", " 你好", " ", "100", "000", "0"]);
  });
});

describe("qwen2", () => {
  it("splits every digit", () => {
    expect(split("qwen2", "x 2024!")).toEqual(["x", " ", "2", "0", "2", "4", "!"]);
  });
});

describe("starcoder / refact / smollm", () => {
  it("isolates digits before the gpt2 regex", () => {
    expect(split("starcoder", "abc123 x 45")).toEqual(["abc", "1", "2", "3", " x", " ", "4", "5"]);
    expect(split("refact", "v2")).toEqual(["v", "2"]);
    expect(split("smollm", "v2")).toEqual(["v", "2"]);
  });
});

describe("falcon and default", () => {
  it("falcon splits punctuation runs first and numbers into threes", () => {
    expect(split("falcon", "Hello, world!! 1234567")).toEqual([
      "Hello",
      ",",
      " world",
      "!!",
      " ",
      "123",
      "456",
      "7",
    ]);
  });
  it("default behaves the same on this text", () => {
    expect(split("default", "Hello, world!! 1234567")).toEqual([
      "Hello",
      ",",
      " world",
      "!!",
      " ",
      "123",
      "456",
      "7",
    ]);
  });
});

describe("deepseek", () => {
  it("deepseek-llm splits newlines, Latin words and numbers", () => {
    expect(split("deepseek-llm", "Hello World\n123")).toEqual(["Hello", " World", "\n", "123"]);
  });
  it("deepseek-llm keeps trailing whitespace and CJK runs", () => {
    expect(split("deepseek-llm", "ok 你好  ")).toEqual(["ok", " ", "你好", "  "]);
  });
  it("deepseek-coder splits CJK from Latin and every digit", () => {
    expect(split("deepseek-coder", "你好world 123")).toEqual(["你好", "world", " ", "1", "2", "3"]);
  });
});

describe("case-aware regexes", () => {
  it("gpt-4o splits CamelCase and keeps contractions on the word", () => {
    expect(split("gpt-4o", "HelloWorld's")).toEqual(["Hello", "World's"]);
  });
  it("tekken splits CamelCase and contractions", () => {
    expect(split("tekken", "HelloWorld's")).toEqual(["Hello", "World", "'s"]);
  });
});
