// AVX2 + FMA + F16C kernels. Compiled with -mavx2 -mfma -mf16c; only called after the dispatcher
// has checked the CPU supports all three.
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "common.h"
#include "kquants.h"
#include "qgemm_x86.h"
#include "simd_ops.h"

namespace ryz {
namespace {

inline float hsum128(__m128 v) {
  __m128 sh = _mm_movehdup_ps(v);
  __m128 s = _mm_add_ps(v, sh);
  sh = _mm_movehl_ps(sh, s);
  s = _mm_add_ss(s, sh);
  return _mm_cvtss_f32(s);
}

inline float hsum256(__m256 a) {
  return hsum128(_mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1)));
}

inline float hmax256(__m256 a) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

// expf for 8 lanes: x = n·ln2 + b with |b| <= ln2/2, e^b by a degree-5 polynomial, 2^n put in the
// exponent bits; the scaled branch handles |n| > 126 (overflow to inf above ~88.7, underflow to 0
// below ~-104). This is the algorithm of ARM's optimized-routines expf (max error ~1.5 ulp) with
// the operation order of llama.cpp's AVX2 build (ggml_v_expf), so SiLU and softmax give the same
// bits as llama.cpp, which keeps Q8_0 activation roundings identical downstream.
inline __m256 exp256(__m256 x) {
  const __m256 shift = _mm256_set1_ps(0x1.8p23f);
  const __m256 z = _mm256_fmadd_ps(x, _mm256_set1_ps(0x1.715476p+0f), shift);  // x/ln2 + shift
  const __m256 n = _mm256_sub_ps(z, shift);                                      // round(x/ln2)
  const __m256 b = _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.7f7d1cp-20f),          // x - n·ln2 (hi, lo)
                                    _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.62e4p-1f), x));
  const __m256i e = _mm256_slli_epi32(_mm256_castps_si256(z), 23);
  const __m256 k = _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_castps_si256(_mm256_set1_ps(1.0f))));  // 2^n
  const __m256 abs_n = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), n);
  const __m256 big = _mm256_cmp_ps(abs_n, _mm256_set1_ps(126.0f), _CMP_GT_OQ);
  const __m256 u = _mm256_mul_ps(b, b);
  const __m256 p = _mm256_fmadd_ps(
      _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_set1_ps(0x1.0e4020p-7f), b, _mm256_set1_ps(0x1.573e2ep-5f)), u,
                      _mm256_fmadd_ps(_mm256_set1_ps(0x1.555e66p-3f), b, _mm256_set1_ps(0x1.fffdb6p-2f))),
      u, _mm256_mul_ps(_mm256_set1_ps(0x1.ffffecp-1f), b));  // e^b - 1
  if (!_mm256_movemask_ps(big)) return _mm256_fmadd_ps(p, k, k);
  // 2^n out of the normal exponent range: scale in two steps (s1·s2), or saturate when |n| > 192.
  const __m256i neg = _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_LE_OQ)),
                                       _mm256_set1_epi32(static_cast<int>(0x82000000u)));
  const __m256 s1 = _mm256_castsi256_ps(_mm256_add_epi32(neg, _mm256_set1_epi32(0x7f000000)));
  const __m256 s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, neg));
  const __m256 huge = _mm256_cmp_ps(abs_n, _mm256_set1_ps(192.0f), _CMP_GT_OQ);
  const __m256 scaled = _mm256_or_ps(_mm256_and_ps(big, _mm256_mul_ps(_mm256_fmadd_ps(s2, p, s2), s1)),
                                     _mm256_andnot_ps(big, _mm256_fmadd_ps(k, p, k)));
  return _mm256_or_ps(_mm256_and_ps(huge, _mm256_mul_ps(s1, s1)), _mm256_andnot_ps(huge, scaled));
}

struct Avx2V {
  using reg = __m256;
  static constexpr int W = 8;
  static reg zero() { return _mm256_setzero_ps(); }
  static reg set1(float f) { return _mm256_set1_ps(f); }
  static reg load(const float* p) { return _mm256_loadu_ps(p); }
  static reg load_h(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static void store(float* p, reg r) { _mm256_storeu_ps(p, r); }
  static reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  static reg sub(reg a, reg b) { return _mm256_sub_ps(a, b); }
  static reg mul(reg a, reg b) { return _mm256_mul_ps(a, b); }
  static reg div(reg a, reg b) { return _mm256_div_ps(a, b); }
  static reg fmadd(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  static reg max(reg a, reg b) { return _mm256_max_ps(a, b); }
  static reg exp(reg a) { return exp256(a); }
  static float hsum(reg a) { return hsum256(a); }
  // The sums of a[0..3] at once: lanes paired by two hadds, then the 128-bit halves added.
  static void hsum4(const reg* a, float* s) {
    const __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
    _mm_storeu_ps(s, _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1)));
  }
  static float hmax(reg a) { return hmax256(a); }
};

