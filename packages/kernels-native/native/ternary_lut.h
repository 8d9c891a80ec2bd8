// Lookup-table (LUT) matmul of ternary weights (TQ1_0 / TQ2_0 repacked at load), in the spirit of
// T-MAC and bitnet.cpp's TL2: weights are stored as indices into a small table of partial sums of
// the activations, and the kernel gathers from that table (vpshufb) instead of decoding weights
// and multiplying them.
//
// Float order of llama.cpp. Its AVX2 ggml_vec_dot_tq1_0_q8_K / ggml_vec_dot_tq2_0_q8_K keep 8
// float lanes per row: per 256-column block, lane L gets the integer
//   Σ_{e ∈ S_L} c_e·y_e − (bsums[2L] + bsums[2L+1]),  S_L = {e : (e mod 32) div 4 = L}
// (c = t + 1 ∈ {0, 1, 2} the file's code, y the Q8_K quants; `madd(ones)` over int16 lanes in both
// formats), then acc_L = fma(float(lane), d·yd, acc_L), and hsum_float_8 at the end. Every lane
// sum here is that integer exactly, built as Σ_{S_L} t·y (the lookups) + corr_L with the
// activation-only corr_L = Σ_{S_L} y − bsums[2L] − bsums[2L+1], then the same FMA per lane and the
// same final reduction, so the result equals llama.cpp's (and our file-layout dot's) bit for bit.
//
// Groups within a lane: lane L's 32 columns in the order i = 0..31 (column 32·(i>>2) + 4L + (i&3))
// form 10 groups of 3 and one group of 2 (group 10: i = 30, 31): 11 groups per lane, 88 per block.
// 3 trits (t0, t1, t2) are the balanced-ternary number v = 9·t0 + 3·t1 + t2 in [-13, 13], stored as
// |v| (a 4-bit index 0..13) plus the sign of v; group 10's 2 trits are the unsigned index
// 1 + 3·(t0 + 1) + (t1 + 1) in 1..9, no sign.
//
// Per activation group (a0, a1, a2) the table holds T[m] = Σ digit_i(m)·a_i for m = 0..13, where
// digit(m) is m in balanced ternary (group 10: T[m] = t0(m)·a0 + t1(m)·a1 for m = 1..9). T needs 10
// bits, so each int8 activation is split exactly into a = 16·ah + al with al in [-8, 7] (the low
// nibble, sign-extended) and ah in [-8, 8], and there are two int8 tables TL and TH (each
// |T| <= 24, so 5 groups add up in int8); the kernel combines TL + 16·TH in int16. All of it is
// integer arithmetic, exact.
//
// Packed layout of a rows x cols ternary matrix: tiles of 32 rows (the last one padded with zero
// rows), each tile a sequence of cols/256 blocks of kTlBlockBytes: 32 f16 scales (uint16 d[32]),
// then per lane L a record of 7 vectors of 32 bytes (byte r: row r):
//   vectors 0..4   index of group 2p (low nibble) and 2p+1 (high nibble) of lane L
//   vector  5      bit 0 set, bit g+1: sign of group g = 0..6 (1: negative)
//   vector  6      group 10's index (bits 0-3), signs of groups 7, 8, 9 (bits 4, 5, 6), bit 7 zero
// vpsignb takes the sign from bit 7 and zeroes where its operand byte is 0: shifting the wanted
// sign bit to bit 7 leaves a set bit below it (bit 0 of vector 5, group 10's index >= 1 in vector
// 6), so one shift per group (the kernel: one byte doubling, vpaddb x, x, from the previous
// group's operand) makes its sign operand; vpshufb reads bits 0-3 and 7 of an index, so vector 6
// is group 10's index as it is. 1856 bytes per 32 x 256 weights: 1.8125 bits per weight
// (TQ2_0: 2.0625, TQ1_0: 1.6875).
//
// Activations: per token, float d[cols/256] (the Q8_K scales, padded to 64 bytes), then per block
// int16 corr_L broadcast to 32 bytes for L = 0..7, then 88 groups (lane-major) x 32 bytes:
// TL[16] then TH[16] (unused entries zero), except entry 0 of each lane's group-10 TL (never
// indexed): 1 when Σ|al| and Σ|ah| over the lane's columns of groups 5..10 are both <= 127, so
// the kernel may sum those 6 groups in one int8 chunk (two flushes per lane instead of three;
// typical activations always qualify, extreme ones take the three-chunk path).
//
// Internal linkage only (see common.h).
#pragma once

#include <cstdint>
#include <cstring>

#include "kquants.h"

