// Register-tiled Q4_0 / Q8_0 matrix kernels for x86 (AVX2, and AVX-512 VNNI through the same
// code with a different integer dot). Included by kernels_avx2.cpp and kernels_avx512.cpp, each
// compiled with its own -m flags; everything here has internal linkage.
//
// Activations are quantized once per matmul into the "Q8 act" layout (struct of arrays, one row per
// token, stride a multiple of 64 bytes):
//   int8  qs[cols]      quants, 32-byte aligned so a block is one aligned load
//   float d[cols/32]    block scales, already rounded through f16 exactly as block_q8_0 stores them
//   int32 s[cols/32]    sum of the block's quants (Q4_0: w = nibble - 8, so Σ w·y = Σ nibble·y - 8·Σ y)
//   int32 c[cols/32]    the same correction as two int16: low half -8·Σ y[j] over j % 4 in {0, 1}, high half
//                       over j % 4 in {2, 3}; the int16 pair sums of the repacked Q4_0 kernel (ptile_q4x)
//                       start from it (each half is at most 8·16·128 in magnitude: fits int16)
// The values are bit-identical to ggml's quantize_row_q8_0 (same d, same rounding), so the result
// differs from the reference only by the float summation order.
//
// A tile computes R weight rows × T tokens: the R weight blocks are unpacked once per block and
// reused for T tokens, the T activation blocks are reused for R rows, and the R·T accumulators are
// independent (no single FMA latency chain).
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "common.h"

namespace ryz {
namespace {

inline float q8act_hmax256(__m256 a) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

// Halves to even, as ggml's x86 quantize_row_q8_0 (see quantize_block_q8_0_act).
inline __m256 q8act_round(__m256 v) { return _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }

/** f32 row -> Q8 act row (see the header comment). */
void conv_q8act(const float* x, void* dst, int64_t cols) {
  const int64_t nb = cols / kQK;
  int8_t* qs = static_cast<int8_t*>(dst);
  float* ds = reinterpret_cast<float*>(qs + cols);
  int32_t* ss = reinterpret_cast<int32_t*>(ds + nb);
  int32_t* cs = ss + nb;
  const __m256 sign_bit = _mm256_set1_ps(-0.0f);
  const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int64_t b = 0; b < nb; b++) {
    const float* xb = x + b * kQK;
    __m256 v0 = _mm256_loadu_ps(xb);
    __m256 v1 = _mm256_loadu_ps(xb + 8);
    __m256 v2 = _mm256_loadu_ps(xb + 16);
    __m256 v3 = _mm256_loadu_ps(xb + 24);
    const __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign_bit, v0), _mm256_andnot_ps(sign_bit, v1)),
                                   _mm256_max_ps(_mm256_andnot_ps(sign_bit, v2), _mm256_andnot_ps(sign_bit, v3)));
    const float amax = q8act_hmax256(m);
    const float d = amax / 127.0f;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;  // ggml's x86 quantize_row_q8_0
    ds[b] = f16_to_f32(f32_to_f16(d));
    const __m256 idv = _mm256_set1_ps(id);
    __m256i i0 = _mm256_cvtps_epi32(q8act_round(_mm256_mul_ps(v0, idv)));
    __m256i i1 = _mm256_cvtps_epi32(q8act_round(_mm256_mul_ps(v1, idv)));
    __m256i i2 = _mm256_cvtps_epi32(q8act_round(_mm256_mul_ps(v2, idv)));
    __m256i i3 = _mm256_cvtps_epi32(q8act_round(_mm256_mul_ps(v3, idv)));
    const __m256i sum = _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3));
    // Lane l of `sum` holds the elements j with j % 8 == l; lanes 0,1 (+4,5) are j % 4 in {0, 1}.
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
    s4 = _mm_hadd_epi32(s4, s4);
    const int32_t lo_sum = _mm_cvtsi128_si32(s4);
    const int32_t hi_sum = _mm_extract_epi32(s4, 1);
    ss[b] = lo_sum + hi_sum;
    cs[b] = q4_corr_pair(lo_sum, hi_sum);
    i0 = _mm256_packs_epi32(i0, i1);
    i2 = _mm256_packs_epi32(i2, i3);
    i0 = _mm256_packs_epi16(i0, i2);
    i0 = _mm256_permutevar8x32_epi32(i0, perm);
    _mm256_store_si256(reinterpret_cast<__m256i*>(qs + b * kQK), i0);
  }
}

