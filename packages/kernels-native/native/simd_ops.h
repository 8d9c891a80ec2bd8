// Element-wise kernels written once over a tiny SIMD abstraction `V` and instantiated by each ISA
// file with its own vector type (scalar float, __m256, __m512). Everything lives in an anonymous
// namespace so each translation unit gets its own copy compiled with its own -m flags.
//
// V provides: reg, W (lanes), zero(), set1(f), load(p), load_h(p) (W halves), load_q8(p) (W int8
// as floats), store(p, r), add, sub, mul, div, fmadd(a, b, c) = a*b + c, max, exp (vector expf),
// hsum, hsum4, hmax.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>

#include "common.h"

namespace ryz {
namespace {

template <class V>
inline float dot_f32(const float* a, const float* b, int64_t n) {
  using R = typename V::reg;
  constexpr int W = V::W;
  R s0 = V::zero(), s1 = V::zero(), s2 = V::zero(), s3 = V::zero();
  int64_t i = 0;
  for (; i + 4 * W <= n; i += 4 * W) {
    s0 = V::fmadd(V::load(a + i), V::load(b + i), s0);
    s1 = V::fmadd(V::load(a + i + W), V::load(b + i + W), s1);
    s2 = V::fmadd(V::load(a + i + 2 * W), V::load(b + i + 2 * W), s2);
    s3 = V::fmadd(V::load(a + i + 3 * W), V::load(b + i + 3 * W), s3);
  }
  for (; i + W <= n; i += W) s0 = V::fmadd(V::load(a + i), V::load(b + i), s0);
  float s = V::hsum(V::add(V::add(s0, s1), V::add(s2, s3)));
  for (; i < n; i++) s += a[i] * b[i];
  return s;
}

template <class V>
inline typename V::reg load_f32(const float* p) {
  return V::load(p);
}
template <class V>
inline typename V::reg load_f32(const uint16_t* p) {
  return V::load_h(p);
}
inline float to_f32(float x) { return x; }
inline float to_f32(uint16_t h) { return f16_to_f32(h); }

// y[i] += p * x[i], x float or F16 (converted in registers: the same values, the same bits)
template <class V, class X>
inline void axpy_f32(float* y, float p, const X* x, int64_t n) {
  const typename V::reg pv = V::set1(p);
  constexpr int W = V::W;
  int64_t i = 0;
  for (; i + W <= n; i += W) V::store(y + i, V::fmadd(pv, load_f32<V>(x + i), V::load(y + i)));
  for (; i < n; i++) y[i] += p * to_f32(x[i]);
}

/**
 * The sums of squares of `r` (<= kRmsRows) consecutive rows of `dim` floats, each as ggml computes
 * it: float squares added in double, in order. A row's sum is one chain of dependent double adds;
 * running several rows' chains side by side keeps the adder busy without changing any row's sum.
 */
inline void sum_squares_rows(double* ss, const float* x, int64_t r, int64_t dim) {
  double s[kRmsRows] = {};
  if (r == kRmsRows) {
    for (int64_t i = 0; i < dim; i++) {
      for (int64_t k = 0; k < kRmsRows; k++) s[k] += static_cast<double>(x[k * dim + i] * x[k * dim + i]);
    }
  } else {
    for (int64_t k = 0; k < r; k++) {
      for (int64_t i = 0; i < dim; i++) s[k] += static_cast<double>(x[k * dim + i] * x[k * dim + i]);
    }
  }
  for (int64_t k = 0; k < r; k++) ss[k] = s[k];
}

/** RMS norm of n consecutive rows of `dim` floats (y rows `dim` apart too), each row as ggml's. */
template <class V>
void rms_norm_rows_t(float* y, const float* x, const float* w, int64_t n, int64_t dim, float eps) {
  using R = typename V::reg;
  constexpr int W = V::W;
  for (int64_t t0 = 0; t0 < n; t0 += kRmsRows) {
    const int64_t r = std::min<int64_t>(kRmsRows, n - t0);
    double ss[kRmsRows];
    sum_squares_rows(ss, x + t0 * dim, r, dim);
    for (int64_t k = 0; k < r; k++) {
      const float* xr = x + (t0 + k) * dim;
      float* yr = y + (t0 + k) * dim;
      // As ggml: the mean and the scale in float. A last-bit difference in the scale moves every
      // output of the row, and so the Q8_0 roundings after it.
      const float mean = static_cast<float>(ss[k] / static_cast<double>(dim));
      const float scale = 1.0f / std::sqrt(mean + eps);
      const R sc = V::set1(scale);
      int64_t i = 0;
      for (; i + W <= dim; i += W) V::store(yr + i, V::mul(V::mul(V::load(xr + i), sc), V::load(w + i)));
      for (; i < dim; i++) yr[i] = xr[i] * scale * w[i];
    }
  }
}

template <class V>
inline float exp_sub_sum(float* x, float m, int64_t n) {
  using R = typename V::reg;
  constexpr int W = V::W;
  const R mv = V::set1(m);
  R s = V::zero();
  int64_t i = 0;
  for (; i + W <= n; i += W) {
    const R e = V::exp(V::sub(V::load(x + i), mv));
    V::store(x + i, e);
    s = V::add(s, e);
  }
  float sum = V::hsum(s);
  for (; i < n; i++) {
    const float e = std::exp(x[i] - m);
    x[i] = e;
    sum += e;
  }
  return sum;
}

template <class V>
inline float max_f32(const float* x, int64_t n) {
  using R = typename V::reg;
  constexpr int W = V::W;
  R m = V::set1(-std::numeric_limits<float>::infinity());
  int64_t i = 0;
  for (; i + W <= n; i += W) m = V::max(m, V::load(x + i));
  float mx = V::hmax(m);
  for (; i < n; i++) mx = x[i] > mx ? x[i] : mx;
  return mx;
}

template <class V>
inline void scale_f32(float* y, const float* x, float s, int64_t n) {
  const typename V::reg sv = V::set1(s);
  constexpr int W = V::W;
  int64_t i = 0;
  for (; i + W <= n; i += W) V::store(y + i, V::mul(V::load(x + i), sv));
  for (; i < n; i++) y[i] = x[i] * s;
}

/**
 * Index of the largest of x[0..dim): the first of equal maxima; NaN never wins (V::max(x, m) keeps
 * m where x is NaN); 0 when nothing exceeds -inf. The same rule as greedy sampling's scalar loop
 * `if (x[i] > best) ...`, so either gives the same token.
 */
template <class V>
int64_t argmax_row_t(const float* x, int64_t dim) {
  using R = typename V::reg;
  constexpr int W = V::W;
  // One pass finds the max of each chunk with four independent max chains (one chain is bound by
  // the max latency), keeping the first chunk whose max beats every earlier one; only that chunk
  // is scanned again for the index. The scalar second pass over the whole row cost more than the
  // vector pass on 32K-entry vocabularies.
  constexpr int64_t kChunk = 64 * W;
  const float ninf = -std::numeric_limits<float>::infinity();
  float best = ninf;
  int64_t best_at = -1;
  int64_t i = 0;
  for (; i + kChunk <= dim; i += kChunk) {
    R m0 = V::set1(ninf), m1 = m0, m2 = m0, m3 = m0;
    for (int64_t j = i; j < i + kChunk; j += 4 * W) {
      m0 = V::max(V::load(x + j), m0);
      m1 = V::max(V::load(x + j + W), m1);
      m2 = V::max(V::load(x + j + 2 * W), m2);
      m3 = V::max(V::load(x + j + 3 * W), m3);
    }
    const float cm = V::hmax(V::max(V::max(m0, m1), V::max(m2, m3)));
    if (cm > best) {
      best = cm;
      best_at = i;
    }
  }
  // The tail (shorter than a chunk) element by element.
  for (; i < dim; i++) {
    if (x[i] > best) {
      best = x[i];
      best_at = i;
    }
  }
  if (best_at < 0) return 0;
  for (int64_t j = best_at; j < dim; j++) {
    if (x[j] == best) return j;
  }
  return 0;
}

template <class V>
void softmax_row_t(float* x, int64_t dim) {
  if (dim <= 0) return;
  const float mx = max_f32<V>(x, dim);
  const float sum = exp_sub_sum<V>(x, mx, dim);
  scale_f32<V>(x, x, 1.0f / sum, dim);
}

template <class V>
void swiglu_t(float* y, const float* g, const float* u, int64_t len) {
  using R = typename V::reg;
  constexpr int W = V::W;
  const R one = V::set1(1.0f);
  const R zero = V::zero();
  auto block = [&](float* yb, const float* gb, const float* ub) {
    const R gv = V::load(gb);
    const R silu = V::div(gv, V::add(one, V::exp(V::sub(zero, gv))));
    V::store(yb, V::mul(silu, V::load(ub)));
  };
  int64_t i = 0;
  for (; i + W <= len; i += W) block(y + i, g + i, u + i);
  if (i < len) {
    // The tail goes through the same vector code (zero-padded), never a scalar exp: an element's
    // result must not depend on where it falls in the buffer, since a batch's rows start anywhere
    // (a last-bit difference here reaches the F16 KV cache and breaks batched == alone).
    alignas(64) float gt[W] = {};
    alignas(64) float ut[W] = {};
    alignas(64) float yt[W];
    const size_t rest = static_cast<size_t>(len - i) * sizeof(float);
    std::memcpy(gt, g + i, rest);
    std::memcpy(ut, u + i, rest);
    block(yt, gt, ut);
    std::memcpy(y + i, yt, rest);
  }
}

template <class V>
void add_t(float* y, const float* a, const float* b, int64_t len) {
  constexpr int W = V::W;
  int64_t i = 0;
  for (; i + W <= len; i += W) V::store(y + i, V::add(V::load(a + i), V::load(b + i)));
  for (; i < len; i++) y[i] = a[i] + b[i];
}

// ggml's float arithmetic, step for step (ggml_rope_cache_init, rope_yarn, rotate_pairs): the
// angle of pair i is pos · theta_scale^i reached by repeated float multiplication, with float
// cos/sin. A 1e-6 difference in an angle flips Q8_0 activation roundings downstream, which shows
// in the logits, so matching llama.cpp beats extra precision here. (The float recurrence drifts by
// ~1e-3 rad at position 4096; HF transformers' float32 angles are of the same order.)
//
// `x2` (may be null) holds `heads2` more heads rotated with the same angles: a token's K heads go
// with its Q heads, so each cos/sin (most of the cost) is computed once for both.
inline void rope_row_impl(float* x, int64_t pos, const RopeArgs& a, float theta_scale, float* x2, int64_t heads2) {
  const int64_t half = a.n_dims / 2;
  const float freq_scale = static_cast<float>(a.freq_scale);
  float theta = static_cast<float>(pos);
  for (int64_t i = 0; i < half; i++) {
    const float angle = freq_scale * theta;
    const float c = std::cos(angle);
    const float s = std::sin(angle);
    theta *= theta_scale;
    const int64_t ia = a.neox ? i : 2 * i;
    const int64_t ib = a.neox ? i + half : 2 * i + 1;
    // ggml's rotate_pairs as its compiler contracts it (x0·c - x1·s and x0·s + x1·c, one FMA
    // each): the last bit decides F16 roundings of Q and K in the attention.
    const auto rotate = [&](float* row) {
      const float x0 = row[ia];
      const float x1 = row[ib];
      row[ia] = std::fma(x0, c, -(x1 * s));
      row[ib] = std::fma(x0, s, x1 * c);
    };
    for (int64_t h = 0; h < a.n_heads; h++) rotate(x + h * a.head_dim);
    for (int64_t h = 0; h < heads2; h++) rotate(x2 + h * a.head_dim);
  }
}

template <class V>
void attention_head_t(float* out, const float* q, const float* k, const float* v, const KvRows& kv, int64_t len,
                      int64_t head_dim, float scale, float* scores, float* acc) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < len; j++) {
    const float s = dot_f32<V>(q, k + kv.offset(j), head_dim) * scale;
    scores[j] = s;
    mx = s > mx ? s : mx;
  }
  const float sum = exp_sub_sum<V>(scores, mx, len);
  std::memset(acc, 0, sizeof(float) * static_cast<size_t>(head_dim));
  for (int64_t j = 0; j < len; j++) axpy_f32<V>(acc, scores[j], v + kv.offset(j), head_dim);
  scale_f32<V>(out, acc, 1.0f / sum, head_dim);
}

