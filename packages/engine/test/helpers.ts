import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fixturesDir } from "@ryzanstein/test-support";

export const storiesPath = join(fixturesDir(), "models/stories260K.gguf");
export const goldenText = readFileSync(
  join(fixturesDir(), "models/stories260K.golden.greedy-t0-n64-prompt-Once_upon_a_time.txt"),
  "utf8",
);

/** Relative L2 error ‖a − b‖ / ‖b‖. */
export function relL2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / den);
}

export { logSoftmax } from "@ryzanstein/test-support";