/** Integer dot of unsigned bytes `u` with signed bytes `s`, 8 int32 lanes (AVX2: maddubs + madd). */
struct DotAvx2 {
  static constexpr bool kVnni = false;
  static __m256i dot_acc(__m256i acc, __m256i u, __m256i s) { return _mm256_add_epi32(acc, dot(u, s)); }
  static __m256i dot(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
  }
};

inline __m256 bcast_f16(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_set1_epi16(static_cast<short>(*p)));
}

/**
 * y[t * ys + r] = Σ_b dw[r,b]·dx[t,b]·Σ w·x over R rows × T tokens, R and T compile-time.
 * Q4_0 weights: nibbles (unsigned) · x, corrected by -8·s[b]; Q8_0 weights: sign trick.
 */
template <class D, bool Q4, int R, int T>
void qtile(int64_t cols, const uint8_t* w, size_t wrb, const uint8_t* x, size_t xs, float* y, size_t ys) {
  const int64_t nb = cols / kQK;
  __m256 acc[R][T];
  for (int r = 0; r < R; r++)
    for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();
  const int8_t* xq[T];
  const float* xd[T];
  const int32_t* xsum[T];
  for (int t = 0; t < T; t++) {
    xq[t] = reinterpret_cast<const int8_t*>(x + xs * static_cast<size_t>(t));
    xd[t] = reinterpret_cast<const float*>(xq[t] + cols);
    xsum[t] = reinterpret_cast<const int32_t*>(xd[t] + nb);
  }
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  for (int64_t b = 0; b < nb; b++) {
    __m256i wu[R];  // Q4: nibbles; Q8: |w|
    __m256i wq[R];  // Q8 only: w (for the sign of x)
    __m256 dw[R];
    for (int r = 0; r < R; r++) {
      const uint8_t* row = w + wrb * static_cast<size_t>(r);
      if (Q4) {
        const BlockQ4_0* blk = reinterpret_cast<const BlockQ4_0*>(row) + b;
        const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk->qs));
        wu[r] = _mm256_and_si256(_mm256_inserti128_si256(_mm256_castsi128_si256(t), _mm_srli_epi16(t, 4), 1), m4);
        wq[r] = wu[r];
        dw[r] = bcast_f16(&blk->d);
      } else {
        const BlockQ8_0* blk = reinterpret_cast<const BlockQ8_0*>(row) + b;
        wq[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk->qs));
        wu[r] = _mm256_sign_epi8(wq[r], wq[r]);
        dw[r] = bcast_f16(&blk->d);
      }
    }
    for (int t = 0; t < T; t++) {
      const __m256i xv = _mm256_load_si256(reinterpret_cast<const __m256i*>(xq[t] + b * kQK));
      const __m256 dx = _mm256_broadcast_ss(xd[t] + b);
      __m256i corr = _mm256_setzero_si256();
      if (Q4) corr = _mm256_set1_epi32(xsum[t][b]);  // 8 lanes · s = 8·s in total
      for (int r = 0; r < R; r++) {
        __m256i p;
        if (Q4) {
          p = _mm256_sub_epi32(D::dot(wu[r], xv), corr);
        } else {
          p = D::dot(wu[r], _mm256_sign_epi8(xv, wq[r]));
        }
        acc[r][t] = _mm256_fmadd_ps(_mm256_mul_ps(dw[r], dx), _mm256_cvtepi32_ps(p), acc[r][t]);
      }
    }
  }
  for (int r = 0; r < R; r++) {
    for (int t = 0; t < T; t++) {
      const __m256 a = acc[r][t];
      __m128 v = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
      v = _mm_add_ps(v, _mm_movehl_ps(v, v));
      v = _mm_add_ss(v, _mm_movehdup_ps(v));
      y[ys * static_cast<size_t>(t) + static_cast<size_t>(r)] = _mm_cvtss_f32(v);
    }
  }
}

/**
 * The QGemmFn of common.h: `nr` (1..4) rows × `nt` tokens, tiled 4×3 (prefill) or 4×1 (decode),
 * with smaller tiles at the edges.
 */
