import { closeSync, openSync, readSync } from "node:fs";
import { RyzansteinError } from "@ryzanstein/core-tensor";

/** Reads `length` bytes at `offset` of a file into a new buffer. */
export function readRange(path: string, offset: number, length: number): Uint8Array {
  const fd = openSync(path, "r");
  try {
    const out = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const got = readSync(fd, out, done, length - done, offset + done);
      if (got === 0)
        throw new RyzansteinError(
          "TRUNCATED",
          `file ends at ${offset + done}, ${length - done} bytes short`,
          { file: path },
        );
      done += got;
    }
    return out;
  } finally {
    closeSync(fd);
  }
}
