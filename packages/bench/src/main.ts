// `npm run bench -w packages/bench [-- flags]`: ours vs llama.cpp (node-llama-cpp) on random-weight
// Llama GGUFs at real shapes, measured alternately in one run, after a correctness check on the
// same file; plus a memory bandwidth probe and a peak-RSS check. Never part of `npm test`.
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { openModelFile } from "@ryzanstein/engine";
import { NativeBackend } from "@ryzanstein/kernels-native";
import { type CheckResult, checkFile } from "./check.js";
import { ensureModel, FORMATS, SHAPES } from "./models.js";
import { openOurs, oursGenerate, oursPrompt } from "./ours.js";
import { openPeer, peerGenerate, peerPrompt } from "./peer.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const PKG = resolve(HERE, "..");

const { values: args } = parseArgs({
  options: {
    shapes: { type: "string", default: "110m,tinyllama" },
    formats: { type: "string", default: "q4_0,q8_0,f16,q4_k" },
    threads: { type: "string", default: "1,2" },
    reps: { type: "string", default: "3" },
    "n-prompt": { type: "string", short: "p", default: "512" },
    "n-gen": { type: "string", short: "n", default: "128" },
    cache: { type: "string", default: join(PKG, ".models") },
    "no-peer": { type: "boolean", default: false },
    "no-repack": { type: "boolean", default: false },
    tolerance: { type: "string" },
    "no-bandwidth": { type: "boolean", default: false },
    "bandwidth-only": { type: "boolean", default: false },
    rss: { type: "boolean", default: false },
    "rss-child": { type: "string" },
    "rss-peer": { type: "boolean", default: false },
    json: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});

const log = (m: string) => process.stderr.write(`${m}\n`);
const list = (s: string) =>
  s
    .split(",")
    .map((x) => x.trim())
    .filter(Boolean);
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const meanSd = (xs: number[]) => {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const sd = xs.length > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1)) : 0;
  return { mean, sd };
};

/** Deterministic pseudo-random token ids (not the specials). */
function tokens(n: number, seed: number, vocab: number): number[] {
  let s = seed >>> 0 || 1;
  return Array.from({ length: n }, () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return 3 + (s % (vocab - 3));
  });
}

interface Row {
  file: string;
  threads: number;
  test: string;
  ours: number[];
  peer: number[];
  bytesPerToken?: number;
}

/** Peak RSS of a fresh process that loads `path` and generates (ours, or llama.cpp with `--rss-peer`). */
async function rssChild(path: string, peer: boolean): Promise<void> {
  const threads = Number(list(args.threads)[list(args.threads).length - 1] ?? 2);
  const ctxSize = 512 + 128;
  const gguf = openModelFile(path);
  const weightBytes = gguf.tensors.reduce((a, t) => a + t.byteLength, 0);
  const c = { layers: Number(gguf.metadata["llama.block_count"]) };
  const kvDim =
    (Number(gguf.metadata["llama.embedding_length"]) / Number(gguf.metadata["llama.attention.head_count"])) *
    Number(gguf.metadata["llama.attention.head_count_kv"]);
  const vocab = 32000;
  const prompt = tokens(128, 7, vocab);
  let kvBytes: number;
  if (peer) {
    const s = await openPeer(path, threads, ctxSize);
    await peerPrompt(s, prompt);
    await peerGenerate(s, prompt[0], 128);
    kvBytes = c.layers * 2 * ctxSize * kvDim * 2; // F16
  } else {
    const s = openOurs(path, threads, ctxSize, !args["no-repack"]);
    oursPrompt(s, prompt);
    oursGenerate(s, prompt[0], 128);
    kvBytes = s.ctx.keys.reduce((a, k) => a + k.byteLength, 0) * 2;
  }
  const maxRss = process.resourceUsage().maxRSS * 1024;
  process.stdout.write(`${JSON.stringify({ maxRss, weightBytes, kvBytes })}\n`);
  process.exit(0);
}

function fmt(x: number, d = 2): string {
  return Number.isFinite(x) ? x.toFixed(d) : "-";
}

