import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { writeGGUF } from "@ryzanstein/convert";
import { GGMLType } from "@ryzanstein/core-tensor";
import { openModelFile } from "@ryzanstein/engine";
import { fixturesDir } from "@ryzanstein/test-support";
import { afterAll, describe, expect, it } from "vitest";

const bin = resolve(__dirname, "../dist/bin.js");
const stories = join(fixturesDir(), "models/stories260K.gguf");
const dir = mkdtempSync(join(tmpdir(), "rz-cli-quant-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function cli(args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], {
    encoding: "utf8",
    env: { ...process.env, RYZANSTEIN_MODEL: "", FORCE_COLOR: "0" },
    timeout: 120_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

// Plain story text in stories260K's register, deterministic.
const names = ["Lily", "Tom", "Sue", "Ben", "Max", "Amy"];
const things = ["ball", "cat", "tree", "cake", "box", "dog", "park", "car"];
const story = (i: number) =>
  `Once upon a time, there was a little girl named ${names[i % 6]}. She liked to play with her ${things[i % 8]}. ` +
  `One day, ${names[(i + 1) % 6]} saw a big ${things[(i + 3) % 8]} in the ${things[(i + 5) % 8]}. ` +
  `"Can I play too?" asked ${names[(i + 2) % 6]}. They were happy and played all day.\n`;
const calibrationFile = join(dir, "calibration.txt");
writeFileSync(calibrationFile, Array.from({ length: 40 }, (_, i) => story(i)).join(""));
const shortFile = join(dir, "short.txt");
writeFileSync(shortFile, "Hi.");

/** `quantize stories260K OUT --type q4_0 --strategy STRATEGY --calibration FILE` (+ more). */
const calibratedQ4 = (strategy: string, out: string, ...more: string[]) => [
  "quantize",
  stories,
  out,
  "--type",
  "q4_0",
  "--strategy",
  strategy,
  "--calibration",
  calibrationFile,
  ...more,
];
const gptqQ4 = (out: string, ...more: string[]) => calibratedQ4("gptq", out, ...more);

/** Files in `dir` whose names start with `prefix` (the final file or its temporary siblings). */
const leftovers = (prefix: string) => readdirSync(dir).filter((f) => f.startsWith(prefix));

describe("ryzanstein quantize", () => {
  it("rtn q8_0: writes a model the engine loads, and reports the F16 fallbacks", () => {
    const out = join(dir, "q8.gguf");
    const r = cli(["quantize", stories, out, "--type", "q8_0"]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/blk\.0\.ffn_down\.weight written as f16 \(rows do not fit q8_0 blocks\)/);
    expect(r.stderr).toMatch(/32×q8_0, 5×f16/);
    const t = openModelFile(out).info("blk.0.attn_q.weight");
    expect(t?.type).toBe(GGMLType.Q8_0);
  });

  it("gptq q4_0 with calibration text, then perplexity of the result", () => {
    const out = join(dir, "gptq.gguf");
    const r = cli(gptqQ4(out, "--ctx", "128", "--group-size", "64"));
    expect(r.stderr).toMatch(/via gptq/);
    expect(r.code).toBe(0);
    const p = cli(["perplexity", "--model", out, "--file", calibrationFile, "--ctx", "128", "--json"]);
    expect(p.code).toBe(0);
    const j = JSON.parse(p.stdout);
    expect(j.perplexity).toBeGreaterThan(1);
    expect(j.tokensScored).toBe(j.chunks * 63);
  });

  it("bad input gives typed errors and leaves no output", () => {
    const bad = join(dir, "bad-types.gguf");
    writeGGUF(bad, {
      metadata: { "general.architecture": "llama" },
      tensors: [
        {
          name: "blk.0.attn_q.weight",
          type: GGMLType.IQ2_XXS,
          shape: [2, 256],
          data: new Uint8Array(2 * 66),
        },
      ],
    });
    const cases: Array<[string[], RegExp]> = [
      [
        ["quantize", stories, join(dir, "e1.gguf"), "--type", "q9_0"],
        /--type q9_0 is not a weight format: choose one of .*q4_k.*\[INVALID_ARGUMENT\]/,
      ],
      [
        ["quantize", stories, join(dir, "e2.gguf"), "--type", "q4_0", "--strategy", "gptq"],
        /needs --calibration FILE/,
      ],
      [
        [
          "quantize",
          stories,
          join(dir, "e3.gguf"),
          "--type",
          "q4_0",
          "--strategy",
          "gptq",
          "--calibration",
          shortFile,
        ],
        /calibration text is too short: \d+ tokens.*\[INSUFFICIENT_DATA\]/,
      ],
      [
        [
          "quantize",
          stories,
          join(dir, "e4.gguf"),
          "--type",
          "q4_0",
          "--strategy",
          "mixed",
          "--calibration",
          calibrationFile,
          "--target-size",
          "100KB",
        ],
        /\[TARGET_UNREACHABLE\]/,
      ],
      [
        ["quantize", bad, join(dir, "e5.gguf"), "--type", "q4_0"],
        /blk\.0\.attn_q\.weight is iq2_xxs.*\[UNSUPPORTED_TENSOR_TYPE\]/,
      ],
      [
        ["quantize", stories, join(dir, "e6.gguf"), "--type", "q4_0", "--target-size", "1MB"],
        /apply to --strategy mixed or auto/,
      ],
      [
        gptqQ4(join(dir, "e7.gguf"), "--group-size", "48"),
        /GPTQ group size must be 32, 64, 128 or a larger power of two, got 48 \[INVALID_ARGUMENT\]/,
      ],
      [
        ["quantize", stories, join(dir, "e8.gguf"), "--type", "q4_0", "--group-size", "64"],
        /--group-size applies to strategies that run GPTQ/,
      ],
    ];
    for (const [args, message] of cases) {
      const r = cli(args);
      expect(r.code, args.join(" ")).toBe(1);
      expect(r.stderr).toMatch(message);
      expect(leftovers(args[2].split("/").pop() as string)).toEqual([]);
    }
  });

  it("an interrupted quantize leaves nothing under the final name", async () => {
    // Killed while it works (AWQ's scale search takes seconds on stories260K): no output at all.
    const out = join(dir, "killed.gguf");
    const child = spawn(process.execPath, [bin, ...calibratedQ4("awq", out, "--ctx", "128")]);
    await new Promise((r) => setTimeout(r, 1500));
    child.kill("SIGKILL");
    await new Promise((r) => child.on("close", r));
    expect(existsSync(out)).toBe(false);

    // Killed as soon as the temporary file appears: the final name is absent, or (if the write won
    // the race) it is the complete file.
    const out2 = join(dir, "raced.gguf");
    const child2 = spawn(process.execPath, [bin, "quantize", stories, out2, "--type", "q8_0"]);
    const exited = new Promise((r) => child2.on("close", r));
    let done = false;
    void exited.then(() => {
      done = true;
    });
    while (!done && !leftovers("raced.gguf.tmp").length) await new Promise((r) => setTimeout(r, 1));
    child2.kill("SIGKILL");
    await exited;
    if (existsSync(out2)) {
      const full = join(dir, "full.gguf");
      expect(cli(["quantize", stories, full, "--type", "q8_0"]).code).toBe(0);
      expect(statSync(out2).size).toBe(statSync(full).size);
    }
  });
});
