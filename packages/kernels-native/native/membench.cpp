// A simple memory bandwidth probe (read and copy), for reporting decode speed as a fraction of
// what this machine's memory delivers. Not a kernel: it only streams bytes.
#include <immintrin.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "engine.h"

namespace ryz {
namespace {

// Sums 64-bit words with four independent accumulators; the result is kept so the loads stay.
uint64_t read_sum(const uint64_t* p, size_t words) {
  uint64_t a = 0, b = 0, c = 0, d = 0;
  size_t i = 0;
  for (; i + 4 <= words; i += 4) {
    a += p[i];
    b += p[i + 1];
    c += p[i + 2];
    d += p[i + 3];
  }
  for (; i < words; i++) a += p[i];
  return a + b + c + d;
}

#if defined(__x86_64__)
// The same with 256-bit loads and software prefetch (called only when the CPU has AVX2), so the
// probe is limited by memory rather than by the loop or the hardware prefetchers.
__attribute__((target("avx2"))) uint64_t read_sum_avx2(const uint64_t* p, size_t words) {
  const __m256i* v = reinterpret_cast<const __m256i*>(p);
  const size_t n = words / 4;
  __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    // Prefetch 2 KiB ahead, as the packed decode kernel does (qgemm_x86.h).
    _mm_prefetch(reinterpret_cast<const char*>(v + i) + 2048, _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(v + i) + 2048 + 64, _MM_HINT_T0);
    a = _mm256_add_epi64(a, _mm256_load_si256(v + i));
    b = _mm256_add_epi64(b, _mm256_load_si256(v + i + 1));
    c = _mm256_add_epi64(c, _mm256_load_si256(v + i + 2));
    d = _mm256_add_epi64(d, _mm256_load_si256(v + i + 3));
  }
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), _mm256_add_epi64(_mm256_add_epi64(a, b), _mm256_add_epi64(c, d)));
  uint64_t sum = lanes[0] + lanes[1] + lanes[2] + lanes[3];
  for (size_t j = i * 4; j < words; j++) sum += p[j];
  return sum;
}
#endif

// Anonymous memory advised for huge pages, as the repacked weights are (addon.cpp).
uint64_t* map_buffer(size_t bytes) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  ::madvise(p, bytes, MADV_HUGEPAGE);
  return static_cast<uint64_t*>(p);
}

}  // namespace

double Engine::memory_bandwidth(size_t bytes, int reps, bool copy) {
  bytes = std::max<size_t>(bytes & ~size_t{4095}, 1 << 20);
  reps = std::max(reps, 1);
  uint64_t* src = map_buffer(bytes);
  uint64_t* dst = copy ? map_buffer(bytes) : nullptr;
  if (src == nullptr || (copy && dst == nullptr)) {
    if (src != nullptr) ::munmap(src, bytes);
    if (dst != nullptr) ::munmap(dst, bytes);
    throw std::bad_alloc();
  }
#if defined(__x86_64__)
  const bool avx2 = __builtin_cpu_supports("avx2");
#else
  const bool avx2 = false;
#endif
  std::memset(src, 1, bytes);
  if (copy) std::memset(dst, 0, bytes);
  const int nth = pool_.size();
  const size_t words = bytes / 8;
  std::vector<uint64_t> sink(static_cast<size_t>(nth) * 8, 0);
  double best = 0.0;
  for (int r = 0; r < reps; r++) {
    const auto t0 = std::chrono::steady_clock::now();
    auto job = [&](int tid, int n) {
      const size_t per = (words / static_cast<size_t>(n) + 7) & ~size_t{7};
      const size_t b = std::min(words, per * static_cast<size_t>(tid));
      const size_t e = std::min(words, b + per);
      if (copy) {
        std::memcpy(dst + b, src + b, (e - b) * 8);
      } else {
#if defined(__x86_64__)
        sink[static_cast<size_t>(tid) * 8] += avx2 ? read_sum_avx2(src + b, e - b) : read_sum(src + b, e - b);
#else
        sink[static_cast<size_t>(tid) * 8] += read_sum(src + b, e - b);
#endif
      }
    };
    pool_.run_fn(job);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double moved = static_cast<double>(bytes) * (copy ? 2.0 : 1.0);
    best = std::max(best, moved / s);
  }
  ::munmap(src, bytes);
  if (dst != nullptr) ::munmap(dst, bytes);
  return best;
}

}  // namespace ryz
