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

  /**
   * Like run(), for jobs whose threads claim work from a shared counter (any thread may do any
   * part, and fn on tid 0 returns only when no work is left). Returns as soon as the caller's fn
   * has returned and the workers that joined have finished: a worker that has not started by then
   * (descheduled on a busy machine) skips the job instead of being waited for.
   */
  void run_dynamic(Fn fn, void* ctx);

  /** run_dynamic() with a callable `f(tid, nth)`. */
  template <class F>
  void run_dynamic_fn(F& f) {
    run_dynamic([](void* c, int tid, int nth) { (*static_cast<F*>(c))(tid, nth); }, &f);
  }

 private:
  void worker(int tid);
  void publish(Fn fn, void* ctx, bool dynamic);

  // run_dynamic's join word: high 32 bits the job's generation, bit 31 closed, low bits the
  // number of workers inside the job.
  static constexpr uint64_t kClosed = uint64_t{1} << 31;
  static constexpr uint64_t kActiveMask = kClosed - 1;
  alignas(64) std::atomic<uint64_t> join_{0};
  std::atomic<bool> dynamic_{false};

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
