// The threaded operations behind NativeBackend, independent of Node-API so the native test
// executable (and sanitizers) can drive them directly. All pointers are raw, shapes are element
// counts; callers (the addon) have already checked buffer sizes. Throws std::invalid_argument for
// bad shapes or formats.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "common.h"
#include "thread_pool.h"

namespace ryz {

/** A growable 64-byte-aligned byte buffer (contents are not kept when it grows). */
class ScratchBuffer {
 public:
  ScratchBuffer() = default;
  ScratchBuffer(const ScratchBuffer&) = delete;
  ScratchBuffer& operator=(const ScratchBuffer&) = delete;
  ScratchBuffer(ScratchBuffer&& o) noexcept : data_(o.data_), size_(o.size_) {
    o.data_ = nullptr;
    o.size_ = 0;
  }
  ~ScratchBuffer();
  /** Ensures room for `bytes`; returns the (possibly new) storage. */
  uint8_t* reserve(size_t bytes);
  uint8_t* data() const { return data_; }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

/** Bytes per row of a weight format. */
size_t format_row_bytes(int fmt, int64_t cols);
/** True for the formats matmul/getRows support. */
bool format_supported(int fmt);

class Engine {
 public:
  Engine(int threads, Isa isa);

  Isa isa() const { return isa_; }
  int threads() const { return pool_.size(); }
  const Kernels& kernels() const { return *k_; }
  /** The engine's thread pool (the training kernels run on it too, so one process has one pool). */
  ThreadPool& pool() { return pool_; }

  /** y[n, rows] = x[n, cols] · Wᵀ, W in format `fmt` (ggml layout). */
  void matmul(float* y, int fmt, const uint8_t* w, int64_t rows, int64_t cols, const float* x, int64_t n);
  /**
   * Causal GQA attention over an F16 KV cache (IEEE half bits; rows of n_kv_heads*head_dim), one
   * task per (token, range of KV heads; see attention_head_ranges) with all their query heads (see
   * attention_heads_f16_t).
   * With `f16_accumulate`, llama.cpp's numerics instead (attention_head_f16acc), one task per
   * (token, head).
   */
  void attention_f16(float* out, const float* q, const uint16_t* k, const uint16_t* v, const int32_t* positions,
                     int64_t n, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, float scale,
                     bool f16_accumulate = false);
  /** dst[i] = f16(src[i]) for `len` values (round to nearest even). */
  void to_f16(uint16_t* dst, const float* src, int64_t len);
  /** matmul over weights in the repacked layout of repack.h (Q4_0 / Q8_0 interleaved, TQ1_0 / TQ2_0 LUT). */
  void matmul_packed(float* y, int fmt, const uint8_t* wp, int64_t rows, int64_t cols, const float* x, int64_t n);
  /**
   * Memory bandwidth over a `bytes` buffer, every thread streaming its own slice: `copy` false
   * reads, true copies to a second buffer. Returns the best of `reps` passes in bytes per second
   * (bytes moved: read only, or read + written).
   */
  double memory_bandwidth(size_t bytes, int reps, bool copy);
  /** Quantizes rows x cols floats into `dst` (file layout) with ggml's reference rounding (Q4_K, Q6_K). */
  void quantize(int fmt, const float* src, int64_t rows, int64_t cols, uint8_t* dst);
  /** y[i, :] = decode(table[ids[i], :]). Ids must be in range (checked). */
  void get_rows(float* y, int fmt, const uint8_t* table, int64_t rows, int64_t cols, const int32_t* ids, int64_t n);
  void rms_norm(float* y, const float* x, const float* w, int64_t n, int64_t dim, float eps);
  void rope(float* x, int64_t n, const int32_t* positions, const RopeArgs& args);
  void softmax(float* x, int64_t n, int64_t dim);
  /** ids[t] = index of the largest value of row t of x[n, dim] (Kernels::argmax_row). */
  void argmax(int32_t* ids, const float* x, int64_t n, int64_t dim);
  void swiglu(float* y, const float* g, const float* u, int64_t len);
  void add(float* y, const float* a, const float* b, int64_t len);
  /** Causal GQA attention; k/v have rows of n_kv_heads*head_dim floats, at least max(pos)+1 rows. */
  void attention(float* out, const float* q, const float* k, const float* v, const int32_t* positions, int64_t n,
                 int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, float scale);
  /**
   * Causal GQA attention over a paged KV cache (k/v: n_rows rows of n_kv_heads*head_dim floats).
   * Row t belongs to sequence seq_of_row[t] and attends its positions 0..positions[t]; position p
   * lives in cache row block_tables[seq*max_blocks + p/block_size]*block_size + p%block_size.
   * Defined in paged_attention.cpp. Indices must have been checked by the caller.
   */
  void paged_attention(float* out, const float* q, const float* k, const float* v, const int32_t* positions,
                       const int32_t* seq_of_row, const int32_t* block_tables, int64_t n, int64_t n_heads,
                       int64_t n_kv_heads, int64_t head_dim, float scale, int64_t block_size, int64_t max_blocks);
  /** paged_attention over an F16 cache (half bits), with the kernel of attention_f16. */
  void paged_attention_f16(float* out, const float* q, const uint16_t* k, const uint16_t* v, const int32_t* positions,
                           const int32_t* seq_of_row, const int32_t* block_tables, int64_t n, int64_t n_heads,
                           int64_t n_kv_heads, int64_t head_dim, float scale, int64_t block_size, int64_t max_blocks);

