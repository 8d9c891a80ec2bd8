import os from "node:os";
import { isRyzansteinError } from "@ryzanstein/core-tensor";
import { Command, CommanderError, Option } from "commander";
import { type BenchOptions, benchCommand } from "./commands/bench.js";
import { infoCommand } from "./commands/info.js";
import { type RunOptions, runCommand } from "./commands/run.js";
import { tokenizeCommand } from "./commands/tokenize.js";
import { floatOption, intListOption, intOption } from "./options.js";

const VERSION = "0.1.0";

function buildProgram(): Command {
  const program = new Command("ryzanstein")
    .description("CPU-first LLM inference: run, inspect and tokenize GGUF models")
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
    .action(async (prompt: string, o: RunOptions) => runCommand(prompt, o));

  program
    .command("tokenize")
    .description("print the token ids of TEXT as a JSON array")
    .argument("<text>", "text to tokenize")
    .option("-m, --model <path>", "GGUF model file")
    .option("--no-bos", "do not add the BOS token")
    .action((text: string, o: { model?: string; bos: boolean }) => tokenizeCommand(text, o));

  program
    .command("info")
    .description("print a GGUF file's metadata and tensor table")
    .argument("<path>", "GGUF file")
    .option("--json", "machine-readable output")
    .action((path: string, o: { json?: boolean }) => infoCommand(path, o));

  program
    .command("bench")
    .description("measure prompt processing (pp) and generation (tg) tokens/s, llama-bench style")
    .option("-m, --model <path>", "GGUF model file (default: $RYZANSTEIN_MODEL, then the default model)")
    .option("-p, --n-prompt <n,...>", "prompt tokens (0: skip pp)", intListOption(0, 1 << 16), [512])
    .option("-n, --n-gen <n,...>", "generated tokens (0: skip tg)", intListOption(0, 1 << 16), [128])
    .option("-t, --threads <n,...>", "CPU threads", intListOption(1, 1024), [os.availableParallelism()])
    .option("-r, --repetitions <n>", "timed repetitions per test", intOption(1, 1000), 3)
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