/**
 * One (token, head) of attention over an F16 cache computed as ggml's CPU flash attention does for
 * batches under 64 rows (ggml_compute_forward_flash_attn_ext_f16_one_chunk, AVX2 build), bit for
 * bit: Q rounded to F16; each score an F16·F16 dot product in 4×8 float FMA lanes reduced as
 * GGML_F32x8_REDUCE does; an online softmax with float exp; the weighted V rows accumulated in an
 * F16 buffer rounded after every key (ggml_vec_mad_f16 / ggml_vec_scale_f16). Scalar code with
 * std::fma gives the same bits as those AVX2 instructions. `qh` and `acc` hold head_dim halves.
 */
inline void attention_head_f16acc(float* out, const float* q, const uint16_t* k, const uint16_t* v,
                                  size_t kv_stride, int64_t len, int64_t head_dim, float scale, uint16_t* qh,
                                  uint16_t* acc) {
  const int64_t full = head_dim - head_dim % 32;
  for (int64_t d = 0; d < head_dim; d++) {
    qh[d] = f32_to_f16(q[d]);
    acc[d] = 0;
  }
  float sum = 0.0f;
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < len; j++) {
    const uint16_t* kr = k + static_cast<size_t>(j) * kv_stride;
    float lanes[32] = {};
    for (int64_t i = 0; i < full; i += 32)
      for (int l = 0; l < 32; l++) lanes[l] = std::fma(f16_to_f32(kr[i + l]), f16_to_f32(qh[i + l]), lanes[l]);
    for (int l = 0; l < 8; l++) {
      lanes[l] += lanes[16 + l];
      lanes[8 + l] += lanes[24 + l];
    }
    for (int l = 0; l < 8; l++) lanes[l] += lanes[8 + l];
    double dot = (lanes[0] + lanes[4] + (lanes[1] + lanes[5])) + (lanes[2] + lanes[6] + (lanes[3] + lanes[7]));
    for (int64_t i = full; i < head_dim; i++) dot += static_cast<double>(f16_to_f32(kr[i]) * f16_to_f32(qh[i]));
    const float s = static_cast<float>(dot) * scale;
    float ms = 1.0f;
    float vs = 1.0f;
    if (s > mx) {
      ms = std::exp(mx - s);
      mx = s;
      for (int64_t d = 0; d < head_dim; d++) acc[d] = f32_to_f16(f16_to_f32(acc[d]) * ms);
    } else {
      vs = std::exp(s - mx);
    }
    const uint16_t* vr = v + static_cast<size_t>(j) * kv_stride;
    for (int64_t d = 0; d < full; d++) acc[d] = f32_to_f16(std::fma(f16_to_f32(vr[d]), vs, f16_to_f32(acc[d])));
    for (int64_t d = full; d < head_dim; d++) acc[d] = f32_to_f16(f16_to_f32(acc[d]) + f16_to_f32(vr[d]) * vs);
    sum = sum * ms + vs;
  }
  const float inv = sum == 0.0f ? 0.0f : 1.0f / sum;
  for (int64_t d = 0; d < head_dim; d++) out[d] = f16_to_f32(acc[d]) * inv;
}

