import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
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

  it("no model says how to point at one", () => {
    const r = cli(["run", "hi"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("--model");
    expect(r.stderr).toContain("RYZANSTEIN_MODEL");
  });

  it("bad option values are rejected", () => {
    const r = cli(["run", "hi", "--model", stories, "--top-p", "7"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("--top-p");
  });
});

describe("ryzanstein bench", () => {
  it("--json prints llama-bench-shaped results, progress on stderr", () => {
    const r = cli(["bench", "--model", stories, "-p", "16", "-n", "4", "-t", "1,2", "-r", "2", "--json"]);
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

  it("prints a table without --json and rejects bad lists", () => {
    const r = cli(["bench", "--model", stories, "-p", "8", "-n", "0", "-t", "1", "-r", "1"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/\| stories260K\.gguf .*\| pp8 /);
    expect(r.stdout).not.toMatch(/tg0/);
    const bad = cli(["bench", "--model", stories, "-t", "1,x"]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/expected an integer/);
  });
});
