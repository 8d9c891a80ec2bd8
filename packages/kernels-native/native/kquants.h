// Block layouts and scalar reference kernels of the formats beyond Q4_0/Q8_0: Q4_1 (x Q8_1),
// Q5_0 (x Q8_0), the K-quants Q2_K..Q6_K and the ternary TQ1_0/TQ2_0 (x Q8_K). Layouts are
// ggml-common.h's; the activation quantizers reproduce ggml's quantize_row_q8_K_ref /
// quantize_row_q8_1_ref bit for bit (core-tensor's reference does the same in TypeScript).
//
// Internal linkage only (see common.h): each ISA file gets its own copy.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "common.h"

namespace ryz {

constexpr int kQKK = 256;  // elements per K-quant super-block

struct BlockQ8K {
  float d;
  int8_t qs[kQKK];
  int16_t bsums[kQKK / 16];
};
struct BlockQ8_1 {
  uint16_t d;
  uint16_t s;  // f16(d * sum(qs))
  int8_t qs[kQK];
};
struct BlockQ4_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qs[kQK / 2];
};
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
struct BlockQ2K {
  uint8_t scales[16];
  uint8_t qs[64];
  uint16_t d;
  uint16_t dmin;
};
struct BlockQ3K {
  uint8_t hmask[32];
  uint8_t qs[64];
  uint8_t scales[12];
  uint16_t d;
};
struct BlockQ4K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qs[128];
};
struct BlockQ5K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qh[32];
  uint8_t qs[128];
};
struct BlockQ6K {
  uint8_t ql[128];
  uint8_t qh[64];
  int8_t scales[16];
  uint16_t d;
};
struct BlockTQ1 {
  uint8_t qs[48];
  uint8_t qh[4];
  uint16_t d;
};
struct BlockTQ2 {
  uint8_t qs[64];
  uint16_t d;
};
static_assert(sizeof(BlockQ8K) == 292, "block_q8_K");
static_assert(sizeof(BlockQ8_1) == 36, "block_q8_1");
static_assert(sizeof(BlockQ4_1) == 20, "block_q4_1");
static_assert(sizeof(BlockQ5_0) == 22, "block_q5_0");
static_assert(sizeof(BlockQ2K) == 84, "block_q2_K");
static_assert(sizeof(BlockQ3K) == 110, "block_q3_K");
static_assert(sizeof(BlockQ4K) == 144, "block_q4_K");
static_assert(sizeof(BlockQ5K) == 176, "block_q5_K");
static_assert(sizeof(BlockQ6K) == 210, "block_q6_K");
static_assert(sizeof(BlockTQ1) == 54, "block_tq1_0");
static_assert(sizeof(BlockTQ2) == 66, "block_tq2_0");

/** Index of each new weight format in KQuantKernels' arrays. */
enum KFmt : int { kKQ4_1 = 0, kKQ5_0, kKQ2_K, kKQ3_K, kKQ4_K, kKQ5_K, kKQ6_K, kKTQ1_0, kKTQ2_0, kKCount };

/** Activation layout a format's dot kernel expects. */
enum class Act : int { Q8_0, Q8_1, Q8_K };

/**
 * Lookup-table kernel over one tile of 32 ternary rows in the packed layout of ternary_lut.h:
 * y[t*ys + r] for rows r < `valid` and `nt` tokens whose tables start at `x` (stride `xs` bytes).
 */
using TlGemmFn = void (*)(int64_t cols, const uint8_t* tile, const uint8_t* x, size_t xs, int64_t nt, float* y,
                          size_t ys, int valid);

/** The kernels of the formats above for one ISA. */
struct KQuantKernels {
  ConvFn conv_q8_k;  // f32 -> block_q8_K[cols/256]
  ConvFn conv_q8_1;  // f32 -> block_q8_1[cols/32]
  DotFn dot[kKCount];
  DequantFn dequant[kKCount];
  ConvFn conv_tl;    // f32 -> ternary LUT tables (ternary_lut.h), tl_act_bytes(cols)
  TlGemmFn gemm_tl;  // packed ternary (TQ1_0 / TQ2_0 repacked) x tables
};

