import os from "node:os";
import { isRyzansteinError } from "@ryzanstein/core-tensor";
import { KV_CACHE_TYPES } from "@ryzanstein/engine";
import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import { type BenchOptions, benchCommand } from "./commands/bench.js";
import { type ConvertOptions, convertCommand } from "./commands/convert.js";
import { type FinetuneCommandOptions, finetuneCommand } from "./commands/finetune.js";
import { infoCommand } from "./commands/info.js";
import { type PerplexityCommandOptions, perplexityCommand } from "./commands/perplexity.js";
import { parsePercent, type QuantizeCommandOptions, quantizeCommand } from "./commands/quantize.js";
import { type RunOptions, runCommand } from "./commands/run.js";
import { parseBytes, type ServeOptions, serveCommand } from "./commands/serve.js";
import { tokenizeCommand } from "./commands/tokenize.js";
import { type TrainCommandOptions, trainCommand } from "./commands/train.js";
import { floatOption, intListOption, intOption } from "./options.js";

const VERSION = "0.1.0";

/** `--kv-type`, shared by `run` and `serve` (q8_0 needs headDim a multiple of 32, as in llama.cpp). */
function kvTypeOption(unit: string): Option {
  return new Option(
    "--kv-type <type>",
    `KV cache element type (q8_0: llama.cpp's Q8_0, ~half the bytes of f16 ${unit})`,
  )
    .choices(KV_CACHE_TYPES)
    .default("f16");
}