namespace ryz {

constexpr int kTlRows = 32;                            // rows per tile (bytes of a 256-bit vector)
constexpr int kTlLanes = 8;                            // llama.cpp's float lanes
constexpr int kTlLaneGroups = 11;                      // groups of 3 columns per lane and block
constexpr int kTlGroups = kTlLanes * kTlLaneGroups;    // 88 groups per 256-column block
constexpr size_t kTlLaneOff = 2 * kTlRows;             // first lane record (after the scales)
constexpr size_t kTlLaneBytes = 7 * kTlRows;           // one lane record
constexpr size_t kTlSgnVec = 5;                        // vector of the signs of groups 0..6
constexpr size_t kTlExtVec = 6;                        // vector of group 10's index and signs 7..9
constexpr size_t kTlBlockBytes = kTlLaneOff + kTlLanes * kTlLaneBytes;
constexpr size_t kTlTableBytes = 32;                   // TL + TH of one group
constexpr size_t kTlCorrBytes = kTlLanes * 32;         // corr_L as 16 x int16 per lane
constexpr size_t kTlActBlockBytes = kTlCorrBytes + kTlGroups * kTlTableBytes;
// Byte of a lane's tables (from its group 0) flagging that groups 5..10 may share one int8 chunk:
// entry 0 of group 10's TL, which no index reads (group 10's indices are 1..9).
constexpr size_t kTlMergeFlag = kTlTableBytes * (kTlLaneGroups - 1);
constexpr int kTlMergeFrom = 15;  // lane position of group 5's first column
static_assert(kTlBlockBytes == 1856, "ternary LUT block");
static_assert(kTlBlockBytes % 64 == 0 && kTlActBlockBytes % 64 == 0, "blocks and tables stay 64-byte aligned");

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

/** Column of a block held at position i (0..31) of lane L. */
static inline int tl_col(int lane, int i) { return 32 * (i >> 2) + 4 * lane + (i & 3); }

/** Byte offset in a block of the index vector of group g (0..10) of lane L, and its bit shift. */
static inline size_t tl_idx_pos(int lane, int g, int* shift) {
  *shift = g < 10 ? 4 * (g % 2) : 0;
  return kTlLaneOff + kTlLaneBytes * static_cast<size_t>(lane) + 32 * static_cast<size_t>(g < 10 ? g / 2 : kTlExtVec);
}

/** Byte offset in a block of the sign vector of group g (0..9) of lane L, and its bit. */
static inline size_t tl_sgn_pos(int lane, int g, int* bit) {
  *bit = g < 7 ? g + 1 : g - 3;
  return kTlLaneOff + kTlLaneBytes * static_cast<size_t>(lane) + 32 * (g < 7 ? kTlSgnVec : kTlExtVec);
}

/** Trits (t0, t1) of group 10's table index m (1..9), or (0, 0) for the unused entries. */
static inline int tl_pair_trit(int m, int i) {
  if (m < 1 || m > 9) return 0;
  return i == 0 ? (m - 1) / 3 - 1 : (m - 1) % 3 - 1;
}

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

/** Trit (-1, 0, 1) of column e of one block of a ternary file format. */
static inline int tl_trit(int fmt, const uint8_t* blk, int e) {
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
        if (row >= rows) break;  // padding rows: d = 0, every table entry read is 0
        const uint8_t* blk = src + (static_cast<size_t>(row) * static_cast<size_t>(nb) + static_cast<size_t>(b)) * bb;
        std::memcpy(out + 2 * r, blk + bb - 2, 2);  // d is the last field of both block types
        for (int lane = 0; lane < kTlLanes; lane++) {
          int shift, bit;
          out[tl_sgn_pos(lane, 0, &bit) + r] |= 1;  // bit 0 of the sign vector
          for (int g = 0; g < kTlLaneGroups - 1; g++) {
            const int v = 9 * tl_trit(fmt, blk, tl_col(lane, 3 * g)) + 3 * tl_trit(fmt, blk, tl_col(lane, 3 * g + 1)) +
                          tl_trit(fmt, blk, tl_col(lane, 3 * g + 2));
            const size_t io = tl_idx_pos(lane, g, &shift);
            out[io + r] |= static_cast<uint8_t>((v < 0 ? -v : v) << shift);
            const size_t so = tl_sgn_pos(lane, g, &bit);
            if (v < 0) out[so + r] |= static_cast<uint8_t>(1 << bit);
          }
          const int u = 1 + 3 * (tl_trit(fmt, blk, tl_col(lane, 30)) + 1) + tl_trit(fmt, blk, tl_col(lane, 31)) + 1;
          out[tl_idx_pos(lane, 10, &shift) + r] |= static_cast<uint8_t>(u);
        }
      }
    }
  }
}

/** a = 16·ah + al with al in [-8, 7] (low nibble, sign-extended) and ah in [-8, 8]. */
static inline void tl_split(int a, int* al, int* ah) {
  *al = ((a + 8) & 15) - 8;
  *ah = (a - *al) / 16;  // exact
}

/** corr_L of one Q8_K block: Σ_{S_L} y − bsums[2L] − bsums[2L+1] (see the top of this file). */
static inline int tl_corr(const BlockQ8K& q, int lane) {
  int s = -q.bsums[2 * lane] - q.bsums[2 * lane + 1];
  for (int i = 0; i < 32; i++) s += q.qs[tl_col(lane, i)];
  return s;
}

