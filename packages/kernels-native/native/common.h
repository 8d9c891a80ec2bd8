// Shared definitions for every kernel translation unit: ggml block layouts, exact scalar
// conversions (f16 / bf16 / Q8_0 rounding, bit-identical to core-tensor's reference) and the
// kernel table each ISA file fills in.
//
// Everything here has internal linkage (static inline) on purpose: the ISA files are compiled
// with different -m flags, and an inline function with external linkage could be merged across
// them by the linker, letting AVX-512 code run on a CPU without it.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace ryz {

/** ggml type ids of the formats the kernels compute with. */
enum Fmt : int { kF32 = 0, kF16 = 1, kQ4_0 = 2, kQ8_0 = 8, kBF16 = 30 };

/**
 * Where row j of one sequence's K (or V) cache lives, in elements from the head's base pointer:
 * contiguous rows `stride` apart, or (paged cache) through a block table of `block_size`-row blocks,
 * so attention reads the pages in place instead of gathering them first.
 */
struct KvRows {
  size_t stride;
  const int32_t* table = nullptr;
  int64_t block_size = 1;
  size_t offset(int64_t j) const {
    if (table == nullptr) return static_cast<size_t>(j) * stride;
    return (static_cast<size_t>(table[j / block_size]) * static_cast<size_t>(block_size) +
            static_cast<size_t>(j % block_size)) *
           stride;
  }
};

/** The KV heads split into `count` ranges: range i is heads [first(i), first(i + 1)). */
struct HeadRanges {
  int64_t count;
  int64_t n_kv_heads;
  int64_t first(int64_t i) const { return i * n_kv_heads / count; }
  /** Heads of the largest range (what a task's scratch must hold). */
  int64_t widest() const { return (n_kv_heads + count - 1) / count; }
};

/**
 * How to split the KV heads when `units` (tokens, or runs of one sequence's tokens) share
 * `threads`: whole rows while there are enough units to keep every thread busy (attention reads a
 * row's heads together; see attention_heads_f16_t), else smaller ranges.
 */
inline HeadRanges attention_head_ranges(int64_t units, int threads, int64_t n_kv_heads) {
  const int64_t want = (2 * static_cast<int64_t>(threads) + units - 1) / std::max<int64_t>(1, units);
  return {threads <= 1 ? 1 : std::min<int64_t>(n_kv_heads, std::max<int64_t>(1, want)), n_kv_heads};
}

/** Rows of the RMS norm whose sums of squares run interleaved (rms_norm_rows_t in simd_ops.h). */
constexpr int64_t kRmsRows = 4;

/** Instruction-set variants, in increasing order of capability. */
enum class Isa : int { Scalar = 0, Avx2 = 1, Avx512 = 2 };

constexpr int kQK = 32;  // elements per Q8_0 / Q4_0 block

struct BlockQ8_0 {
  uint16_t d;      // f16 scale
  int8_t qs[kQK];  // quants
};
struct BlockQ4_0 {
  uint16_t d;           // f16 scale
  uint8_t qs[kQK / 2];  // byte j: element j (low nibble), element j+16 (high nibble)
};
static_assert(sizeof(BlockQ8_0) == 34, "block_q8_0 must be 34 bytes");
static_assert(sizeof(BlockQ4_0) == 18, "block_q4_0 must be 18 bytes");

static inline uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
static inline float bits_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

/** IEEE binary16 bits to float (exact). */
static inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  if (exp == 0) {
    if (mant == 0) return bits_f32(sign);
    // subnormal: mant * 2^-24
    const float v = static_cast<float>(mant) * (1.0f / 16777216.0f);
    return sign ? -v : v;
  }
  if (exp == 31) return bits_f32(sign | 0x7f800000u | (mant << 13));
  return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

