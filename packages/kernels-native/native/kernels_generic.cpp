// Scalar reference kernels ("generic"): plain C++, compiled without ISA flags. Every SIMD variant
// is tested against these.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "common.h"
#include "simd_ops.h"

namespace ryz {
namespace {

struct ScalarV {
  using reg = float;
  static constexpr int W = 1;
  static reg zero() { return 0.0f; }
  static reg set1(float f) { return f; }
  static reg load(const float* p) { return *p; }
  static void store(float* p, reg r) { *p = r; }
  static reg add(reg a, reg b) { return a + b; }
  static reg sub(reg a, reg b) { return a - b; }
  static reg mul(reg a, reg b) { return a * b; }
  static reg div(reg a, reg b) { return a / b; }
  static reg fmadd(reg a, reg b, reg c) { return a * b + c; }
  static reg max(reg a, reg b) { return a > b ? a : b; }
  static reg exp(reg a) { return std::exp(a); }
  static float hsum(reg a) { return a; }
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
    rms_norm_row_t<ScalarV>,
    softmax_row_t<ScalarV>,
    swiglu_t<ScalarV>,
    add_t<ScalarV>,
    rope_row_impl,
    attention_head_t<ScalarV>,
};

}  // namespace

const Kernels* kernels_generic() { return &kTable; }

}  // namespace ryz
