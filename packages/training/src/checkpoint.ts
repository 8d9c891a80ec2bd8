/** Atomic binary checkpoints: a JSON header plus parameters and AdamW moments, written via rename. */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from "node:fs";
import { RyzansteinError } from "@ryzanstein/core-tensor";

const MAGIC = "RYZCKPT1";

/** Everything needed to resume training exactly. */
export interface Checkpoint {
  /** JSON-serialisable state (step, histories, config). */
  state: Record<string, unknown>;
  /** Parameters (flat). */
  params: Float32Array;
  /** AdamW first moments. */
  m: Float32Array;
  /** AdamW second moments. */
  v: Float32Array;
}

/** Writes `ckpt` to `path` atomically (temporary file, fsync, rename). */
export function saveCheckpoint(path: string, ckpt: Checkpoint): void {
  const header = Buffer.from(JSON.stringify({ ...ckpt.state, size: ckpt.params.length }), "utf8");
  const pre = Buffer.alloc(12);
  pre.write(MAGIC, 0, "latin1");
  pre.writeUInt32LE(header.length, 8);
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, "w");
  try {
    writeSync(fd, pre);
    writeSync(fd, header);
    for (const a of [ckpt.params, ckpt.m, ckpt.v])
      writeSync(fd, new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

/** Reads a checkpoint written by {@link saveCheckpoint}. */
export function loadCheckpoint(path: string): Checkpoint {
  const buf = readFileSync(path);
  if (buf.length < 12 || buf.toString("latin1", 0, 8) !== MAGIC) {
    throw new RyzansteinError("BAD_MAGIC", `${path} is not a Ryzanstein training checkpoint`);
  }
  const hl = buf.readUInt32LE(8);
  const state = JSON.parse(buf.toString("utf8", 12, 12 + hl)) as Record<string, unknown>;
  const size = state.size as number;
  const at = 12 + hl;
  if (buf.length !== at + 3 * size * 4) throw new RyzansteinError("TRUNCATED", `${path} is truncated`);
  const arr = (i: number) =>
    new Float32Array(
      buf.buffer.slice(buf.byteOffset + at + i * size * 4, buf.byteOffset + at + (i + 1) * size * 4),
    );
  return { state, params: arr(0), m: arr(1), v: arr(2) };
}