template <class D, bool Q4>
void qgemm(int64_t cols, const uint8_t* w, size_t wrb, int nr, const uint8_t* x, size_t xs, int64_t nt, float* y,
           size_t ys) {
  constexpr int TT = 3;
  int64_t t = 0;
  for (; t + TT <= nt; t += TT) {
    const uint8_t* xt = x + xs * static_cast<size_t>(t);
    float* yt = y + ys * static_cast<size_t>(t);
    switch (nr) {
      case 4: qtile<D, Q4, 4, TT>(cols, w, wrb, xt, xs, yt, ys); break;
      case 3: qtile<D, Q4, 3, TT>(cols, w, wrb, xt, xs, yt, ys); break;
      case 2: qtile<D, Q4, 2, TT>(cols, w, wrb, xt, xs, yt, ys); break;
      default: qtile<D, Q4, 1, TT>(cols, w, wrb, xt, xs, yt, ys); break;
    }
  }
  for (; t < nt; t++) {
    const uint8_t* xt = x + xs * static_cast<size_t>(t);
    float* yt = y + ys * static_cast<size_t>(t);
    switch (nr) {
      case 4: qtile<D, Q4, 4, 1>(cols, w, wrb, xt, xs, yt, ys); break;
      case 3: qtile<D, Q4, 3, 1>(cols, w, wrb, xt, xs, yt, ys); break;
      case 2: qtile<D, Q4, 2, 1>(cols, w, wrb, xt, xs, yt, ys); break;
      default: qtile<D, Q4, 1, 1>(cols, w, wrb, xt, xs, yt, ys); break;
    }
  }
}

// ---- repacked weights: 8 rows interleaved in 4-byte chunks (see repack.h) ----

/**
 * Q4_0: 8 rows × T tokens over one group of repacked blocks. Lane i of every accumulator is row i, so a
 * block's 8 scales are one vcvtph2ps and the result is one 8-float store per token.
 */
template <class D, int T>
void ptile_q4(int64_t cols, const uint8_t* wp, const uint8_t* x, size_t xs, float* y, size_t ys) {
  const int64_t nb = cols / kQK;
  constexpr size_t kBlk = 144;
  constexpr size_t kPrefetch = 2048;
  __m256 acc[T];
  for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
  const int8_t* xq[T];
  const float* xd[T];
  const int32_t* xsum[T];
  for (int t = 0; t < T; t++) {
    xq[t] = reinterpret_cast<const int8_t*>(x + xs * static_cast<size_t>(t));
    xd[t] = reinterpret_cast<const float*>(xq[t] + cols);
    xsum[t] = reinterpret_cast<const int32_t*>(xd[t] + nb);
  }
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  const __m256i ones16 = _mm256_set1_epi16(1);
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t* blk = wp + kBlk * static_cast<size_t>(b);
    // Decode streams each weight once: keep ~2 KiB of requests in flight ahead of the loads (the
    // hardware prefetchers stop at page boundaries). Past the end it runs into the next group.
    for (size_t o = 0; o < kBlk; o += 64) _mm_prefetch(reinterpret_cast<const char*>(blk + kPrefetch + o), _MM_HINT_T0);
    const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk)));
    const __m256i* q = reinterpret_cast<const __m256i*>(blk + 16);
    __m256i lo[4], hi[4];
    for (int c = 0; c < 4; c++) {
      const __m256i v = _mm256_loadu_si256(q + c);
      lo[c] = _mm256_and_si256(v, m4);
      hi[c] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
    }
    for (int t = 0; t < T; t++) {
      const int8_t* xb = xq[t] + b * kQK;
      __m256i p;
      if constexpr (D::kVnni) {
        p = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
          int32_t a, h;
          std::memcpy(&a, xb + 4 * c, 4);
          std::memcpy(&h, xb + 16 + 4 * c, 4);
          p = D::dot_acc(p, lo[c], _mm256_set1_epi32(a));
          p = D::dot_acc(p, hi[c], _mm256_set1_epi32(h));
        }
      } else {
        // 8 pair sums of at most 2·15·127 each fit int16 (30480).
        __m256i s16 = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
          int32_t a, h;
          std::memcpy(&a, xb + 4 * c, 4);
          std::memcpy(&h, xb + 16 + 4 * c, 4);
          s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(lo[c], _mm256_set1_epi32(a)));
          s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(hi[c], _mm256_set1_epi32(h)));
        }
        p = _mm256_madd_epi16(s16, ones16);
      }
      p = _mm256_sub_epi32(p, _mm256_set1_epi32(8 * xsum[t][b]));
      acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_broadcast_ss(xd[t] + b)), _mm256_cvtepi32_ps(p), acc[t]);
    }
  }
  for (int t = 0; t < T; t++) _mm256_storeu_ps(y + ys * static_cast<size_t>(t), acc[t]);
}