// ---- activation conversion (bit-identical to the scalar reference) ----

void conv_f16(const float* x, void* dst, int64_t cols) {
  float* y = static_cast<float*>(dst);
  int64_t i = 0;
  for (; i + 8 <= cols; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT);
    _mm256_storeu_ps(y + i, _mm256_cvtph_ps(h));
  }
  for (; i < cols; i++) y[i] = f16_to_f32(f32_to_f16(x[i]));
}

void conv_bf16(const float* x, void* dst, int64_t cols) {
  float* y = static_cast<float*>(dst);
  const __m256i one = _mm256_set1_epi32(1);
  const __m256i bias = _mm256_set1_epi32(0x7fff);
  const __m256i hi_mask = _mm256_set1_epi32(static_cast<int>(0xffff0000u));
  const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff);
  const __m256i inf = _mm256_set1_epi32(0x7f800000);
  const __m256i quiet = _mm256_set1_epi32(0x00400000);
  int64_t i = 0;
  for (; i + 8 <= cols; i += 8) {
    const __m256i u = _mm256_castps_si256(_mm256_loadu_ps(x + i));
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), one);
    const __m256i r = _mm256_and_si256(_mm256_add_epi32(u, _mm256_add_epi32(bias, lsb)), hi_mask);
    const __m256i rn = _mm256_and_si256(_mm256_or_si256(u, quiet), hi_mask);
    const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, abs_mask), inf);
    _mm256_storeu_ps(y + i, _mm256_castsi256_ps(_mm256_blendv_epi8(r, rn, nan)));
  }
  for (; i < cols; i++) y[i] = bf16_to_f32(f32_to_bf16(x[i]));
}

// Halves to even, as ggml's x86 quantize_row_q8_0 (see quantize_block_q8_0_act).
inline __m256 round_half_even(__m256 v) { return _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }

void conv_q8_0(const float* x, void* dst, int64_t cols) {
  BlockQ8_0* y = static_cast<BlockQ8_0*>(dst);
  const __m256 sign_bit = _mm256_set1_ps(-0.0f);
  const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int64_t b = 0; b < cols / kQK; b++) {
    const float* xb = x + b * kQK;
    __m256 v0 = _mm256_loadu_ps(xb);
    __m256 v1 = _mm256_loadu_ps(xb + 8);
    __m256 v2 = _mm256_loadu_ps(xb + 16);
    __m256 v3 = _mm256_loadu_ps(xb + 24);
    const __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign_bit, v0), _mm256_andnot_ps(sign_bit, v1)),
                                   _mm256_max_ps(_mm256_andnot_ps(sign_bit, v2), _mm256_andnot_ps(sign_bit, v3)));
    const float amax = hmax256(m);
    const float d = amax / 127.0f;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;  // ggml's x86 quantize_row_q8_0
    y[b].d = f32_to_f16(d);
    const __m256 idv = _mm256_set1_ps(id);
    v0 = round_half_even(_mm256_mul_ps(v0, idv));
    v1 = round_half_even(_mm256_mul_ps(v1, idv));
    v2 = round_half_even(_mm256_mul_ps(v2, idv));
    v3 = round_half_even(_mm256_mul_ps(v3, idv));
    __m256i i0 = _mm256_cvtps_epi32(v0);
    __m256i i1 = _mm256_cvtps_epi32(v1);
    __m256i i2 = _mm256_cvtps_epi32(v2);
    __m256i i3 = _mm256_cvtps_epi32(v3);
    i0 = _mm256_packs_epi32(i0, i1);
    i2 = _mm256_packs_epi32(i2, i3);
    i0 = _mm256_packs_epi16(i0, i2);
    i0 = _mm256_permutevar8x32_epi32(i0, perm);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[b].qs), i0);
  }
}

// ---- dot products ----

inline const float* xrow(const void* x, size_t stride, int k) {
  return reinterpret_cast<const float*>(static_cast<const uint8_t*>(x) + stride * static_cast<size_t>(k));
}
inline const BlockQ8_0* xblocks(const void* x, size_t stride, int k) {
  return reinterpret_cast<const BlockQ8_0*>(static_cast<const uint8_t*>(x) + stride * static_cast<size_t>(k));
}

