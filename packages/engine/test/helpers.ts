import { readFileSync } from "node:fs";
import { join } from "node:path";
import { availableIsas, type Isa } from "@ryzanstein/kernels-native";
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

/**
 * The kernel variant the llama.cpp parity tests run: AVX2 where the CPU has it. Those tests hold our
 * engine to llama.cpp's float summation order, which is its AVX2 build's, because in these
 * random-weight models a last-bit difference can flip one Q8 activation rounding and move every
 * later logit by up to tenths. The AVX-512 and scalar kernels sum in other orders: they are held
 * to the reference per kernel (kernels-native, every ISA, ~1e-7) and, on CPUs without AVX-512,
 * through SIMDe emulation (kernels-native/scripts/avx512-emulated.sh).
 */
export const PARITY_ISA: Isa | undefined = availableIsas().includes("avx2") ? "avx2" : undefined;
