// Lookup-table (LUT) matmul of ternary weights (TQ1_0 / TQ2_0 repacked at load), in the spirit of
// T-MAC and bitnet.cpp's TL2: weights are stored as indices into a small table of partial sums of
// the activations, and the kernel gathers from that table (vpshufb) instead of decoding weights
// and multiplying them.
//
// Groups of 3 columns: 3 trits (t0, t1, t2) are the balanced-ternary number v = 9·t0 + 3·t1 + t2
// in [-13, 13], stored as |v| (a 4-bit index 0..13) plus the sign of v (1 bit): 5 bits for 3
// weights. A 256-column block (one scale per row, as in the file formats and in the Q8_K
// activations) is 85 groups plus one group of column 255 padded with two zero trits: 86 groups.
//
// Per activation group (a0, a1, a2) the table holds T[m] = Σ digit_i(m)·a_i for m = 0..13, where
// digit(m) is m in balanced ternary. T needs 10 bits, so each int8 activation is split exactly into
// a = 16·ah + al (al = a & 15 in [0, 15], ah = a >> 4 in [-8, 7]) and there are two int8 tables,
// TL (|TL| <= 45) and TH (|TH| <= 24); the kernel combines 16·TH + TL into int16. Every sum is an
// integer sum of int8 activations times trits, so a block's integer dot is exact and the result
// equals the scalar dot of the file layout bit for bit (same float operations per block).
//
// Packed layout of a rows x cols ternary matrix: tiles of 32 rows (the last one padded with zero
// rows), each tile a sequence of cols/256 blocks of kTlBlockBytes:
//   uint16 d[32]              f16 scale of each row
//   uint8  idx[43][32]        pair p, byte r: index of group 2p of row r (low nibble), 2p+1 (high)
//   uint8  sgn[11][32]        set s, byte r: bit k = sign of group 8s+k of row r (1: negative)
// 1792 bytes per 32 x 256 weights: 1.75 bits per weight (TQ2_0: 2.0625, TQ1_0: 1.6875).
//
// Activations: per token, float d[cols/256] (the Q8_K scales, padded to 64 bytes), then for each
// block 86 groups x 32 bytes: TL[16] then TH[16] (entries 14, 15 zero).
//
// Internal linkage only (see common.h).
#pragma once

#include <cstdint>
#include <cstring>

#include "kquants.h"

