#include "engine.h"

#include <algorithm>
#include <atomic>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <new>
#include <stdexcept>
#include <string>

#include "dispatch.h"
#include "kquants.h"
#include "repack.h"
#include "simd_ops.h"
#include "ternary_lut.h"

namespace ryz {

ScratchBuffer::~ScratchBuffer() { std::free(data_); }

uint8_t* ScratchBuffer::reserve(size_t bytes) {
  if (bytes <= size_ && data_ != nullptr) return data_;
  const size_t want = std::max<size_t>((bytes + 63) & ~size_t{63}, 64);
  void* p = std::aligned_alloc(64, want);
  if (p == nullptr) throw std::bad_alloc();
  std::free(data_);
  data_ = static_cast<uint8_t*>(p);
  size_ = want;
  return data_;
}

bool format_supported(int fmt) {
  return fmt == kF32 || fmt == kF16 || fmt == kBF16 || fmt == kQ8_0 || fmt == kQ4_0 || kfmt_of(fmt) >= 0;
}

size_t format_row_bytes(int fmt, int64_t cols) {
  const size_t c = static_cast<size_t>(cols);
  switch (fmt) {
    case kF32: return c * 4;
    case kF16:
    case kBF16: return c * 2;
    case kQ8_0: return c / kQK * sizeof(BlockQ8_0);
    case kQ4_0: return c / kQK * sizeof(BlockQ4_0);
    default:
      if (kfmt_of(fmt) >= 0) {
        const KFmtInfo info = kfmt_info(kfmt_of(fmt));
        return c / static_cast<size_t>(info.block) * static_cast<size_t>(info.bytes);
      }
      throw std::invalid_argument("unsupported tensor type id " + std::to_string(fmt));
  }
}

namespace {

void check_format(int fmt, int64_t cols, const char* op) {
  if (!format_supported(fmt)) {
    throw std::invalid_argument(std::string(op) + ": unsupported tensor type id " + std::to_string(fmt));
  }
  if ((fmt == kQ8_0 || fmt == kQ4_0) && cols % kQK != 0) {
    throw std::invalid_argument(std::string(op) + ": row length " + std::to_string(cols) +
                                " is not a multiple of the block size 32");
  }
  if (kfmt_of(fmt) >= 0 && cols % kfmt_info(kfmt_of(fmt)).block != 0) {
    throw std::invalid_argument(std::string(op) + ": row length " + std::to_string(cols) +
                                " is not a multiple of the block size " +
                                std::to_string(kfmt_info(kfmt_of(fmt)).block));
  }
}

void check_nonneg(int64_t v, const char* what) {
  if (v < 0) throw std::invalid_argument(std::string(what) + " must be >= 0");
}

inline size_t round_up64(size_t v) { return (v + 63) & ~size_t{63}; }

}  // namespace

Engine::Engine(int threads, Isa isa) : pool_(threads), isa_(isa), k_(kernels_for(isa)) {
  per_thread_.resize(static_cast<size_t>(pool_.size()));
}

void Engine::matmul(float* y, int fmt, const uint8_t* w, int64_t rows, int64_t cols, const float* x, int64_t n) {
  check_format(fmt, cols, "matmul");
  check_nonneg(rows, "rows");
  check_nonneg(cols, "cols");
  check_nonneg(n, "n");
  if (rows == 0 || n == 0) return;
  matmul_impl(y, fmt, w, rows, cols, x, nullptr, n);
}

// With `preq`, the activations are already converted (fused steps: same layout and stride as
// step 1 below would make) and x is unused.
void Engine::matmul_impl(float* y, int fmt, const uint8_t* w, int64_t rows, int64_t cols, const float* x,
                         const uint8_t* preq, int64_t n) {
  const int nth = pool_.size();
  if ((fmt == kQ4_0 || fmt == kQ8_0) && k_->conv_q8act != nullptr) {
    matmul_q8act(y, fmt, w, rows, cols, x, n, false, preq);
    return;
  }

  // 1. activations -> vecDotType (F32 weights use x as is).
  const uint8_t* act = reinterpret_cast<const uint8_t*>(x);
  size_t stride = static_cast<size_t>(cols) * 4;
  DotFn dot = k_->dot_f32;
  ConvFn conv = nullptr;
  switch (fmt) {
    case kF16:
      conv = k_->conv_f16;
      dot = k_->dot_f16;
      stride = round_up64(static_cast<size_t>(cols) * 4);
      break;
    case kBF16:
      conv = k_->conv_bf16;
      dot = k_->dot_bf16;
      stride = round_up64(static_cast<size_t>(cols) * static_cast<size_t>(k_->bf16_act_elem_bytes));
      break;
    case kQ8_0:
    case kQ4_0:
      conv = k_->conv_q8_0;
      dot = fmt == kQ8_0 ? k_->dot_q8_0 : k_->dot_q4_0;
      stride = round_up64(static_cast<size_t>(cols / kQK) * sizeof(BlockQ8_0));
      break;
    case kF32:
      break;
    default: {
      // Q4_1 / Q5_0 / K-quants / ternary: activations in the format's vecDotType (kquants.h).
      const int kf = kfmt_of(fmt);
      dot = k_->kq->dot[kf];
      switch (kfmt_info(kf).act) {
        case Act::Q8_K:
          conv = k_->kq->conv_q8_k;
          stride = round_up64(static_cast<size_t>(cols / kQKK) * sizeof(BlockQ8K));
          break;
        case Act::Q8_1:
          conv = k_->kq->conv_q8_1;
          stride = round_up64(static_cast<size_t>(cols / kQK) * sizeof(BlockQ8_1));
          break;
        case Act::Q8_0:
          conv = k_->conv_q8_0;
          stride = round_up64(static_cast<size_t>(cols / kQK) * sizeof(BlockQ8_0));
          break;
      }
      break;
    }
  }
  if (preq != nullptr) {
    act = preq;
  } else if (conv != nullptr) {
    uint8_t* buf = act_.reserve(stride * static_cast<size_t>(n));
    parallel_for(n, std::max<int64_t>(1, n / (2 * nth)), [&](int64_t t0, int64_t t1, int) {
      for (int64_t t = t0; t < t1; t++) conv(x + t * cols, buf + stride * static_cast<size_t>(t), cols);
    });
    act = buf;
  }

  // 2. rows split across threads; each weight row is loaded once per tile of 4 activation rows,
  //    and a block of 16 weight rows stays in cache while the tiles pass over it.
  const size_t row_bytes = format_row_bytes(fmt, cols);
  constexpr int64_t kRowBlock = 16;
  const double work = static_cast<double>(rows) * static_cast<double>(cols) * static_cast<double>(n);
  int64_t grain = std::max<int64_t>(1, std::min<int64_t>(64, rows / (4 * nth)));
  if (work < 32768.0) grain = rows;  // too small to be worth waking the pool
  parallel_for(rows, grain, [&](int64_t r0, int64_t r1, int) {
    float tmp[4];
    for (int64_t rb = r0; rb < r1; rb += kRowBlock) {
      const int64_t re = std::min(rb + kRowBlock, r1);
      for (int64_t t = 0; t < n; t += 4) {
        const int nx = static_cast<int>(std::min<int64_t>(4, n - t));
        const uint8_t* xt = act + stride * static_cast<size_t>(t);
        for (int64_t r = rb; r < re; r++) {
          dot(cols, w + row_bytes * static_cast<size_t>(r), xt, stride, nx, tmp);
          for (int k = 0; k < nx; k++) y[(t + k) * rows + r] = tmp[k];
        }
      }
    }
  });
}

// Q4_0 / Q8_0 weights: activations quantized once (Q8 act layout, in parallel over tokens), then
// each thread takes chunks of rows; inside a chunk, blocks of kTokBlock tokens pass over groups of
// 4 rows with a register-tiled kernel (4 rows x 3 tokens, or 4 x 1 for decode), so a chunk's weights
// (<= 64 rows) and a token block's activations stay in L2 while they are reused.
void Engine::matmul_packed(float* y, int fmt, const uint8_t* wp, int64_t rows, int64_t cols, const float* x,
                           int64_t n) {
  check_format(fmt, cols, "matmul");
  if (!repack_supported(fmt)) throw std::invalid_argument("matmulPacked: format has no repacked layout");
  check_nonneg(rows, "rows");
  check_nonneg(n, "n");
  if (rows == 0 || n == 0) return;
  if (fmt == kQ4_0 || fmt == kQ8_0) {
    matmul_q8act(y, fmt, wp, rows, cols, x, n, true);
  } else {
    matmul_tl(y, wp, rows, cols, x, n);
  }
}

// Ternary weights in the LUT layout (ternary_lut.h): each token's activations become tables once
// (in parallel over tokens), then work items (token block, chunk of 32-row tiles) are handed out
// token-block-major, so the tables of one token block (<= ~256 KiB) stay in L2 while the threads
// pass the matrix over them (for decode: one token, the whole matrix streamed once).
void Engine::matmul_tl(float* y, const uint8_t* wp, int64_t rows, int64_t cols, const float* x, int64_t n) {
  const int nth = pool_.size();
  const size_t stride = tl_act_bytes(cols);
  uint8_t* act = act_.reserve(stride * static_cast<size_t>(n));
  const ConvFn conv = k_->kq->conv_tl;
  parallel_for(n, n * cols < 16384 ? n : std::max<int64_t>(1, n / (2 * nth)), [&](int64_t t0, int64_t t1, int) {
    for (int64_t t = t0; t < t1; t++) conv(x + t * cols, act + stride * static_cast<size_t>(t), cols);
  });
  const TlGemmFn gemm = k_->kq->gemm_tl;
  const int64_t tiles = (rows + kTlRows - 1) / kTlRows;
  const size_t tile_bytes = static_cast<size_t>(cols / kQKK) * kTlBlockBytes;
  const int64_t tok_block = std::max<int64_t>(1, static_cast<int64_t>((256u << 10) / stride));
  const int64_t tblocks = (n + tok_block - 1) / tok_block;
  auto tiles_of = [&](int64_t t0, int64_t nt, int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; g++) {
      const int valid = static_cast<int>(std::min<int64_t>(kTlRows, rows - g * kTlRows));
      gemm(cols, wp + tile_bytes * static_cast<size_t>(g), act + stride * static_cast<size_t>(t0), stride, nt,
           y + t0 * rows + g * kTlRows, static_cast<size_t>(rows), valid);
    }
  };
  if (tblocks == 1 && nth > 1 && tiles >= 4 * nth &&
      static_cast<double>(rows) * static_cast<double>(cols) * static_cast<double>(n) >= 32768.0) {
    // Decode: guided claims, each a run of (tiles left) / (2 · threads) tiles (at least one), so
    // each thread mostly streams long contiguous runs (the prefetch stays ahead; a fresh run
    // starts cold) and the runs at the end are short (no thread waits long for the last one).
    std::atomic<int64_t> next{0};
    auto job = [&](int, int) {
      for (;;) {
        int64_t g0 = next.load(std::memory_order_relaxed), len;
        do {
          if (g0 >= tiles) return;
          len = std::max<int64_t>(1, (tiles - g0) / (2 * nth));
        } while (!next.compare_exchange_weak(g0, g0 + len, std::memory_order_relaxed));
        const char* first = reinterpret_cast<const char*>(wp + tile_bytes * static_cast<size_t>(g0));
        for (size_t o = 0; o < 2 * kTlBlockBytes && o < tile_bytes * static_cast<size_t>(len); o += 64) {
          __builtin_prefetch(first + o);  // the run's first two blocks (the kernel prefetches ahead of them)
        }
        tiles_of(0, n, g0, g0 + len);
      }
    };
    pool_.run_dynamic_fn(job);
    return;
  }
  int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(8, tiles / (4 * nth)));
  if (static_cast<double>(rows) * static_cast<double>(cols) * static_cast<double>(n) < 32768.0) chunk = tiles;
  const int64_t chunks = (tiles + chunk - 1) / chunk;
  parallel_for(tblocks * chunks, 1, [&](int64_t i0, int64_t i1, int) {
    for (int64_t i = i0; i < i1; i++) {
      const int64_t t0 = (i / chunks) * tok_block;
      const int64_t g0 = (i % chunks) * chunk;
      tiles_of(t0, std::min<int64_t>(tok_block, n - t0), g0, std::min<int64_t>(tiles, g0 + chunk));
    }
  });
}

