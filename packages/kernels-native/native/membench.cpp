// A simple memory bandwidth probe (read and copy), for reporting decode speed as a fraction of
// what this machine's memory delivers. Not a kernel: it only streams bytes.
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

}  // namespace

double Engine::memory_bandwidth(size_t bytes, int reps, bool copy) {
  bytes = std::max<size_t>(bytes & ~size_t{4095}, 1 << 20);
  reps = std::max(reps, 1);
  uint64_t* src = static_cast<uint64_t*>(std::aligned_alloc(4096, bytes));
  uint64_t* dst = copy ? static_cast<uint64_t*>(std::aligned_alloc(4096, bytes)) : nullptr;
  if (src == nullptr || (copy && dst == nullptr)) {
    std::free(src);
    std::free(dst);
    throw std::bad_alloc();
  }
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
        sink[static_cast<size_t>(tid) * 8] += read_sum(src + b, e - b);
      }
    };
    pool_.run_fn(job);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double moved = static_cast<double>(bytes) * (copy ? 2.0 : 1.0);
    best = std::max(best, moved / s);
  }
  std::free(src);
  std::free(dst);
  return best;
}

}  // namespace ryz