function buildProgram(): Command {
  const program = new Command("ryzanstein")
    .description("CPU-first LLM inference: run, inspect, tokenize and convert models")
    .version(VERSION)
    .option("--verbose", "print stack traces on errors")
    .showHelpAfterError()
    .exitOverride();

  program
    .command("run")
    .description("generate a continuation of PROMPT (an empty prompt starts from BOS alone)")
    .argument("[prompt]", "text to continue", "")
    .option("-m, --model <path>", "GGUF model file (default: $RYZANSTEIN_MODEL, then the default model)")
    .option(
      "-n, --max-tokens <n>",
      "tokens to generate (-1: until end of text or a full context)",
      intOption(-1),
      256,
    )
    .option("--temperature <t>", "sampling temperature (0: greedy)", floatOption(0, 100), 0.8)
    .option("--top-k <k>", "keep the k most likely tokens (0: all)", intOption(0), 40)
    .option("--top-p <p>", "nucleus sampling threshold", floatOption(0, 1), 0.95)
    .option("--min-p <p>", "drop tokens below p × the best token's probability", floatOption(0, 1), 0.05)
    .option("--repeat-penalty <x>", "penalize recently seen tokens (1: off)", floatOption(0.01, 100), 1)
    .option("--seed <n>", "random seed", intOption(0, 2 ** 32 - 1))
    .option("-t, --threads <n>", "CPU threads", intOption(1, 1024))
    .option("-c, --ctx <n>", "context size in tokens", intOption(2, 1 << 20))
    .option("--stop <text...>", "stop when the output contains this text")
    .option("--json", "print one JSON object with token ids, text and log-probabilities")
    .option("--top-logprobs <n>", "alternatives per token in --json output", intOption(0, 100), 0)
    .addOption(new Option("--isa <isa>", "force a kernel variant").choices(["scalar", "avx2", "avx512"]))
    .addOption(
      new Option("--backend <backend>", "compute backend").choices(["native", "reference"]).default("native"),
    )
    .option("--lora <path>", "LoRA adapter (GGUF file or PEFT directory) merged into the model")
    .addOption(kvTypeOption("per position"))
    .action(async (prompt: string, o: RunOptions) => runCommand(prompt, o));

  program
    .command("serve")
    .description("serve the model over an OpenAI-compatible HTTP API with continuous batching")
    .option("-m, --model <path>", "GGUF model file (default: $RYZANSTEIN_MODEL, then the default model)")
    .option("--host <host>", "interface to listen on", "127.0.0.1")
    .option("--port <port>", "TCP port (0: any free port)", intOption(0, 65535), 8080)
    .option("--parallel <n>", "sequences decoded together", intOption(1, 256), 8)
    .option("-c, --ctx <n>", "context size per sequence in tokens", intOption(2, 1 << 20))
    .option("--kv-blocks <n>", "KV cache blocks of 16 positions", intOption(1))
    .option("--kv-memory <size>", "KV cache size (e.g. 2GB, 512MB)", (v: string) => {
      try {
        return parseBytes(v);
      } catch (e) {
        throw new InvalidArgumentError((e as Error).message);
      }
    })
    .addOption(kvTypeOption("per block"))
    .option("--api-key <key>", "require Authorization: Bearer KEY on /v1 routes")
    .option("-t, --threads <n>", "CPU threads", intOption(1, 1024))
    .option("--batch-tokens <n>", "tokens per batched step", intOption(1, 65536), 256)
    .option("--queue <n>", "requests waiting beyond --parallel before 503", intOption(0, 1 << 20), 64)
    .option("--log-level <level>", "pino log level (silent, error, info, debug)", "info")
    .action(async (o: ServeOptions) => serveCommand(o));

  program
    .command("tokenize")
    .description("print the token ids of TEXT as a JSON array")
    .argument("<text>", "text to tokenize")
    .option("-m, --model <path>", "GGUF model file")
    .option("--no-bos", "do not add the BOS token")
    .action((text: string, o: { model?: string; bos: boolean }) => tokenizeCommand(text, o));

  program
    .command("convert")
    .description(
      "convert a HuggingFace folder (or GGUF) to GGUF, or a GGUF to a HuggingFace folder with --to hf",
    )
    .argument("<input>", "HuggingFace folder or GGUF file")
    .argument("<output>", "GGUF file, or folder with --to hf")
    .option(
      "--type <type>",
      "format of the weight matrices, e.g. f16, q8_0, q4_0 (rows that do not fit fall back; default: the source's)",
    )
    .addOption(new Option("--to <format>", "output format").choices(["gguf", "hf"]).default("gguf"))
    .action((input: string, output: string, o: ConvertOptions) => convertCommand(input, output, o));

  program
    .command("quantize")
    .description("re-encode a model's matrices with a quantization strategy (rtn, gptq, awq, mixed, auto)")
    .argument("<input>", "GGUF model (any format the engine reads)")
    .argument("<output>", "GGUF file to write (appears only when complete)")
    .requiredOption(
      "--type <type>",
      "format of the matrices, e.g. q4_0, q8_0, q4_k (rows that do not fit fall back)",
    )
    .addOption(
      new Option("--strategy <name>", "quantization strategy")
        .choices(["rtn", "gptq", "awq", "mixed", "auto"])
        .default("rtn"),
    )
    .option("--calibration <file>", "plain text the model is run on (gptq, awq, mixed, auto)")
    .option("--target-size <size>", "largest output size, e.g. 600MB (mixed, auto)", (v: string) => {
      try {
        return parseBytes(v);
      } catch (e) {
        throw new InvalidArgumentError((e as Error).message);
      }
    })
    .option(
      "--max-ppl-increase <pct>",
      "largest perplexity increase on held-out text, e.g. 2% (auto)",
      (v: string) => {
        try {
          return parsePercent(v);
        } catch (e) {
          throw new InvalidArgumentError((e as Error).message);
        }
      },
    )
    .option("-c, --ctx <n>", "tokens per calibration/evaluation window", intOption(8, 1 << 16), 256)
    .option("--act-order", "GPTQ: quantize columns by decreasing activation energy")
    .option(
      "--group-size <n>",
      "GPTQ: columns whose block scales are fixed together (32, 64, 128; default: the format's block)",
      intOption(32, 1 << 16),
    )
    .option("-t, --threads <n>", "CPU threads", intOption(1, 1024))
    .action((input: string, output: string, o: QuantizeCommandOptions) => quantizeCommand(input, output, o));

  program
    .command("perplexity")
    .description("perplexity of a model on a text file, as llama-perplexity computes it")
    .option("-m, --model <path>", "GGUF model file (default: $RYZANSTEIN_MODEL, then the default model)")
    .requiredOption("-f, --file <path>", "UTF-8 text to score")
    .option(
      "-c, --ctx <n>",
      "tokens per window (the second half of each is scored)",
      intOption(4, 1 << 16),
      512,
    )
    .option("-t, --threads <n>", "CPU threads", intOption(1, 1024))
    .option("--json", "print one JSON object")
    .addOption(
      new Option("--backend <backend>", "compute backend (reference: any format, slow)")
        .choices(["native", "reference"])
        .default("native"),
    )
    .action((o: PerplexityCommandOptions) => perplexityCommand(o));

  program
    .command("info")
    .description("print a GGUF file's metadata and tensor table")
    .argument("<path>", "GGUF file")
    .option("--json", "machine-readable output")
    .action((path: string, o: { json?: boolean }) => infoCommand(path, o));

  program
    .command("train")
    .description("train a byte-level BPE tokenizer and a Llama model from scratch on a text file")
    .requiredOption("--config <path>", "JSON config: { model, tokenizer: { vocabSize }, training }")
    .requiredOption("--data <path>", "UTF-8 text to train on")
    .requiredOption("--out <path>", "output GGUF (also writes <out>.loss.svg and <out>.metrics.json)")
    .option("--checkpoint <path>", "checkpoint file, resumed when present (default <out>.ckpt)")
    .option("--steps <n>", "override training.steps", intOption(1))
    .option("--stop-after <n>", "stop after n steps (checkpointed; run again to resume)", intOption(1))
    .option("-t, --threads <n>", "CPU threads", intOption(1, 1024))
    .addOption(new Option("--isa <isa>", "force a kernel variant").choices(["scalar", "avx2", "avx512"]))
    .addOption(
      new Option("--export-type <type>", "matrix format of the GGUF")
        .choices(["f32", "f16", "q8_0"])
        .default("f16"),
    )
    .action((o: TrainCommandOptions) => trainCommand(o));

  program
    .command("finetune")
    .description("train a LoRA adapter on a frozen base model (any GGUF format) and write it as GGUF")
    .option("-m, --model <path>", "base GGUF (default: $RYZANSTEIN_MODEL, then the default model)")
    .requiredOption(
      "--data <path>",
      'plain text, .jsonl with one {"text": ...} per line, or .jsonl chat records {"messages": [...]} (loss on assistant turns)',
    )
    .requiredOption("--out <path>", "output GGUF LoRA adapter")
    .option("--peft <dir>", "also write a PEFT adapter directory")
    .option("--lora-r <n>", "rank", intOption(0), 16)
    .option("--lora-alpha <a>", "alpha (scale alpha/r)", floatOption(0, 1e6), 32)
    .option("--lora-dropout <p>", "dropout on the adapter input", floatOption(0, 0.99), 0)
    .option("--targets <modules...>", "target modules (names or patterns)", ["attn_q", "attn_v"])
    .option("--steps <n>", "optimizer steps", intOption(1), 100)
    .option("--lr <x>", "peak learning rate", floatOption(0, 1), 1e-3)
    .option("--seq-len <n>", "tokens per window", intOption(2), 128)
    .option("--batch-size <n>", "windows per step", intOption(1), 4)
    .option("--seed <n>", "seed", intOption(0), 1)
    .option("-t, --threads <n>", "CPU threads", intOption(1, 1024))
    .addOption(
      new Option("--checkpoint <mode>", "activation checkpointing per layer (auto: on for large models)")
        .choices(["auto", "on", "off"])
        .default("auto"),
    )
    .addOption(new Option("--isa <isa>", "force a kernel variant").choices(["scalar", "avx2", "avx512"]))
    .action((o: FinetuneCommandOptions) => finetuneCommand(o));

  program
    .command("bench")
    .description("measure prompt processing (pp) and generation (tg) tokens/s, llama-bench style")
    .option("-m, --model <path>", "GGUF model file (default: $RYZANSTEIN_MODEL, then the default model)")
    .option("-p, --n-prompt <n,...>", "prompt tokens (0: skip pp)", intListOption(0, 1 << 16), [512])
    .option("-n, --n-gen <n,...>", "generated tokens (0: skip tg)", intListOption(0, 1 << 16), [128])
    .option("-t, --threads <n,...>", "CPU threads", intListOption(1, 1024), [os.availableParallelism()])
    .option("-r, --repetitions <n>", "timed repetitions per test", intOption(1, 1000), 3)
    .option(
      "-d, --depth <n,...>",
      "tokens already in the KV cache when each test starts",
      intListOption(0, 1 << 20),
      [0],
    )
    .addOption(kvTypeOption("per position"))
    .option("--json", "print a JSON array of results")
    .option("--no-repack", "keep quantized weights in the file layout")
    .addOption(new Option("--isa <isa>", "force a kernel variant").choices(["scalar", "avx2", "avx512"]))
    .action((o: BenchOptions) => {
      benchCommand(o);
    });

  return program;
}

/**
 * Runs the CLI with `argv` (without the node and script entries) and returns the exit code.
 * Errors print their message (a stack trace only with `--verbose`) and give exit code 1.
 */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: "user" });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode;
    const verbose = argv.includes("--verbose");
    if (verbose && e instanceof Error) process.stderr.write(`${e.stack}\n`);
    else if (isRyzansteinError(e)) process.stderr.write(`error: ${e.message} [${e.code}]\n`);
    else process.stderr.write(`error: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
}
