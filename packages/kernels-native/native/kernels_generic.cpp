// Scalar reference kernels ("generic"): plain C++, compiled without ISA flags. Every SIMD variant
// is tested against these.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "common.h"
#include "kquants.h"
#include "simd_ops.h"

namespace ryz {
namespace {

struct ScalarV {
  using reg = float;
  static constexpr int W = 1;
  static reg zero() { return 0.0f; }
  static reg set1(float f) { return f; }
  static reg load(const float* p) { return *p; }
  static reg load_h(const uint16_t* p) { return f16_to_f32(*p); }
  static void store(float* p, reg r) { *p = r; }
  static reg add(reg a, reg b) { return a + b; }
  static reg sub(reg a, reg b) { return a - b; }
  static reg mul(reg a, reg b) { return a * b; }
  static reg div(reg a, reg b) { return a / b; }
  static reg fmadd(reg a, reg b, reg c) { return a * b + c; }
  static reg max(reg a, reg b) { return a > b ? a : b; }
  static reg exp(reg a) { return std::exp(a); }
  static float hsum(reg a) { return a; }
  static void hsum4(const reg* a, float* s) {
    for (int r = 0; r < 4; r++) s[r] = a[r];
  }
  static float hmax(reg a) { return a; }
};

inline const float* xrow(const void* x, size_t stride, int k) {
  return reinterpret_cast<const float*>(static_cast<const uint8_t*>(x) + stride * static_cast<size_t>(k));
}

void dot_f32(int64_t cols, const void* w, const void* x, size_t xs, int nx, float* out) {
  const float* wr = static_cast<const float*>(w);
  for (int k = 0; k < nx; k++) {
    const float* xr = xrow(x, xs, k);
    float s = 0.0f;
    for (int64_t i = 0; i < cols; i++) s += wr[i] * xr[i];
    out[k] = s;
  }
}

void dot_f16(int64_t cols, const void* w, const void* x, size_t xs, int nx, float* out) {
  const uint8_t* wr = static_cast<const uint8_t*>(w);
  float s[4] = {0, 0, 0, 0};
  for (int64_t i = 0; i < cols; i++) {
    uint16_t h;
    std::memcpy(&h, wr + 2 * i, 2);
    const float wv = f16_to_f32(h);
    for (int k = 0; k < nx; k++) s[k] += wv * xrow(x, xs, k)[i];
  }
  for (int k = 0; k < nx; k++) out[k] = s[k];
}

void dot_bf16(int64_t cols, const void* w, const void* x, size_t xs, int nx, float* out) {
  const uint8_t* wr = static_cast<const uint8_t*>(w);
  float s[4] = {0, 0, 0, 0};
  for (int64_t i = 0; i < cols; i++) {
    uint16_t h;
    std::memcpy(&h, wr + 2 * i, 2);
    const float wv = bf16_to_f32(h);
    for (int k = 0; k < nx; k++) s[k] += wv * xrow(x, xs, k)[i];
  }
  for (int k = 0; k < nx; k++) out[k] = s[k];
}

inline const BlockQ8_0* xblocks(const void* x, size_t stride, int k) {
  return reinterpret_cast<const BlockQ8_0*>(static_cast<const uint8_t*>(x) + stride * static_cast<size_t>(k));
}

void dot_q8_0(int64_t cols, const void* w, const void* x, size_t xs, int nx, float* out) {
  const BlockQ8_0* wb = static_cast<const BlockQ8_0*>(w);
  for (int k = 0; k < nx; k++) {
    const BlockQ8_0* xb = xblocks(x, xs, k);
    float s = 0.0f;
    for (int64_t b = 0; b < cols / kQK; b++) {
      int32_t sumi = 0;
      for (int j = 0; j < kQK; j++) sumi += static_cast<int32_t>(wb[b].qs[j]) * static_cast<int32_t>(xb[b].qs[j]);
      s += static_cast<float>(sumi) * (f16_to_f32(wb[b].d) * f16_to_f32(xb[b].d));
    }
    out[k] = s;
  }
}

void dot_q4_0(int64_t cols, const void* w, const void* x, size_t xs, int nx, float* out) {
  const BlockQ4_0* wb = static_cast<const BlockQ4_0*>(w);
  for (int k = 0; k < nx; k++) {
    const BlockQ8_0* xb = xblocks(x, xs, k);
    float s = 0.0f;
    for (int64_t b = 0; b < cols / kQK; b++) {
      int32_t sumi = 0;
      for (int j = 0; j < kQK / 2; j++) {
        const int32_t v0 = (wb[b].qs[j] & 0x0f) - 8;
        const int32_t v1 = (wb[b].qs[j] >> 4) - 8;
        sumi += v0 * xb[b].qs[j] + v1 * xb[b].qs[j + 16];
      }
      s += static_cast<float>(sumi) * (f16_to_f32(wb[b].d) * f16_to_f32(xb[b].d));
    }
    out[k] = s;
  }
}

// Q8 act layout (qgemm_x86.h): qs[cols] | f32 d[nb] | i32 sums[nb] | i32 Q4_0 corrections[nb].
void conv_q8act_ref(const float* x, void* dst, int64_t cols) {
  const int64_t nb = cols / kQK;
  int8_t* qs = static_cast<int8_t*>(dst);
  float* ds = reinterpret_cast<float*>(qs + cols);
  int32_t* ss = reinterpret_cast<int32_t*>(ds + nb);
  int32_t* cs = ss + nb;
  for (int64_t b = 0; b < nb; b++) {
    BlockQ8_0 blk;
    quantize_block_q8_0_act(x + b * kQK, &blk);
    ds[b] = f16_to_f32(blk.d);
    int32_t half[2] = {0, 0};  // j % 4 in {0, 1} and in {2, 3}
    for (int j = 0; j < kQK; j++) {
      qs[b * kQK + j] = blk.qs[j];
      half[(j % 4) / 2] += blk.qs[j];
    }
    ss[b] = half[0] + half[1];
    cs[b] = q4_corr_pair(half[0], half[1]);
  }
}

template <bool Q4>
void qgemm_ref(int64_t cols, const uint8_t* w, size_t wrb, int nr, const uint8_t* x, size_t xs, int64_t nt, float* y,
               size_t ys) {
  const int64_t nb = cols / kQK;
  for (int64_t t = 0; t < nt; t++) {
    const int8_t* xq = reinterpret_cast<const int8_t*>(x + xs * static_cast<size_t>(t));
    const float* xd = reinterpret_cast<const float*>(xq + cols);
    for (int r = 0; r < nr; r++) {
      const uint8_t* row = w + wrb * static_cast<size_t>(r);
      float sum = 0.0f;
      for (int64_t b = 0; b < nb; b++) {
        int32_t acc = 0;
        float dw;
        if (Q4) {
          const BlockQ4_0* blk = reinterpret_cast<const BlockQ4_0*>(row) + b;
          dw = f16_to_f32(blk->d);
          for (int j = 0; j < kQK / 2; j++) {
            acc += ((blk->qs[j] & 0x0f) - 8) * xq[b * kQK + j];
            acc += ((blk->qs[j] >> 4) - 8) * xq[b * kQK + j + kQK / 2];
          }
        } else {
          const BlockQ8_0* blk = reinterpret_cast<const BlockQ8_0*>(row) + b;
          dw = f16_to_f32(blk->d);
          for (int j = 0; j < kQK; j++) acc += blk->qs[j] * xq[b * kQK + j];
        }
        sum += dw * xd[b] * static_cast<float>(acc);
      }
      y[ys * static_cast<size_t>(t) + static_cast<size_t>(r)] = sum;
    }
  }
}

// One group of 8 repacked rows (repack.h), decoded element by element.
template <bool Q4>
void pgemm_ref(int64_t cols, const uint8_t* wp, const uint8_t* x, size_t xs, int64_t nt, float* y, size_t ys) {
  const int64_t nb = cols / kQK;
  const size_t blk_bytes = Q4 ? 144 : 272;
  for (int64_t t = 0; t < nt; t++) {
    const int8_t* xq = reinterpret_cast<const int8_t*>(x + xs * static_cast<size_t>(t));
    const float* xd = reinterpret_cast<const float*>(xq + cols);
    for (int i = 0; i < 8; i++) {
      float sum = 0.0f;
      for (int64_t b = 0; b < nb; b++) {
        const uint8_t* blk = wp + blk_bytes * static_cast<size_t>(b);
        uint16_t d;
        std::memcpy(&d, blk + 2 * i, 2);
        const uint8_t* q = blk + 16;
        const int8_t* xb = xq + b * kQK;
        int32_t acc = 0;
        for (int j = 0; j < (Q4 ? 16 : 32); j++) {
          const uint8_t byte = q[(j / 4) * 32 + i * 4 + j % 4];
          if (Q4) {
            acc += ((byte & 0x0f) - 8) * xb[j];
            acc += ((byte >> 4) - 8) * xb[j + 16];
          } else {
            acc += static_cast<int8_t>(byte) * xb[j];
          }
        }
        sum += f16_to_f32(d) * xd[b] * static_cast<float>(acc);
      }
      y[ys * static_cast<size_t>(t) + static_cast<size_t>(i)] = sum;
    }
  }
}


void attention_heads_f16(float* out, const float* q, int64_t kv_heads, int64_t group, const uint16_t* k,
                         const uint16_t* v, const KvRows& kv, int64_t len, int64_t head_dim, float scale,
                         float* scratch) {
  attention_heads_f16_t<ScalarV>(out, q, kv_heads, group, k, v, kv, len, head_dim, scale, scratch);
}

void to_f16_ref(uint16_t* dst, const float* src, int64_t n) {
  for (int64_t i = 0; i < n; i++) dst[i] = f32_to_f16(src[i]);
}

const Kernels kTable = {
    "scalar",
    conv_f16_ref,
    conv_bf16_f32_ref,
    4,
    conv_q8_0_ref,
    dot_f32,
    dot_f16,
    dot_bf16,
    dot_q8_0,
    dot_q4_0,
    dequant_f32_ref,
    dequant_f16_ref,
    dequant_bf16_ref,
    dequant_q8_0_ref,
    dequant_q4_0_ref,
    rms_norm_rows_t<ScalarV>,
    softmax_row_t<ScalarV>,
    argmax_row_t<ScalarV>,
    swiglu_t<ScalarV>,
    add_t<ScalarV>,
    rope_row_impl,
    attention_head_t<ScalarV>,
    conv_q8act_ref,
    qgemm_ref<true>,
    qgemm_ref<false>,
    pgemm_ref<true>,
    pgemm_ref<false>,
    attention_heads_f16,
    to_f16_ref,
    kquants_generic(),
};

}  // namespace

const Kernels* kernels_generic() { return &kTable; }

}  // namespace ryz