struct LoadF32 {
  static __m256 load(const void* w, int64_t i) { return _mm256_loadu_ps(static_cast<const float*>(w) + i); }
  static float scalar(const void* w, int64_t i) { return static_cast<const float*>(w)[i]; }
};
struct LoadF16 {
  static __m256 load(const void* w, int64_t i) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w) + i)));
  }
  static float scalar(const void* w, int64_t i) {
    uint16_t h;
    std::memcpy(&h, static_cast<const uint8_t*>(w) + 2 * i, 2);
    return f16_to_f32(h);
  }
};
struct LoadBF16 {
  static __m256 load(const void* w, int64_t i) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w) + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  static float scalar(const void* w, int64_t i) {
    uint16_t h;
    std::memcpy(&h, static_cast<const uint8_t*>(w) + 2 * i, 2);
    return bf16_to_f32(h);
  }
};

// Weight row in L's format times NX f32 activation rows; the weight vector is loaded once per
// 8 columns and used for all NX rows. U independent accumulators per row hide FMA latency; U is
// the same for every NX so a row's sum does not depend on which rows share its tile (batched rows
// give the bits they give alone).
template <int NX, class L>
void dot_float_nx(int64_t cols, const void* w, const void* x, size_t xs, float* out) {
  constexpr int U = 2;
  const float* xr[NX];
  for (int k = 0; k < NX; k++) xr[k] = xrow(x, xs, k);
  __m256 acc[NX][U];
  for (int k = 0; k < NX; k++)
    for (int u = 0; u < U; u++) acc[k][u] = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 * U <= cols; i += 8 * U) {
    for (int u = 0; u < U; u++) {
      const __m256 wv = L::load(w, i + 8 * u);
      for (int k = 0; k < NX; k++) acc[k][u] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(xr[k] + i + 8 * u), acc[k][u]);
    }
  }
  for (; i + 8 <= cols; i += 8) {
    const __m256 wv = L::load(w, i);
    for (int k = 0; k < NX; k++) acc[k][0] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(xr[k] + i), acc[k][0]);
  }
  for (int k = 0; k < NX; k++) {
    __m256 s = acc[k][0];
    for (int u = 1; u < U; u++) s = _mm256_add_ps(s, acc[k][u]);
    float r = hsum256(s);
    for (int64_t j = i; j < cols; j++) r += L::scalar(w, j) * xr[k][j];
    out[k] = r;
  }
}

template <class L>
void dot_float(int64_t cols, const void* w, const void* x, size_t xs, int nx, float* out) {
  switch (nx) {
    case 1: dot_float_nx<1, L>(cols, w, x, xs, out); break;
    case 2: dot_float_nx<2, L>(cols, w, x, xs, out); break;
    case 3: dot_float_nx<3, L>(cols, w, x, xs, out); break;
    default: dot_float_nx<4, L>(cols, w, x, xs, out); break;
  }
}

// 32 nibbles: low nibbles to bytes 0..15, high nibbles to bytes 16..31 (Q4_0 element order).
inline __m256i bytes_from_nibbles_32(const uint8_t* p) {
  const __m128i tmp = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m256i bytes = _mm256_insertf128_si256(_mm256_castsi128_si256(tmp), _mm_srli_epi16(tmp, 4), 1);
  return _mm256_and_si256(_mm256_set1_epi8(0x0f), bytes);
}

// Sum of products of unsigned |w| and sign-adjusted activations, as 8 float lanes.
inline __m256 mul_sum_us8_pairs_float(__m256i ax, __m256i sy) {
  const __m256i dot = _mm256_maddubs_epi16(ax, sy);
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_set1_epi16(1), dot));
}

// QX loads one weight block's 32 signed values.
struct QxQ8_0 {
  using Block = BlockQ8_0;
  static __m256i load(const Block& b) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs)); }
};
struct QxQ4_0 {
  using Block = BlockQ4_0;
  static __m256i load(const Block& b) { return _mm256_sub_epi8(bytes_from_nibbles_32(b.qs), _mm256_set1_epi8(8)); }
};