/**
 * AVX2 Q4_0: 8 rows × T tokens (T up to 8) over one group of repacked blocks, ordered for the FP/vector
 * pipes rather than memory (a 16-token step is bound by them): per block and token, one int16
 * accumulator starts from the row's correction word c[b] (see the layout comment: the -8·Σ y term
 * split per int16 lane) and takes the 8 vpmaddubsw products unpacked chunk by chunk (the int16 sums
 * wrap but end in range: each lane is Σ (nibble - 8)·y over 16 elements, |·| <= 16384); one vpmaddwd
 * makes the 8 row dots. That drops the per-token int32 correction (scalar multiply, transfer,
 * broadcast, subtract) of ptile_q4 and, with T = 8, amortises the weight unpacking over twice the
 * tokens. Each token has one pointer into its Q8 act row and the quants / scales / corrections are
 * addressed by offsets shared by all tokens, so the pointers stay in registers. The float side is
 * ptile_q4's exactly (per block: fma(dw·dx, float(dot), acc)), so the outputs are bit-identical.
 */
template <int T>
void ptile_q4x(int64_t cols, const uint8_t* wp, const uint8_t* x, size_t xs, float* y, size_t ys) {
  const int64_t nb = cols / kQK;
  constexpr size_t kBlk = 144;
  constexpr size_t kPrefetch = 2048;
  const uint8_t* xt[T];
  __m256 acc[T];
  _Pragma("GCC unroll 8") for (int t = 0; t < T; t++) {
    xt[t] = x + xs * static_cast<size_t>(t);
    acc[t] = _mm256_setzero_ps();
  }
  const size_t d_off = static_cast<size_t>(cols);                                 // f32 d[nb]
  const size_t c_off = static_cast<size_t>(cols) + 8 * static_cast<size_t>(nb);  // i32 c[nb]
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  const __m256i ones16 = _mm256_set1_epi16(1);
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t* blk = wp + kBlk * static_cast<size_t>(b);
    for (size_t o = 0; o < kBlk; o += 64) _mm_prefetch(reinterpret_cast<const char*>(blk + kPrefetch + o), _MM_HINT_T0);
    const __m256i* q = reinterpret_cast<const __m256i*>(blk + 16);
    const size_t qo = kQK * static_cast<size_t>(b);
    const size_t so = 4 * static_cast<size_t>(b);
    __m256i s16[T];
    _Pragma("GCC unroll 8") for (int t = 0; t < T; t++) {
      int32_t c;
      std::memcpy(&c, xt[t] + c_off + so, 4);
      s16[t] = _mm256_set1_epi32(c);
    }
    _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) {
      const __m256i v = _mm256_loadu_si256(q + c);
      const __m256i lo = _mm256_and_si256(v, m4);
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
      _Pragma("GCC unroll 8") for (int t = 0; t < T; t++) {
        int32_t a, h;
        std::memcpy(&a, xt[t] + qo + 4 * c, 4);
        std::memcpy(&h, xt[t] + qo + 16 + 4 * c, 4);
        // The empty asm pins each add in place: left alone, GCC reassociates the int16 sums into a
        // tree over all T·8 products and spills most of them.
        s16[t] = _mm256_add_epi16(s16[t], _mm256_maddubs_epi16(lo, _mm256_set1_epi32(a)));
        __asm__("" : "+x"(s16[t]));
        s16[t] = _mm256_add_epi16(s16[t], _mm256_maddubs_epi16(hi, _mm256_set1_epi32(h)));
        __asm__("" : "+x"(s16[t]));
      }
    }
    const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk)));
    _Pragma("GCC unroll 8") for (int t = 0; t < T; t++) {
      float dx;
      std::memcpy(&dx, xt[t] + d_off + so, 4);
      const __m256i p = _mm256_madd_epi16(s16[t], ones16);
      acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_set1_ps(dx)), _mm256_cvtepi32_ps(p), acc[t]);
    }
  }
  _Pragma("GCC unroll 8") for (int t = 0; t < T; t++) _mm256_storeu_ps(y + ys * static_cast<size_t>(t), acc[t]);
}

/**
 * The PackedGemmFn of common.h for Q4_0: one group of 8 repacked rows × `nt` tokens. AVX2: tiles of
 * 8 tokens (ptile_q4x), one tile for the 2..7 left, and a single token (decode) through ptile_q4,
 * which streams the weights; VNNI: tiles of 4, then 1 (ptile_q4).
 */
