import { join } from "node:path";
import { fixturesDir } from "@ryzanstein/test-support";
import { type RunningServer, type ServerOptions, startServer } from "../src/index.js";

/** stories260K, the small trained model of the fixtures. */
export const storiesPath = join(fixturesDir(), "models/stories260K.gguf");

/** A server on 127.0.0.1 with a free port, logs silenced. */
export function startTestServer(options: Partial<ServerOptions> = {}): Promise<RunningServer> {
  return startServer({
    model: storiesPath,
    port: 0,
    host: "127.0.0.1",
    logLevel: "silent",
    threads: 2,
    contextSize: 256,
    maxSeqs: 8,
    maxBatchTokens: 128,
    ...options,
  });
}

/** Reads an SSE response body into its `data:` payloads. */
export async function readSse(res: Response): Promise<string[]> {
  const text = await res.text();
  return text
    .split("\n\n")
    .filter((b) => b.startsWith("data: "))
    .map((b) => b.slice(6));
}
