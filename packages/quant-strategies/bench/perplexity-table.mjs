// Perplexity on held-out text: F32 vs RTN vs GPTQ vs AWQ at Q4_0, Q4_K and Q3_K, on stories260K
// and on the default model. Not part of `npm test`. Run after `npm run build`:
//   flock /tmp/ryz-heavy.lock node packages/quant-strategies/bench/perplexity-table.mjs [--groups] [stories|default ...]
// With --groups: Q4_0 only, RTN and GPTQ with group sizes 32, 64 and 128 (perplexity-groups.json).
// Held-out text is disjoint from the calibration text:
//   stories260K: both are sampled from the F32 model itself (temperature 1), with disjoint seeds;
//   default model: calibration = the first tokens of the KJV text (training part), held-out = the
//   trainer's own held-out split (the last 2 % of windows), made by packages/default-model/scripts/train.sh
//   (KJV_TEXT, default /tmp/ryzanstein-default-model/kjv.txt).
// Scoring decodes each quantized file's matrices to F32 (exactly the values the file holds) and
// runs the native engine in F32, because the native K-quant kernels are not merged yet; for Q4_0
// the native engine on the quantized file itself is reported too ("native" column).
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { GGMLType, typeName } from "@ryzanstein/core-tensor";
import { ModelSession, openModelFile } from "@ryzanstein/engine";
import {
  collectCalibration,
  decodedModelSource,
  QuantizationValidator,
  quantizedModelSource,
  quantizeModel,
  readFloatModel,
} from "@ryzanstein/quant-strategies";
import { createTokenizerFromGGUF } from "@ryzanstein/tokenizers";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "../../..");
const outDir = join(here, ".models");
mkdirSync(outDir, { recursive: true });

function sampleTokens(path, seeds, length) {
  const session = new ModelSession(openModelFile(path), { contextSize: length + 1, threads: 2 });
  const out = [];
  for (const seed of seeds) {
    out.push(1);
    let n = 0;
    for (const t of session.generate(
      [1],
      { maxTokens: length - 1, temperature: 1, seed, ignoreEos: true },
      () => false,
    )) {
      out.push(t.token);
      n++;
    }
    if (n !== length - 1) throw new Error(`sample ${seed} has ${n} tokens`);
  }
  session.dispose();
  return out;
}

function storiesData() {
  const path = join(root, "../shared/fixtures/models/stories260K.gguf");
  const ctx = 256;
  return {
    name: "stories260K",
    path,
    ctx,
    calibration: sampleTokens(
      path,
      Array.from({ length: 16 }, (_, i) => 1 + i),
      ctx,
    ),
    heldOut: sampleTokens(
      path,
      Array.from({ length: 16 }, (_, i) => 1001 + i),
      ctx,
    ),
    textNote:
      "sampled from the F32 model (T = 1): 16×256 calibration tokens (seeds 1–16), 16×256 held-out (seeds 1001–1016)",
  };
}

function defaultData() {
  const path = join(root, "packages/default-model/model/kjv-4m-q8_0.gguf");
  const kjv = process.env.KJV_TEXT ?? "/tmp/ryzanstein-default-model/kjv.txt";
  if (!existsSync(kjv))
    throw new Error(`${kjv} not found: run the data step of packages/default-model/scripts/train.sh`);
  const tokenizer = createTokenizerFromGGUF(openModelFile(path).metadata);
  const tokens = tokenizer.encode(readFileSync(kjv, "utf8"));
  const seq = 256;
  const count = Math.floor((tokens.length - 1) / seq);
  const nEval = Math.max(1, Math.round(count * 0.02)); // the trainer's held-out split (makeWindows)
  return {
    name: "default model (kjv-4m)",
    path,
    ctx: seq,
    calibration: tokens.slice(0, 8192),
    heldOut: tokens.slice((count - nEval) * seq, count * seq),
    textNote: `KJV: calibration = first 8192 tokens (Genesis), held-out = the trainer's eval split (last ${nEval} windows of 256, ${nEval * seq} tokens)`,
  };
}