void Engine::matmul_q8act(float* y, int fmt, const uint8_t* w, int64_t rows, int64_t cols, const float* x,
                          int64_t n, bool packed, const uint8_t* preq) {
  const int nth = pool_.size();
  const size_t stride = q8act_bytes(cols);
  const uint8_t* act = preq;
  if (act == nullptr) {
    uint8_t* buf = act_.reserve(stride * static_cast<size_t>(n));
    const ConvFn conv = k_->conv_q8act;
    const int64_t conv_grain = n * cols < 16384 ? n : std::max<int64_t>(1, n / (2 * nth));
    parallel_for(n, conv_grain, [&](int64_t t0, int64_t t1, int) {
      for (int64_t t = t0; t < t1; t++) conv(x + t * cols, buf + stride * static_cast<size_t>(t), cols);
    });
    act = buf;
  }

  const QGemmFn gemm = fmt == kQ4_0 ? k_->gemm_q4_0 : k_->gemm_q8_0;
  const size_t row_bytes = format_row_bytes(fmt, cols);
  constexpr int64_t kTokBlock = 48;
  if (packed) {
    // Work items: groups of 8 interleaved rows, then (when rows % 8 != 0) one item for the tail
    // rows, which follow the groups in the file layout.
    const PackedGemmFn pg = fmt == kQ4_0 ? k_->gemm_q4_0x8 : k_->gemm_q8_0x8;
    const int64_t groups = rows / kPackRows;
    const int64_t tail = rows - groups * kPackRows;
    const size_t group_bytes = row_bytes * kPackRows;
    const int64_t items = groups + (tail > 0 ? 1 : 0);
    int64_t g_grain = std::max<int64_t>(1, std::min<int64_t>(8, groups / (4 * nth)));
    if (static_cast<double>(rows) * static_cast<double>(cols) * static_cast<double>(n) < 32768.0) g_grain = items;
    parallel_for(items, g_grain, [&](int64_t g0, int64_t g1, int) {
      for (int64_t t0 = 0; t0 < n; t0 += kTokBlock) {
        const int64_t nt = std::min<int64_t>(kTokBlock, n - t0);
        const uint8_t* xt = act + stride * static_cast<size_t>(t0);
        for (int64_t g = g0; g < g1; g++) {
          if (g == groups) {
            const uint8_t* tw = w + group_bytes * static_cast<size_t>(groups);
            for (int64_t r = 0; r < tail; r += 4) {
              gemm(cols, tw + row_bytes * static_cast<size_t>(r), row_bytes, static_cast<int>(std::min<int64_t>(4, tail - r)),
                   xt, stride, nt, y + t0 * rows + groups * kPackRows + r, static_cast<size_t>(rows));
            }
          } else {
            pg(cols, w + group_bytes * static_cast<size_t>(g), xt, stride, nt, y + t0 * rows + g * kPackRows,
               static_cast<size_t>(rows));
          }
        }
      }
    });
    return;
  }
  // Chunks: a multiple of 4 rows, at least 4 per thread so a slow thread can be helped.
  int64_t grain = (rows / (4 * nth)) & ~int64_t{3};
  grain = std::max<int64_t>(8, std::min<int64_t>(64, grain));
  const double work = static_cast<double>(rows) * static_cast<double>(cols) * static_cast<double>(n);
  if (work < 32768.0) grain = rows;
  parallel_for(rows, grain, [&](int64_t r0, int64_t r1, int) {
    for (int64_t t0 = 0; t0 < n; t0 += kTokBlock) {
      const int64_t nt = std::min<int64_t>(kTokBlock, n - t0);
      const uint8_t* xt = act + stride * static_cast<size_t>(t0);
      for (int64_t r = r0; r < r1; r += 4) {
        const int nr = static_cast<int>(std::min<int64_t>(4, r1 - r));
        gemm(cols, w + row_bytes * static_cast<size_t>(r), row_bytes, nr, xt, stride, nt, y + t0 * rows + r,
             static_cast<size_t>(rows));
      }
    }
  });
}