/**
 * N (1 or 4) dot products of float a[r] with F16 b[r] (V::load_h: the same float values as
 * converting b first), reduced by one V::hsum4. A row's sum does not depend on N: the same two
 * accumulators, the same reduction (a single row fills the other three slots with copies of itself).
 */
template <class V, int N>
inline void dots_f32_f16(float* out, const float* const* a, const uint16_t* const* b, int64_t n) {
  static_assert(N == 1 || N == 4, "one or four rows");
  using R = typename V::reg;
  constexpr int W = V::W;
  R s[4], t[4];
  for (int r = 0; r < N; r++) s[r] = t[r] = V::zero();
  int64_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    for (int r = 0; r < N; r++) {
      s[r] = V::fmadd(V::load(a[r] + i), V::load_h(b[r] + i), s[r]);
      t[r] = V::fmadd(V::load(a[r] + i + W), V::load_h(b[r] + i + W), t[r]);
    }
  }
  for (; i + W <= n; i += W) {
    for (int r = 0; r < N; r++) s[r] = V::fmadd(V::load(a[r] + i), V::load_h(b[r] + i), s[r]);
  }
  for (int r = 0; r < N; r++) s[r] = V::add(s[r], t[r]);
  for (int r = N; r < 4; r++) s[r] = s[0];
  float sums[4];
  V::hsum4(s, sums);
  for (int r = 0; r < N; r++) out[r] = sums[r];
  for (; i < n; i++) {
    for (int r = 0; r < N; r++) out[r] += a[r][i] * f16_to_f32(b[r][i]);
  }
}