/** float to binary16 bits, round to nearest even (F16C `vcvtps2ph` with RNE, ggml). */
static inline uint16_t f32_to_f16(float value) {
  const uint32_t x = f32_bits(value);
  const uint32_t sign = (x >> 16) & 0x8000;
  const int32_t exp = static_cast<int32_t>((x >> 23) & 0xff);
  uint32_t mant = x & 0x7fffff;
  if (exp == 0xff) return static_cast<uint16_t>(sign | 0x7c00 | (mant ? 0x200 : 0));
  const int32_t e = exp - 127 + 15;
  if (e >= 31) return static_cast<uint16_t>(sign | 0x7c00);
  if (e <= 0) {
    if (e < -10) return static_cast<uint16_t>(sign);
    mant |= 0x800000;
    const uint32_t shift = static_cast<uint32_t>(14 - e);
    const uint32_t half = 1u << (shift - 1);
    uint32_t r = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1);
    if (rem > half || (rem == half && (r & 1))) r++;
    return static_cast<uint16_t>(sign | r);
  }
  uint32_t r = (static_cast<uint32_t>(e) << 10) | (mant >> 13);
  const uint32_t rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) r++;  // may carry into the exponent: correct
  return static_cast<uint16_t>(sign | r);
}

/** bfloat16 bits to float (exact). */
static inline float bf16_to_f32(uint16_t h) { return bits_f32(static_cast<uint32_t>(h) << 16); }

/** float to bfloat16 bits with ggml's rounding (nearest even; NaN kept quiet). */
static inline uint16_t f32_to_bf16(float value) {
  const uint32_t u = f32_bits(value);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 64);
  return static_cast<uint16_t>((u + (0x7fffu + ((u >> 16) & 1u))) >> 16);
}

/**
 * Activations to Q8_0 as ggml's x86 SIMD path does (quantize_row_q8_0, AVX2 and AVX-512 builds):
 * scale by 127/amax and round halves to even. (ggml's reference quantizer, used for weights in
 * files, scales by 1/(amax/127) and rounds halves away from zero; the weights are quantized in
 * TypeScript with that one.) Matching llama.cpp here matters: a different rounding of a tie shows
 * in the logits.
 */
static inline void quantize_block_q8_0_act(const float* x, BlockQ8_0* y) {
  float amax = 0.0f;
  for (int j = 0; j < kQK; j++) {
    const float a = std::fabs(x[j]);
    if (a > amax) amax = a;
  }
  const float d = amax / 127.0f;
  const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
  y->d = f32_to_f16(d);
  for (int j = 0; j < kQK; j++) y->qs[j] = static_cast<int8_t>(std::nearbyintf(x[j] * id));
}

/** Arguments of one rope call (see Backend.rope). */
struct RopeArgs {
  int64_t n_heads;
  int64_t head_dim;
  int64_t n_dims;
  double freq_base;
  double freq_scale;
  bool neox;
};

/**
 * Dot product of one weight row with `nx` (1..4) activation rows already converted to the
 * format's vecDotType (see Kernels::act_*). Activation row k starts at `x + k * x_stride` bytes.
 */
using DotFn = void (*)(int64_t cols, const void* w, const void* x, size_t x_stride, int nx, float* out);
/** Converts `cols` floats to the activation layout a dot kernel expects. */
using ConvFn = void (*)(const float* x, void* dst, int64_t cols);
/**
 * Register-tiled quantized matrix kernel: y[t*ys + r] for `nr` (1..4) weight rows starting at `w`
 * (row stride `wrb` bytes) and `nt` activation rows in the Q8 act layout starting at `x` (stride
 * `xs` bytes); see qgemm_x86.h.
 */
using QGemmFn = void (*)(int64_t cols, const uint8_t* w, size_t wrb, int nr, const uint8_t* x, size_t xs, int64_t nt,
                         float* y, size_t ys);
/**
 * Kernel over one group of 8 repacked rows (repack.h) at `wp`: y[t*ys + i] for rows i = 0..7 and
 * `nt` tokens in the Q8 act layout.
 */
using PackedGemmFn = void (*)(int64_t cols, const uint8_t* wp, const uint8_t* x, size_t xs, int64_t nt, float* y,
                              size_t ys);
/** Decodes `cols` elements of a row to floats. */
using DequantFn = void (*)(const void* src, float* dst, int64_t cols);

struct KQuantKernels;  // kquants.h

