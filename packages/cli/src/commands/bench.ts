import { statSync } from "node:fs";
import { basename } from "node:path";
import { typeName } from "@ryzanstein/core-tensor";
import {
  type BenchmarkResult,
  benchmarkModel,
  type KVCacheType,
  Model,
  openModelFile,
  readLlamaWeights,
  readModelConfig,
} from "@ryzanstein/engine";
import { type Isa, NativeBackend } from "@ryzanstein/kernels-native";
import { resolveModelPath } from "../resolve-model.js";

/** Options of `ryzanstein bench`. */
export interface BenchOptions {
  model?: string;
  /** Prompt lengths (`-p 512` or `-p 128,512`; 0 skips pp). */
  nPrompt: number[];
  /** Generation lengths (0 skips tg). */
  nGen: number[];
  /** Thread counts. */
  threads: number[];
  repetitions: number;
  json?: boolean;
  isa?: Isa;
  /** false with `--no-repack`. */
  repack: boolean;
  /** Context depths each test starts from (llama-bench's `-d`; default [0]). */
  depth: number[];
  /** KV cache element type (default f16). */
  kvType?: KVCacheType;
}

/** One result row with the context it was measured in. */
export interface BenchRow extends BenchmarkResult {
  /** Model file name. */
  model: string;
  /** Model file size in bytes. */
  model_size: number;
  /** Backend name (`native-avx2`, ...). */
  backend: string;
}

/** `ryzanstein bench`: llama-bench-style pp/tg tokens per second; progress goes to stderr. */
export function benchCommand(
  o: BenchOptions,
  out: NodeJS.WritableStream = process.stdout,
  err: NodeJS.WritableStream = process.stderr,
): BenchRow[] {
  const path = resolveModelPath(o.model);
  const gguf = openModelFile(path);
  const config = readModelConfig(gguf);
  const size = statSync(path).size;
  const rows: BenchRow[] = [];
  const matrixType = typeName(gguf.tensor("blk.0.attn_q.weight").type);
  for (const threads of o.threads) {
    const backend = new NativeBackend({ threads, isa: o.isa, repack: o.repack });
    try {
      const model = new Model(config, readLlamaWeights(gguf, config), backend);
      for (const depth of o.depth) {
        for (const p of o.nPrompt) {
          for (const n of o.nGen) {
            const results = benchmarkModel(model, threads, {
              promptTokens: p,
              genTokens: n,
              repetitions: o.repetitions,
              depth,
              kvCache: o.kvType,
              onProgress: (m) => err.write(`bench: ${basename(path)} ${backend.name} t=${threads} ${m}\n`),
            });
            for (const r of results) {
              if (rows.some((x) => x.test === r.test && x.threads === r.threads)) continue;
              rows.push({ model: basename(path), model_size: size, backend: backend.name, ...r });
            }
          }
        }
      }
    } finally {
      backend.dispose();
    }
  }
  if (o.json) {
    out.write(
      `${JSON.stringify(
        rows.map((r) => ({
          test: r.test,
          threads: r.threads,
          tokens_per_second: r.tokens_per_second,
          stddev: r.stddev,
          samples: r.samples,
        })),
      )}\n`,
    );
    return rows;
  }
  const header = ["model", "type", "size", "backend", "threads", "test", "t/s"];
  const table = rows.map((r) => [
    r.model,
    matrixType,
    `${(r.model_size / 2 ** 30).toFixed(2)} GiB`,
    r.backend,
    String(r.threads),
    r.test,
    `${r.tokens_per_second.toFixed(2)} ± ${r.stddev.toFixed(2)}`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(" | ")} |\n`;
  out.write(line(header));
  out.write(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|\n`);
  for (const row of table) out.write(line(row));
  return rows;
}