/** Keys per tile of the F16 attention kernel. */
constexpr int64_t kAttnTile = 32;

/**
 * Scratch floats attention_heads_f16_t needs for `kv_heads` KV heads of `group` query heads each:
 * per query head a tile of scores, an accumulator, a running max and sum.
 */
inline size_t attention_f16_scratch_floats(int64_t kv_heads, int64_t group, int64_t head_dim) {
  return static_cast<size_t>(kv_heads * group * (kAttnTile + head_dim + 2));
}

/** Prefetches the cache lines of [p, p + bytes) into L1 (a hint; no effect on results). */
inline void prefetch_bytes(const void* p, size_t bytes) {
  const uintptr_t end = reinterpret_cast<uintptr_t>(p) + bytes;
  for (uintptr_t a = reinterpret_cast<uintptr_t>(p) & ~uintptr_t{63}; a < end; a += 64) {
#if defined(__x86_64__)
    // asm volatile: GCC 12 at -O2 dropped __builtin_prefetch from the Q8_0 instantiation.
    __asm__ volatile("prefetcht0 %0" : : "m"(*reinterpret_cast<const char*>(a)));
#else
    __builtin_prefetch(reinterpret_cast<const void*>(a));
#endif
  }
}

/** Rows ahead attention_heads_t prefetches (K rows while scoring, V rows while accumulating). */
constexpr int64_t kAttnPrefetchRows = 4;

/**
 * The F16 rows of attention_heads_t: half bits converted to floats in registers as they are used.
 * `k` and `v` point at the first KV head's slice of row 0; `kv` locates rows (in halves).
 */