async function main(): Promise<void> {
  if (args.help) {
    log(
      "usage: npm run bench -w packages/bench -- [--shapes 110m,tinyllama] [--formats q4_0,q8_0,f16,q4_k]\n" +
        "  [--threads 1,2] [--reps 3] [-p 512] [-n 128] [--no-peer] [--no-repack] [--tolerance X]\n" +
        "  [--no-bandwidth | --bandwidth-only] [--rss] [--json out.json] [--cache DIR]",
    );
    return;
  }
  if (args["rss-child"]) return rssChild(args["rss-child"], args["rss-peer"]);
  const threadList = list(args.threads).map(Number);
  const reps = Number(args.reps);
  const p = Number(args["n-prompt"]);
  const n = Number(args["n-gen"]);
  // |Δ log p| bound of the check (max; the mean must stay under a third of it): the issue's 2e-2 for
  // every format. The check runs our engine with llama.cpp's attention numerics, and our kernels
  // round and sum as llama.cpp's AVX2 build does wherever an activation is quantized next, so with
  // quantized weights the two engines agree to float rounding (docs/testing.md). --tolerance
  // overrides it.
  const toleranceFor = () => (args.tolerance !== undefined ? Number(args.tolerance) : 2e-2);
  const report: Record<string, unknown> = { date: new Date().toISOString(), p, n, reps, threads: threadList };

  // 1. Memory bandwidth.
  const bandwidth: Record<number, { read: number; copy: number }> = {};
  if (!args["no-bandwidth"]) {
    for (const t of threadList) {
      const b = new NativeBackend({ threads: t });
      const r = b.memoryBandwidth(512 * 1024 * 1024, 5);
      b.dispose();
      bandwidth[t] = { read: r.readBytesPerSecond / 1e9, copy: r.copyBytesPerSecond / 1e9 };
      log(
        `bandwidth ${t} thread(s): read ${fmt(bandwidth[t].read)} GB/s, copy ${fmt(bandwidth[t].copy)} GB/s`,
      );
    }
    report.bandwidth = bandwidth;
  }
  if (args["bandwidth-only"]) {
    if (args.json) writeFileSync(args.json, `${JSON.stringify(report, null, 2)}\n`);
    return;
  }

  // 2. Files, checks and timings.
  const rows: Row[] = [];
  const checks: Record<string, CheckResult | string> = {};
  for (const shape of list(args.shapes)) {
    if (!SHAPES[shape]) throw new Error(`unknown shape ${shape}; known: ${Object.keys(SHAPES).join(", ")}`);
    for (const format of list(args.formats)) {
      if (!(format in FORMATS))
        throw new Error(`unknown format ${format}; known: ${Object.keys(FORMATS).join(", ")}`);
      const path = ensureModel(args.cache, shape, format, log);
      const file = `${shape}-${format}`;
      if (!path) {
        checks[file] = "skipped: the random-model writer cannot produce this format yet";
        log(`${file}: skipped (no writer for ${format})`);
        continue;
      }
      const gguf = openModelFile(path);
      const bytesPerToken = gguf.tensors
        .filter((t) => t.name !== "token_embd.weight")
        .reduce((a, t) => a + t.byteLength, 0);
      const vocab = SHAPES[shape].vocabSize;
      const prompt = tokens(p, 11, vocab);
      const start = tokens(1, 5, vocab)[0];
      const ctxSize = Math.max(p, n, 64) + 16;
      for (const [ti, t] of threadList.entries()) {
        log(`${file}, ${t} thread(s): loading`);
        const ours = openOurs(path, t, ctxSize, !args["no-repack"]);
        const peer = args["no-peer"] ? undefined : await openPeer(path, t, ctxSize);
        if (peer && ti === 0) {
          log(`${file}: checking against llama.cpp (16 greedy steps, top-5 log-probabilities)`);
          const r = await checkFile(ours, peer, [1, ...tokens(7, 3, vocab)], 16, 5, toleranceFor());
          checks[file] = r;
          log(
            `${file}: check ${r.ok ? "ok" : "FAILED"}: ${r.tokenMismatches} token mismatches (${r.nearTies} near ties), ` +
              `max |Δ log p| ${r.maxLogprobDiff.toExponential(2)}, mean ${r.meanLogprobDiff.toExponential(2)} (tolerance ${r.tolerance})`,
          );
        }
        // Warm-up (untimed), then alternate ours / llama.cpp for every repetition.
        oursPrompt(ours, prompt.slice(0, 32));
        oursGenerate(ours, start, 4);
        if (peer) {
          await peerPrompt(peer, prompt.slice(0, 32));
          await peerGenerate(peer, start, 4);
        }
        const pp: Row = { file, threads: t, test: `pp${p}`, ours: [], peer: [] };
        const tg: Row = { file, threads: t, test: `tg${n}`, ours: [], peer: [], bytesPerToken };
        for (let r = 0; r < reps; r++) {
          if (p > 0) {
            pp.ours.push(p / oursPrompt(ours, prompt));
            if (peer) pp.peer.push(p / (await peerPrompt(peer, prompt)));
          }
          if (n > 0) {
            tg.ours.push(n / oursGenerate(ours, start, n));
            if (peer) tg.peer.push(n / (await peerGenerate(peer, start, n)));
          }
          log(
            `${file} t=${t} rep ${r + 1}/${reps}: ` +
              `pp ours ${fmt(pp.ours[r] ?? Number.NaN)} llama.cpp ${fmt(pp.peer[r] ?? Number.NaN)}, ` +
              `tg ours ${fmt(tg.ours[r] ?? Number.NaN)} llama.cpp ${fmt(tg.peer[r] ?? Number.NaN)} tok/s`,
          );
        }
        if (p > 0) rows.push(pp);
        if (n > 0) rows.push(tg);
        ours.backend.dispose();
        await peer?.dispose();
      }
    }
  }

  // 3. Table.
  const out: string[] = [];
  out.push(
    `pp${p} / tg${n}, ${reps} alternating repetitions, median (mean ± sd) tok/s; ratio = median ours / median llama.cpp`,
  );
  out.push("");
  out.push("| file | threads | test | ours | llama.cpp | ratio | decode GB/s (% of read bw) |");
  out.push("|---|---|---|---|---|---|---|");
  for (const r of rows) {
    const check = checks[r.file];
    const checked = typeof check === "object" && check.ok;
    const o = meanSd(r.ours);
    const l = r.peer.length ? meanSd(r.peer) : undefined;
    const ratio = l && checked ? fmt(median(r.ours) / median(r.peer)) : l ? "no ratio: check failed" : "-";
    let gbs = "";
    if (r.bytesPerToken) {
      const g = (r.bytesPerToken * median(r.ours)) / 1e9;
      const bw = bandwidth[r.threads]?.read;
      gbs = `${fmt(g)}${bw ? ` (${fmt((100 * g) / bw, 0)}%)` : ""}`;
    }
    out.push(
      `| ${r.file} | ${r.threads} | ${r.test} | ${fmt(median(r.ours))} (${fmt(o.mean)} ± ${fmt(o.sd)}) | ` +
        `${l ? `${fmt(median(r.peer))} (${fmt(l.mean)} ± ${fmt(l.sd)})` : "-"} | ${ratio} | ${gbs} |`,
    );
  }
  out.push("");
  for (const [file, c] of Object.entries(checks)) {
    out.push(
      typeof c === "string"
        ? `- ${file}: ${c}`
        : `- ${file}: check ${c.ok ? "ok" : "FAILED"} (${c.steps} steps, ${c.tokenMismatches} token mismatches, ${c.nearTies} near ties, top-5 |Δ log p| max ${c.maxLogprobDiff.toExponential(2)} mean ${c.meanLogprobDiff.toExponential(2)}, tolerance ${c.tolerance})`,
    );
  }
  report.rows = rows;
  report.checks = checks;

  // 4. Peak RSS (fresh processes), TinyLlama Q4_0.
  if (args.rss) {
    const path = ensureModel(args.cache, "tinyllama", "q4_0", log);
    if (path) {
      out.push("");
      for (const peer of [false, true]) {
        if (peer && args["no-peer"]) continue;
        const res = spawnSync(
          process.execPath,
          [
            fileURLToPath(import.meta.url),
            "--rss-child",
            path,
            "--threads",
            args.threads,
            ...(peer ? ["--rss-peer"] : []),
          ],
          { encoding: "utf8" },
        );
        const line = res.stdout.trim().split("\n").pop() ?? "";
        try {
          const m = JSON.parse(line) as { maxRss: number; weightBytes: number; kvBytes: number };
          const budget = 1.1 * m.weightBytes + m.kvBytes + 100 * 2 ** 20;
          out.push(
            `- peak RSS ${peer ? "llama.cpp" : "ours"} (tinyllama-q4_0, 128 prompt + 128 generated): ${fmt(m.maxRss / 2 ** 20, 0)} MiB; ` +
              `weights ${fmt(m.weightBytes / 2 ** 20, 0)} MiB, KV ${fmt(m.kvBytes / 2 ** 20, 0)} MiB, budget 1.1·W + KV + 100 MiB = ${fmt(budget / 2 ** 20, 0)} MiB` +
              `${peer ? "" : m.maxRss <= budget ? " (within)" : " (OVER)"}`,
          );
          report[peer ? "rssPeer" : "rss"] = m;
        } catch {
          out.push(`- peak RSS ${peer ? "llama.cpp" : "ours"}: child failed: ${res.stderr.slice(-500)}`);
        }
      }
    }
  }
  process.stdout.write(`${out.join("\n")}\n`);
  if (args.json) writeFileSync(args.json, `${JSON.stringify(report, null, 2)}\n`);
}

main().then(
  () => process.exit(0),
  (e) => {
    log(`bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    process.exit(1);
  },
);