template <int NX, class Q>
void dot_quant_nx(int64_t cols, const void* w, const void* x, size_t xs, float* out) {
  const typename Q::Block* wb = static_cast<const typename Q::Block*>(w);
  const BlockQ8_0* xb[NX];
  for (int k = 0; k < NX; k++) xb[k] = xblocks(x, xs, k);
  __m256 acc[NX];
  for (int k = 0; k < NX; k++) acc[k] = _mm256_setzero_ps();
  const int64_t nb = cols / kQK;
  for (int64_t b = 0; b < nb; b++) {
    const __m256i qx = Q::load(wb[b]);
    const __m256i ax = _mm256_sign_epi8(qx, qx);
    const float dw = _cvtsh_ss(wb[b].d);
    for (int k = 0; k < NX; k++) {
      const __m256i qy = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb[k][b].qs));
      const __m256i sy = _mm256_sign_epi8(qy, qx);
      const __m256 d = _mm256_set1_ps(dw * _cvtsh_ss(xb[k][b].d));
      acc[k] = _mm256_fmadd_ps(d, mul_sum_us8_pairs_float(ax, sy), acc[k]);
    }
  }
  for (int k = 0; k < NX; k++) out[k] = hsum256(acc[k]);
}

template <class Q>
void dot_quant(int64_t cols, const void* w, const void* x, size_t xs, int nx, float* out) {
  switch (nx) {
    case 1: dot_quant_nx<1, Q>(cols, w, x, xs, out); break;
    case 2: dot_quant_nx<2, Q>(cols, w, x, xs, out); break;
    case 3: dot_quant_nx<3, Q>(cols, w, x, xs, out); break;
    default: dot_quant_nx<4, Q>(cols, w, x, xs, out); break;
  }
}

// ---- dequantization (getRows) ----

void dequant_f16(const void* src, float* dst, int64_t cols) {
  int64_t i = 0;
  for (; i + 8 <= cols; i += 8) _mm256_storeu_ps(dst + i, LoadF16::load(src, i));
  for (; i < cols; i++) dst[i] = LoadF16::scalar(src, i);
}

void dequant_bf16(const void* src, float* dst, int64_t cols) {
  int64_t i = 0;
  for (; i + 8 <= cols; i += 8) _mm256_storeu_ps(dst + i, LoadBF16::load(src, i));
  for (; i < cols; i++) dst[i] = LoadBF16::scalar(src, i);
}

template <class Q>
void dequant_quant(const void* src, float* dst, int64_t cols) {
  const typename Q::Block* b = static_cast<const typename Q::Block*>(src);
  for (int64_t i = 0; i < cols / kQK; i++) {
    const __m256 d = _mm256_set1_ps(_cvtsh_ss(b[i].d));
    const __m256i q = Q::load(b[i]);
    const __m128i lo = _mm256_castsi256_si128(q);
    const __m128i hi = _mm256_extracti128_si256(q, 1);
    float* o = dst + i * kQK;
    _mm256_storeu_ps(o, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)), d));
    _mm256_storeu_ps(o + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8))), d));
    _mm256_storeu_ps(o + 16, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)), d));
    _mm256_storeu_ps(o + 24, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8))), d));
  }
}


void attention_heads_f16(float* out, const float* q, int64_t kv_heads, int64_t group, const uint16_t* k,
                         const uint16_t* v, const KvRows& kv, int64_t len, int64_t head_dim, float scale,
                         float* scratch) {
  attention_heads_f16_t<Avx2V>(out, q, kv_heads, group, k, v, kv, len, head_dim, scale, scratch);
}

void to_f16_avx(uint16_t* dst, const float* src, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  for (; i < n; i++) dst[i] = f32_to_f16(src[i]);
}

const Kernels kTable = {
    "avx2",
    conv_f16,
    conv_bf16,
    4,
    conv_q8_0,
    dot_float<LoadF32>,
    dot_float<LoadF16>,
    dot_float<LoadBF16>,
    dot_quant<QxQ8_0>,
    dot_quant<QxQ4_0>,
    dequant_f32_ref,
    dequant_f16,
    dequant_bf16,
    dequant_quant<QxQ8_0>,
    dequant_quant<QxQ4_0>,
    rms_norm_rows_t<Avx2V>,
    softmax_row_t<Avx2V>,
    argmax_row_t<Avx2V>,
    swiglu_t<Avx2V>,
    add_t<Avx2V>,
    rope_row_impl,
    attention_head_t<Avx2V>,
    conv_q8act,
    qgemm<DotAvx2, true>,
    qgemm<DotAvx2, false>,
    pgemm_q4<DotAvx2>,
    pgemm_q8<DotAvx2>,
    attention_heads_f16,
    to_f16_avx,
    kquants_avx2(),
};

}  // namespace

const Kernels* kernels_avx2() { return &kTable; }

}  // namespace ryz
