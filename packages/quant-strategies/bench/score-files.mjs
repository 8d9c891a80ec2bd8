// Scores GGUF files of the default model on the held-out KJV split the perplexity table uses
// (their matrices decoded to F32, so every format can be scored), against the F32 reference:
//   flock /tmp/ryz-heavy.lock node packages/quant-strategies/bench/score-files.mjs A.gguf B.gguf ...
import { readFileSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { GGMLType } from "@ryzanstein/core-tensor";
import { openModelFile } from "@ryzanstein/engine";
import {
  QuantizationValidator,
  quantizedModelSource,
  quantizeModel,
  readFloatModel,
} from "@ryzanstein/quant-strategies";
import { createTokenizerFromGGUF } from "@ryzanstein/tokenizers";

const root = join(dirname(fileURLToPath(import.meta.url)), "../../..");
const path = join(root, "packages/default-model/model/kjv-4m-q8_0.gguf");
const source = openModelFile(path);
const tokens = createTokenizerFromGGUF(source.metadata).encode(
  readFileSync(process.env.KJV_TEXT ?? "/tmp/ryzanstein-default-model/kjv.txt", "utf8"),
);
const seq = 256;
const count = Math.floor((tokens.length - 1) / seq);
const nEval = Math.max(1, Math.round(count * 0.02));
const heldOut = tokens.slice((count - nEval) * seq, count * seq);
const reference = quantizedModelSource(quantizeModel(readFloatModel(source), { type: GGMLType.F32 }));
const validator = new QuantizationValidator(reference, heldOut, { ctx: seq, threads: 2 });
console.log(
  `F32 reference: ppl ${validator.reference.perplexity.toFixed(4)} on ${heldOut.length} held-out tokens`,
);
for (const file of process.argv.slice(2)) {
  const q = quantizeModel(readFloatModel(openModelFile(file)), { type: GGMLType.F32 });
  const r = validator.validate(quantizedModelSource(q));
  console.log(
    `${file}: ${statSync(file).size} bytes, ppl ${r.perplexity.toFixed(4)} (+${(r.increase * 100).toFixed(2)} %), top-1 ${(r.top1Agreement * 100).toFixed(1)} %`,
  );
}