template <class V>
struct KvRowsF16 {
  const uint16_t* k;
  const uint16_t* v;
  const KvRows& kv;
  int64_t head_dim;
  const uint16_t* row = nullptr;
  /** Selects the key (value) row at `off` (KvRows::offsets). */
  void key_row(size_t off) { row = k + off; }
  void value_row(size_t off) { row = v + off; }
  /** Prefetches the bytes the heads read of the key (value) row at `off`. */
  void prefetch(bool value, size_t off, int64_t kv_heads) const {
    prefetch_bytes((value ? v : k) + off, static_cast<size_t>(kv_heads * head_dim) * 2);
  }
  /** N dot products of q[r] with KV head g[r] of the current key row. */
  template <int N>
  void dots(float* d, const float* const* q, const int64_t* g) const {
    const uint16_t* ks[N];
    for (int r = 0; r < N; r++) ks[r] = row + g[r] * head_dim;
    dots_f32_f16<V, N>(d, q, ks, head_dim);
  }
  /** acc += p * (KV head g of the current value row). */
  void axpy(float* acc, float p, int64_t g) const { axpy_f32<V>(acc, p, row + g * head_dim, head_dim); }
};

/**
 * Scratch floats KvRowsQ8 needs besides attention_heads_t's own: the scales of one row's blocks
 * over `kv_heads` heads (which may start mid-block when head_dim is not a multiple of 32).
 */
inline size_t kv_q8_0_scale_floats(int64_t kv_heads, int64_t head_dim) {
  return static_cast<size_t>((kv_heads * head_dim + kKvQ8Block - 1) / kKvQ8Block + 1);
}

/**
 * The Q8_0 rows of attention_heads_t. A cache row of `row_elems` values is stored as its int8
 * quants (row_elems bytes) followed by one f16 scale per 32 values (llama.cpp's block_q8_0 split
 * into a struct of arrays, so the quants of a head are contiguous). `k`, `v` point at row 0's
 * first byte; the heads handled start at element `e0` of a row; `kv` locates rows in bytes.
 *
 * When a row is selected, the f16 scales of the blocks the heads cover are converted to floats
 * once (`ds`). When head_dim is a multiple of 32 (every head is whole blocks), a dot product sums
 * q·quant over each block and scales the block's sum once, and the weighted V sum adds
 * (p·d)·quant, so an int8 value costs what an F16 one does (a conversion and one FMA). Otherwise
 * values are dequantized in registers, quant·d, as they are used (`d` per W-lane chunk: one
 * broadcast, or per lane where a chunk straddles two blocks). Which path runs depends on head_dim
 * only, and a head's arithmetic on its own elements only, never on which heads share the call.
 */
template <class V>
struct KvRowsQ8 {
  using R = typename V::reg;
  static constexpr int W = V::W;
  const uint8_t* k;
  const uint8_t* v;
  const KvRows& kv;
  int64_t head_dim;
  int64_t row_elems;
  int64_t e0;
  int64_t b0;  // first block covered: e0 / 32
  int64_t nb;  // blocks covered
  float* ds;   // nb floats of scratch
  const int8_t* qs = nullptr;

  KvRowsQ8(const uint8_t* k_, const uint8_t* v_, const KvRows& kv_, int64_t kv_heads, int64_t head_dim_,
           int64_t row_elems_, int64_t e0_, float* ds_)
      : k(k_),
        v(v_),
        kv(kv_),
        head_dim(head_dim_),
        row_elems(row_elems_),
        e0(e0_),
        b0(e0_ / kKvQ8Block),
        nb((e0_ + kv_heads * head_dim_ - 1) / kKvQ8Block - e0_ / kKvQ8Block + 1),
        ds(ds_) {}

  void select(const uint8_t* row) {
    qs = reinterpret_cast<const int8_t*>(row);
    const uint16_t* d = reinterpret_cast<const uint16_t*>(row + row_elems) + b0;
    int64_t b = 0;
    for (; b + W <= nb; b += W) V::store(ds + b, V::load_h(d + b));
    for (; b < nb; b++) ds[b] = f16_to_f32(d[b]);
  }
  void key_row(size_t off) { select(k + off); }
  void value_row(size_t off) { select(v + off); }
  /** Prefetches the quants and scales the heads read of the key (value) row at `off`. */
  void prefetch(bool value, size_t off, int64_t kv_heads) const {
    const uint8_t* row = (value ? v : k) + off;
    prefetch_bytes(row + e0, static_cast<size_t>(kv_heads * head_dim));
    prefetch_bytes(row + row_elems + 2 * b0, static_cast<size_t>(2 * nb));
  }

