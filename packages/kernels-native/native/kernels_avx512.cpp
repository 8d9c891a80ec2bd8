// AVX-512 kernels (F, BW, VL, DQ, VNNI, BF16; plus AVX2/FMA/F16C). Compiled with those -m flags;
// only called after the dispatcher has checked the CPU supports every one of them.
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

inline float hsum256(__m256 a) {
  __m128 v = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  __m128 sh = _mm_movehdup_ps(v);
  __m128 s = _mm_add_ps(v, sh);
  sh = _mm_movehl_ps(sh, s);
  s = _mm_add_ss(s, sh);
  return _mm_cvtss_f32(s);
}

inline __m512 exp512(__m512 x) {
  const __mmask16 underflow = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.33654f), _CMP_LT_OQ);
  x = _mm512_min_ps(x, _mm512_set1_ps(88.0f));
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.33654f));
  const __m512 fx = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(0.693359375f), x);
  x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(-2.12194440e-4f), x);
  const __m512 z = _mm512_mul_ps(x, x);
  __m512 y = _mm512_set1_ps(1.9875691500e-4f);
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.3981999507e-3f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(8.3334519073e-3f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(4.1665795894e-2f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.6666665459e-1f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(5.0000001201e-1f));
  y = _mm512_fmadd_ps(y, z, x);
  y = _mm512_add_ps(y, _mm512_set1_ps(1.0f));
  const __m512i n = _mm512_cvtps_epi32(fx);
  const __m512 pow2n = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n, _mm512_set1_epi32(127)), 23));
  return _mm512_maskz_mul_ps(static_cast<__mmask16>(~underflow), y, pow2n);
}

struct Avx512V {
  using reg = __m512;
  static constexpr int W = 16;
  static reg zero() { return _mm512_setzero_ps(); }
  static reg set1(float f) { return _mm512_set1_ps(f); }
  static reg load(const float* p) { return _mm512_loadu_ps(p); }
  static reg load_h(const uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static void store(float* p, reg r) { _mm512_storeu_ps(p, r); }
  static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  static reg sub(reg a, reg b) { return _mm512_sub_ps(a, b); }
  static reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
  static reg div(reg a, reg b) { return _mm512_div_ps(a, b); }
  static reg fmadd(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static reg max(reg a, reg b) { return _mm512_max_ps(a, b); }
  static reg exp(reg a) { return exp512(a); }
  static float hsum(reg a) { return _mm512_reduce_add_ps(a); }
  static void hsum4(const reg* a, float* s) {
    for (int r = 0; r < 4; r++) s[r] = _mm512_reduce_add_ps(a[r]);
  }
  static float hmax(reg a) { return _mm512_reduce_max_ps(a); }
};

inline __mmask16 tail16(int64_t r) { return static_cast<__mmask16>((1u << r) - 1u); }
inline __mmask32 tail32(int64_t r) { return static_cast<__mmask32>((1ull << r) - 1ull); }

// ---- activation conversion (bit-identical to the scalar reference) ----

void conv_f16(const float* x, void* dst, int64_t cols) {
  float* y = static_cast<float*>(dst);
  int64_t i = 0;
  for (; i + 16 <= cols; i += 16) {
    const __m256i h = _mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT);
    _mm512_storeu_ps(y + i, _mm512_cvtph_ps(h));
  }
  for (; i < cols; i++) y[i] = f16_to_f32(f32_to_f16(x[i]));
}

// Raw bf16 (2 bytes per element) with ggml's rounding, computed in integers so denormals and
// NaNs round exactly as the reference does (vcvtneps2bf16 would flush denormals).
void conv_bf16_raw(const float* x, void* dst, int64_t cols) {
  uint16_t* y = static_cast<uint16_t*>(dst);
  const __m512i one = _mm512_set1_epi32(1);
  const __m512i bias = _mm512_set1_epi32(0x7fff);
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff);
  const __m512i inf = _mm512_set1_epi32(0x7f800000);
  const __m512i quiet = _mm512_set1_epi32(0x00400000);
  int64_t i = 0;
  for (; i + 16 <= cols; i += 16) {
    const __m512i u = _mm512_castps_si512(_mm512_loadu_ps(x + i));
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), one);
    const __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(bias, lsb)), 16);
    const __m512i rn = _mm512_srli_epi32(_mm512_or_si512(u, quiet), 16);
    const __mmask16 nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(u, abs_mask), inf);
    const __m512i res = _mm512_mask_blend_epi32(nan, r, rn);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), _mm512_cvtepi32_epi16(res));
  }
  for (; i < cols; i++) y[i] = f32_to_bf16(x[i]);
}

void conv_q8_0(const float* x, void* dst, int64_t cols) {
  BlockQ8_0* y = static_cast<BlockQ8_0*>(dst);
  for (int64_t b = 0; b < cols / kQK; b++) {
    const float* xb = x + b * kQK;
    __m512 v[2] = {_mm512_loadu_ps(xb), _mm512_loadu_ps(xb + 16)};
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v[0]), _mm512_abs_ps(v[1])));
    const float d = amax / 127.0f;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;  // ggml's x86 quantize_row_q8_0
    y[b].d = f32_to_f16(d);
    const __m512 idv = _mm512_set1_ps(id);
    for (int h = 0; h < 2; h++) {
      // halves to even (see quantize_block_q8_0_act)
      const __m512 t = _mm512_roundscale_ps(_mm512_mul_ps(v[h], idv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      const __m128i q = _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(t));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(y[b].qs + 16 * h), q);
    }
  }
}

