import { RyzansteinError } from "@ryzanstein/core-tensor";
import type { KVCacheType } from "@ryzanstein/engine";
import { startServer } from "@ryzanstein/server";
import { resolveModelPath } from "../resolve-model.js";

/** Options of `ryzanstein serve`. */
export interface ServeOptions {
  model?: string;
  host: string;
  port: number;
  parallel: number;
  ctx?: number;
  kvBlocks?: number;
  kvMemory?: number;
  kvType: KVCacheType;
  apiKey?: string;
  threads?: number;
  batchTokens: number;
  queue: number;
  logLevel: string;
}

const UNITS: Record<string, number> = {
  "": 1,
  B: 1,
  K: 2 ** 10,
  KB: 2 ** 10,
  M: 2 ** 20,
  MB: 2 ** 20,
  G: 2 ** 30,
  GB: 2 ** 30,
  KIB: 2 ** 10,
  MIB: 2 ** 20,
  GIB: 2 ** 30,
};

/** Parses `2GB`, `512M`, `1.5GiB` or a byte count. */
export function parseBytes(value: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(value);
  const unit = m ? UNITS[m[2].toUpperCase()] : undefined;
  if (!m || unit === undefined)
    throw new RyzansteinError("INVALID_ARGUMENT", `cannot read a size from '${value}' (try 2GB or 512MB)`);
  const bytes = Math.floor(Number(m[1]) * unit);
  if (!(bytes > 0)) throw new RyzansteinError("INVALID_ARGUMENT", `the size '${value}' must be positive`);
  return bytes;
}

/**
 * `ryzanstein serve`: an OpenAI-compatible server on HOST:PORT until SIGINT/SIGTERM, which drains
 * in-flight streams before exiting.
 */
export async function serveCommand(o: ServeOptions): Promise<void> {
  if (o.kvBlocks !== undefined && o.kvMemory !== undefined)
    throw new RyzansteinError("INVALID_ARGUMENT", "give either --kv-blocks or --kv-memory, not both");
  const model = resolveModelPath(o.model);
  const server = await startServer({
    model,
    host: o.host,
    port: o.port,
    apiKey: o.apiKey,
    maxSeqs: o.parallel,
    contextSize: o.ctx,
    numBlocks: o.kvBlocks,
    kvMemoryBytes: o.kvMemory,
    kvType: o.kvType,
    threads: o.threads,
    maxBatchTokens: o.batchTokens,
    maxQueue: o.queue,
    logLevel: o.logLevel,
  });
  process.stdout.write(
    `ryzanstein: serving ${model} at ${server.url}/v1 (${server.engine.backend}, ${o.parallel} parallel, ` +
      `${server.engine.kv.numBlocks} ${server.engine.kv.kvType} KV blocks of ${server.engine.kv.blockSize})\n`,
  );
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      process.stdout.write("ryzanstein: draining in-flight requests\n");
      void server.close().then(resolve);
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
}