  /** Every head is whole Q8_0 blocks (head_dim a multiple of 32, so e0 is too). */
  bool whole_blocks() const { return head_dim % kKvQ8Block == 0; }
  float scale_of(int64_t e) const { return ds[e / kKvQ8Block - b0]; }
  /** Scales of the W values from row element e. */
  R chunk_scale(int64_t e) const {
    if (e % kKvQ8Block + W <= kKvQ8Block) return V::set1(scale_of(e));
    alignas(64) float lanes[W];
    for (int l = 0; l < W; l++) lanes[l] = scale_of(e + l);
    return V::load(lanes);
  }
  R value(int64_t e) const { return V::mul(V::load_q8(qs + e), chunk_scale(e)); }

  /** As dots_f32_f16, over dequantized values: the same accumulators and reduction for N = 1 or 4. */
  template <int N>
  void dots(float* out, const float* const* a, const int64_t* g) const {
    static_assert(N == 1 || N == 4, "one or four rows");
    int64_t e[N];
    for (int r = 0; r < N; r++) e[r] = e0 + g[r] * head_dim;
    if (whole_blocks()) {
      // Per block: two partial sums of q·quant over its 32 values, then one FMA with the scale.
      R s[4];
      for (int r = 0; r < N; r++) s[r] = V::zero();
      for (int64_t i = 0; i < head_dim; i += kKvQ8Block) {
        for (int r = 0; r < N; r++) {
          const float* ar = a[r] + i;
          const int8_t* kr = qs + e[r] + i;
          R u0 = V::zero(), u1 = V::zero();
          for (int c = 0; c < kKvQ8Block; c += 2 * W) {
            u0 = V::fmadd(V::load(ar + c), V::load_q8(kr + c), u0);
            u1 = V::fmadd(V::load(ar + c + W), V::load_q8(kr + c + W), u1);
          }
          s[r] = V::fmadd(V::add(u0, u1), V::set1(scale_of(e[r] + i)), s[r]);
        }
      }
      for (int r = N; r < 4; r++) s[r] = s[0];
      float sums[4];
      V::hsum4(s, sums);
      for (int r = 0; r < N; r++) out[r] = sums[r];
      return;
    }
    R s[4], t[4];
    for (int r = 0; r < N; r++) s[r] = t[r] = V::zero();
    int64_t i = 0;
    for (; i + 2 * W <= head_dim; i += 2 * W) {
      for (int r = 0; r < N; r++) {
        s[r] = V::fmadd(V::load(a[r] + i), value(e[r] + i), s[r]);
        t[r] = V::fmadd(V::load(a[r] + i + W), value(e[r] + i + W), t[r]);
      }
    }
    for (; i + W <= head_dim; i += W) {
      for (int r = 0; r < N; r++) s[r] = V::fmadd(V::load(a[r] + i), value(e[r] + i), s[r]);
    }
    for (int r = 0; r < N; r++) s[r] = V::add(s[r], t[r]);
    for (int r = N; r < 4; r++) s[r] = s[0];
    float sums[4];
    V::hsum4(s, sums);
    for (int r = 0; r < N; r++) out[r] = sums[r];
    for (; i < head_dim; i++) {
      for (int r = 0; r < N; r++) out[r] += a[r][i] * (static_cast<float>(qs[e[r] + i]) * scale_of(e[r] + i));
    }
  }

  /** acc += p * (KV head g of the current value row), as (p·d) · q per value. */
  void axpy(float* acc, float p, int64_t g) const {
    const int64_t e = e0 + g * head_dim;
    if (whole_blocks()) {
      for (int64_t i = 0; i < head_dim; i += kKvQ8Block) {
        const R pd = V::set1(p * scale_of(e + i));
        for (int c = 0; c < kKvQ8Block; c += W) {
          V::store(acc + i + c, V::fmadd(pd, V::load_q8(qs + e + i + c), V::load(acc + i + c)));
        }
      }
      return;
    }
    const R pv = V::set1(p);
    int64_t i = 0;
    for (; i + W <= head_dim; i += W) {
      V::store(acc + i, V::fmadd(V::mul(pv, chunk_scale(e + i)), V::load_q8(qs + e + i), V::load(acc + i)));
    }
    for (; i < head_dim; i++) acc[i] += (p * scale_of(e + i)) * static_cast<float>(qs[e + i]);
  }
};

