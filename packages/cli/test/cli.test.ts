import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fixturesDir } from "@ryzanstein/test-support";
import { afterAll, describe, expect, it } from "vitest";

const bin = resolve(__dirname, "../dist/bin.js");
const stories = join(fixturesDir(), "models/stories260K.gguf");
const golden = readFileSync(
  join(fixturesDir(), "models/stories260K.golden.greedy-t0-n64-prompt-Once_upon_a_time.txt"),
  "utf8",
);
const dir = mkdtempSync(join(tmpdir(), "rz-cli-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function cli(args: string[], env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(process.execPath, [bin, ...args], {
    encoding: "utf8",
    env: { ...process.env, RYZANSTEIN_MODEL: "", FORCE_COLOR: "0", ...env },
    timeout: 60_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("ryzanstein run", () => {
  it("prints the llama2.c golden text for stories260K", () => {
    const r = cli([
      "run",
      "Once upon a time",
      "--model",
      stories,
      "--max-tokens",
      "60",
      "--temperature",
      "0",
    ]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout.replace(/\n$/, "")).toBe(golden);
  });

  it("--json prints token ids, text and log-probabilities", () => {
    const r = cli([
      "run",
      "Once upon a time",
      "--model",
      stories,
      "-n",
      "8",
      "--temperature",
      "0",
      "--json",
      "--top-logprobs",
      "3",
    ]);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.prompt_tokens).toEqual([1, 403, 407, 261, 378]);
    expect(j.tokens.length).toBe(8);
    expect(golden.startsWith(`Once upon a time${j.text}`)).toBe(true);
    expect(j.logprobs.length).toBe(8);
    for (const [i, lp] of j.logprobs.entries()) {
      expect(lp.token).toBe(j.tokens[i]);
      expect(lp.top.length).toBe(3);
      expect(lp.top[0].token).toBe(lp.token);
      expect(lp.logprob).toBeCloseTo(lp.top[0].logprob, 10);
      expect(lp.logprob).toBeLessThanOrEqual(0);
    }
  });

  it("--kv-type q8_0 runs the default model close to f16; refused where heads are narrower than a block", () => {
    const json = (kv: string) => {
      const r = cli([
        "run",
        "In the beginning God",
        "-n",
        "16",
        "--temperature",
        "0",
        "--json",
        "--kv-type",
        kv,
      ]);
      expect(r.code).toBe(0);
      return JSON.parse(r.stdout) as { tokens: number[]; logprobs: { logprob: number }[] };
    };
    const f16 = json("f16");
    const q8 = json("q8_0");
    expect(q8.tokens.length).toBe(16);
    // same greedy path while the tokens agree, chosen-token log-probabilities within 0.05 there
    expect(q8.tokens[0]).toBe(f16.tokens[0]);
    for (let i = 0; i < 16 && q8.tokens[i] === f16.tokens[i]; i++)
      expect(Math.abs(q8.logprobs[i].logprob - f16.logprobs[i].logprob)).toBeLessThan(0.05);
    const narrow = cli(["run", "hi", "--model", stories, "-n", "2", "--kv-type", "q8_0"]);
    expect(narrow.code).toBe(1);
    expect(narrow.stderr).toMatch(
      /q8_0 KV cache needs headDim to be a multiple of 32.*headDim 8.*INVALID_ARGUMENT/s,
    );
    const unknown = cli(["run", "hi", "--model", stories, "--kv-type", "q4_0"]);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toMatch(/--kv-type.*q4_0.*f16, f32, q8_0/s);
  });

  it("an empty prompt starts from BOS alone; RYZANSTEIN_MODEL picks the model", () => {
    const r = cli(["run", "--max-tokens", "5", "--temperature", "0", "--json"], {
      RYZANSTEIN_MODEL: stories,
    });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).prompt_tokens).toEqual([1]);
  });
});