template <class D>
void pgemm_q4(int64_t cols, const uint8_t* wp, const uint8_t* x, size_t xs, int64_t nt, float* y, size_t ys) {
  int64_t t = 0;
  const auto at = [&](int64_t k) { return x + xs * static_cast<size_t>(k); };
  const auto yt = [&](int64_t k) { return y + ys * static_cast<size_t>(k); };
  if constexpr (!D::kVnni) {
    for (; t + 8 <= nt; t += 8) ptile_q4x<8>(cols, wp, at(t), xs, yt(t), ys);
    switch (nt - t) {
      case 7: ptile_q4x<7>(cols, wp, at(t), xs, yt(t), ys); return;
      case 6: ptile_q4x<6>(cols, wp, at(t), xs, yt(t), ys); return;
      case 5: ptile_q4x<5>(cols, wp, at(t), xs, yt(t), ys); return;
      case 4: ptile_q4x<4>(cols, wp, at(t), xs, yt(t), ys); return;
      case 3: ptile_q4x<3>(cols, wp, at(t), xs, yt(t), ys); return;
      case 2: ptile_q4x<2>(cols, wp, at(t), xs, yt(t), ys); return;
      default: break;
    }
  } else {
    for (; t + 4 <= nt; t += 4) ptile_q4<D, 4>(cols, wp, at(t), xs, yt(t), ys);
  }
  for (; t < nt; t++) ptile_q4<D, 1>(cols, wp, at(t), xs, yt(t), ys);
}

/**
 * Q8_0 over one group of 8 repacked rows, with llama.cpp's float summation order: ggml's AVX2
 * `ggml_vec_dot_q8_0_q8_0` (decode) and llamafile's tinyBLAS_Q0_AVX (prefill) keep, per output,
 * 8 float lanes (lane c = quants 4c..4c+3 of each block), add each block's lane into them with one
 * FMA by the scale product, and reduce the lanes as hsum_float_8 does. In the repacked layout chunk
 * c of a block holds exactly those 4 quants for the 8 rows, so accumulator c (lane i = row i) is
 * ggml's lane c of row i, and the final reduction is lane-wise. Bit-equal outputs keep the Q8_0
 * roundings of the next activations equal to llama.cpp's (docs/testing.md). Tokens go one at a time:
 * the 8 accumulators fill half the registers, and the group's weights stay in L1/L2 between tokens.
 */
template <class D>
void ptile_q8_exact(int64_t cols, const uint8_t* wp, const uint8_t* x, float* y) {
  const int64_t nb = cols / kQK;
  constexpr size_t kBlk = 272;
  constexpr size_t kPrefetch = 2048;
  const int8_t* xq = reinterpret_cast<const int8_t*>(x);
  const float* xd = reinterpret_cast<const float*>(xq + cols);
  __m256 acc[8];
  for (int c = 0; c < 8; c++) acc[c] = _mm256_setzero_ps();
  const __m256i ones16 = _mm256_set1_epi16(1);
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t* blk = wp + kBlk * static_cast<size_t>(b);
    for (size_t o = 0; o < kBlk; o += 64) _mm_prefetch(reinterpret_cast<const char*>(blk + kPrefetch + o), _MM_HINT_T0);
    const __m256 d = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk))),
                                   _mm256_broadcast_ss(xd + b));
    const __m256i* q = reinterpret_cast<const __m256i*>(blk + 16);
    const int8_t* xb = xq + b * kQK;
    for (int c = 0; c < 8; c++) {
      const __m256i wq = _mm256_loadu_si256(q + c);
      int32_t a;
      std::memcpy(&a, xb + 4 * c, 4);
      const __m256i sx = _mm256_sign_epi8(_mm256_set1_epi32(a), wq);
      const __m256i wu = _mm256_sign_epi8(wq, wq);
      __m256i p;
      if constexpr (D::kVnni) {
        p = D::dot(wu, sx);
      } else {
        p = _mm256_madd_epi16(_mm256_maddubs_epi16(wu, sx), ones16);
      }
      acc[c] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc[c]);
    }
  }
  // hsum_float_8 per row: ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)).
  const __m256 s0 = _mm256_add_ps(acc[0], acc[4]);
  const __m256 s1 = _mm256_add_ps(acc[1], acc[5]);
  const __m256 s2 = _mm256_add_ps(acc[2], acc[6]);
  const __m256 s3 = _mm256_add_ps(acc[3], acc[7]);
  _mm256_storeu_ps(y, _mm256_add_ps(_mm256_add_ps(s0, s2), _mm256_add_ps(s1, s3)));
}

/** The PackedGemmFn of common.h for Q8_0: `ptile_q8_exact` per token. */
template <class D>
void pgemm_q8(int64_t cols, const uint8_t* wp, const uint8_t* x, size_t xs, int64_t nt, float* y, size_t ys) {
  for (int64_t t = 0; t < nt; t++) {
    ptile_q8_exact<D>(cols, wp, x + xs * static_cast<size_t>(t), y + ys * static_cast<size_t>(t));
  }
}

}  // namespace
}  // namespace ryz