  // ---- fused steps (fused.cpp): activations converted once, in the pass that produces them ----

  /**
   * Layout of the activations a matmul with weights of `fmt` reads (ActLayout in fused.h), or -1
   * for the float formats (F32 / F16 / BF16), which take no pre-converted activations.
   */
  int act_layout(int fmt) const;
  /** Bytes of one activation row of `cols` values in `layout` (a multiple of 64). */
  size_t act_row_bytes(int layout, int64_t cols) const;
  /**
   * act[t] = convert(rms_norm(x[t]) * w) for n rows of `dim` values, in one pass over x: each row is
   * normalized into an L1-sized scratch (or into y[t] when y is not null) and converted at once with
   * the same kernels rms_norm and matmul run, so the bytes equal the unfused path's. `act` holds n
   * rows of act_row_bytes(layout, dim), 64-byte aligned.
   */
  void rms_norm_quantize(uint8_t* act, int layout, float* y, const float* x, const float* w, int64_t n, int64_t dim,
                         float eps);
  /** act[t] = convert(silu(g[t]) * u[t]) for n rows of `cols` values (as swiglu then matmul's conversion). */
  void swiglu_quantize(uint8_t* act, int layout, const float* g, const float* u, int64_t n, int64_t cols);
  /** matmul (or matmul_packed when `packed`) over activations already in act_layout(fmt) (n rows). */
  void matmul_quantized(float* y, int fmt, const uint8_t* w, bool packed, int64_t rows, int64_t cols,
                        const uint8_t* act, int64_t n);
  /**
   * RoPE of q [n, q.n_heads*head_dim] and k [n, n_kv_heads*head_dim] in place (as rope twice), then
   * row t of k and v written to cache row slots[t] of kc / vc (F16 bits when `f16`, else F32), as
   * the engine's KV store does. One pass over the n tokens while their rows are in cache.
   */
  void rope_store_kv(float* q, float* k, const float* v, int64_t n, const int32_t* positions, const RopeArgs& qa,
                     int64_t n_kv_heads, void* kc, void* vc, bool f16, const int32_t* slots);

 private:
  void matmul_impl(float* y, int fmt, const uint8_t* w, int64_t rows, int64_t cols, const float* x,
                   const uint8_t* preq, int64_t n);
  // With `preq`, the activations are already in the Q8 act layout (fused steps) and x is unused.
  void matmul_q8act(float* y, int fmt, const uint8_t* w, int64_t rows, int64_t cols, const float* x, int64_t n,
                    bool packed, const uint8_t* preq = nullptr);
  void matmul_tl(float* y, const uint8_t* wp, int64_t rows, int64_t cols, const float* x, int64_t n);
  template <class F>
  void parallel_for(int64_t total, int64_t grain, const F& f);

  ThreadPool pool_;
  Isa isa_;
  const Kernels* k_;
  ScratchBuffer act_;                 // activations converted to the vecDotType, n rows
  std::vector<ScratchBuffer> per_thread_;  // attention: scores + accumulator per thread
  std::vector<int64_t> run_starts_;        // paged attention: first row of each run
};

// (Defined here so every file implementing Engine methods can use it.)
// Splits [0, total) into chunks of `grain` handed out dynamically (an atomic counter), so a
// thread slowed by another process does not hold the others up. f(begin, end, tid).
template <class F>
void Engine::parallel_for(int64_t total, int64_t grain, const F& f) {
  if (total <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t chunks = (total + grain - 1) / grain;
  if (pool_.size() == 1 || chunks == 1) {
    f(int64_t{0}, total, 0);
    return;
  }
  std::atomic<int64_t> next{0};
  auto job = [&](int tid, int) {
    for (;;) {
      const int64_t c = next.fetch_add(1, std::memory_order_relaxed);
      if (c >= chunks) break;
      const int64_t b = c * grain;
      f(b, std::min(b + grain, total), tid);
    }
  };
  pool_.run_dynamic_fn(job);
}

}  // namespace ryz