/** KFmt of a ggml type id, or -1. */
static inline int kfmt_of(int ggml_type) {
  switch (ggml_type) {
    case 3: return kKQ4_1;
    case 6: return kKQ5_0;
    case 10: return kKQ2_K;
    case 11: return kKQ3_K;
    case 12: return kKQ4_K;
    case 13: return kKQ5_K;
    case 14: return kKQ6_K;
    case 34: return kKTQ1_0;
    case 35: return kKTQ2_0;
    default: return -1;
  }
}

/** Elements per block, bytes per block and activation layout of a KFmt. */
struct KFmtInfo {
  int block;
  int bytes;
  Act act;
};
static inline KFmtInfo kfmt_info(int k) {
  static const KFmtInfo t[kKCount] = {{32, 20, Act::Q8_1},   {32, 22, Act::Q8_0},   {256, 84, Act::Q8_K},
                                      {256, 110, Act::Q8_K}, {256, 144, Act::Q8_K}, {256, 176, Act::Q8_K},
                                      {256, 210, Act::Q8_K}, {256, 54, Act::Q8_K},  {256, 66, Act::Q8_K}};
  return t[k];
}

/** ggml's nearest_int: round half to even through the float32 mantissa. */
static inline int nearest_int(float fval) {
  const float val = fval + 12582912.f;
  int i;
  std::memcpy(&i, &val, sizeof(int));
  return (i & 0x007fffff) - 0x00400000;
}

/** ggml's quantize_row_q8_K_ref (bsums zeroed for an all-zero block). */
static inline void conv_q8_k_ref(const float* x, void* dst, int64_t cols) {
  BlockQ8K* y = static_cast<BlockQ8K*>(dst);
  for (int64_t i = 0; i < cols / kQKK; i++, x += kQKK) {
    float max = 0, amax = 0;
    for (int j = 0; j < kQKK; j++) {
      const float ax = std::fabs(x[j]);
      if (ax > amax) {
        amax = ax;
        max = x[j];
      }
    }
    if (amax == 0.0f) {
      std::memset(&y[i], 0, sizeof(BlockQ8K));
      continue;
    }
    const float iscale = -127.f / max;
    for (int j = 0; j < kQKK; j++) {
      const int v = nearest_int(iscale * x[j]);
      y[i].qs[j] = static_cast<int8_t>(v < 127 ? v : 127);
    }
    for (int j = 0; j < kQKK / 16; j++) {
      int sum = 0;
      for (int l = 0; l < 16; l++) sum += y[i].qs[j * 16 + l];
      y[i].bsums[j] = static_cast<int16_t>(sum);
    }
    y[i].d = 1 / iscale;
  }
}

/** ggml's quantize_row_q8_1_ref. */
static inline void conv_q8_1_ref(const float* x, void* dst, int64_t cols) {
  BlockQ8_1* y = static_cast<BlockQ8_1*>(dst);
  for (int64_t i = 0; i < cols / kQK; i++, x += kQK) {
    float amax = 0.0f;
    for (int j = 0; j < kQK; j++) amax = std::fmax(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = f32_to_f16(d);
    int sum = 0;
    for (int j = 0; j < kQK; j++) {
      y[i].qs[j] = static_cast<int8_t>(std::roundf(x[j] * id));
      sum += y[i].qs[j];
    }
    y[i].s = f32_to_f16(static_cast<float>(sum) * d);
  }
}

/**
 * Activations to Q8_1 as ggml's x86 quantize_row_q8_1 (the one llama.cpp's AVX2 build runs): scale
 * by 127/amax, round halves to even, s = f16(d · Σq). The reference (conv_q8_1_ref) divides by d and
 * rounds halves away from zero; a different rounding of a tie shows in the logits.
 */
static inline void conv_q8_1_act(const float* x, void* dst, int64_t cols) {
  BlockQ8_1* y = static_cast<BlockQ8_1*>(dst);
  for (int64_t i = 0; i < cols / kQK; i++, x += kQK) {
    float amax = 0.0f;
    for (int j = 0; j < kQK; j++) amax = std::fmax(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    y[i].d = f32_to_f16(d);
    int sum = 0;
    for (int j = 0; j < kQK; j++) {
      y[i].qs[j] = static_cast<int8_t>(std::nearbyintf(x[j] * id));
      sum += y[i].qs[j];
    }
    y[i].s = f32_to_f16(d * static_cast<float>(sum));
  }
}

/** 6-bit scale and min j of Q4_K / Q5_K (ggml's get_scale_min_k4). */
static inline void scale_min_k4(int j, const uint8_t* q, int* d, int* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4);
  }
}

