#include "thread_pool.h"

namespace ryz {
namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Pause iterations a worker spins before sleeping (roughly 50-300 microseconds).
constexpr int kSpinBeforeSleep = 1 << 12;
// Pause iterations the caller spins waiting for stragglers before yielding its core.
constexpr int kSpinBeforeYield = 1 << 10;

}  // namespace

ThreadPool::ThreadPool(int threads) : n_(threads < 1 ? 1 : threads) {
  threads_.reserve(static_cast<size_t>(n_ - 1));
  for (int t = 1; t < n_; t++) threads_.emplace_back([this, t] { worker(t); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true, std::memory_order_seq_cst);
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void ThreadPool::publish(Fn fn, void* ctx, bool dynamic) {
  fn_ = fn;
  ctx_ = ctx;
  dynamic_.store(dynamic, std::memory_order_relaxed);
  if (dynamic) {
    const uint64_t next = generation_.load(std::memory_order_relaxed) + 1;
    join_.store((next & 0xffffffffu) << 32, std::memory_order_relaxed);
  } else {
    pending_.store(n_ - 1, std::memory_order_relaxed);
  }
  generation_.fetch_add(1, std::memory_order_seq_cst);  // publishes fn_/ctx_/mode
  if (sleepers_.load(std::memory_order_seq_cst) > 0) {
    std::lock_guard<std::mutex> lock(mu_);
    cv_.notify_all();
  }
}

void ThreadPool::run_dynamic(Fn fn, void* ctx) {
  if (n_ == 1) {
    fn(ctx, 0, 1);
    return;
  }
  publish(fn, ctx, true);
  fn(ctx, 0, n_);
  join_.fetch_or(kClosed, std::memory_order_acq_rel);  // late workers now skip this job
  int spins = 0;
  while ((join_.load(std::memory_order_acquire) & kActiveMask) != 0) {
    if (++spins < kSpinBeforeYield) {
      cpu_relax();
    } else {
      std::this_thread::yield();
    }
  }
}

void ThreadPool::run(Fn fn, void* ctx) {
  if (n_ == 1) {
    fn(ctx, 0, 1);
    return;
  }
  publish(fn, ctx, false);
  fn(ctx, 0, n_);
  int spins = 0;
  while (pending_.load(std::memory_order_acquire) != 0) {
    if (++spins < kSpinBeforeYield) {
      cpu_relax();
    } else {
      std::this_thread::yield();
    }
  }
}

void ThreadPool::worker(int tid) {
  uint64_t seen = 0;
  for (;;) {
    uint64_t gen;
    int spins = 0;
    while ((gen = generation_.load(std::memory_order_acquire)) == seen) {
      if (stop_.load(std::memory_order_relaxed)) return;
      if (++spins < kSpinBeforeSleep) {
        cpu_relax();
        continue;
      }
      // Dekker-style handshake with run(): either run() sees sleepers_ > 0 and notifies under
      // the mutex, or this thread sees the new generation in the predicate.
      sleepers_.fetch_add(1, std::memory_order_seq_cst);
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] {
          return generation_.load(std::memory_order_seq_cst) != seen || stop_.load(std::memory_order_seq_cst);
        });
      }
      sleepers_.fetch_sub(1, std::memory_order_seq_cst);
      spins = 0;
    }
    if (stop_.load(std::memory_order_relaxed)) return;
    seen = gen;
    if (dynamic_.load(std::memory_order_relaxed)) {
      // Join only while the job is open; otherwise it is done (or a newer one is being published).
      const uint64_t tag = (gen & 0xffffffffu) << 32;
      uint64_t s = join_.load(std::memory_order_acquire);
      bool joined = false;
      while ((s & ~kActiveMask) == tag) {
        if (join_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel, std::memory_order_acquire)) {
          joined = true;
          break;
        }
      }
      if (!joined) continue;
      fn_(ctx_, tid, n_);
      join_.fetch_sub(1, std::memory_order_release);
    } else {
      fn_(ctx_, tid, n_);
      pending_.fetch_sub(1, std::memory_order_release);
    }
  }
}

}  // namespace ryz
