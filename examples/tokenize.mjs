// Prints how a model's tokenizer splits text: node examples/tokenize.mjs MODEL.gguf "Hello world"
import { readGGUF } from "@ryzanstein/convert";
import { createTokenizerFromGGUF } from "@ryzanstein/tokenizers";

const [path, text = "Hello world"] = process.argv.slice(2);
if (!path) {
  console.error("usage: node examples/tokenize.mjs MODEL.gguf [TEXT]");
  process.exit(1);
}
const tokenizer = createTokenizerFromGGUF(readGGUF(path).metadata);
const ids = tokenizer.encode(text, { addBos: tokenizer.addBos });
for (const id of ids) console.log(String(id).padStart(6), JSON.stringify(tokenizer.tokenText(id)));