/** Signed 6-bit scale j of Q3_K. */
static inline int q3k_scale(const uint8_t* s, int j) {
  const int lo = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
  return (lo | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
}

/** Integer code of element e of one block of each format (value = code * scale [- min]). */
static inline int code_q2k(const BlockQ2K& b, int e) { return (b.qs[32 * (e >> 7) + (e & 31)] >> (2 * ((e >> 5) & 3))) & 3; }
static inline int code_q3k(const BlockQ3K& b, int e) {
  const int q = (b.qs[32 * (e >> 7) + (e & 31)] >> (2 * ((e >> 5) & 3))) & 3;
  return q - (((b.hmask[e & 31] >> (e >> 5)) & 1) ? 0 : 4);
}
static inline int code_q4k(const BlockQ4K& b, int e) { return (b.qs[32 * (e >> 6) + (e & 31)] >> (4 * ((e >> 5) & 1))) & 0xF; }
static inline int code_q5k(const BlockQ5K& b, int e) {
  return ((b.qs[32 * (e >> 6) + (e & 31)] >> (4 * ((e >> 5) & 1))) & 0xF) + (((b.qh[e & 31] >> (e >> 5)) & 1) << 4);
}
static inline int code_q6k(const BlockQ6K& b, int e) {
  const int c = e >> 7, k = (e >> 5) & 3, l = e & 31;
  const int lo = (b.ql[64 * c + l + 32 * (k & 1)] >> (4 * (k >> 1))) & 0xF;
  const int hi = (b.qh[32 * c + l] >> (2 * k)) & 3;
  return (lo | (hi << 4)) - 32;
}
static inline int code_tq2(const BlockTQ2& b, int e) { return ((b.qs[32 * (e >> 7) + (e & 31)] >> (2 * ((e >> 5) & 3))) & 3) - 1; }
static inline int trit_tq1(uint8_t q, int n) {
  static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
  return ((static_cast<uint8_t>(q * pow3[n])) * 3) >> 8;
}
static inline int code_tq1(const BlockTQ1& b, int e) {
  if (e < 160) return trit_tq1(b.qs[e & 31], e >> 5) - 1;
  if (e < 240) return trit_tq1(b.qs[32 + ((e - 160) & 15)], (e - 160) >> 4) - 1;
  return trit_tq1(b.qh[(e - 240) & 3], (e - 240) >> 2) - 1;
}

// ---- scalar dequantization (same float operations as ggml's dequantize_row_*) ----

static inline void dequant_q4_1_ref(const void* src, float* y, int64_t cols) {
  const BlockQ4_1* b = static_cast<const BlockQ4_1*>(src);
  for (int64_t i = 0; i < cols / kQK; i++, y += kQK) {
    const float d = f16_to_f32(b[i].d), m = f16_to_f32(b[i].m);
    for (int j = 0; j < 16; j++) {
      y[j] = static_cast<float>(b[i].qs[j] & 0xF) * d + m;
      y[j + 16] = static_cast<float>(b[i].qs[j] >> 4) * d + m;
    }
  }
}
static inline void dequant_q5_0_ref(const void* src, float* y, int64_t cols) {
  const BlockQ5_0* b = static_cast<const BlockQ5_0*>(src);
  for (int64_t i = 0; i < cols / kQK; i++, y += kQK) {
    const float d = f16_to_f32(b[i].d);
    uint32_t qh;
    std::memcpy(&qh, b[i].qh, 4);
    for (int j = 0; j < 16; j++) {
      const int x0 = ((b[i].qs[j] & 0x0F) | (((qh >> j) << 4) & 0x10)) - 16;
      const int x1 = ((b[i].qs[j] >> 4) | ((qh >> (j + 12)) & 0x10)) - 16;
      y[j] = static_cast<float>(x0) * d;
      y[j + 16] = static_cast<float>(x1) * d;
    }
  }
}
static inline void dequant_q2_k_ref(const void* src, float* y, int64_t cols) {
  const BlockQ2K* b = static_cast<const BlockQ2K*>(src);
  for (int64_t i = 0; i < cols / kQKK; i++, y += kQKK) {
    const float d = f16_to_f32(b[i].d), dmin = f16_to_f32(b[i].dmin);
    for (int e = 0; e < kQKK; e++) {
      const uint8_t sc = b[i].scales[e >> 4];
      y[e] = d * static_cast<float>(sc & 0xF) * static_cast<float>(code_q2k(b[i], e)) - dmin * static_cast<float>(sc >> 4);
    }
  }
}
static inline void dequant_q3_k_ref(const void* src, float* y, int64_t cols) {
  const BlockQ3K* b = static_cast<const BlockQ3K*>(src);
  for (int64_t i = 0; i < cols / kQKK; i++, y += kQKK) {
    const float d = f16_to_f32(b[i].d);
    for (int e = 0; e < kQKK; e++) {
      y[e] = d * static_cast<float>(q3k_scale(b[i].scales, e >> 4)) * static_cast<float>(code_q3k(b[i], e));
    }
  }
}
static inline void dequant_q4_k_ref(const void* src, float* y, int64_t cols) {
  const BlockQ4K* b = static_cast<const BlockQ4K*>(src);
  for (int64_t i = 0; i < cols / kQKK; i++, y += kQKK) {
    const float d = f16_to_f32(b[i].d), dmin = f16_to_f32(b[i].dmin);
    for (int j = 0; j < 8; j++) {
      int sc, m;
      scale_min_k4(j, b[i].scales, &sc, &m);
      const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
      for (int l = 0; l < 32; l++) y[32 * j + l] = d1 * static_cast<float>(code_q4k(b[i], 32 * j + l)) - m1;
    }
  }
}
static inline void dequant_q5_k_ref(const void* src, float* y, int64_t cols) {
  const BlockQ5K* b = static_cast<const BlockQ5K*>(src);
  for (int64_t i = 0; i < cols / kQKK; i++, y += kQKK) {
    const float d = f16_to_f32(b[i].d), dmin = f16_to_f32(b[i].dmin);
    for (int j = 0; j < 8; j++) {
      int sc, m;
      scale_min_k4(j, b[i].scales, &sc, &m);
      const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
      for (int l = 0; l < 32; l++) y[32 * j + l] = d1 * static_cast<float>(code_q5k(b[i], 32 * j + l)) - m1;
    }
  }
}
static inline void dequant_q6_k_ref(const void* src, float* y, int64_t cols) {
  const BlockQ6K* b = static_cast<const BlockQ6K*>(src);
  for (int64_t i = 0; i < cols / kQKK; i++, y += kQKK) {
    const float d = f16_to_f32(b[i].d);
    for (int e = 0; e < kQKK; e++) {
      y[e] = d * static_cast<float>(b[i].scales[e >> 4]) * static_cast<float>(code_q6k(b[i], e));
    }
  }
}
static inline void dequant_tq1_0_ref(const void* src, float* y, int64_t cols) {
  const BlockTQ1* b = static_cast<const BlockTQ1*>(src);
  for (int64_t i = 0; i < cols / kQKK; i++, y += kQKK) {
    const float d = f16_to_f32(b[i].d);
    for (int e = 0; e < kQKK; e++) y[e] = static_cast<float>(code_tq1(b[i], e)) * d;
  }
}
static inline void dequant_tq2_0_ref(const void* src, float* y, int64_t cols) {
  const BlockTQ2* b = static_cast<const BlockTQ2*>(src);
  for (int64_t i = 0; i < cols / kQKK; i++, y += kQKK) {
    const float d = f16_to_f32(b[i].d);
    for (int e = 0; e < kQKK; e++) y[e] = static_cast<float>(code_tq2(b[i], e)) * d;
  }
}

// ---- scalar dot products: integer sums per block, then the block's float scales ----

template <class B>
static inline const B* act_row(const void* x, size_t stride, int k) {
  return reinterpret_cast<const B*>(static_cast<const uint8_t*>(x) + stride * static_cast<size_t>(k));
}

static inline void dot_q4_1_ref(int64_t cols, const void* w, const void* x, size_t xs, int nx, float* out) {
  const BlockQ4_1* b = static_cast<const BlockQ4_1*>(w);
  for (int k = 0; k < nx; k++) {
    const BlockQ8_1* y = act_row<BlockQ8_1>(x, xs, k);
    float s = 0.0f;
    for (int64_t i = 0; i < cols / kQK; i++) {
      int sumi = 0;
      for (int j = 0; j < 16; j++) sumi += (b[i].qs[j] & 0xF) * y[i].qs[j] + (b[i].qs[j] >> 4) * y[i].qs[j + 16];
      s += static_cast<float>(sumi) * (f16_to_f32(b[i].d) * f16_to_f32(y[i].d)) + f16_to_f32(b[i].m) * f16_to_f32(y[i].s);
    }
    out[k] = s;
  }
}
static inline void dot_q5_0_ref(int64_t cols, const void* w, const void* x, size_t xs, int nx, float* out) {
  const BlockQ5_0* b = static_cast<const BlockQ5_0*>(w);
  for (int k = 0; k < nx; k++) {
    const BlockQ8_0* y = act_row<BlockQ8_0>(x, xs, k);
    float s = 0.0f;
    for (int64_t i = 0; i < cols / kQK; i++) {
      uint32_t qh;
      std::memcpy(&qh, b[i].qh, 4);
      int sumi = 0;
      for (int j = 0; j < 16; j++) {
        const int x0 = ((b[i].qs[j] & 0x0F) | (((qh >> j) << 4) & 0x10)) - 16;
        const int x1 = ((b[i].qs[j] >> 4) | ((qh >> (j + 12)) & 0x10)) - 16;
        sumi += x0 * y[i].qs[j] + x1 * y[i].qs[j + 16];
      }
      s += static_cast<float>(sumi) * (f16_to_f32(b[i].d) * f16_to_f32(y[i].d));
    }
    out[k] = s;
  }
}

// Per-format adaptors for the shared scalar loop: value = d·scale(j)·code(e) - dmin·min(j)·1.
struct AQ2K {
  using B = BlockQ2K;
  static constexpr int kSub = 16;
  static int code(const B& b, int e) { return code_q2k(b, e); }
  static void sm(const B& b, int j, int* sc, int* m) { *sc = b.scales[j] & 0xF, *m = b.scales[j] >> 4; }
  static float dmin(const B& b) { return f16_to_f32(b.dmin); }
};
struct AQ3K {
  using B = BlockQ3K;
  static constexpr int kSub = 16;
  static int code(const B& b, int e) { return code_q3k(b, e); }
  static void sm(const B& b, int j, int* sc, int* m) { *sc = q3k_scale(b.scales, j), *m = 0; }
  static float dmin(const B&) { return 0.0f; }
};
struct AQ4K {
  using B = BlockQ4K;
  static constexpr int kSub = 32;
  static int code(const B& b, int e) { return code_q4k(b, e); }
  static void sm(const B& b, int j, int* sc, int* m) { scale_min_k4(j, b.scales, sc, m); }
  static float dmin(const B& b) { return f16_to_f32(b.dmin); }
};
struct AQ5K {
  using B = BlockQ5K;
  static constexpr int kSub = 32;
  static int code(const B& b, int e) { return code_q5k(b, e); }
  static void sm(const B& b, int j, int* sc, int* m) { scale_min_k4(j, b.scales, sc, m); }
  static float dmin(const B& b) { return f16_to_f32(b.dmin); }
};
struct AQ6K {
  using B = BlockQ6K;
  static constexpr int kSub = 16;
  static int code(const B& b, int e) { return code_q6k(b, e); }
  static void sm(const B& b, int j, int* sc, int* m) { *sc = b.scales[j], *m = 0; }
  static float dmin(const B&) { return 0.0f; }
};
struct ATQ1 {
  using B = BlockTQ1;
  static constexpr int kSub = 256;
  static int code(const B& b, int e) { return code_tq1(b, e); }
  static void sm(const B&, int, int* sc, int* m) { *sc = 1, *m = 0; }
  static float dmin(const B&) { return 0.0f; }
};
struct ATQ2 {
  using B = BlockTQ2;
  static constexpr int kSub = 256;
  static int code(const B& b, int e) { return code_tq2(b, e); }
  static void sm(const B&, int, int* sc, int* m) { *sc = 1, *m = 0; }
  static float dmin(const B&) { return 0.0f; }
};

/** Scalar dot of a K-quant / ternary row with `nx` Q8_K rows: integer sums per block, then scales. */
template <class A>
static inline void dot_k_ref(int64_t cols, const void* w, const void* x, size_t xs, int nx, float* out) {
  using B = typename A::B;
  const B* b = static_cast<const B*>(w);
  for (int k = 0; k < nx; k++) {
    const BlockQ8K* y = act_row<BlockQ8K>(x, xs, k);
    float s = 0.0f;
    for (int64_t i = 0; i < cols / kQKK; i++) {
      int32_t isum = 0, msum = 0;
      for (int j = 0; j < kQKK / A::kSub; j++) {
        int32_t dot = 0, ysum = 0;
        for (int l = 0; l < A::kSub; l++) {
          dot += A::code(b[i], A::kSub * j + l) * y[i].qs[A::kSub * j + l];
          ysum += y[i].qs[A::kSub * j + l];
        }
        int sc, m;
        A::sm(b[i], j, &sc, &m);
        isum += sc * dot;
        msum += m * ysum;
      }
      s += f16_to_f32(b[i].d) * y[i].d * static_cast<float>(isum) - A::dmin(b[i]) * y[i].d * static_cast<float>(msum);
    }
    out[k] = s;
  }
}

// ---- dot products in llama.cpp's float order ----
//
// llama.cpp's AVX2 build (the CPU variant it loads here) computes these dot products in 8 float
// lanes: lane m holds, for each block, the integer sum over elements 4m..4m+3 of every 32-element
// chunk (times the chunk's sub-block scale), added with one FMA by the block's float scale; the
// lanes are reduced as hsum_float_8 does, and a scalar min term (contracted to an FMA by its
// compiler) is added last. The integer parts are exact whatever the order, so these scalar loops
// give the same bits as its SIMD code, and the next Q8 activation roundings stay equal to its own
// (docs/testing.md). The SIMD kernels of Q4_K, Q6_K and the ternary formats are in kquants_x86.inc.

/** ggml's hsum_float_8: ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)). */
static inline float hsum8_ggml(const float* l) {
  return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}

/** Adds one block's integer lanes into the float lanes: acc[m] = fma(d, lanes[m], acc[m]). */
static inline void fma_lanes(float* acc, float d, const int32_t* lanes) {
  for (int m = 0; m < 8; m++) acc[m] = std::fma(d, static_cast<float>(lanes[m]), acc[m]);
}

/**
 * TQ1_0 / TQ2_0 x Q8_K as ggml_vec_dot_tq1_0_q8_K / ggml_vec_dot_tq2_0_q8_K (AVX2): lane m holds
 * Σ code·y (codes 0..2) over elements 4m..4m+3 of each 32-element chunk, minus the activation sum
 * of elements 32m..32m+31 (bsums[2m] + bsums[2m+1], subtracted in the same int16 lanes).
 */
template <class A>
static inline void dot_tq_ggml(int64_t cols, const void* w, const void* x, size_t xs, int nx, float* out) {
  using B = typename A::B;
  const B* b = static_cast<const B*>(w);
  for (int k = 0; k < nx; k++) {
    const BlockQ8K* y = act_row<BlockQ8K>(x, xs, k);
    float acc[8] = {};
    for (int64_t i = 0; i < cols / kQKK; i++) {
      int32_t lanes[8];
      for (int m = 0; m < 8; m++) lanes[m] = -(y[i].bsums[2 * m] + y[i].bsums[2 * m + 1]);
      for (int e = 0; e < kQKK; e++) lanes[(e >> 2) & 7] += (A::code(b[i], e) + 1) * y[i].qs[e];
      fma_lanes(acc, y[i].d * f16_to_f32(b[i].d), lanes);
    }
    out[k] = hsum8_ggml(acc);
  }
}

/** Integer lanes of one 256-value K block: lane m = Σ_chunks scale(sub-block) · Σ_{4 elements} code·y. */
template <class A>
static inline void k_block_lanes(const typename A::B& b, const int8_t* q8, int32_t* lanes) {
  int sc[16];
  for (int j = 0; j < kQKK / A::kSub; j++) {
    int m;
    A::sm(b, j, &sc[j], &m);
  }
  for (int m = 0; m < 8; m++) lanes[m] = 0;
  for (int c = 0; c < kQKK / 32; c++) {
    for (int m = 0; m < 8; m++) {
      int32_t dot = 0;
      for (int l = 0; l < 4; l++) {
        const int e = 32 * c + 4 * m + l;
        dot += A::code(b, e) * q8[e];
      }
      lanes[m] += sc[(32 * c + 4 * m) / A::kSub] * dot;
    }
  }
}

/** Q4_1 x Q8_1 as ggml_vec_dot_q4_1_q8_1 (AVX2): lanes of nibble·y, then + Σ m·s. */
static inline void dot_q4_1_ggml(int64_t cols, const void* w, const void* x, size_t xs, int nx, float* out) {
  const BlockQ4_1* b = static_cast<const BlockQ4_1*>(w);
  for (int k = 0; k < nx; k++) {
    const BlockQ8_1* y = act_row<BlockQ8_1>(x, xs, k);
    float acc[8] = {};
    float summs = 0.0f;
    for (int64_t i = 0; i < cols / kQK; i++) {
      summs = std::fma(f16_to_f32(b[i].m), f16_to_f32(y[i].s), summs);
      int32_t lanes[8];
      for (int m = 0; m < 8; m++) {
        int32_t dot = 0;
        for (int l = 0; l < 4; l++) {
          const int e = 4 * m + l;
          const int q = e < 16 ? b[i].qs[e] & 0xF : b[i].qs[e - 16] >> 4;
          dot += q * y[i].qs[e];
        }
        lanes[m] = dot;
      }
      fma_lanes(acc, f16_to_f32(b[i].d) * f16_to_f32(y[i].d), lanes);
    }
    out[k] = hsum8_ggml(acc) + summs;
  }
}

/** Q5_0 x Q8_0 as ggml_vec_dot_q5_0_q8_0 (AVX2). */
static inline void dot_q5_0_ggml(int64_t cols, const void* w, const void* x, size_t xs, int nx, float* out) {
  const BlockQ5_0* b = static_cast<const BlockQ5_0*>(w);
  for (int k = 0; k < nx; k++) {
    const BlockQ8_0* y = act_row<BlockQ8_0>(x, xs, k);
    float acc[8] = {};
    for (int64_t i = 0; i < cols / kQK; i++) {
      uint32_t qh;
      std::memcpy(&qh, b[i].qh, 4);
      int32_t lanes[8];
      for (int m = 0; m < 8; m++) {
        int32_t dot = 0;
        for (int l = 0; l < 4; l++) {
          const int e = 4 * m + l;
          const int lo = e < 16 ? b[i].qs[e] & 0x0F : b[i].qs[e - 16] >> 4;
          dot += ((lo | (((qh >> e) & 1) << 4)) - 16) * y[i].qs[e];
        }
        lanes[m] = dot;
      }
      fma_lanes(acc, f16_to_f32(b[i].d) * f16_to_f32(y[i].d), lanes);
    }
    out[k] = hsum8_ggml(acc);
  }
}

/** Q2_K x Q8_K as ggml_vec_dot_q2_K_q8_K (AVX2): per block the min lanes, then the scale lanes. */
static inline void dot_q2_k_ggml(int64_t cols, const void* w, const void* x, size_t xs, int nx, float* out) {
  const BlockQ2K* b = static_cast<const BlockQ2K*>(w);
  for (int k = 0; k < nx; k++) {
    const BlockQ8K* y = act_row<BlockQ8K>(x, xs, k);
    float acc[8] = {};
    for (int64_t i = 0; i < cols / kQKK; i++) {
      const float d = y[i].d * f16_to_f32(b[i].d);
      const float dmin = -y[i].d * f16_to_f32(b[i].dmin);
      int32_t lanes[8];
      for (int m = 0; m < 8; m++) {
        lanes[m] = (b[i].scales[2 * m] >> 4) * y[i].bsums[2 * m] + (b[i].scales[2 * m + 1] >> 4) * y[i].bsums[2 * m + 1];
      }
      fma_lanes(acc, dmin, lanes);
      k_block_lanes<AQ2K>(b[i], y[i].qs, lanes);
      fma_lanes(acc, d, lanes);
    }
    out[k] = hsum8_ggml(acc);
  }
}

/** Q3_K x Q8_K as ggml_vec_dot_q3_K_q8_K (AVX2). */
static inline void dot_q3_k_ggml(int64_t cols, const void* w, const void* x, size_t xs, int nx, float* out) {
  const BlockQ3K* b = static_cast<const BlockQ3K*>(w);
  for (int k = 0; k < nx; k++) {
    const BlockQ8K* y = act_row<BlockQ8K>(x, xs, k);
    float acc[8] = {};
    for (int64_t i = 0; i < cols / kQKK; i++) {
      int32_t lanes[8];
      k_block_lanes<AQ3K>(b[i], y[i].qs, lanes);
      fma_lanes(acc, y[i].d * f16_to_f32(b[i].d), lanes);
    }
    out[k] = hsum8_ggml(acc);
  }
}

/**
 * Q4_K x Q8_K as llama.cpp's AVX2 build computes it (ggml_gemv/gemm_q4_K_8x8_q8_K over its
 * repacked weights): per block one FMA of the whole integer sum by d·yd and one of the whole min sum
 * by dmin·yd into two accumulators, subtracted at the end.
 */
static inline void dot_q4_k_ggml(int64_t cols, const void* w, const void* x, size_t xs, int nx, float* out) {
  const BlockQ4K* b = static_cast<const BlockQ4K*>(w);
  for (int k = 0; k < nx; k++) {
    const BlockQ8K* y = act_row<BlockQ8K>(x, xs, k);
    float acc = 0.0f, accm = 0.0f;
    for (int64_t i = 0; i < cols / kQKK; i++) {
      int32_t isum = 0, msum = 0;
      for (int j = 0; j < 8; j++) {
        int sc, m;
        scale_min_k4(j, b[i].scales, &sc, &m);
        int32_t dot = 0;
        for (int l = 0; l < 32; l++) dot += code_q4k(b[i], 32 * j + l) * y[i].qs[32 * j + l];
        isum += sc * dot;
        msum += m * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
      }
      acc = std::fma(static_cast<float>(isum), f16_to_f32(b[i].d) * y[i].d, acc);
      accm = std::fma(static_cast<float>(msum), f16_to_f32(b[i].dmin) * y[i].d, accm);
    }
    out[k] = acc - accm;
  }
}

/** Q5_K x Q8_K as ggml_vec_dot_q5_K_q8_K (AVX2): scale lanes, plus a scalar min sum added last. */
static inline void dot_q5_k_ggml(int64_t cols, const void* w, const void* x, size_t xs, int nx, float* out) {
  const BlockQ5K* b = static_cast<const BlockQ5K*>(w);
  for (int k = 0; k < nx; k++) {
    const BlockQ8K* y = act_row<BlockQ8K>(x, xs, k);
    float acc[8] = {};
    float summs = 0.0f;
    for (int64_t i = 0; i < cols / kQKK; i++) {
      const float d = y[i].d * f16_to_f32(b[i].d);
      const float dmin = -y[i].d * f16_to_f32(b[i].dmin);
      int32_t msum = 0;
      for (int j = 0; j < 8; j++) {
        int sc, m;
        scale_min_k4(j, b[i].scales, &sc, &m);
        msum += m * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
      }
      summs = std::fma(dmin, static_cast<float>(msum), summs);
      int32_t lanes[8];
      k_block_lanes<AQ5K>(b[i], y[i].qs, lanes);
      fma_lanes(acc, d, lanes);
    }
    out[k] = hsum8_ggml(acc) + summs;
  }
}

}  // namespace ryz

namespace ryz {
const KQuantKernels* kquants_generic();
const KQuantKernels* kquants_avx2();
const KQuantKernels* kquants_avx512();
}  // namespace ryz

namespace ryz {
/** True when quantize_rows has a native port of ggml's reference quantizer for `fmt` (Q4_K, Q6_K). */
bool quantize_rows_supported(int fmt);
/** Quantizes rows [row_begin, row_end) of `src` (rows of `cols` floats) into `dst` (file layout). */
void quantize_rows(int fmt, const float* src, int64_t cols, int64_t row_begin, int64_t row_end, uint8_t* dst);
}  // namespace ryz
