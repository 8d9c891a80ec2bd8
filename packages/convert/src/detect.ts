import { closeSync, existsSync, openSync, readdirSync, readSync, statSync } from "node:fs";
import { RyzansteinError } from "@ryzanstein/core-tensor";

/** What a path holds. */
export type ModelFormat = "gguf" | "hf-folder" | "safetensors" | "llama2c";

const PICKLE_HINT =
  "PyTorch pickle checkpoints are not read (they can run code when loaded): convert them to safetensors first, e.g. with HuggingFace transformers `model.save_pretrained(dir, safe_serialization=True)`";

function head(path: string, n: number): Uint8Array {
  const fd = openSync(path, "r");
  try {
    const buf = new Uint8Array(n);
    const got = readSync(fd, buf, 0, n, 0);
    return buf.subarray(0, got);
  } finally {
    closeSync(fd);
  }
}

/** True when the first 28 bytes look like a llama2.c checkpoint header that fits the file size. */
function isLlama2c(bytes: Uint8Array, size: number): boolean {
  if (bytes.length < 28) return false;
  const v = new DataView(bytes.buffer, bytes.byteOffset, 28);
  const [dim, hidden, layers, heads, kvHeads, vocabRaw, seq] = Array.from({ length: 7 }, (_, i) =>
    v.getInt32(4 * i, true),
  );
  const vocab = Math.abs(vocabRaw); // negative vocab means an unshared classifier
  const sane = [dim, hidden, layers, heads, kvHeads, vocab, seq].every((x) => x > 0 && x < 1 << 20);
  if (!sane || dim % heads !== 0 || heads % kvHeads !== 0) return false;
  const headDim = dim / heads;
  const perLayer = 2 * dim + dim * dim * 2 + 2 * dim * kvHeads * headDim + 3 * dim * hidden;
  const floats = vocab * dim + layers * perLayer + dim + seq * headDim; // + freq tables (llama2.c writes them)
  const bytesNeeded = 28 + floats * 4;
  return (
    size >= bytesNeeded - seq * headDim * 4 &&
    size <= bytesNeeded + (vocabRaw < 0 ? vocab * dim * 4 : 0) + 1024
  );
}

/**
 * Tells what a path holds: a GGUF file, a HuggingFace folder (config.json + safetensors, sharded
 * or not), a single safetensors file, or a llama2.c checkpoint. Anything else is a clear error,
 * with advice for PyTorch pickles.
 */
export function detectFormat(path: string): ModelFormat {
  if (!existsSync(path)) throw new RyzansteinError("MODEL_NOT_FOUND", `no such file or folder: ${path}`);
  const st = statSync(path);
  if (st.isDirectory()) {
    const files = readdirSync(path);
    const hasConfig = files.includes("config.json");
    const hasSafetensors =
      files.some((f) => f.endsWith(".safetensors")) || files.includes("model.safetensors.index.json");
    if (hasConfig && hasSafetensors) return "hf-folder";
    if (files.some((f) => /\.(bin|pt|pth)$/.test(f))) {
      throw new RyzansteinError(
        "UNSUPPORTED_TENSOR_TYPE",
        `the folder holds PyTorch weights. ${PICKLE_HINT}`,
        { file: path },
      );
    }
    throw new RyzansteinError(
      "MODEL_NOT_FOUND",
      hasConfig
        ? "the folder has config.json but no *.safetensors"
        : "the folder has no config.json: not a HuggingFace model",
      { file: path },
    );
  }
  const bytes = head(path, 64);
  const text = new TextDecoder("latin1").decode(bytes.subarray(0, 4));
  if (text === "GGUF") return "gguf";
  if (bytes.length >= 9) {
    const len = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
    if (bytes[8] === 0x7b && len > 1n && len < BigInt(st.size)) return "safetensors";
  }
  if (bytes[0] === 0x80 || (bytes[0] === 0x50 && bytes[1] === 0x4b)) {
    throw new RyzansteinError(
      "UNSUPPORTED_TENSOR_TYPE",
      `this is a PyTorch pickle or zip checkpoint. ${PICKLE_HINT}`,
      { file: path },
    );
  }
  if (isLlama2c(bytes, st.size)) return "llama2c";
  throw new RyzansteinError(
    "BAD_MAGIC",
    "unrecognised model format (expected a GGUF file, a safetensors file, a llama2.c checkpoint or a HuggingFace folder)",
    { file: path },
  );
}