void Engine::attention_f16(float* out, const float* q, const uint16_t* k, const uint16_t* v,
                           const int32_t* positions, int64_t n, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                           float scale, bool f16_accumulate) {
  check_nonneg(n, "n");
  if (n_heads <= 0 || n_kv_heads <= 0 || head_dim <= 0 || n_heads % n_kv_heads != 0) {
    throw std::invalid_argument("attention: nHeads must be a positive multiple of nKvHeads, headDim positive");
  }
  if (n == 0) return;
  int64_t max_len = 0;
  for (int64_t t = 0; t < n; t++) {
    if (positions[t] < 0) throw std::out_of_range("attention: negative position");
    max_len = std::max<int64_t>(max_len, static_cast<int64_t>(positions[t]) + 1);
  }
  const int64_t group = n_heads / n_kv_heads;
  const int64_t q_row = n_heads * head_dim;
  const size_t kv_row = static_cast<size_t>(n_kv_heads * head_dim);
  if (f16_accumulate) {
    for (auto& s : per_thread_) s.reserve(round_up64(static_cast<size_t>(head_dim) * 4));
    const int64_t tasks = n * n_heads;
    const int64_t grain = n * n_heads * max_len * head_dim < 65536 ? tasks : 1;
    parallel_for(tasks, grain, [&](int64_t i0, int64_t i1, int tid) {
      uint16_t* qh = reinterpret_cast<uint16_t*>(per_thread_[static_cast<size_t>(tid)].data());
      for (int64_t i = i0; i < i1; i++) {
        const int64_t t = i / n_heads;
        const int64_t h = i % n_heads;
        const int64_t len = static_cast<int64_t>(positions[t]) + 1;
        const size_t off = static_cast<size_t>(t * q_row + h * head_dim);
        const int64_t g = h / group;
        attention_head_f16acc(out + off, q + off, k + g * head_dim, v + g * head_dim, kv_row, len, head_dim, scale, qh,
                              qh + head_dim);
      }
    });
    return;
  }
  const HeadRanges parts = attention_head_ranges(n, pool_.size(), n_kv_heads);
  const int64_t ranges = parts.count;
  const size_t need = round_up64(attention_f16_scratch_floats(parts.widest(), group, head_dim) * 4);
  for (auto& s : per_thread_) s.reserve(need);
  const int64_t tasks = n * ranges;
  const int64_t grain = n * n_heads * max_len * head_dim < 65536 ? tasks : 1;
  parallel_for(tasks, grain, [&](int64_t i0, int64_t i1, int tid) {
    float* scratch = reinterpret_cast<float*>(per_thread_[static_cast<size_t>(tid)].data());
    for (int64_t i = i0; i < i1; i++) {
      const int64_t t = i / ranges;
      const int64_t g0 = parts.first(i % ranges);
      const int64_t g1 = parts.first(i % ranges + 1);
      const int64_t len = static_cast<int64_t>(positions[t]) + 1;
      const size_t off = static_cast<size_t>(t * q_row + g0 * group * head_dim);
      k_->attention_heads_f16(out + off, q + off, g1 - g0, group, k + g0 * head_dim, v + g0 * head_dim,
                              KvRows{kv_row}, len, head_dim, scale, scratch);
    }
  });
}