const groupsOnly = process.argv.includes("--groups");
const which = process.argv.slice(2).filter((a) => a !== "--groups");
const datasets = (which.length ? which : ["stories", "default"]).map((w) =>
  (w === "stories" ? storiesData : defaultData)(),
);
const results = [];
for (const data of datasets) {
  const source = openModelFile(data.path);
  const float = readFloatModel(source);
  const reference = quantizeModel(float, { type: GGMLType.F32 });
  const t0 = performance.now();
  const calibration = collectCalibration(source, data.calibration, { ctx: data.ctx, threads: 2 });
  const calibrationSeconds = (performance.now() - t0) / 1000;
  const validator = new QuantizationValidator(quantizedModelSource(reference), data.heldOut, {
    ctx: data.ctx,
    threads: 2,
  });
  const rows = [
    {
      format: "F32",
      strategy: "—",
      bytes: reference.fileBytes,
      ppl: validator.reference.perplexity,
      top1: 1,
      seconds: 0,
      fallbacks: "",
    },
  ];
  if (source.tensors.some((t) => t.type === GGMLType.Q8_0)) {
    const shipped = validator.validate(source);
    rows.push({
      format: "Q8_0 (shipped file)",
      strategy: "—",
      bytes: readFileSync(data.path).length,
      ppl: shipped.perplexity,
      top1: shipped.top1Agreement,
      seconds: 0,
      fallbacks: "",
    });
  }
  const runs = groupsOnly
    ? [
        { type: GGMLType.Q4_0, strategy: "rtn" },
        ...[32, 64, 128].map((groupSize) => ({ type: GGMLType.Q4_0, strategy: "gptq", groupSize })),
      ]
    : [GGMLType.Q4_0, GGMLType.Q4_K, GGMLType.Q3_K].flatMap((type) =>
        ["rtn", "gptq", "awq"].map((strategy) => ({ type, strategy })),
      );
  for (const { type, strategy, groupSize } of runs) {
    const start = performance.now();
    const q = quantizeModel(float, { type, strategy, calibration, gptq: { groupSize } });
    const seconds = (performance.now() - start) / 1000;
    const r = validator.validate(decodedModelSource(q));
    const native =
      type === GGMLType.Q4_0 ? validator.validate(quantizedModelSource(q)).perplexity : undefined;
    const counts = new Map();
    for (const t of q.report)
      if (t.method !== "copy") counts.set(t.written, (counts.get(t.written) ?? 0) + 1);
    rows.push({
      format: typeName(type).toUpperCase(),
      strategy: groupSize ? `${strategy} (group ${groupSize})` : strategy,
      bytes: q.fileBytes,
      ppl: r.perplexity,
      native,
      top1: r.top1Agreement,
      seconds,
      fallbacks: [...counts].map(([t, c]) => `${c}×${t}`).join(", "),
      notes: q.notes.join("; "),
    });
    console.error(
      `${data.name} ${typeName(type)} ${strategy}: ppl ${r.perplexity.toFixed(4)} (${seconds.toFixed(1)} s)`,
    );
  }
  results.push({
    model: data.name,
    text: data.textNote,
    ctx: data.ctx,
    heldOutTokens: data.heldOut.length,
    calibrationTokens: data.calibration.length,
    calibrationSeconds,
    rows,
  });
}

writeFileSync(
  join(outDir, groupsOnly ? "perplexity-groups.json" : "perplexity-table.json"),
  `${JSON.stringify(results, null, 2)}\n`,
);
for (const r of results) {
  console.log(`\n### ${r.model}\n\n${r.text}; ctx ${r.ctx}, ${r.heldOutTokens} held-out tokens.\n`);
  console.log(
    "| format | strategy | file bytes | perplexity | Δ vs F32 | native engine | top-1 agreement | matrices | quantize s |",
  );
  console.log("|---|---|---:|---:|---:|---:|---:|---|---:|");
  const base = r.rows[0].ppl;
  for (const x of r.rows) {
    const delta = x.format === "F32" ? "" : `${((x.ppl / base - 1) * 100).toFixed(2)} %`;
    console.log(
      `| ${x.format} | ${x.strategy} | ${x.bytes} | ${x.ppl.toFixed(4)} | ${delta} | ${x.native === undefined ? "" : x.native.toFixed(4)} | ${(x.top1 * 100).toFixed(1)} % | ${x.fallbacks} | ${x.seconds ? x.seconds.toFixed(1) : ""} |`,
    );
  }
}
