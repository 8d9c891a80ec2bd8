// QLoRA memory and speed (issue 7): LoRA rank 16 on q, k, v, o, gate, up and down of a
// TinyLlama-shape random-weight model (22 layers, d 2048, 32 heads, 4 KV heads, ff 5632, vocab
// 32000) whose base stays in Q4_0, sequence 256, batch 1, activation checkpointing on. Each thread
// count runs in a fresh process so its peak RSS is its own; the bound is quantized weight bytes +
// 1.5 GiB. Never part of `npm test`. Run under the shared lock:
//   flock /tmp/ryz-heavy.lock npm run bench:qlora -w packages/lora [-- --steps 3 --threads 1,2 --no-ckpt]
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, renameSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { GGMLType } from "@ryzanstein/core-tensor";
import { writeRandomLlamaGGUF } from "@ryzanstein/test-support";
import { AdamW } from "@ryzanstein/training";
import { finetuneSession } from "./session.js";

const SHAPE = { nLayers: 22, dim: 2048, nHeads: 32, nKvHeads: 4, ffnDim: 5632, vocabSize: 32000 };
const here = dirname(fileURLToPath(import.meta.url));
// the same cache and file as packages/bench (`ryzanstein bench`), so one generation serves both
const MODEL = join(here, "../../bench/.models/tinyllama-q4_0.gguf");

const { values } = parseArgs({
  options: {
    child: { type: "string" },
    steps: { type: "string", default: "3" },
    threads: { type: "string", default: "1,2" },
    "no-ckpt": { type: "boolean", default: false },
  },
});

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const GiB = 2 ** 30;

if (values.child) {
  // one measurement: threads, steps, checkpointing
  const [threads, steps, ckpt] = values.child.split(",").map(Number);
  const t0 = performance.now();
  const s = finetuneSession(MODEL, { threads, seq: 256, rank: 16, checkpointLayers: ckpt === 1 });
  const loadSeconds = (performance.now() - t0) / 1000;
  const opt = new AdamW(s.adapters.params.length, new Uint8Array(s.adapters.params.length).fill(1), {
    weightDecay: 0,
  });
  const times: number[] = [];
  const losses: number[] = [];
  for (let i = 0; i <= steps; i++) {
    const a = performance.now();
    losses.push(s.step());
    opt.step(s.adapters.params, s.adapters.grads, 1e-3);
    const secs = (performance.now() - a) / 1000;
    if (i > 0) times.push(secs); // the first step faults pages in and warms caches
  }
  const maxRss = process.resourceUsage().maxRSS * 1024;
  process.stdout.write(
    `${JSON.stringify({
      threads,
      checkpointLayers: ckpt === 1,
      loadSeconds,
      stepSeconds: times,
      tokensPerSecond: 256 / median(times),
      losses,
      maxRss,
      weightBytes: s.weightBytes,
      activationBytes: s.activationBytes,
      adapterParams: s.adapters.params.length,
    })}\n`,
  );
  s.dispose();
} else {
  if (!existsSync(MODEL)) {
    mkdirSync(dirname(MODEL), { recursive: true });
    console.log(`writing ${MODEL} (random weights, Q4_0) ...`);
    writeRandomLlamaGGUF(`${MODEL}.tmp`, {
      ...SHAPE,
      type: GGMLType.Q4_0,
      std: 1 / Math.sqrt(SHAPE.dim),
      name: "random-tinyllama",
    });
    renameSync(`${MODEL}.tmp`, MODEL);
  }
  const steps = Number(values.steps);
  const runs = values.threads.split(",").map((t) => [Number(t), 1]);
  if (values["no-ckpt"]) runs.push([2, 0]);
  console.log(`QLoRA benchmark: ${MODEL}, rank 16 on q,k,v,o,gate,up,down, seq 256, ${steps} timed steps`);
  for (const [threads, ckpt] of runs) {
    const r = spawnSync(process.execPath, [process.argv[1], "--child", `${threads},${steps},${ckpt}`], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "inherit"],
    });
    if (r.status !== 0) {
      console.error(`run ${threads} threads failed (status ${r.status})`);
      process.exit(1);
    }
    const m = JSON.parse(r.stdout.trim().split("\n").pop() as string);
    const bound = m.weightBytes + 1.5 * GiB;
    console.log(
      `threads ${m.threads}, checkpointing ${m.checkpointLayers ? "on" : "off"}: ` +
        `${m.tokensPerSecond.toFixed(2)} tok/s (median of ${m.stepSeconds.length} steps: ${m.stepSeconds.map((x: number) => x.toFixed(1)).join(", ")} s), ` +
        `peak RSS ${(m.maxRss / GiB).toFixed(3)} GiB vs bound ${(bound / GiB).toFixed(3)} GiB ` +
        `(weights ${(m.weightBytes / GiB).toFixed(3)} GiB + 1.5) ${m.maxRss <= bound ? "OK" : "EXCEEDED"}; ` +
        `graph activations ${(m.activationBytes / 2 ** 20).toFixed(0)} MiB; load ${m.loadSeconds.toFixed(1)} s; ` +
        `losses ${m.losses.map((x: number) => x.toFixed(3)).join(" ")}`,
    );
  }
}
