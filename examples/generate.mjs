// Streams a completion from a GGUF model: node examples/generate.mjs MODEL.gguf "Once upon a time"
import { loadModel } from "@ryzanstein/engine";

const [path, prompt = "Once upon a time"] = process.argv.slice(2);
if (!path) {
  console.error("usage: node examples/generate.mjs MODEL.gguf [PROMPT]");
  process.exit(1);
}

const model = await loadModel(path, {
  onProgress: (p) => process.stderr.write(`\rloading ${(p.fraction * 100).toFixed(0)}%`),
});
process.stderr.write(`\r${model.config.name}: ${model.config.nLayers} layers, ${model.backend}\n`);

const controller = new AbortController();
process.once("SIGINT", () => controller.abort());

process.stdout.write(prompt);
const generation = model.generate(prompt, {
  maxTokens: 100,
  temperature: 0.8,
  seed: 42,
  signal: controller.signal,
});
for await (const token of generation) process.stdout.write(token.text);
const result = await generation.result;
process.stdout.write(`${result.text}\n`);
process.stderr.write(`[${result.completionTokens} tokens, finish: ${result.finishReason}]\n`);
await model.dispose();