void Engine::to_f16(uint16_t* dst, const float* src, int64_t len) {
  check_nonneg(len, "len");
  const int64_t grain = len < 65536 ? len : std::max<int64_t>(16384, (len / (2 * pool_.size()) + 63) & ~int64_t{63});
  parallel_for(len, grain, [&](int64_t i0, int64_t i1, int) { k_->to_f16(dst + i0, src + i0, i1 - i0); });
}

void Engine::quantize(int fmt, const float* src, int64_t rows, int64_t cols, uint8_t* dst) {
  if (!quantize_rows_supported(fmt)) {
    throw std::invalid_argument("quantize: no native quantizer for tensor type id " + std::to_string(fmt));
  }
  check_format(fmt, cols, "quantize");
  check_nonneg(rows, "rows");
  parallel_for(rows, std::max<int64_t>(1, std::min<int64_t>(64, rows / (4 * pool_.size()))),
               [&](int64_t r0, int64_t r1, int) { quantize_rows(fmt, src, cols, r0, r1, dst); });
}

void Engine::get_rows(float* y, int fmt, const uint8_t* table, int64_t rows, int64_t cols, const int32_t* ids,
                      int64_t n) {
  check_format(fmt, cols, "getRows");
  check_nonneg(n, "n");
  for (int64_t i = 0; i < n; i++) {
    if (ids[i] < 0 || ids[i] >= rows) {
      throw std::out_of_range("getRows: row id " + std::to_string(ids[i]) + " out of range [0, " +
                              std::to_string(rows) + ")");
    }
  }
  DequantFn f = nullptr;
  switch (fmt) {
    case kF32: f = k_->dequant_f32; break;
    case kF16: f = k_->dequant_f16; break;
    case kBF16: f = k_->dequant_bf16; break;
    case kQ8_0: f = k_->dequant_q8_0; break;
    case kQ4_0: f = k_->dequant_q4_0; break;
    default: f = k_->kq->dequant[kfmt_of(fmt)]; break;
  }
  const size_t row_bytes = format_row_bytes(fmt, cols);
  const int64_t grain = n * cols < 65536 ? n : std::max<int64_t>(1, n / (2 * pool_.size()));
  parallel_for(n, grain, [&](int64_t i0, int64_t i1, int) {
    for (int64_t i = i0; i < i1; i++) f(table + row_bytes * static_cast<size_t>(ids[i]), y + i * cols, cols);
  });
}