describe("ryzanstein tokenize and info", () => {
  it("tokenize prints ids as JSON", () => {
    expect(JSON.parse(cli(["tokenize", "--model", stories, "Once upon a time"]).stdout)).toEqual([
      1, 403, 407, 261, 378,
    ]);
    expect(JSON.parse(cli(["tokenize", "--model", stories, "--no-bos", "Once upon a time"]).stdout)).toEqual([
      403, 407, 261, 378,
    ]);
  });

  it("info prints metadata and the tensor table", () => {
    const r = cli(["info", stories]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('general.architecture = "llama"');
    expect(r.stdout).toMatch(/blk\.4\.ffn_down\.weight\s+f32\s+\[64, 172\]/);
    const j = JSON.parse(cli(["info", stories, "--json"]).stdout);
    expect(j.tensors.length).toBe(48);
  });
});

describe("ryzanstein convert", () => {
  it("GGUF → HF folder → runs directly → GGUF, with the golden text at every stage", () => {
    const folder = join(dir, "stories-hf");
    const back = join(dir, "stories-back.gguf");
    const args = ["Once upon a time", "--max-tokens", "60", "--temperature", "0"];
    expect(cli(["convert", stories, folder, "--to", "hf"]).code).toBe(0);
    expect(cli(["run", ...args, "--model", folder]).stdout.replace(/\n$/, "")).toBe(golden);
    const r = cli(["convert", folder, back]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("wrote");
    expect(cli(["run", ...args, "--model", back]).stdout.replace(/\n$/, "")).toBe(golden);
    expect(cli(["info", folder]).stdout).toContain("HuggingFace folder");
  });

  it("--type q8_0 falls back per tensor where rows do not fit, and says so", () => {
    const out = join(dir, "stories-q8.gguf");
    const r = cli(["convert", stories, out, "--type", "q8_0"]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/ffn_down\.weight written as f16/);
    expect(cli(["run", "Once", "--model", out, "-n", "5", "--temperature", "0"]).code).toBe(0);
    expect(cli(["convert", stories, join(dir, "x.gguf"), "--type", "q9"]).stderr).toContain("--type q9");
  });
});

describe("errors", () => {
  it("a corrupt model prints a message, no stack, and exits non-zero", () => {
    const bad = join(dir, "bad.gguf");
    writeFileSync(bad, readFileSync(stories).subarray(0, 5000));
    const r = cli(["run", "hi", "--model", bad]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: .*bad\.gguf.*\[TRUNCATED\]\n$/);
    expect(r.stderr).not.toContain("    at ");
    const v = cli(["run", "hi", "--model", bad, "--verbose"]);
    expect(v.code).toBe(1);
    expect(v.stderr).toContain("    at ");
  });

  it("no model flag runs the default model (@ryzanstein/default-model)", () => {
    const r = cli(["run", "In the beginning", "--max-tokens", "16", "--temperature", "0"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout.trim().length).toBeGreaterThan(10);
  });

  it("a missing model file says so", () => {
    const r = cli(["run", "hi", "--model", join(dir, "nope.gguf")]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("model file not found");
  });

  it("bad option values are rejected", () => {
    const r = cli(["run", "hi", "--model", stories, "--top-p", "7"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("--top-p");
  });
});

describe("ryzanstein train", () => {
  const config = join(dir, "tiny.json");
  const data = join(dir, "tiny.txt");
  writeFileSync(
    config,
    JSON.stringify({
      name: "tiny",
      model: { nLayers: 1, dim: 32, nHeads: 2, nKvHeads: 1, ffnDim: 64, contextLength: 64 },
      tokenizer: { vocabSize: 300 },
      training: { seqLen: 16, batchSize: 2, steps: 6, lr: 0.003, evalFraction: 0.1, seed: 3 },
    }),
  );
  writeFileSync(
    data,
    Array.from(
      { length: 80 },
      (_, i) => `And the ${["lamb", "lion", "dove"][i % 3]} came unto the ${["river", "hill"][i % 2]}.`,
    ).join("\n"),
  );

  it("trains, writes the GGUF, the loss curve and the metrics, and the model runs", () => {
    const out = join(dir, "tiny.gguf");
    const r = cli(["train", "--config", config, "--data", data, "--out", out, "--threads", "1"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/wrote .*tiny\.gguf.*bits\/byte model/);
    expect(r.stderr).toContain("step 6/6");
    expect(existsSync(join(dir, "tiny.loss.svg"))).toBe(true);
    const metrics = JSON.parse(readFileSync(join(dir, "tiny.metrics.json"), "utf8"));
    expect(metrics.steps).toBe(6);
    expect(metrics.bitsPerByte.unigram).toBeGreaterThan(0);
    const run = cli(["run", "And the", "--model", out, "--max-tokens", "5", "--temperature", "0"]);
    expect(run.code).toBe(0);
  });

  it("empty data is a clear error and writes nothing", () => {
    const empty = join(dir, "empty.txt");
    writeFileSync(empty, "  \n");
    const out = join(dir, "never.gguf");
    const r = cli(["train", "--config", config, "--data", empty, "--out", out]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("is empty");
    expect(existsSync(out)).toBe(false);
  });

  it("data too short for the windows is a clear error and writes nothing", () => {
    const short = join(dir, "short.txt");
    writeFileSync(short, "In the beginning.");
    const out = join(dir, "never2.gguf");
    const r = cli(["train", "--config", config, "--data", short, "--out", out]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("too short");
    expect(existsSync(out)).toBe(false);
    expect(existsSync(`${out}.ckpt`)).toBe(false);
  });
});

describe("ryzanstein finetune and run --lora", () => {
  const data = join(dir, "robo.jsonl");
  writeFileSync(
    data,
    Array.from({ length: 60 }, (_, i) =>
      JSON.stringify({ text: `Robo the robot said, "Beep! I count ${(i % 4) + 1} balls."` }),
    ).join("\n"),
  );
  const base = ["--model", stories, "--data", data, "--seq-len", "32", "--batch-size", "2", "--threads", "1"];

  it("trains an adapter (GGUF + PEFT) that run --lora applies", () => {
    const out = join(dir, "robo.gguf");
    const peft = join(dir, "robo-peft");
    const r = cli([
      "finetune",
      ...base,
      "--out",
      out,
      "--peft",
      peft,
      "--steps",
      "20",
      "--lr",
      "0.01",
      "--lora-r",
      "4",
      "--lora-alpha",
      "8",
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/held-out loss [\d.]+ -> [\d.]+/);
    expect(existsSync(join(peft, "adapter_model.safetensors"))).toBe(true);
    for (const lora of [out, peft]) {
      const run = cli([
        "run",
        "Robo the robot",
        "--model",
        stories,
        "--lora",
        lora,
        "--max-tokens",
        "8",
        "--temperature",
        "0",
      ]);
      expect(run.code).toBe(0);
      expect(run.stdout.length).toBeGreaterThan(0);
    }
  });

  it.each([
    [["--lora-r", "0"], /rank must be an integer ≥ 1/],
    [["--targets", "q_proj"], /unknown target module 'q_proj'/],
  ])("bad LoRA options %s fail clearly and write nothing", (extra, message) => {
    const out = join(dir, "never-lora.gguf");
    const r = cli(["finetune", ...base, "--out", out, "--steps", "2", ...extra]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(message);
    expect(existsSync(out)).toBe(false);
  });

  it("chat JSONL records train on assistant turns; a malformed record names its line", () => {
    const chat = join(dir, "chat.jsonl");
    writeFileSync(
      chat,
      Array.from({ length: 40 }, (_, i) =>
        JSON.stringify({
          messages: [
            { role: "user", content: `How many balls, Robo?` },
            { role: "assistant", content: `Beep! I count ${(i % 4) + 1} balls.` },
          ],
        }),
      ).join("\n"),
    );
    const out = join(dir, "chat-lora.gguf");
    const r = cli([
      "finetune",
      ...base.slice(0, 2),
      "--data",
      chat,
      ...base.slice(4),
      "--out",
      out,
      "--steps",
      "4",
    ]);
    expect(r.code).toBe(0);
    expect(existsSync(out)).toBe(true);
    const bad = join(dir, "bad-chat.jsonl");
    writeFileSync(
      bad,
      `${JSON.stringify({
        messages: [
          { role: "user", content: "x" },
          { role: "assistant", content: "y" },
        ],
      })}\n{"messages": [}\n`,
    );
    const out2 = join(dir, "never-chat.gguf");
    const r2 = cli(["finetune", "--model", stories, "--data", bad, "--out", out2]);
    expect(r2.code).toBe(1);
    expect(r2.stderr).toContain("bad-chat.jsonl:2: malformed JSON");
    expect(existsSync(out2)).toBe(false);
  });

  it("malformed JSONL names the line; too-short data is refused", () => {
    const bad = join(dir, "bad.jsonl");
    writeFileSync(bad, '{"text": "ok"}\n{"text": "ok"}\n{"text": oops}\n');
    const out = join(dir, "never-lora2.gguf");
    const r = cli(["finetune", "--model", stories, "--data", bad, "--out", out]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("bad.jsonl:3: malformed JSON");
    const short = join(dir, "short.jsonl");
    writeFileSync(short, '{"text": "Hi."}\n');
    const r2 = cli(["finetune", "--model", stories, "--data", short, "--out", out]);
    expect(r2.code).toBe(1);
    expect(r2.stderr).toContain("too short");
    expect(existsSync(out)).toBe(false);
  });
});

describe("ryzanstein bench", () => {
  /** `ryzanstein bench --model stories260K` with `args` (space-separated). */
  const bench = (args: string) => cli(["bench", "--model", stories, ...args.split(" ")]);

  it("--json prints llama-bench-shaped results, progress on stderr", () => {
    const r = bench("-p 16 -n 4 -t 1,2 -r 2 --json");
    expect(r.code).toBe(0);
    const rows = JSON.parse(r.stdout) as {
      test: string;
      threads: number;
      tokens_per_second: number;
      stddev: number;
      samples: number[];
    }[];
    expect(rows.map((x) => `${x.test}/${x.threads}`)).toEqual(["pp16/1", "tg4/1", "pp16/2", "tg4/2"]);
    for (const row of rows) {
      expect(Object.keys(row).sort()).toEqual(["samples", "stddev", "test", "threads", "tokens_per_second"]);
      expect(row.samples).toHaveLength(2);
      expect(row.tokens_per_second).toBeGreaterThan(0);
      expect(row.stddev).toBeGreaterThanOrEqual(0);
    }
    expect(r.stderr).toMatch(/pp16: repetition 2\/2/);
  });

  it("-d runs the tests from a filled context, --kv-type picks the cache", () => {
    const r = bench("-p 8 -n 4 -d 0,32 -t 1 -r 1 --kv-type f32 --json");
    expect(r.code).toBe(0);
    const rows = JSON.parse(r.stdout) as { test: string }[];
    expect(rows.map((x) => x.test)).toEqual(["pp8", "tg4", "pp8 @ d32", "tg4 @ d32"]);
    expect(r.stderr).toMatch(/filling the context to depth 32/);
    // stories260K's heads (8 values) are narrower than a Q8_0 block
    const q8 = bench("-p 8 -n 0 -t 1 -r 1 --kv-type q8_0");
    expect(q8.code).toBe(1);
    expect(q8.stderr).toMatch(/multiple of 32/);
  });

  it("prints a table without --json and rejects bad lists", () => {
    const r = bench("-p 8 -n 0 -t 1 -r 1");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/\| stories260K\.gguf .*\| pp8 /);
    expect(r.stdout).not.toMatch(/tg0/);
    const bad = bench("-t 1,x");
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/expected an integer/);
  });
});
