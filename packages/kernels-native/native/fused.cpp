// Fused steps of the forward pass (see fused.h and Engine in engine.h). Each runs the very kernels
// of the unfused ops from the engine's kernel table (rms_norm_rows, swiglu, rope_row, the
// activation conversion matmul would run, to_f16), row by row, so the results are bit-identical to
// the unfused sequence on every ISA; what is gone is the float intermediate's round trip through
// memory, the repeated conversion of one input for several matmuls, and the extra calls.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "engine.h"
#include "fused.h"
#include "kquants.h"
#include "repack.h"

namespace ryz {

namespace {

inline size_t round_up64(size_t v) { return (v + 63) & ~size_t{63}; }

// Rows per parallel chunk for a per-row pass over n rows of `cols` values: the whole batch inline
// when it is small (not worth waking the pool), else about two chunks per thread.
inline int64_t row_grain(int64_t n, int64_t cols, int nth) {
  return n * cols < 16384 ? n : std::max<int64_t>(1, n / (2 * nth));
}

int64_t layout_block(int layout) { return layout == kActQ8_K ? kQKK : kQK; }

}  // namespace

int Engine::act_layout(int fmt) const {
  if (fmt == kQ4_0 || fmt == kQ8_0) return k_->conv_q8act != nullptr ? kActQ8Tile : kActQ8_0;
  const int kf = kfmt_of(fmt);
  if (kf < 0) return -1;
  switch (kfmt_info(kf).act) {
    case Act::Q8_0: return kActQ8_0;
    case Act::Q8_1: return kActQ8_1;
    case Act::Q8_K: return kActQ8_K;
  }
  return -1;
}

// The strides Engine::matmul uses for each vecDotType, so a fused buffer is read the same way.
size_t Engine::act_row_bytes(int layout, int64_t cols) const {
  if (cols < 0) throw std::invalid_argument("activations: cols must be >= 0");
  switch (layout) {
    case kActQ8Tile: return q8act_bytes(cols);
    case kActQ8_0: return round_up64(static_cast<size_t>(cols / kQK) * sizeof(BlockQ8_0));
    case kActQ8_1: return round_up64(static_cast<size_t>(cols / kQK) * sizeof(BlockQ8_1));
    case kActQ8_K: return round_up64(static_cast<size_t>(cols / kQKK) * sizeof(BlockQ8K));
    default: throw std::invalid_argument("activations: unknown layout " + std::to_string(layout));
  }
}

namespace {

ConvFn conv_for(const Kernels& k, int layout) {
  switch (layout) {
    case kActQ8Tile: return k.conv_q8act;
    case kActQ8_0: return k.conv_q8_0;
    case kActQ8_1: return k.kq->conv_q8_1;
    case kActQ8_K: return k.kq->conv_q8_k;
    default: return nullptr;
  }
}

void check_act(int layout, int64_t cols, ConvFn conv, const char* op) {
  if (conv == nullptr) throw std::invalid_argument(std::string(op) + ": unknown activation layout " + std::to_string(layout));
  if (cols % layout_block(layout) != 0) {
    throw std::invalid_argument(std::string(op) + ": row length " + std::to_string(cols) +
                                " is not a multiple of the activation block " + std::to_string(layout_block(layout)));
  }
}

}  // namespace

void Engine::rms_norm_quantize(uint8_t* act, int layout, float* y, const float* x, const float* w, int64_t n,
                               int64_t dim, float eps) {
  const ConvFn conv = conv_for(*k_, layout);
  check_act(layout, dim, conv, "rmsNormQuantize");
  if (n < 0 || dim < 0) throw std::invalid_argument("rmsNormQuantize: n and dim must be >= 0");
  if (n == 0 || dim == 0) return;
  const size_t stride = act_row_bytes(layout, dim);
  if (y == nullptr) {
    for (auto& s : per_thread_) s.reserve(static_cast<size_t>(kRmsRows * dim) * 4);
  }
  parallel_for(n, row_grain(n, dim, pool_.size()), [&](int64_t t0, int64_t t1, int tid) {
    float* rows = y == nullptr ? reinterpret_cast<float*>(per_thread_[static_cast<size_t>(tid)].data()) : nullptr;
    for (int64_t t = t0; t < t1; t += kRmsRows) {
      const int64_t r = std::min<int64_t>(kRmsRows, t1 - t);
      float* out = y == nullptr ? rows : y + t * dim;
      k_->rms_norm_rows(out, x + t * dim, w, r, dim, eps);
      for (int64_t i = 0; i < r; i++) conv(out + i * dim, act + stride * static_cast<size_t>(t + i), dim);
    }
  });
}

void Engine::swiglu_quantize(uint8_t* act, int layout, const float* g, const float* u, int64_t n, int64_t cols) {
  const ConvFn conv = conv_for(*k_, layout);
  check_act(layout, cols, conv, "swigluQuantize");
  if (n < 0 || cols < 0) throw std::invalid_argument("swigluQuantize: n and cols must be >= 0");
  if (n == 0 || cols == 0) return;
  const size_t stride = act_row_bytes(layout, cols);
  for (auto& s : per_thread_) s.reserve(static_cast<size_t>(cols) * 4);
  // Rows are a multiple of 32 values, hence of every vector width: the swiglu kernel takes its
  // vector path for all of them, exactly as over the whole [n, cols] buffer unfused.
  parallel_for(n, row_grain(n, cols, pool_.size()), [&](int64_t t0, int64_t t1, int tid) {
    float* row = reinterpret_cast<float*>(per_thread_[static_cast<size_t>(tid)].data());
    for (int64_t t = t0; t < t1; t++) {
      k_->swiglu(row, g + t * cols, u + t * cols, cols);
      conv(row, act + stride * static_cast<size_t>(t), cols);
    }
  });
}

void Engine::matmul_quantized(float* y, int fmt, const uint8_t* w, bool packed, int64_t rows, int64_t cols,
                              const uint8_t* act, int64_t n) {
  if (act_layout(fmt) < 0) {
    throw std::invalid_argument("matmulQuantized: tensor type id " + std::to_string(fmt) +
                                " takes float activations, not pre-converted ones");
  }
  if (rows < 0 || cols < 0 || n < 0) throw std::invalid_argument("matmulQuantized: rows, cols and n must be >= 0");
  if (cols % layout_block(act_layout(fmt)) != 0) {
    throw std::invalid_argument("matmulQuantized: row length " + std::to_string(cols) + " is not a multiple of the block");
  }
  if (packed && !(fmt == kQ4_0 || fmt == kQ8_0)) {
    throw std::invalid_argument("matmulQuantized: only Q4_0 / Q8_0 repacked weights take converted activations");
  }
  if (rows == 0 || n == 0) return;
  if (packed) {
    matmul_q8act(y, fmt, w, rows, cols, nullptr, n, true, act);
    return;
  }
  matmul_impl(y, fmt, w, rows, cols, nullptr, act, n);
}

void Engine::rope_store_kv(float* q, float* k, const float* v, int64_t n, const int32_t* positions,
                           const RopeArgs& qa, int64_t n_kv_heads, void* kc, void* vc, KvFormat cache,
                           const int32_t* slots) {
  if (n < 0) throw std::invalid_argument("ropeStoreKV: n must be >= 0");
  if (qa.n_dims <= 0 || qa.n_dims % 2 != 0 || qa.n_dims > qa.head_dim) {
    throw std::invalid_argument("ropeStoreKV: nDims must be even, positive and <= headDim");
  }
  if (qa.n_heads <= 0 || n_kv_heads <= 0) throw std::invalid_argument("ropeStoreKV: head counts must be positive");
  if (cache == KvFormat::Q8_0 && (n_kv_heads * qa.head_dim) % kQK != 0) {
    throw std::invalid_argument("ropeStoreKV: a Q8_0 cache needs K/V rows of a multiple of 32 values");
  }
  if (n == 0) return;
  // As Engine::rope computes it.
  const float theta_scale = std::pow(static_cast<float>(qa.freq_base), -2.0f / static_cast<float>(qa.n_dims));
  const int64_t q_row = qa.n_heads * qa.head_dim;
  const int64_t kv_row = n_kv_heads * qa.head_dim;
  parallel_for(n, row_grain(n, q_row + 2 * kv_row, pool_.size()), [&](int64_t t0, int64_t t1, int) {
    for (int64_t t = t0; t < t1; t++) {
      float* kr = k + t * kv_row;
      k_->rope_row(q + t * q_row, positions[t], qa, theta_scale, kr, n_kv_heads);
      const size_t at = static_cast<size_t>(slots[t]) * static_cast<size_t>(kv_row);
      if (cache == KvFormat::Q8_0) {
        const size_t row_at = static_cast<size_t>(slots[t]) * kv_q8_0_row_bytes(kv_row);
        quantize_kv_row(static_cast<uint8_t*>(kc) + row_at, kr, kv_row);
        quantize_kv_row(static_cast<uint8_t*>(vc) + row_at, v + t * kv_row, kv_row);
      } else if (cache == KvFormat::F16) {
        k_->to_f16(static_cast<uint16_t*>(kc) + at, kr, kv_row);
        k_->to_f16(static_cast<uint16_t*>(vc) + at, v + t * kv_row, kv_row);
      } else {
        std::memcpy(static_cast<float*>(kc) + at, kr, sizeof(float) * static_cast<size_t>(kv_row));
        std::memcpy(static_cast<float*>(vc) + at, v + t * kv_row, sizeof(float) * static_cast<size_t>(kv_row));
      }
    }
  });
}

}  // namespace ryz