/**
 * Whether the columns of groups 5..10 of a lane (positions kTlMergeFrom..31, given their al / ah)
 * can share one int8 chunk: |Σ digit·al| <= Σ |al| and the same for ah, so both sums <= 127 make
 * every partial sum of that chunk exact in int8.
 */
static inline bool tl_mergeable(const int* al, const int* ah) {
  int sl = 0, sh = 0;
  for (int i = kTlMergeFrom; i < 32; i++) {
    sl += al[i] < 0 ? -al[i] : al[i];
    sh += ah[i] < 0 ? -ah[i] : ah[i];
  }
  return sl <= 127 && sh <= 127;
}

/** One block's corrections and tables from its Q8_K block (scalar reference; kTlActBlockBytes). */
static inline void tl_tables_ref(const BlockQ8K& q, uint8_t* dst) {
  for (int lane = 0; lane < kTlLanes; lane++) {
    const int16_t c = static_cast<int16_t>(tl_corr(q, lane));
    for (int j = 0; j < 16; j++) std::memcpy(dst + 32 * lane + 2 * j, &c, 2);
  }
  for (int lane = 0; lane < kTlLanes; lane++) {
    int al[33] = {}, ah[33] = {};  // position 32: group 10's third digit (always 0)
    for (int i = 0; i < 32; i++) tl_split(q.qs[tl_col(lane, i)], &al[i], &ah[i]);
    for (int g = 0; g < kTlLaneGroups; g++) {
      int8_t* tl = reinterpret_cast<int8_t*>(dst + kTlCorrBytes + kTlTableBytes * static_cast<size_t>(kTlLaneGroups * lane + g));
      for (int m = 0; m < 16; m++) {
        int sl = 0, sh = 0;
        for (int i = 0; i < 3; i++) {
          const int digit = g < 10 ? (m < 14 ? tl_digit(m, i) : 0) : (i < 2 ? tl_pair_trit(m, i) : 0);
          sl += digit * al[3 * g + i];
          sh += digit * ah[3 * g + i];
        }
        tl[m] = static_cast<int8_t>(sl);
        tl[16 + m] = static_cast<int8_t>(sh);
      }
    }
    dst[kTlCorrBytes + kTlTableBytes * static_cast<size_t>(kTlLaneGroups * lane) + kTlMergeFlag] = tl_mergeable(al, ah);
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
    tl_tables_ref(q, tab + static_cast<size_t>(b) * kTlActBlockBytes);
  }
}

/**
 * One tile of 32 packed rows times `nt` tokens (tables `x`, stride `xs` bytes): y[t*ys + r] for
 * rows r < `valid` (scalar reference, llama.cpp's order: per block and lane the exact integer,
 * acc_L = fma(d·yd, lane, acc_L), then hsum_float_8).
 */
static inline void gemm_tl_ref(int64_t cols, const uint8_t* tile, const uint8_t* x, size_t xs, int64_t nt, float* y,
                               size_t ys, int valid) {
  const int64_t nb = cols / kQKK;
  const size_t toff = tl_act_tables_off(cols);
  for (int64_t t = 0; t < nt; t++) {
    const uint8_t* xt = x + xs * static_cast<size_t>(t);
    const float* yd = reinterpret_cast<const float*>(xt);
    for (int r = 0; r < valid; r++) {
      float acc[kTlLanes] = {};
      for (int64_t b = 0; b < nb; b++) {
        const uint8_t* blk = tile + static_cast<size_t>(b) * kTlBlockBytes;
        const uint8_t* act = xt + toff + static_cast<size_t>(b) * kTlActBlockBytes;
        const int8_t* tab = reinterpret_cast<const int8_t*>(act + kTlCorrBytes);
        int32_t lanes[kTlLanes];
        for (int lane = 0; lane < kTlLanes; lane++) {
          int16_t corr;
          std::memcpy(&corr, act + 32 * lane, 2);
          int32_t isum = corr;
          for (int g = 0; g < kTlLaneGroups; g++) {
            int shift, bit = 0;
            const size_t io = tl_idx_pos(lane, g, &shift);
            const size_t so = g < 10 ? tl_sgn_pos(lane, g, &bit) : 0;
            const int m = (blk[io + r] >> shift) & 15;
            const int neg = g < 10 ? (blk[so + r] >> bit) & 1 : 0;
            const size_t o = kTlTableBytes * static_cast<size_t>(kTlLaneGroups * lane + g);
            const int v = 16 * tab[o + 16 + m] + tab[o + m];
            isum += neg ? -v : v;
          }
          lanes[lane] = isum;
        }
        uint16_t dh;
        std::memcpy(&dh, blk + 2 * r, 2);
        fma_lanes(acc, f16_to_f32(dh) * yd[b], lanes);
      }
      y[static_cast<size_t>(t) * ys + static_cast<size_t>(r)] = hsum8_ggml(acc);
    }
  }
}

}  // namespace ryz