void Engine::rms_norm(float* y, const float* x, const float* w, int64_t n, int64_t dim, float eps) {
  check_nonneg(n, "n");
  check_nonneg(dim, "dim");
  if (dim == 0) return;
  const int64_t grain = n * dim < 32768 ? n : std::max<int64_t>(1, n / (2 * pool_.size()));
  parallel_for(n, grain, [&](int64_t t0, int64_t t1, int) {
    k_->rms_norm_rows(y + t0 * dim, x + t0 * dim, w, t1 - t0, dim, eps);
  });
}

void Engine::rope(float* x, int64_t n, const int32_t* positions, const RopeArgs& a) {
  check_nonneg(n, "n");
  if (a.n_dims <= 0 || a.n_dims % 2 != 0 || a.n_dims > a.head_dim) {
    throw std::invalid_argument("rope: nDims must be even, positive and <= headDim");
  }
  if (a.n_heads <= 0) throw std::invalid_argument("rope: nHeads must be positive");
  // base^(-2/n_dims) in float, as ggml computes it (see rope_row_impl).
  const float theta_scale = std::pow(static_cast<float>(a.freq_base), -2.0f / static_cast<float>(a.n_dims));
  const int64_t row = a.n_heads * a.head_dim;
  const int64_t grain = n * row < 16384 ? n : std::max<int64_t>(1, n / (2 * pool_.size()));
  parallel_for(n, grain, [&](int64_t t0, int64_t t1, int) {
    for (int64_t t = t0; t < t1; t++) k_->rope_row(x + t * row, positions[t], a, theta_scale, nullptr, 0);
  });
}

