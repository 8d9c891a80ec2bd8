import { openModelFile } from "@ryzanstein/engine";
import { createTokenizerFromGGUF } from "@ryzanstein/tokenizers";
import { resolveModelPath } from "../resolve-model.js";

/** `ryzanstein tokenize TEXT`: prints the token ids of TEXT as a JSON array. */
export function tokenizeCommand(
  text: string,
  o: { model?: string; bos: boolean },
  out: NodeJS.WritableStream = process.stdout,
): void {
  const gguf = openModelFile(resolveModelPath(o.model));
  const tokenizer = createTokenizerFromGGUF(gguf.metadata);
  const ids = tokenizer.encode(text, { addBos: o.bos && tokenizer.addBos, parseSpecial: true });
  out.write(`${JSON.stringify(ids)}\n`);
}