/**
 * Causal attention of one token's query heads over `kv_heads` consecutive KV heads of a half or
 * quantized KV cache (`group` query heads per KV head; the cache format is `Rows`: KvRowsF16 or
 * KvRowsQ8), in tiles of kAttnTile keys with an online softmax (flash-attention style), so no
 * score buffer of the sequence length is needed. q and out hold the `kv_heads * group` heads one
 * after another (head_dim floats each); `rows` locates K/V rows (contiguous, or through a paged
 * table).
 *
 * A tile is read row by row, all the given heads of a row at once: that reads the cache as the
 * contiguous runs it is stored in (a block of the paged cache is blockSize consecutive rows), which
 * the hardware prefetchers follow. Going head by head instead read a few cache lines a row stride
 * apart and stalled on memory for most of the attention time at 16 decode streams. The values are
 * converted in registers as they are used (converting a tile of rows to floats first wrote and
 * re-read four times the bytes of the cache itself). Each head's arithmetic is the same in any
 * order of the heads: scores of the tile, its max, the rescale, the exponentials, then the
 * weighted V rows in key order.
 */
template <class V, class Rows>
void attention_heads_t(float* out, const float* q, int64_t kv_heads, int64_t group, Rows& rows, int64_t len,
                       int64_t head_dim, float scale, float* scratch) {
  const int64_t heads = kv_heads * group;
  float* sc = scratch;  // head h's scores of the tile at sc + h * kAttnTile
  float* acc = sc + heads * kAttnTile;
  float* mx = acc + heads * head_dim;
  float* sum = mx + heads;
  for (int64_t h = 0; h < heads; h++) {
    mx[h] = -std::numeric_limits<float>::infinity();
    sum[h] = 0.0f;
  }
  std::memset(acc, 0, sizeof(float) * static_cast<size_t>(heads * head_dim));
  // The KV head of each query head, counted rather than divided (h / group per head and key cost
  // a 64-bit division each).
  int64_t kvh[4];
  // Row offsets of this tile's keys and of the next tile's (the same for K and V). The rows are
  // prefetched a few ahead: each starts a new run of cache lines (a new page block every
  // blockSize rows) that the hardware prefetcher does not see coming, and waiting on those loads
  // took most of the time of the Q8_0 kernel, whose rows are short.
  size_t offs_a[kAttnTile], offs_b[kAttnTile];
  size_t* offs = offs_a;
  size_t* next_offs = offs_b;
  if (len > 0) rows.kv.offsets(0, std::min<int64_t>(kAttnTile, len), offs);
  for (int64_t j0 = 0; j0 < len; j0 += kAttnTile) {
    const int64_t jn = std::min<int64_t>(kAttnTile, len - j0);
    const int64_t next_n = std::min<int64_t>(kAttnTile, len - j0 - jn);
    if (next_n > 0) rows.kv.offsets(j0 + jn, next_n, next_offs);
    for (int64_t j = 0; j < kAttnPrefetchRows && j < jn; j++) rows.prefetch(false, offs[j], kv_heads);
    for (int64_t j = 0; j < jn; j++) {
      // K rows ahead, then the tile's first V rows.
      const int64_t ahead = j + kAttnPrefetchRows;
      if (ahead < jn) rows.prefetch(false, offs[ahead], kv_heads);
      else if (ahead - jn < jn) rows.prefetch(true, offs[ahead - jn], kv_heads);
      rows.key_row(offs[j]);
      int64_t h = 0;
      int64_t g = 0;
      int64_t in_group = 0;
      const auto next_head = [&]() {
        if (++in_group == group) {
          in_group = 0;
          g++;
        }
      };
      for (; h + 4 <= heads; h += 4) {
        const float* qs[4];
        for (int r = 0; r < 4; r++) {
          qs[r] = q + (h + r) * head_dim;
          kvh[r] = g;
          next_head();
        }
        float d[4];
        rows.template dots<4>(d, qs, kvh);
        for (int r = 0; r < 4; r++) sc[(h + r) * kAttnTile + j] = d[r] * scale;
      }
      for (; h < heads; h++) {
        const float* qh = q + h * head_dim;
        kvh[0] = g;
        next_head();
        float d;
        rows.template dots<1>(&d, &qh, kvh);
        sc[h * kAttnTile + j] = d * scale;
      }
    }
    for (int64_t h = 0; h < heads; h++) {
      float* sh = sc + h * kAttnTile;
      float tile_max = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j < jn; j++) tile_max = sh[j] > tile_max ? sh[j] : tile_max;
      const float m_new = tile_max > mx[h] ? tile_max : mx[h];
      if (m_new > mx[h] && sum[h] != 0.0f) {
        const float c = std::exp(mx[h] - m_new);
        sum[h] *= c;
        scale_f32<V>(acc + h * head_dim, acc + h * head_dim, c, head_dim);
      }
      mx[h] = m_new;
      sum[h] += exp_sub_sum<V>(sh, m_new, jn);
    }
    for (int64_t j = 0; j < jn; j++) {
      // V rows ahead, then the next tile's first K rows.
      const int64_t ahead = j + kAttnPrefetchRows;
      if (ahead < jn) rows.prefetch(true, offs[ahead], kv_heads);
      else if (ahead - jn < next_n) rows.prefetch(false, next_offs[ahead - jn], kv_heads);
      rows.value_row(offs[j]);
      for (int64_t g = 0, h = 0; g < kv_heads; g++) {
        for (int64_t i = 0; i < group; i++, h++) rows.axpy(acc + h * head_dim, sc[h * kAttnTile + j], g);
      }
    }
    std::swap(offs, next_offs);
  }
  for (int64_t h = 0; h < heads; h++) scale_f32<V>(out + h * head_dim, acc + h * head_dim, 1.0f / sum[h], head_dim);
}