void Engine::softmax(float* x, int64_t n, int64_t dim) {
  check_nonneg(n, "n");
  check_nonneg(dim, "dim");
  if (dim == 0) return;
  const int64_t grain = n * dim < 32768 ? n : std::max<int64_t>(1, n / (2 * pool_.size()));
  parallel_for(n, grain, [&](int64_t t0, int64_t t1, int) {
    for (int64_t t = t0; t < t1; t++) k_->softmax_row(x + t * dim, dim);
  });
}

void Engine::argmax(int32_t* ids, const float* x, int64_t n, int64_t dim) {
  check_nonneg(n, "n");
  check_nonneg(dim, "dim");
  if (dim > INT32_MAX) throw std::invalid_argument("argmax: dim must fit an int32 index");
  // A vocabulary row is read at memory speed in a few microseconds: one thread is enough.
  for (int64_t t = 0; t < n; t++) ids[t] = static_cast<int32_t>(dim == 0 ? 0 : k_->argmax_row(x + t * dim, dim));
}

void Engine::swiglu(float* y, const float* g, const float* u, int64_t len) {
  check_nonneg(len, "len");
  const int64_t grain = len < 65536 ? len : std::max<int64_t>(16384, (len / (2 * pool_.size()) + 63) & ~int64_t{63});
  parallel_for(len, grain, [&](int64_t i0, int64_t i1, int) { k_->swiglu(y + i0, g + i0, u + i0, i1 - i0); });
}

