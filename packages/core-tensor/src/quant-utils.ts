// Byte and float32 helpers shared by the format rows. ggml's reference quantizers compute in C
// `float` without FMA contraction, so every intermediate here is rounded with `f` (Math.fround);
// a double computation rounded once at the end would choose different codes near ties.

/** Rounds to float32 (one C `float` operation). */
export const f = Math.fround;

/** Little-endian uint16 at byte `o`. */
export const u16 = (b: Uint8Array, o: number): number => b[o] | (b[o + 1] << 8);
/** Writes a little-endian uint16. */
export const put16 = (b: Uint8Array, o: number, v: number): void => {
  b[o] = v & 0xff;
  b[o + 1] = (v >> 8) & 0xff;
};
/** Little-endian int16 at byte `o`. */
export const i16 = (b: Uint8Array, o: number): number => ((b[o] | (b[o + 1] << 8)) << 16) >> 16;
/** Reinterprets the low 8 bits as int8. */
export const i8 = (v: number): number => (v << 24) >> 24;

const f32 = new Float32Array(1);
const f32Bytes = new Uint8Array(f32.buffer);

/** Little-endian float32 at byte `o`. */
export function getF32(b: Uint8Array, o: number): number {
  for (let i = 0; i < 4; i++) f32Bytes[i] = b[o + i];
  return f32[0];
}
/** Writes a little-endian float32. */
export function putF32(b: Uint8Array, o: number, v: number): void {
  f32[0] = v;
  for (let i = 0; i < 4; i++) b[o + i] = f32Bytes[i];
}

/** C `roundf` / `lroundf`: halves round away from zero. */
export function roundHalfAway(v: number): number {
  return v < 0 ? -Math.round(-v) : Math.round(v);
}

/** C cast of a float to int8_t (truncation toward zero). */
export function truncToI8(v: number): number {
  return i8(Math.trunc(v));
}

/** ggml's `nearest_int`: adds 1.5·2^23 in float32, i.e. rounds half to even. */
export function nearestInt(v: number): number {
  return f(v + 12582912) - 12582912;
}