/** One ISA's kernels. Every variant has the same table; the dispatcher picks one at run time. */
struct Kernels {
  const char* name;
  // Activation conversion for the vecDotType of each weight format.
  ConvFn conv_f16;        // f32 -> f16-rounded values, stored as f32 (cols floats)
  ConvFn conv_bf16;       // f32 -> bf16-rounded values, layout given by bf16_act_elem_bytes
  int bf16_act_elem_bytes;  // 4: bf16-rounded f32; 2: raw bf16 (AVX-512 BF16 dot)
  ConvFn conv_q8_0;       // f32 -> block_q8_0[cols/32]
  DotFn dot_f32;
  DotFn dot_f16;
  DotFn dot_bf16;
  DotFn dot_q8_0;
  DotFn dot_q4_0;
  DequantFn dequant_f32;
  DequantFn dequant_f16;
  DequantFn dequant_bf16;
  DequantFn dequant_q8_0;
  DequantFn dequant_q4_0;
  /** RMS norm of n consecutive rows (simd_ops.h rms_norm_rows_t). */
  void (*rms_norm_rows)(float* y, const float* x, const float* w, int64_t n, int64_t dim, float eps);
  void (*softmax_row)(float* x, int64_t dim);
  /** Index of the largest value (first of equal maxima, NaN never chosen; 0 if none exceeds -inf). */
  int64_t (*argmax_row)(const float* x, int64_t dim);
  void (*swiglu)(float* y, const float* g, const float* u, int64_t len);
  void (*add)(float* y, const float* a, const float* b, int64_t len);
  /**
   * Rotates one row of n_heads*head_dim values at position `pos`, and `heads2` heads at `x2` (may be
   * null) with the same angles; `theta_scale` = base^(-2/nDims) in float.
   */
  void (*rope_row)(float* x, int64_t pos, const RopeArgs& a, float theta_scale, float* x2, int64_t heads2);
  /**
   * One (token, head) of causal attention: q[head_dim] over k/v rows 0..len-1 (located by `kv`).
   * `scores` has room for `len` floats, `acc` for head_dim floats.
   */
  void (*attention_head)(float* out, const float* q, const float* k, const float* v, const KvRows& kv,
                         int64_t len, int64_t head_dim, float scale, float* scores, float* acc);
  // Tiled Q4_0 / Q8_0 matmul (nullptr: the engine falls back to dot_q4_0 / dot_q8_0 per row).
  ConvFn conv_q8act;  // f32 -> Q8 act row (qs | f32 d | i32 sums | i32 Q4_0 corrections), q8act_bytes(cols) bytes
  QGemmFn gemm_q4_0;
  QGemmFn gemm_q8_0;
  // The same over weights repacked 8 rows at a time (repack.h): one group of 8 rows x nt tokens.
  PackedGemmFn gemm_q4_0x8;
  PackedGemmFn gemm_q8_0x8;
  /** One token's attention over `kv_heads` consecutive KV heads of an F16 KV cache (simd_ops.h). */
  void (*attention_heads_f16)(float* out, const float* q, int64_t kv_heads, int64_t group, const uint16_t* k,
                              const uint16_t* v, const KvRows& kv, int64_t len, int64_t head_dim, float scale,
                              float* scratch);
  /** f32 -> f16 bits, round to nearest even. */
  void (*to_f16)(uint16_t* dst, const float* src, int64_t n);
  /** Q4_1, Q5_0, K-quant and ternary kernels (kquants.h). */
  const KQuantKernels* kq;
};

/** Bytes of one Q8 act row (see qgemm_x86.h), a multiple of 64. */
static inline size_t q8act_bytes(int64_t cols) {
  const size_t nb = static_cast<size_t>(cols / kQK);
  return (static_cast<size_t>(cols) + nb * 12 + 63) & ~size_t{63};
}

/**
 * The Q8 act row's Q4_0 correction word (qgemm_x86.h): -8 times the sums of a block's quants j with
 * j % 4 in {0, 1} (low int16) and in {2, 3} (high int16).
 */
static inline int32_t q4_corr_pair(int32_t lo_sum, int32_t hi_sum) {
  const uint32_t lo = static_cast<uint16_t>(static_cast<int16_t>(-8 * lo_sum));
  const uint32_t hi = static_cast<uint16_t>(static_cast<int16_t>(-8 * hi_sum));
  return static_cast<int32_t>(lo | (hi << 16));
}

const Kernels* kernels_generic();
const Kernels* kernels_avx2();
const Kernels* kernels_avx512();

}  // namespace ryz