namespace ryz {

constexpr int kTlRows = 32;              // rows per tile (bytes of a 256-bit vector)
constexpr int kTlGroups = 86;            // groups of 3 columns per 256-column block
constexpr int kTlPairs = kTlGroups / 2;  // index bytes per row and block
constexpr int kTlSets = 11;              // sign bytes per row and block
constexpr size_t kTlIdxOff = 2 * kTlRows;
constexpr size_t kTlSgnOff = kTlIdxOff + static_cast<size_t>(kTlPairs) * kTlRows;
constexpr size_t kTlBlockBytes = kTlSgnOff + static_cast<size_t>(kTlSets) * kTlRows;
constexpr size_t kTlTableBytes = 32;  // TL + TH of one group
constexpr size_t kTlActBlockBytes = kTlGroups * kTlTableBytes;
static_assert(kTlBlockBytes == 1792, "ternary LUT block");
static_assert(kTlActBlockBytes % 64 == 0, "tables stay 64-byte aligned");

/** Bytes of the packed layout of a rows x cols ternary matrix (cols a multiple of 256). */
static inline size_t tl_packed_bytes(int64_t rows, int64_t cols) {
  const size_t tiles = static_cast<size_t>((rows + kTlRows - 1) / kTlRows);
  return tiles * static_cast<size_t>(cols / kQKK) * kTlBlockBytes;
}

/** Bytes of one token's tables (scales first, 64-byte aligned). */
static inline size_t tl_act_bytes(int64_t cols) {
  const size_t nb = static_cast<size_t>(cols / kQKK);
  return ((nb * 4 + 63) & ~size_t{63}) + nb * kTlActBlockBytes;
}
static inline size_t tl_act_tables_off(int64_t cols) { return (static_cast<size_t>(cols / kQKK) * 4 + 63) & ~size_t{63}; }

/** Balanced-ternary digit i (0: the 9s, 1: the 3s, 2: the 1s) of m in 0..13. */
static inline int tl_digit(int m, int i) {
  int d[3] = {0, 0, 0};
  int v = m;
  for (int k = 2; k >= 0; k--) {
    int r = v % 3;
    v /= 3;
    if (r == 2) {
      r = -1;
      v += 1;
    }
    d[k] = r;
  }
  return d[i];
}

/** Trit (-1, 0, 1) of column e of one block of a ternary file format, or 0 for e >= 256. */
static inline int tl_trit(int fmt, const uint8_t* blk, int e) {
  if (e >= kQKK) return 0;
  return fmt == 34 ? code_tq1(*reinterpret_cast<const BlockTQ1*>(blk), e)
                   : code_tq2(*reinterpret_cast<const BlockTQ2*>(blk), e);
}

/** False when a TQ2_0 matrix holds the code 3 (weight +2, outside the ternary LUT's alphabet). */
static inline bool tl_accepts(int fmt, const uint8_t* src, int64_t rows, int64_t cols) {
  if (fmt == 34) return true;
  const size_t nblk = static_cast<size_t>(rows) * static_cast<size_t>(cols / kQKK);
  for (size_t i = 0; i < nblk; i++) {
    const uint8_t* q = src + i * sizeof(BlockTQ2);
    for (int j = 0; j < 64; j++) {
      const uint8_t b = q[j];
      if ((b & (b >> 1) & 0x55) != 0) return false;  // some 2-bit field == 3
    }
  }
  return true;
}

/** Writes the packed layout of rows [0, rows) of a TQ1_0 (34) / TQ2_0 (35) matrix (tl_packed_bytes). */
static inline void tl_repack(int fmt, const uint8_t* src, int64_t rows, int64_t cols, uint8_t* dst) {
  const int64_t nb = cols / kQKK;
  const size_t bb = fmt == 34 ? sizeof(BlockTQ1) : sizeof(BlockTQ2);
  const int64_t tiles = (rows + kTlRows - 1) / kTlRows;
  std::memset(dst, 0, tl_packed_bytes(rows, cols));
  for (int64_t t = 0; t < tiles; t++) {
    for (int64_t b = 0; b < nb; b++) {
      uint8_t* out = dst + (static_cast<size_t>(t * nb + b)) * kTlBlockBytes;
      for (int r = 0; r < kTlRows; r++) {
        const int64_t row = t * kTlRows + r;
        if (row >= rows) break;  // padding rows: d = 0, index 0 (T[0] = 0)
        const uint8_t* blk = src + (static_cast<size_t>(row) * static_cast<size_t>(nb) + static_cast<size_t>(b)) * bb;
        std::memcpy(out + 2 * r, blk + bb - 2, 2);  // d is the last field of both block types
        for (int g = 0; g < kTlGroups; g++) {
          const int v = 9 * tl_trit(fmt, blk, 3 * g) + 3 * tl_trit(fmt, blk, 3 * g + 1) + tl_trit(fmt, blk, 3 * g + 2);
          const int m = v < 0 ? -v : v;
          out[kTlIdxOff + 32 * static_cast<size_t>(g / 2) + r] |= static_cast<uint8_t>(m << (4 * (g % 2)));
          if (v < 0) out[kTlSgnOff + 32 * static_cast<size_t>(g / 8) + r] |= static_cast<uint8_t>(1 << (g % 8));
        }
      }
    }
  }
}

/** One block's tables from its Q8_K quants: 86 x (TL[16], TH[16]) (scalar reference). */
static inline void tl_tables_ref(const int8_t* qs, uint8_t* dst) {
  int8_t al[kQKK + 2] = {}, ah[kQKK + 2] = {};
  for (int j = 0; j < kQKK; j++) {
    al[j] = static_cast<int8_t>(qs[j] & 15);
    ah[j] = static_cast<int8_t>((qs[j] - al[j]) / 16);  // exact: floor(q / 16)
  }
  for (int g = 0; g < kTlGroups; g++) {
    int8_t* tl = reinterpret_cast<int8_t*>(dst + kTlTableBytes * static_cast<size_t>(g));
    for (int m = 0; m < 16; m++) {
      int sl = 0, sh = 0;
      if (m < 14) {
        for (int i = 0; i < 3; i++) {
          sl += tl_digit(m, i) * al[3 * g + i];
          sh += tl_digit(m, i) * ah[3 * g + i];
        }
      }
      tl[m] = static_cast<int8_t>(sl);
      tl[16 + m] = static_cast<int8_t>(sh);
    }
  }
}

/** Activations of one token to its tables (tl_act_bytes): Q8_K quantization as ggml, then the tables. */
static inline void conv_tl_ref(const float* x, void* dst, int64_t cols) {
  uint8_t* out = static_cast<uint8_t*>(dst);
  float* d = reinterpret_cast<float*>(out);
  uint8_t* tab = out + tl_act_tables_off(cols);
  BlockQ8K q;
  for (int64_t b = 0; b < cols / kQKK; b++) {
    conv_q8_k_ref(x + b * kQKK, &q, kQKK);
    d[b] = q.d;
    tl_tables_ref(q.qs, tab + static_cast<size_t>(b) * kTlActBlockBytes);
  }
}

/**
 * One tile of 32 packed rows times `nt` tokens (tables `x`, stride `xs` bytes): y[t*ys + r] for
 * rows r < `valid` (scalar reference; sums per block exact, then acc += (d·yd)·isum as dot_k_ref).
 */
static inline void gemm_tl_ref(int64_t cols, const uint8_t* tile, const uint8_t* x, size_t xs, int64_t nt, float* y,
                               size_t ys, int valid) {
  const int64_t nb = cols / kQKK;
  const size_t toff = tl_act_tables_off(cols);
  for (int64_t t = 0; t < nt; t++) {
    const uint8_t* xt = x + xs * static_cast<size_t>(t);
    const float* yd = reinterpret_cast<const float*>(xt);
    for (int r = 0; r < valid; r++) {
      float s = 0.0f;
      for (int64_t b = 0; b < nb; b++) {
        const uint8_t* blk = tile + static_cast<size_t>(b) * kTlBlockBytes;
        const int8_t* tab = reinterpret_cast<const int8_t*>(xt + toff + static_cast<size_t>(b) * kTlActBlockBytes);
        int32_t isum = 0;
        for (int g = 0; g < kTlGroups; g++) {
          const int m = (blk[kTlIdxOff + 32 * static_cast<size_t>(g / 2) + r] >> (4 * (g % 2))) & 15;
          const int neg = (blk[kTlSgnOff + 32 * static_cast<size_t>(g / 8) + r] >> (g % 8)) & 1;
          const int v = 16 * tab[kTlTableBytes * static_cast<size_t>(g) + 16 + m] + tab[kTlTableBytes * static_cast<size_t>(g) + m];
          isum += neg ? -v : v;
        }
        uint16_t dh;
        std::memcpy(&dh, blk + 2 * r, 2);
        s += f16_to_f32(dh) * yd[b] * static_cast<float>(isum);
      }
      y[static_cast<size_t>(t) * ys + static_cast<size_t>(r)] = s;
    }
  }
}

}  // namespace ryz