// ---- dot products ----

inline const uint8_t* xrow_bytes(const void* x, size_t stride, int k) {
  return static_cast<const uint8_t*>(x) + stride * static_cast<size_t>(k);
}

struct LoadF32 {
  static __m512 load(const void* w, int64_t i) { return _mm512_loadu_ps(static_cast<const float*>(w) + i); }
  static __m512 load_mask(const void* w, int64_t i, __mmask16 m) {
    return _mm512_maskz_loadu_ps(m, static_cast<const float*>(w) + i);
  }
};
struct LoadF16 {
  static __m512 load(const void* w, int64_t i) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(w) + i)));
  }
  static __m512 load_mask(const void* w, int64_t i, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(w) + i));
  }
};

template <int NX, class L>
void dot_float_nx(int64_t cols, const void* w, const void* x, size_t xs, float* out) {
  constexpr int U = 2;  // the same for every NX: a row's sum does not depend on its tile mates
  const float* xr[NX];
  for (int k = 0; k < NX; k++) xr[k] = reinterpret_cast<const float*>(xrow_bytes(x, xs, k));
  __m512 acc[NX][U];
  for (int k = 0; k < NX; k++)
    for (int u = 0; u < U; u++) acc[k][u] = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 * U <= cols; i += 16 * U) {
    for (int u = 0; u < U; u++) {
      const __m512 wv = L::load(w, i + 16 * u);
      for (int k = 0; k < NX; k++) acc[k][u] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(xr[k] + i + 16 * u), acc[k][u]);
    }
  }
  for (; i + 16 <= cols; i += 16) {
    const __m512 wv = L::load(w, i);
    for (int k = 0; k < NX; k++) acc[k][0] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(xr[k] + i), acc[k][0]);
  }
  if (i < cols) {
    const __mmask16 m = tail16(cols - i);
    const __m512 wv = L::load_mask(w, i, m);
    for (int k = 0; k < NX; k++) acc[k][0] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(m, xr[k] + i), acc[k][0]);
  }
  for (int k = 0; k < NX; k++) {
    __m512 s = acc[k][0];
    for (int u = 1; u < U; u++) s = _mm512_add_ps(s, acc[k][u]);
    out[k] = _mm512_reduce_add_ps(s);
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

// BF16 weights times raw-bf16 activations with vdpbf16ps (pairs of products per f32 lane).
template <int NX>
void dot_bf16_nx(int64_t cols, const void* w, const void* x, size_t xs, float* out) {
  const uint16_t* wr = static_cast<const uint16_t*>(w);
  const uint16_t* xr[NX];
  for (int k = 0; k < NX; k++) xr[k] = reinterpret_cast<const uint16_t*>(xrow_bytes(x, xs, k));
  __m512 acc[NX];
  for (int k = 0; k < NX; k++) acc[k] = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= cols; i += 32) {
    const __m512i wv = _mm512_loadu_si512(wr + i);
    for (int k = 0; k < NX; k++) {
      const __m512i xv = _mm512_loadu_si512(xr[k] + i);
      acc[k] = _mm512_dpbf16_ps(acc[k], (__m512bh)wv, (__m512bh)xv);
    }
  }
  if (i < cols) {
    const __mmask32 m = tail32(cols - i);
    const __m512i wv = _mm512_maskz_loadu_epi16(m, wr + i);
    for (int k = 0; k < NX; k++) {
      const __m512i xv = _mm512_maskz_loadu_epi16(m, xr[k] + i);
      acc[k] = _mm512_dpbf16_ps(acc[k], (__m512bh)wv, (__m512bh)xv);
    }
  }
  for (int k = 0; k < NX; k++) out[k] = _mm512_reduce_add_ps(acc[k]);
}

void dot_bf16(int64_t cols, const void* w, const void* x, size_t xs, int nx, float* out) {
  switch (nx) {
    case 1: dot_bf16_nx<1>(cols, w, x, xs, out); break;
    case 2: dot_bf16_nx<2>(cols, w, x, xs, out); break;
    case 3: dot_bf16_nx<3>(cols, w, x, xs, out); break;
    default: dot_bf16_nx<4>(cols, w, x, xs, out); break;
  }
}

inline __m256i bytes_from_nibbles_32(const uint8_t* p) {
  const __m128i tmp = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m256i bytes = _mm256_insertf128_si256(_mm256_castsi128_si256(tmp), _mm_srli_epi16(tmp, 4), 1);
  return _mm256_and_si256(_mm256_set1_epi8(0x0f), bytes);
}

struct QxQ8_0 {
  using Block = BlockQ8_0;
  static __m256i load(const Block& b) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs)); }
};
struct QxQ4_0 {
  using Block = BlockQ4_0;
  static __m256i load(const Block& b) { return _mm256_sub_epi8(bytes_from_nibbles_32(b.qs), _mm256_set1_epi8(8)); }
};