/** attention_heads_t over an F16 cache; k and v point at the first KV head's slice of row 0. */
template <class V>
void attention_heads_f16_t(float* out, const float* q, int64_t kv_heads, int64_t group, const uint16_t* k,
                           const uint16_t* v, const KvRows& kv, int64_t len, int64_t head_dim, float scale,
                           float* scratch) {
  KvRowsF16<V> rows{k, v, kv, head_dim};
  attention_heads_t<V>(out, q, kv_heads, group, rows, len, head_dim, scale, scratch);
}

/**
 * attention_heads_t over a Q8_0 cache (KvRowsQ8 layout; k and v at row 0's first byte, the heads
 * from element `e0` of a row of `row_elems` values). `scratch` holds
 * attention_f16_scratch_floats + kv_q8_0_scale_floats floats.
 */
template <class V>
void attention_heads_q8_0_t(float* out, const float* q, int64_t kv_heads, int64_t group, const uint8_t* k,
                            const uint8_t* v, int64_t e0, int64_t row_elems, const KvRows& kv, int64_t len,
                            int64_t head_dim, float scale, float* scratch) {
  KvRowsQ8<V> rows(k, v, kv, kv_heads, head_dim, row_elems, e0,
                   scratch + attention_f16_scratch_floats(kv_heads, group, head_dim));
  attention_heads_t<V>(out, q, kv_heads, group, rows, len, head_dim, scale, scratch);
}

// ---- scalar conversions and dequantization shared by all variants ----

inline void conv_f16_ref(const float* x, void* dst, int64_t cols) {
  float* y = static_cast<float*>(dst);
  for (int64_t i = 0; i < cols; i++) y[i] = f16_to_f32(f32_to_f16(x[i]));
}

inline void conv_bf16_f32_ref(const float* x, void* dst, int64_t cols) {
  float* y = static_cast<float*>(dst);
  for (int64_t i = 0; i < cols; i++) y[i] = bf16_to_f32(f32_to_bf16(x[i]));
}

inline void conv_q8_0_ref(const float* x, void* dst, int64_t cols) {
  BlockQ8_0* y = static_cast<BlockQ8_0*>(dst);
  for (int64_t b = 0; b < cols / kQK; b++) quantize_block_q8_0_act(x + b * kQK, y + b);
}

inline void dequant_f32_ref(const void* src, float* dst, int64_t cols) {
  std::memcpy(dst, src, sizeof(float) * static_cast<size_t>(cols));
}

inline void dequant_f16_ref(const void* src, float* dst, int64_t cols) {
  const uint8_t* s = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < cols; i++) {
    uint16_t h;
    std::memcpy(&h, s + 2 * i, 2);
    dst[i] = f16_to_f32(h);
  }
}

inline void dequant_bf16_ref(const void* src, float* dst, int64_t cols) {
  const uint8_t* s = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < cols; i++) {
    uint16_t h;
    std::memcpy(&h, s + 2 * i, 2);
    dst[i] = bf16_to_f32(h);
  }
}

inline void dequant_q8_0_ref(const void* src, float* dst, int64_t cols) {
  const BlockQ8_0* b = static_cast<const BlockQ8_0*>(src);
  for (int64_t i = 0; i < cols / kQK; i++) {
    const float d = f16_to_f32(b[i].d);
    for (int j = 0; j < kQK; j++) dst[i * kQK + j] = static_cast<float>(b[i].qs[j]) * d;
  }
}

inline void dequant_q4_0_ref(const void* src, float* dst, int64_t cols) {
  const BlockQ4_0* b = static_cast<const BlockQ4_0*>(src);
  for (int64_t i = 0; i < cols / kQK; i++) {
    const float d = f16_to_f32(b[i].d);
    for (int j = 0; j < kQK / 2; j++) {
      dst[i * kQK + j] = static_cast<float>((b[i].qs[j] & 0x0f) - 8) * d;
      dst[i * kQK + j + 16] = static_cast<float>((b[i].qs[j] >> 4) - 8) * d;
    }
  }
}

}  // namespace
}  // namespace ryz
