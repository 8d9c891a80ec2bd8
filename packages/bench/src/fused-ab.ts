// `npm run bench:fused -w packages/bench -- --model PATH [--threads 1,2] [--reps 5] [-p 512] [-n 128]`:
// paired A/B of the engine's fused steps (Model option `fused`). One process loads the file once;
// two Models share its backend and (repacked) weights, one with fusion and one without, and each
// repetition times both back to back (the order alternating), so both see the same background
// load. Prints medians and the median of the per-pair ratios. Never part of `npm test`.
import { parseArgs } from "node:util";
import { Model, openModelFile, readLlamaWeights, readModelConfig } from "@ryzanstein/engine";
import { NativeBackend } from "@ryzanstein/kernels-native";

const { values: args } = parseArgs({
  options: {
    model: { type: "string" },
    threads: { type: "string", default: "1,2" },
    reps: { type: "string", default: "5" },
    "n-prompt": { type: "string", short: "p", default: "512" },
    "n-gen": { type: "string", short: "n", default: "128" },
  },
});

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

function main(): void {
  if (!args.model) throw new Error("--model PATH is required");
  const p = Number(args["n-prompt"]);
  const n = Number(args["n-gen"]);
  const reps = Number(args.reps);
  const gguf = openModelFile(args.model);
  const config = readModelConfig(gguf);
  const prompt = Array.from({ length: p }, (_, i) => 3 + ((i * 7919) % (config.vocabSize - 3)));
  process.stdout.write(
    "| threads | test | unfused tok/s | fused tok/s | fused / unfused (median of pairs) |\n|---|---|---|---|---|\n",
  );
  for (const threads of args.threads.split(",").map(Number)) {
    const backend = new NativeBackend({ threads });
    const weights = readLlamaWeights(gguf, config);
    const variants = [false, true].map((fused) => {
      const model = new Model(config, weights, backend, { fused });
      return { model, ctx: model.createContext(p + n, 512) };
    });
    const pp = (v: (typeof variants)[number]) => {
      v.ctx.truncate(0);
      const t0 = performance.now();
      v.model.forward(v.ctx, prompt);
      return p / ((performance.now() - t0) / 1000);
    };
    const tg = (v: (typeof variants)[number]) => {
      v.ctx.truncate(0);
      const one = [prompt[0]];
      const t0 = performance.now();
      for (let i = 0; i < n; i++) {
        const logits = v.model.forward(v.ctx, one);
        let best = 0;
        for (let j = 1; j < logits.length; j++) if (logits[j] > logits[best]) best = j;
        one[0] = best;
      }
      return n / ((performance.now() - t0) / 1000);
    };
    for (const v of variants) pp(v); // warm-up (page faults, huge pages)
    for (const [name, run] of [
      [`pp${p}`, pp],
      [`tg${n}`, tg],
    ] as const) {
      const off: number[] = [];
      const on: number[] = [];
      for (let r = 0; r < reps; r++) {
        const order = r % 2 === 0 ? [0, 1] : [1, 0];
        for (const i of order) (i === 0 ? off : on).push(run(variants[i]));
        process.stderr.write(
          `t=${threads} ${name} rep ${r + 1}/${reps}: unfused ${off[r].toFixed(2)} fused ${on[r].toFixed(2)}\n`,
        );
      }
      const ratio = median(on.map((x, i) => x / off[i]));
      process.stdout.write(
        `| ${threads} | ${name} | ${median(off).toFixed(2)} | ${median(on).toFixed(2)} | ${ratio.toFixed(3)} |\n`,
      );
    }
    backend.dispose();
  }
}

main();
