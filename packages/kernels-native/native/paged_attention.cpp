// Paged attention for continuous batching: each query row reads its sequence's K/V through a
// block table. Per (run of rows of one sequence, kv head) task the sequence's K and V rows of that
// head are gathered once into contiguous per-thread scratch, then the ISA's contiguous attention
// kernel runs for every row of the run (attention_head per query head for an F32 cache,
// attention_group_f16 for the whole group over an F16 cache), so results equal the contiguous
// attention ops bit for bit.
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

/** Copies head `g` of the sequence's positions 0..len-1 (through its block table) to `dst[len, head_dim]`. */
template <class T>
void gather_head(T* dst, const T* src, const int32_t* table, int64_t len, int64_t block_size, int64_t kv_row,
                 int64_t g, int64_t head_dim) {
  const size_t bytes = sizeof(T) * static_cast<size_t>(head_dim);
  for (int64_t j0 = 0; j0 < len; j0 += block_size) {
    const T* base = src + (static_cast<int64_t>(table[j0 / block_size]) * block_size) * kv_row + g * head_dim;
    const int64_t jn = std::min(block_size, len - j0);
    for (int64_t j = 0; j < jn; j++) std::memcpy(dst + (j0 + j) * head_dim, base + j * kv_row, bytes);
  }
}
// Every (run of consecutive rows of one sequence, KV head) is one task. Threads claim tasks from a
// shared counter, so a worker descheduled by another process is not waited for (run_dynamic).
// `task(tid, t0, t1, g, len, table)` attends rows t0..t1-1 for KV head g over `len` positions of
// the sequence whose block table is `table`.
template <class Task>
void run_paged_tasks(ThreadPool& pool, const std::vector<int64_t>& runs, const int32_t* positions,
                     const int32_t* seq_of_row, const int32_t* block_tables, int64_t max_blocks, int64_t n_kv_heads,
                     Task&& task) {
  const int64_t tasks = (static_cast<int64_t>(runs.size()) - 1) * n_kv_heads;
  std::atomic<int64_t> next{0};
  auto job = [&](int tid, int) {
    for (;;) {
      const int64_t i = next.fetch_add(1, std::memory_order_relaxed);
      if (i >= tasks) break;
      const size_t r = static_cast<size_t>(i / n_kv_heads);
      const int64_t t0 = runs[r];
      const int64_t t1 = runs[r + 1];
      int64_t len = 0;
      for (int64_t t = t0; t < t1; t++) len = std::max<int64_t>(len, static_cast<int64_t>(positions[t]) + 1);
      task(tid, t0, t1, i % n_kv_heads, len, block_tables + static_cast<int64_t>(seq_of_row[t0]) * max_blocks);
    }
  };
  if (pool.size() == 1 || tasks == 1) {
    job(0, 1);
  } else {
    pool.run_dynamic_fn(job);
  }
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
  const size_t kv_bytes = round64(static_cast<size_t>(max_len * head_dim) * 4);
  const size_t need = scores_bytes + acc_bytes + 2 * kv_bytes;
  for (auto& s : per_thread_) s.reserve(need);

  const int64_t group = n_heads / n_kv_heads;
  const int64_t q_row = n_heads * head_dim;
  const int64_t kv_row = n_kv_heads * head_dim;
  find_runs(seq_of_row, n, run_starts_);
  run_paged_tasks(pool_, run_starts_, positions, seq_of_row, block_tables, max_blocks, n_kv_heads,
                  [&](int tid, int64_t t0, int64_t t1, int64_t g, int64_t len, const int32_t* table) {
                    uint8_t* scratch = per_thread_[static_cast<size_t>(tid)].data();
                    float* scores = reinterpret_cast<float*>(scratch);
                    float* acc = reinterpret_cast<float*>(scratch + scores_bytes);
                    float* kg = reinterpret_cast<float*>(scratch + scores_bytes + acc_bytes);
                    float* vg = reinterpret_cast<float*>(scratch + scores_bytes + acc_bytes + kv_bytes);
                    gather_head(kg, k, table, len, block_size, kv_row, g, head_dim);
                    gather_head(vg, v, table, len, block_size, kv_row, g, head_dim);
                    for (int64_t t = t0; t < t1; t++) {
                      const int64_t row_len = static_cast<int64_t>(positions[t]) + 1;
                      for (int64_t h = g * group; h < (g + 1) * group; h++) {
                        k_->attention_head(out + t * q_row + h * head_dim, q + t * q_row + h * head_dim, kg, vg,
                                           static_cast<size_t>(head_dim), row_len, head_dim, scale, scores, acc);
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
  int64_t max_len = 0;
  for (int64_t t = 0; t < n; t++) max_len = std::max<int64_t>(max_len, static_cast<int64_t>(positions[t]) + 1);
  const int64_t group = n_heads / n_kv_heads;
  const size_t attn_bytes = round64(attention_f16_scratch_floats(group, head_dim) * 4);
  const size_t kv_bytes = round64(static_cast<size_t>(max_len * head_dim) * 2);
  for (auto& s : per_thread_) s.reserve(attn_bytes + 2 * kv_bytes);

  const int64_t q_row = n_heads * head_dim;
  const int64_t kv_row = n_kv_heads * head_dim;
  find_runs(seq_of_row, n, run_starts_);
  run_paged_tasks(pool_, run_starts_, positions, seq_of_row, block_tables, max_blocks, n_kv_heads,
                  [&](int tid, int64_t t0, int64_t t1, int64_t g, int64_t len, const int32_t* table) {
                    uint8_t* scratch = per_thread_[static_cast<size_t>(tid)].data();
                    float* attn = reinterpret_cast<float*>(scratch);
                    uint16_t* kg = reinterpret_cast<uint16_t*>(scratch + attn_bytes);
                    uint16_t* vg = reinterpret_cast<uint16_t*>(scratch + attn_bytes + kv_bytes);
                    gather_head(kg, k, table, len, block_size, kv_row, g, head_dim);
                    gather_head(vg, v, table, len, block_size, kv_row, g, head_dim);
                    for (int64_t t = t0; t < t1; t++) {
                      const size_t off = static_cast<size_t>(t * q_row + g * group * head_dim);
                      k_->attention_group_f16(out + off, q + off, static_cast<size_t>(head_dim), group, kg, vg,
                                              static_cast<size_t>(head_dim), static_cast<int64_t>(positions[t]) + 1,
                                              head_dim, scale, attn);
                    }
                  });
}

}  // namespace ryz
