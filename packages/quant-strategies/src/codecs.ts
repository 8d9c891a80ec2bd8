import { type ComputeFormat, f16ToF32, GGMLType } from "@ryzanstein/core-tensor";

/**
 * Element-wise access to a block whose scales are already fixed: what GPTQ needs to quantize one
 * column at a time with the parameters chosen at the start of the block. A block is first encoded
 * with the format's reference quantizer (that fixes its scales); `set` then replaces the code of
 * one element by the code nearest to `x` under those scales and returns the value it decodes to,
 * exactly as the format's `dequantizeRow` computes it.
 */
export interface ElementCodec {
  /** Stores the code nearest to `x` for element `j` of the block at `block[offset..]`; returns its decoded value. */
  set(block: Uint8Array, offset: number, j: number, x: number): number;
}

const u16 = (b: Uint8Array, o: number): number => b[o] | (b[o + 1] << 8);
const clamp = (v: number, lo: number, hi: number): number => Math.max(lo, Math.min(hi, v));

/** Q8_0: value = q·d with q in [-127, 127]. */
const q8_0: ElementCodec = {
  set(block, o, j, x) {
    const d = f16ToF32(u16(block, o));
    const q = d === 0 ? 0 : clamp(Math.round(x / d), -127, 127);
    block[o + 2 + j] = q & 0xff;
    return Math.fround(q * d);
  },
};

/** Q4_0: value = (q − 8)·d, q in [0, 15]; byte j holds element j (low nibble) and j+16 (high). */
const q4_0: ElementCodec = {
  set(block, o, j, x) {
    const d = f16ToF32(u16(block, o));
    const q = d === 0 ? 8 : clamp(Math.round(x / d) + 8, 0, 15);
    const at = o + 2 + (j & 15);
    block[at] = j < 16 ? (block[at] & 0xf0) | q : (block[at] & 0x0f) | (q << 4);
    return Math.fround((q - 8) * d);
  },
};

/** Element codecs by format: the formats GPTQ can write column by column. */
export const ELEMENT_CODECS: Partial<Record<ComputeFormat, ElementCodec>> = {
  [GGMLType.Q8_0]: q8_0,
  [GGMLType.Q4_0]: q4_0,
};
