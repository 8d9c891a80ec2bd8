// A persistent pool of std::thread workers. run() hands one job to every thread (the caller is
// thread 0) and returns when all have finished. Workers spin briefly on a generation counter
// between jobs (an op sequence keeps them hot) and then sleep on a condition variable.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace ryz {

class ThreadPool {
 public:
  using Fn = void (*)(void* ctx, int tid, int nth);

  /** Starts `threads - 1` workers (the calling thread is the last one). */
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_; }

  /** Runs fn(ctx, tid, size()) on every thread, tid 0 on the caller; blocks until all return. */
  void run(Fn fn, void* ctx);

  /** Convenience: runs a callable `f(tid, nth)` without allocating. */
  template <class F>
  void run_fn(F& f) {
    run([](void* c, int tid, int nth) { (*static_cast<F*>(c))(tid, nth); }, &f);
  }

 private:
  void worker(int tid);

  int n_;
  std::vector<std::thread> threads_;
  alignas(64) std::atomic<uint64_t> generation_{0};
  alignas(64) std::atomic<int> pending_{0};
  alignas(64) std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false};
  Fn fn_ = nullptr;
  void* ctx_ = nullptr;
  std::mutex mu_;
  std::condition_variable cv_;
};

}  // namespace ryz
