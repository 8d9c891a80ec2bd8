// Paged attention for continuous batching: each query row reads its sequence's K/V in place through
// its block table (KvRows), with the same kernels as the contiguous attention ops (attention_head
// per query head for an F32 cache, attention_heads_f16 for a range of KV heads over an F16 cache), so
// results equal those ops bit for bit. Gathering the pages into contiguous scratch first cost a
// second pass over the whole cache, as much as the attention itself at 16 decode streams.
//
// A Q8_0 cache (paged only) runs the F16 kernel's structure with values dequantized in registers
// (attention_heads_q8_0): about half the bytes per step of an F16 cache. Its rows are written by
// quantize_kv_q8_0 / rope_store_kv.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "engine.h"
#include "simd_ops.h"

namespace ryz {

namespace {
size_t round64(size_t b) { return (b + 63) & ~size_t{63}; }

void check_paged_shape(int64_t n, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, int64_t block_size,
                       int64_t max_blocks) {
  if (n < 0) throw std::invalid_argument("pagedAttention: n must be >= 0");
  if (n_heads <= 0 || n_kv_heads <= 0 || head_dim <= 0 || n_heads % n_kv_heads != 0 || block_size <= 0 ||
      max_blocks <= 0) {
    throw std::invalid_argument("pagedAttention: bad shape");
  }
}

/**
 * Runs: consecutive rows of one sequence (a prefill chunk), at most kRunRows long so a long chunk
 * still splits across threads. A run's K/V rows are gathered once per KV head and serve every row
 * of the run (each attends up to its own position). `runs` ends with n.
 */
void find_runs(const int32_t* seq_of_row, int64_t n, std::vector<int64_t>& runs) {
  constexpr int64_t kRunRows = 32;
  runs.clear();
  for (int64_t t = 0; t < n; t++) {
    if (runs.empty() || seq_of_row[t] != seq_of_row[t - 1] || t - runs.back() >= kRunRows) runs.push_back(t);
  }
  runs.push_back(n);
}

// Every (run of consecutive rows of one sequence, part of the KV heads) is one task. Threads claim
// tasks from a shared counter, so a worker descheduled by another process is not waited for
// (run_dynamic). `task(tid, t0, t1, part, table)` attends rows t0..t1-1 for part `part` of `parts`
// through the block table `table` of their sequence.
template <class Task>
void run_paged_tasks(ThreadPool& pool, const std::vector<int64_t>& runs, const int32_t* seq_of_row, const int32_t* block_tables, int64_t max_blocks, int64_t parts,
                     Task&& task) {
  const int64_t tasks = (static_cast<int64_t>(runs.size()) - 1) * parts;
  std::atomic<int64_t> next{0};
  auto job = [&](int tid, int) {
    for (;;) {
      const int64_t i = next.fetch_add(1, std::memory_order_relaxed);
      if (i >= tasks) break;
      const size_t r = static_cast<size_t>(i / parts);
      const int64_t t0 = runs[r];
      task(tid, t0, runs[r + 1], i % parts, block_tables + static_cast<int64_t>(seq_of_row[t0]) * max_blocks);
    }
  };
  if (pool.size() == 1 || tasks == 1) {
    job(0, 1);
  } else {
    pool.run_dynamic_fn(job);
  }
}

/**
 * The driver of the paged attention over F16 and Q8_0 caches: runs of one sequence's rows, the
 * KV heads split by attention_head_ranges (which heads share a task never changes a head's
 * result), per-thread scratch of `scratch_floats(widest range)` floats, then for each row t of a
 * task `heads(off, g0, g1, rows, len, scratch)`: KV heads [g0, g1) of row t, whose first query value
 * is at `off`, over `len` positions located by `rows` (cache rows of `row_stride` elements).
 */
template <class ScratchFloats, class Heads>
void run_paged_heads(ThreadPool& pool, std::vector<ScratchBuffer>& per_thread, std::vector<int64_t>& runs,
                     const int32_t* positions, const int32_t* seq_of_row, const int32_t* block_tables, int64_t n,
                     int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, int64_t block_size, int64_t max_blocks,
                     size_t row_stride, ScratchFloats scratch_floats, Heads heads) {
  const int64_t group = n_heads / n_kv_heads;
  const int64_t q_row = n_heads * head_dim;
  find_runs(seq_of_row, n, runs);
  const HeadRanges parts = attention_head_ranges(static_cast<int64_t>(runs.size()) - 1, pool.size(), n_kv_heads);
  const size_t scratch_bytes = round64(scratch_floats(parts.widest()) * 4);
  for (auto& s : per_thread) s.reserve(scratch_bytes);
  run_paged_tasks(pool, runs, seq_of_row, block_tables, max_blocks, parts.count,
                  [&](int tid, int64_t t0, int64_t t1, int64_t part, const int32_t* table) {
                    float* scratch = reinterpret_cast<float*>(per_thread[static_cast<size_t>(tid)].data());
                    const KvRows rows{row_stride, table, block_size};
                    const int64_t g0 = parts.first(part);
                    const int64_t g1 = parts.first(part + 1);
                    for (int64_t t = t0; t < t1; t++) {
                      heads(static_cast<size_t>(t * q_row + g0 * group * head_dim), g0, g1, rows,
                            static_cast<int64_t>(positions[t]) + 1, scratch);
                    }
                  });
}

}  // namespace

void Engine::paged_attention(float* out, const float* q, const float* k, const float* v, const int32_t* positions,
                             const int32_t* seq_of_row, const int32_t* block_tables, int64_t n, int64_t n_heads,
                             int64_t n_kv_heads, int64_t head_dim, float scale, int64_t block_size,
                             int64_t max_blocks) {
  check_paged_shape(n, n_heads, n_kv_heads, head_dim, block_size, max_blocks);
  if (n == 0) return;
  int64_t max_len = 0;
  for (int64_t t = 0; t < n; t++) max_len = std::max<int64_t>(max_len, static_cast<int64_t>(positions[t]) + 1);
  const size_t scores_bytes = round64(static_cast<size_t>(max_len) * 4);
  const size_t acc_bytes = round64(static_cast<size_t>(head_dim) * 4);
  for (auto& s : per_thread_) s.reserve(scores_bytes + acc_bytes);

  const int64_t group = n_heads / n_kv_heads;
  const int64_t q_row = n_heads * head_dim;
  const int64_t kv_row = n_kv_heads * head_dim;
  find_runs(seq_of_row, n, run_starts_);
  run_paged_tasks(pool_, run_starts_, seq_of_row, block_tables, max_blocks, n_kv_heads,
                  [&](int tid, int64_t t0, int64_t t1, int64_t g, const int32_t* table) {
                    uint8_t* scratch = per_thread_[static_cast<size_t>(tid)].data();
                    float* scores = reinterpret_cast<float*>(scratch);
                    float* acc = reinterpret_cast<float*>(scratch + scores_bytes);
                    const KvRows rows{static_cast<size_t>(kv_row), table, block_size};
                    for (int64_t t = t0; t < t1; t++) {
                      const int64_t row_len = static_cast<int64_t>(positions[t]) + 1;
                      for (int64_t h = g * group; h < (g + 1) * group; h++) {
                        k_->attention_head(out + t * q_row + h * head_dim, q + t * q_row + h * head_dim,
                                           k + g * head_dim, v + g * head_dim, rows, row_len, head_dim, scale, scores,
                                           acc);
                      }
                    }
                  });
}

void Engine::paged_attention_f16(float* out, const float* q, const uint16_t* k, const uint16_t* v,
                                 const int32_t* positions, const int32_t* seq_of_row, const int32_t* block_tables,
                                 int64_t n, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, float scale,
                                 int64_t block_size, int64_t max_blocks) {
  check_paged_shape(n, n_heads, n_kv_heads, head_dim, block_size, max_blocks);
  if (n == 0) return;
  const int64_t group = n_heads / n_kv_heads;
  run_paged_heads(
      pool_, per_thread_, run_starts_, positions, seq_of_row, block_tables, n, n_heads, n_kv_heads, head_dim,
      block_size, max_blocks, static_cast<size_t>(n_kv_heads * head_dim),
      [&](int64_t widest) { return attention_f16_scratch_floats(widest, group, head_dim); },
      [&](size_t off, int64_t g0, int64_t g1, const KvRows& rows, int64_t len, float* scratch) {
        k_->attention_heads_f16(out + off, q + off, g1 - g0, group, k + g0 * head_dim, v + g0 * head_dim, rows, len,
                                head_dim, scale, scratch);
      });
}

void Engine::paged_attention_q8_0(float* out, const float* q, const uint8_t* k, const uint8_t* v,
                                  const int32_t* positions, const int32_t* seq_of_row, const int32_t* block_tables,
                                  int64_t n, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, float scale,
                                  int64_t block_size, int64_t max_blocks) {
  check_paged_shape(n, n_heads, n_kv_heads, head_dim, block_size, max_blocks);
  const int64_t kv_row = n_kv_heads * head_dim;
  if (kv_row % kKvQ8Block != 0) {
    throw std::invalid_argument("pagedAttention: a Q8_0 cache needs K/V rows of a multiple of 32 values");
  }
  if (n == 0) return;
  const int64_t group = n_heads / n_kv_heads;
  run_paged_heads(
      pool_, per_thread_, run_starts_, positions, seq_of_row, block_tables, n, n_heads, n_kv_heads, head_dim,
      block_size, max_blocks, kv_q8_0_row_bytes(kv_row),
      [&](int64_t widest) {
        return attention_f16_scratch_floats(widest, group, head_dim) + kv_q8_0_scale_floats(widest, head_dim);
      },
      [&](size_t off, int64_t g0, int64_t g1, const KvRows& rows, int64_t len, float* scratch) {
        k_->attention_heads_q8_0(out + off, q + off, g1 - g0, group, k, v, g0 * head_dim, kv_row, rows, len, head_dim,
                                 scale, scratch);
      });
}

void Engine::quantize_kv_row(uint8_t* dst, const float* src, int64_t row_elems) const {
  // conv_q8_0 writes ggml's block_q8_0 (scale, 32 quants); the cache keeps quants and scales apart.
  constexpr int64_t kChunk = 16;  // blocks converted at once
  BlockQ8_0 blocks[kChunk];
  uint8_t* scales = dst + row_elems;
  for (int64_t b0 = 0; b0 < row_elems / kQK; b0 += kChunk) {
    const int64_t nb = std::min<int64_t>(kChunk, row_elems / kQK - b0);
    k_->conv_q8_0(src + b0 * kQK, blocks, nb * kQK);
    for (int64_t b = 0; b < nb; b++) {
      std::memcpy(dst + (b0 + b) * kQK, blocks[b].qs, kQK);
      std::memcpy(scales + 2 * (b0 + b), &blocks[b].d, 2);
    }
  }
}

void Engine::quantize_kv_q8_0(uint8_t* dst, const float* src, int64_t rows, int64_t row_elems) {
  if (rows < 0 || row_elems <= 0 || row_elems % kQK != 0) {
    throw std::invalid_argument("quantizeKvQ8_0: rows must be >= 0 and rowSize a positive multiple of 32");
  }
  const size_t row_bytes = kv_q8_0_row_bytes(row_elems);
  const int64_t grain = std::max<int64_t>(1, 16384 / row_elems);
  parallel_for(rows, grain, [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; r++) {
      quantize_kv_row(dst + static_cast<size_t>(r) * row_bytes, src + r * row_elems, row_elems);
    }
  });
}

}  // namespace ryz