void Engine::add(float* y, const float* a, const float* b, int64_t len) {
  check_nonneg(len, "len");
  const int64_t grain = len < 131072 ? len : std::max<int64_t>(32768, (len / (2 * pool_.size()) + 63) & ~int64_t{63});
  parallel_for(len, grain, [&](int64_t i0, int64_t i1, int) { k_->add(y + i0, a + i0, b + i0, i1 - i0); });
}

void Engine::attention(float* out, const float* q, const float* k, const float* v, const int32_t* positions,
                       int64_t n, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, float scale) {
  check_nonneg(n, "n");
  if (n_heads <= 0 || n_kv_heads <= 0 || head_dim <= 0 || n_heads % n_kv_heads != 0) {
    throw std::invalid_argument("attention: nHeads must be a positive multiple of nKvHeads, headDim positive");
  }
  if (n == 0) return;
  int64_t max_len = 0;
  for (int64_t t = 0; t < n; t++) {
    if (positions[t] < 0) throw std::out_of_range("attention: negative position");
    max_len = std::max<int64_t>(max_len, static_cast<int64_t>(positions[t]) + 1);
  }
  // Per-thread scratch: scores[max_len] then acc[head_dim], grown here (never inside workers).
  const size_t scores_bytes = round_up64(static_cast<size_t>(max_len) * 4);
  const size_t need = scores_bytes + round_up64(static_cast<size_t>(head_dim) * 4);
  for (auto& s : per_thread_) s.reserve(need);

  const int64_t group = n_heads / n_kv_heads;
  const int64_t q_row = n_heads * head_dim;
  const size_t kv_row = static_cast<size_t>(n_kv_heads * head_dim);
  const int64_t tasks = n * n_heads;
  const int64_t grain = n * n_heads * max_len * head_dim < 65536 ? tasks : 1;
  parallel_for(tasks, grain, [&](int64_t i0, int64_t i1, int tid) {
    uint8_t* scratch = per_thread_[static_cast<size_t>(tid)].data();
    float* scores = reinterpret_cast<float*>(scratch);
    float* acc = reinterpret_cast<float*>(scratch + scores_bytes);
    for (int64_t i = i0; i < i1; i++) {
      const int64_t t = i / n_heads;
      const int64_t h = i % n_heads;
      const int64_t kvh = h / group;
      const int64_t len = static_cast<int64_t>(positions[t]) + 1;
      const float* qh = q + t * q_row + h * head_dim;
      k_->attention_head(out + t * q_row + h * head_dim, qh, k + kvh * head_dim, v + kvh * head_dim,
                         KvRows{kv_row}, len, head_dim, scale, scores, acc);
    }
  });
}

}  // namespace ryz