inline __m256i load_qs(const BlockQ8_0& b) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs)); }

// Two blocks per 512-bit register; vpdpbusd on |w| (unsigned) and sign-adjusted activations.
template <int NX, class Q>
void dot_quant_nx(int64_t cols, const void* w, const void* x, size_t xs, float* out) {
  const typename Q::Block* wb = static_cast<const typename Q::Block*>(w);
  const BlockQ8_0* xb[NX];
  for (int k = 0; k < NX; k++) xb[k] = reinterpret_cast<const BlockQ8_0*>(xrow_bytes(x, xs, k));
  __m512 acc[NX];
  __m256 acc_tail[NX];
  for (int k = 0; k < NX; k++) {
    acc[k] = _mm512_setzero_ps();
    acc_tail[k] = _mm256_setzero_ps();
  }
  const __m512i zero = _mm512_setzero_si512();
  const int64_t nb = cols / kQK;
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) {
    const __m512i qx = _mm512_inserti64x4(_mm512_castsi256_si512(Q::load(wb[b])), Q::load(wb[b + 1]), 1);
    const __m512i ax = _mm512_abs_epi8(qx);
    const __mmask64 neg = _mm512_movepi8_mask(qx);
    const float dw0 = _cvtsh_ss(wb[b].d);
    const float dw1 = _cvtsh_ss(wb[b + 1].d);
    for (int k = 0; k < NX; k++) {
      const __m512i qy = _mm512_inserti64x4(_mm512_castsi256_si512(load_qs(xb[k][b])), load_qs(xb[k][b + 1]), 1);
      const __m512i sy = _mm512_mask_sub_epi8(qy, neg, zero, qy);
      const __m512i dot = _mm512_dpbusd_epi32(zero, ax, sy);
      const __m512 d = _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_set1_ps(dw0 * _cvtsh_ss(xb[k][b].d))),
                                          _mm256_set1_ps(dw1 * _cvtsh_ss(xb[k][b + 1].d)), 1);
      acc[k] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(dot), acc[k]);
    }
  }
  if (b < nb) {
    const __m256i qx = Q::load(wb[b]);
    const __m256i ax = _mm256_sign_epi8(qx, qx);
    const float dw = _cvtsh_ss(wb[b].d);
    for (int k = 0; k < NX; k++) {
      const __m256i sy = _mm256_sign_epi8(load_qs(xb[k][b]), qx);
      const __m256i dot = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ax, sy);
      const __m256 d = _mm256_set1_ps(dw * _cvtsh_ss(xb[k][b].d));
      acc_tail[k] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot), acc_tail[k]);
    }
  }
  for (int k = 0; k < NX; k++) out[k] = _mm512_reduce_add_ps(acc[k]) + hsum256(acc_tail[k]);
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

void dequant_f16(const void* src, float* dst, int64_t cols) {
  int64_t i = 0;
  for (; i + 16 <= cols; i += 16) _mm512_storeu_ps(dst + i, LoadF16::load(src, i));
  if (i < cols) _mm512_mask_storeu_ps(dst + i, tail16(cols - i), LoadF16::load_mask(src, i, tail16(cols - i)));
}

/** Integer dot of unsigned `u` with signed `s` bytes in one VNNI instruction. */
struct DotVnni {
  static constexpr bool kVnni = true;
  static __m256i dot_acc(__m256i acc, __m256i u, __m256i s) { return _mm256_dpbusd_epi32(acc, u, s); }
  static __m256i dot(__m256i u, __m256i s) { return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s); }
};


void attention_heads_f16(float* out, const float* q, int64_t kv_heads, int64_t group, const uint16_t* k,
                         const uint16_t* v, const KvRows& kv, int64_t len, int64_t head_dim, float scale,
                         float* scratch) {
  attention_heads_f16_t<Avx512V>(out, q, kv_heads, group, k, v, kv, len, head_dim, scale, scratch);
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
    "avx512",
    conv_f16,
    conv_bf16_raw,
    2,
    conv_q8_0,
    dot_float<LoadF32>,
    dot_float<LoadF16>,
    dot_bf16,
    dot_quant<QxQ8_0>,
    dot_quant<QxQ4_0>,
    dequant_f32_ref,
    dequant_f16,
    dequant_bf16_ref,
    dequant_q8_0_ref,
    dequant_q4_0_ref,
    rms_norm_rows_t<Avx512V>,
    softmax_row_t<Avx512V>,
    argmax_row_t<Avx512V>,
    swiglu_t<Avx512V>,
    add_t<Avx512V>,
    rope_row_impl,
    attention_head_t<Avx512V>,
    conv_q8act,
    qgemm<DotVnni, true>,
    qgemm<DotVnni, false>,
    pgemm_q4<DotVnni>,
    pgemm_q8<DotVnni>,
    attention_heads_f16,
    to_f16_avx,
    kquants_avx512(),
};

}  // namespace

const Kernels* kernels_avx512() { return &kTable; }

}  // namespace ryz
