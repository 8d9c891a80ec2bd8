// Native self-test, built and run under ASan + UBSan by scripts/sanitize.sh:
//  * every available SIMD variant against the scalar kernels, for every kernel and format
//    (activation conversions bit-exact, getRows exact, the rest within float-order tolerances);
//  * the thread pool (every thread runs every job exactly once, many generations, with sleeps);
//  * Engine results identical for 1, 2 and 3 threads.
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "../common.h"
#include "../dispatch.h"
#include "../engine.h"
#include "../fused.h"
#include "../kquants.h"
#include "../repack.h"
#include "../ternary_lut.h"
#include "../thread_pool.h"
#include "../train_kernels.h"

using namespace ryz;

namespace {

int g_failures = 0;
int g_checks = 0;
std::mt19937_64 g_rng;

void check(bool ok, const std::string& what) {
  g_checks++;
  if (!ok) {
    g_failures++;
    std::fprintf(stderr, "FAIL: %s\n", what.c_str());
  }
}

std::vector<float> uniform(size_t n, float scale) {
  std::uniform_real_distribution<float> d(-scale, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g_rng);
  return v;
}

double rel_err(const std::vector<float>& got, const std::vector<float>& want) {
  double max_abs = 0, max_err = 0;
  for (size_t i = 0; i < want.size(); i++) {
    max_abs = std::max(max_abs, std::fabs(static_cast<double>(want[i])));
    const double e = std::fabs(static_cast<double>(got[i]) - want[i]);
    max_err = std::isnan(e) ? INFINITY : std::max(max_err, e);
  }
  return max_abs == 0 ? max_err : max_err / max_abs;
}

void check_close(const std::vector<float>& got, const std::vector<float>& want, double tol, const std::string& what) {
  const double e = rel_err(got, want);
  check(e <= tol, what + " rel err " + std::to_string(e) + " > " + std::to_string(tol));
}

bool same_bits(const void* a, const void* b, size_t bytes) { return std::memcmp(a, b, bytes) == 0; }

// Weight bytes of `rows` x `cols` in format fmt, quantized from random floats with the scalar
// reference rounding (Q8_0 / Q4_0 blocks also get random raw bytes half of the time).
std::vector<uint8_t> make_weights(int fmt, int64_t rows, int64_t cols) {
  const auto vals = uniform(static_cast<size_t>(rows * cols), 1.0f);
  std::vector<uint8_t> out(format_row_bytes(fmt, cols) * static_cast<size_t>(rows));
  switch (fmt) {
    case kF32:
      std::memcpy(out.data(), vals.data(), out.size());
      break;
    case kF16:
    case kBF16:
      for (size_t i = 0; i < vals.size(); i++) {
        const uint16_t h = fmt == kF16 ? f32_to_f16(vals[i]) : f32_to_bf16(vals[i]);
        std::memcpy(out.data() + 2 * i, &h, 2);
      }
      break;
    case kQ8_0:
    case kQ4_0: {
      std::uniform_int_distribution<int> byte(0, 255);
      const size_t bs = fmt == kQ8_0 ? 34 : 18;
      for (size_t b = 0; b < out.size(); b += bs) {
        const uint16_t d = f32_to_f16(std::uniform_real_distribution<float>(-0.05f, 0.05f)(g_rng));
        std::memcpy(out.data() + b, &d, 2);
        for (size_t j = 2; j < bs; j++) out[b + j] = static_cast<uint8_t>(byte(g_rng));
      }
      break;
    }
    default:
      break;
  }
  return out;
}

const char* fmt_name(int fmt) {
  switch (fmt) {
    case kF32: return "f32";
    case kF16: return "f16";
    case kBF16: return "bf16";
    case kQ8_0: return "q8_0";
    default: return "q4_0";
  }
}

// Inputs that stress the exact conversions: random bit patterns (no NaN), halfway cases,
// subnormals, overflow to inf, ties for roundf.
std::vector<float> conversion_inputs(size_t n) {
  std::vector<float> v(n);
  std::uniform_int_distribution<uint32_t> bits;
  for (size_t i = 0; i < n; i++) {
    float f;
    switch (i % 4) {
      case 0: {
        uint32_t u;
        do u = bits(g_rng);
        while ((u & 0x7f800000u) == 0x7f800000u);
        f = bits_f32(u);
        break;
      }
      case 1: {  // exactly halfway between two f16 / bf16 values
        const uint32_t u = (bits(g_rng) & 0x8fffe000u) | 0x00001000u;
        f = bits_f32(u);
        break;
      }
      case 2:
        f = std::uniform_real_distribution<float>(-70000.0f, 70000.0f)(g_rng);
        break;
      default:
        f = std::uniform_real_distribution<float>(-1e-6f, 1e-6f)(g_rng);
        break;
    }
    v[i] = f;
  }
  return v;
}

void test_conversions(const Kernels& ref, const Kernels& k) {
  const std::string p = std::string(k.name) + " conversions: ";
  const size_t n = 4096 + 29;
  const auto x = conversion_inputs(n);
  std::vector<float> a(n), b(n);
  ref.conv_f16(x.data(), a.data(), static_cast<int64_t>(n));
  k.conv_f16(x.data(), b.data(), static_cast<int64_t>(n));
  check(same_bits(a.data(), b.data(), n * 4), p + "f16 rounding differs from scalar");

  ref.conv_bf16(x.data(), a.data(), static_cast<int64_t>(n));
  if (k.bf16_act_elem_bytes == 4) {
    k.conv_bf16(x.data(), b.data(), static_cast<int64_t>(n));
  } else {
    std::vector<uint16_t> h(n);
    k.conv_bf16(x.data(), h.data(), static_cast<int64_t>(n));
    for (size_t i = 0; i < n; i++) b[i] = bf16_to_f32(h[i]);
  }
  check(same_bits(a.data(), b.data(), n * 4), p + "bf16 rounding differs from scalar");

  // Q8_0: random blocks plus blocks with amax = 127 (d = 1) holding exact .5 ties.
  const int64_t cols = 32 * 67;
  auto q = uniform(static_cast<size_t>(cols), 4.0f);
  for (int j = 0; j < 32; j++) q[static_cast<size_t>(j)] = (j == 0) ? 127.0f : static_cast<float>(j % 9) - 4.5f;
  for (int j = 32; j < 64; j++) q[static_cast<size_t>(j)] = 0.0f;  // all-zero block
  std::vector<BlockQ8_0> qa(static_cast<size_t>(cols / 32)), qb(static_cast<size_t>(cols / 32));
  ref.conv_q8_0(q.data(), qa.data(), cols);
  k.conv_q8_0(q.data(), qb.data(), cols);
  check(same_bits(qa.data(), qb.data(), qa.size() * sizeof(BlockQ8_0)), p + "q8_0 quantization differs from scalar");
  check(qa[0].qs[1] == -4 && qa[0].qs[2] == -2, p + "ties must round to even, as ggml's x86 quantize_row_q8_0");
}

void test_variant(Isa isa) {
  Engine ref(2, Isa::Scalar);
  Engine e(2, isa);
  const std::string p = std::string(isa_name(isa)) + " vs scalar: ";
  test_conversions(ref.kernels(), e.kernels());

  for (int fmt : {kF32, kF16, kBF16, kQ8_0, kQ4_0}) {
    const bool block = fmt == kQ8_0 || fmt == kQ4_0;
    const std::vector<int64_t> cols_list = block ? std::vector<int64_t>{32, 96, 256, 1024}
                                                 : std::vector<int64_t>{1, 17, 45, 256, 1030};
    const double tol = fmt == kF32 ? 1e-5 : (block ? 1e-4 : 1e-3);
    for (int64_t cols : cols_list) {
      const int64_t rows = 37;
      const auto w = make_weights(fmt, rows, cols);
      for (int64_t n : {1, 3, 7}) {
        const auto x = uniform(static_cast<size_t>(n * cols), 3.0f);
        std::vector<float> ya(static_cast<size_t>(n * rows)), yb(ya.size());
        ref.matmul(ya.data(), fmt, w.data(), rows, cols, x.data(), n);
        e.matmul(yb.data(), fmt, w.data(), rows, cols, x.data(), n);
        check_close(yb, ya, tol,
                    p + "matmul " + fmt_name(fmt) + " cols=" + std::to_string(cols) + " n=" + std::to_string(n));
      }
      std::vector<int32_t> ids = {0, 36, 5, 5, 17};
      std::vector<float> ga(ids.size() * static_cast<size_t>(cols)), gb(ga.size());
      ref.get_rows(ga.data(), fmt, w.data(), rows, cols, ids.data(), static_cast<int64_t>(ids.size()));
      e.get_rows(gb.data(), fmt, w.data(), rows, cols, ids.data(), static_cast<int64_t>(ids.size()));
      check(same_bits(ga.data(), gb.data(), ga.size() * 4), p + "getRows " + fmt_name(fmt) + " not exact");
    }
  }

  for (int64_t dim : {1, 45, 64, 4099}) {
    const int64_t n = 3;
    const auto x = uniform(static_cast<size_t>(n * dim), 5.0f);
    const auto w = uniform(static_cast<size_t>(dim), 2.0f);
    std::vector<float> a(x.size()), b(x.size());
    ref.rms_norm(a.data(), x.data(), w.data(), n, dim, 1e-5f);
    e.rms_norm(b.data(), x.data(), w.data(), n, dim, 1e-5f);
    check_close(b, a, 1e-5, p + "rmsNorm dim=" + std::to_string(dim));
    a = uniform(static_cast<size_t>(n * dim), 30.0f);
    b = a;
    ref.softmax(a.data(), n, dim);
    e.softmax(b.data(), n, dim);
    check_close(b, a, 1e-5, p + "softmax dim=" + std::to_string(dim));
  }

  for (bool neox : {false, true}) {
    RopeArgs r{5, 48, 32, 10000.0, 0.5, neox};
    const int64_t n = 7;
    std::vector<int32_t> pos = {0, 1, 2, 100, 4095, 8000, 3};
    auto a = uniform(static_cast<size_t>(n * r.n_heads * r.head_dim), 2.0f);
    auto b = a;
    ref.rope(a.data(), n, pos.data(), r);
    e.rope(b.data(), n, pos.data(), r);
    check_close(b, a, 1e-6, p + (neox ? "rope neox" : "rope normal"));
  }

  for (int64_t len : {1, 13, 1000, 100003}) {
    const auto g = uniform(static_cast<size_t>(len), 12.0f);
    const auto u = uniform(static_cast<size_t>(len), 3.0f);
    std::vector<float> a(g.size()), b(g.size());
    ref.swiglu(a.data(), g.data(), u.data(), len);
    e.swiglu(b.data(), g.data(), u.data(), len);
    check_close(b, a, 1e-5, p + "swiglu len=" + std::to_string(len));
    ref.add(a.data(), g.data(), u.data(), len);
    e.add(b.data(), g.data(), u.data(), len);
    check(same_bits(a.data(), b.data(), a.size() * 4), p + "add not exact len=" + std::to_string(len));
  }

  struct AttnCase {
    int64_t nh, nkv, hd, ctx;
  };
  for (const AttnCase c : {AttnCase{1, 1, 8, 1}, AttnCase{3, 1, 16, 9}, AttnCase{6, 2, 20, 40}, AttnCase{5, 5, 64, 300},
                           AttnCase{8, 2, 128, 1100}}) {
    const int64_t n = 7;
    const auto k = uniform(static_cast<size_t>(c.ctx * c.nkv * c.hd), 3.0f);
    const auto v = uniform(k.size(), 2.0f);
    const auto q = uniform(static_cast<size_t>(n * c.nh * c.hd), 3.0f);
    std::vector<int32_t> pos(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; i++) pos[static_cast<size_t>(i)] = static_cast<int32_t>((c.ctx - 1) * i / (n - 1));
    std::vector<float> a(q.size()), b(q.size());
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.hd));
    ref.attention(a.data(), q.data(), k.data(), v.data(), pos.data(), n, c.nh, c.nkv, c.hd, scale);
    e.attention(b.data(), q.data(), k.data(), v.data(), pos.data(), n, c.nh, c.nkv, c.hd, scale);
    check_close(b, a, 2e-5, p + "attention ctx=" + std::to_string(c.ctx) + " hd=" + std::to_string(c.hd));
  }
}

// Repacked Q4_0 / Q8_0 weights (repack.h) and the F16 KV attention, against the scalar engine on
// the file layout / an F32 cache holding the same half values.
void test_packed_and_f16(Isa isa) {
  Engine ref(1, Isa::Scalar);
  Engine e(2, isa);
  const std::string p = std::string(isa_name(isa)) + ": ";
  for (int fmt : {kQ8_0, kQ4_0}) {
    for (int64_t rows : {8, 67, 136}) {
      for (int64_t cols : {32, 160, 1024}) {
        const auto w = make_weights(fmt, rows, cols);
        std::vector<uint8_t> packed(w.size());
        repack_rows(fmt, w.data(), rows, cols, packed.data());
        // Token counts around the AVX2 Q4_0 tile of 8 (and its 2..7 remainder tiles).
        for (int64_t n : {1, 2, 4, 5, 7, 8, 9, 16, 17, 50}) {
          const auto x = uniform(static_cast<size_t>(n * cols), 3.0f);
          std::vector<float> ya(static_cast<size_t>(n * rows)), yb(ya.size());
          ref.matmul(ya.data(), fmt, w.data(), rows, cols, x.data(), n);
          e.matmul_packed(yb.data(), fmt, packed.data(), rows, cols, x.data(), n);
          check_close(yb, ya, 1e-4,
                      p + "packed " + fmt_name(fmt) + " rows=" + std::to_string(rows) + " cols=" + std::to_string(cols) +
                          " n=" + std::to_string(n));
        }
      }
    }
  }
  for (const int64_t ctx : {1, 31, 33, 300}) {
    const int64_t nh = 8, nkv = 2, hd = 64, n = 5;
    auto k = uniform(static_cast<size_t>(ctx * nkv * hd), 4.0f);
    auto v = uniform(k.size(), 2.0f);
    std::vector<uint16_t> kh(k.size()), vh(v.size());
    e.to_f16(kh.data(), k.data(), static_cast<int64_t>(k.size()));
    e.to_f16(vh.data(), v.data(), static_cast<int64_t>(v.size()));
    for (size_t i = 0; i < k.size(); i++) {
      check(kh[i] == f32_to_f16(k[i]), p + "toF16 rounding");
      k[i] = f16_to_f32(kh[i]);
      v[i] = f16_to_f32(vh[i]);
    }
    const auto q = uniform(static_cast<size_t>(n * nh * hd), 3.0f);
    std::vector<int32_t> pos(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; i++) pos[static_cast<size_t>(i)] = static_cast<int32_t>((ctx - 1) * i / (n - 1));
    std::vector<float> a(q.size()), b(q.size());
    const float scale = 0.125f;
    ref.attention(a.data(), q.data(), k.data(), v.data(), pos.data(), n, nh, nkv, hd, scale);
    e.attention_f16(b.data(), q.data(), kh.data(), vh.data(), pos.data(), n, nh, nkv, hd, scale);
    check_close(b, a, 2e-5, p + "attention f16 ctx=" + std::to_string(ctx));
    // Paged: the same cache as blocks of 4 positions stored in reverse order (one sequence).
    const int64_t bs = 4, nb = (ctx + bs - 1) / bs, row = nkv * hd;
    std::vector<uint16_t> kp(static_cast<size_t>(nb * bs * row)), vp(kp.size());
    std::vector<float> kf(kp.size()), vf(kp.size());
    std::vector<int32_t> table(static_cast<size_t>(nb));
    for (int64_t j = 0; j < nb; j++) table[static_cast<size_t>(j)] = static_cast<int32_t>(nb - 1 - j);
    for (int64_t t = 0; t < ctx; t++) {
      const size_t dst = static_cast<size_t>((table[static_cast<size_t>(t / bs)] * bs + t % bs) * row);
      for (int64_t i = 0; i < row; i++) {
        kp[dst + static_cast<size_t>(i)] = kh[static_cast<size_t>(t * row + i)];
        vp[dst + static_cast<size_t>(i)] = vh[static_cast<size_t>(t * row + i)];
        kf[dst + static_cast<size_t>(i)] = k[static_cast<size_t>(t * row + i)];
        vf[dst + static_cast<size_t>(i)] = v[static_cast<size_t>(t * row + i)];
      }
    }
    const std::vector<int32_t> seq(static_cast<size_t>(n), 0);
    std::vector<float> c(q.size()), d(q.size()), f(q.size());
    e.paged_attention_f16(c.data(), q.data(), kp.data(), vp.data(), pos.data(), seq.data(), table.data(), n, nh, nkv,
                          hd, scale, bs, nb);
    check(c == b, p + "paged attention f16 equals attention f16 ctx=" + std::to_string(ctx));
    e.attention(f.data(), q.data(), k.data(), v.data(), pos.data(), n, nh, nkv, hd, scale);
    e.paged_attention(d.data(), q.data(), kf.data(), vf.data(), pos.data(), seq.data(), table.data(), n, nh, nkv, hd,
                      scale, bs, nb);
    check(d == f, p + "paged attention f32 equals attention f32 ctx=" + std::to_string(ctx));
  }
}

void test_thread_pool() {
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    std::vector<std::atomic<int>> runs(static_cast<size_t>(threads));
    for (auto& r : runs) r = 0;
    std::atomic<int> bad{0};
    for (int it = 0; it < 3000; it++) {
      auto job = [&](int tid, int nth) {
        if (nth != threads || tid < 0 || tid >= threads) bad++;
        runs[static_cast<size_t>(tid)]++;
      };
      pool.run_fn(job);
      if (it % 1000 == 999) std::this_thread::sleep_for(std::chrono::milliseconds(20));  // let workers sleep
    }
    bool each = bad == 0;
    for (auto& r : runs) each = each && r == 3000;
    check(each, "thread pool with " + std::to_string(threads) + " threads: every thread runs every job once");
  }
  // Construction and destruction without any job, and right after one.
  { ThreadPool idle(4); }
  {
    ThreadPool p(4);
    auto job = [](int, int) {};
    p.run_fn(job);
  }
  check(true, "thread pool start/stop");
  // run_dynamic: work claimed from a counter; every item done exactly once whoever joins.
  for (int threads : {2, 3}) {
    ThreadPool pool(threads);
    bool ok = true;
    for (int it = 0; it < 2000; it++) {
      std::atomic<int> next{0};
      std::vector<std::atomic<int>> done(64);
      for (auto& d : done) d = 0;
      auto job = [&](int, int) {
        for (int i; (i = next.fetch_add(1)) < 64;) done[static_cast<size_t>(i)]++;
      };
      pool.run_dynamic_fn(job);
      for (auto& d : done) ok = ok && d == 1;
      if (it % 500 == 499) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    check(ok, "run_dynamic with " + std::to_string(threads) + " threads: every item once");
  }
}

void test_thread_counts() {
  for (Isa isa : available_isas()) {
    Engine e1(1, isa), e2(2, isa), e3(3, isa);
    const int64_t rows = 301, cols = 512, n = 9;
    for (int fmt : {kF32, kF16, kBF16, kQ8_0, kQ4_0}) {
      const auto w = make_weights(fmt, rows, cols);
      const auto x = uniform(static_cast<size_t>(n * cols), 2.0f);
      std::vector<float> y1(static_cast<size_t>(n * rows)), y2(y1.size()), y3(y1.size());
      e1.matmul(y1.data(), fmt, w.data(), rows, cols, x.data(), n);
      e2.matmul(y2.data(), fmt, w.data(), rows, cols, x.data(), n);
      e3.matmul(y3.data(), fmt, w.data(), rows, cols, x.data(), n);
      check(same_bits(y1.data(), y2.data(), y1.size() * 4) && same_bits(y1.data(), y3.data(), y1.size() * 4),
            std::string(isa_name(isa)) + " matmul " + fmt_name(fmt) + ": 1/2/3 threads differ");
    }
    const auto k = uniform(200 * 128, 1.0f);
    const auto q = uniform(9 * 6 * 64, 1.0f);
    std::vector<int32_t> pos(9);
    for (int i = 0; i < 9; i++) pos[static_cast<size_t>(i)] = 191 + i;
    std::vector<float> a1(q.size()), a3(q.size());
    e1.attention(a1.data(), q.data(), k.data(), k.data(), pos.data(), 9, 6, 2, 64, 0.125f);
    e3.attention(a3.data(), q.data(), k.data(), k.data(), pos.data(), 9, 6, 2, 64, 0.125f);
    check(same_bits(a1.data(), a3.data(), a1.size() * 4), std::string(isa_name(isa)) + " attention: threads differ");
  }
}

void test_errors() {
  Engine e(2, Isa::Scalar);
  float y[4] = {0, 0, 0, 0};
  bool threw = false;
  try {
    e.matmul(y, 7, nullptr, 1, 32, y, 1);  // Q5_1: no kernels
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  check(threw, "unsupported format throws");
  threw = false;
  try {
    const int32_t id = 5;
    e.get_rows(y, kF32, reinterpret_cast<const uint8_t*>(y), 1, 4, &id, 1);
  } catch (const std::out_of_range&) {
    threw = true;
  }
  check(threw, "getRows id out of range throws");
  for (Isa isa : {Isa::Avx2, Isa::Avx512}) {
    if (cpu_supports(isa)) continue;
    threw = false;
    try {
      Engine bad(1, isa);
    } catch (const std::invalid_argument&) {
      threw = true;
    }
    check(threw, std::string("unsupported ISA ") + isa_name(isa) + " throws");
  }
}

// K-quant / ternary / Q4_1 / Q5_0 kernels of one variant against the scalar ones on raw random
// blocks (every byte value; sane f16 scales), nx = 1..4, and the Q8_K / Q8_1 activation
// quantizers bit-exact. Exact-size heap buffers, so ASan sees any read past a row.
void test_kquants(Isa isa) {
  const KQuantKernels& ref = *kernels_for(Isa::Scalar)->kq;
  const KQuantKernels& k = *kernels_for(isa)->kq;
  const std::string p = std::string(isa_name(isa)) + " kquants: ";
  const int64_t cols = 512;
  const auto x = uniform(4 * cols, 3.0f);
  std::vector<BlockQ8K> a8k(4 * cols / kQKK), b8k(4 * cols / kQKK);
  for (int r = 0; r < 4; r++) {
    ref.conv_q8_k(x.data() + r * cols, a8k.data() + r * cols / kQKK, cols);
    k.conv_q8_k(x.data() + r * cols, b8k.data() + r * cols / kQKK, cols);
  }
  check(std::memcmp(a8k.data(), b8k.data(), a8k.size() * sizeof(BlockQ8K)) == 0, p + "q8_K differs");
  std::vector<BlockQ8_1> a81(4 * cols / kQK);
  std::vector<BlockQ8_0> a80(4 * cols / kQK);
  for (int r = 0; r < 4; r++) {
    k.conv_q8_1(x.data() + r * cols, a81.data() + r * cols / kQK, cols);
    kernels_for(isa)->conv_q8_0(x.data() + r * cols, a80.data() + r * cols / kQK, cols);
  }
  std::uniform_int_distribution<int> byte(0, 255);
  for (int f = 0; f < kKCount; f++) {
    const KFmtInfo info = kfmt_info(f);
    const size_t row_bytes = static_cast<size_t>(cols / info.block * info.bytes);
    std::vector<uint8_t> w(row_bytes);
    for (auto& b : w) b = static_cast<uint8_t>(byte(g_rng));
    // f16 scales at the format's offsets (d, and dmin where there is one): small, finite.
    static const int kScaleOffsets[kKCount][2] = {{0, 2}, {0, -1}, {80, 82}, {108, -1}, {0, 2},
                                                  {0, 2}, {208, -1}, {52, -1}, {64, -1}};
    for (size_t b = 0; b < row_bytes; b += static_cast<size_t>(info.bytes)) {
      for (int o : kScaleOffsets[f]) {
        if (o < 0) continue;
        const uint16_t h = f32_to_f16(uniform(1, 0.05f)[0]);
        std::memcpy(&w[b + static_cast<size_t>(o)], &h, 2);
      }
    }
    const void* act = info.act == Act::Q8_K ? static_cast<const void*>(a8k.data())
                      : info.act == Act::Q8_1 ? static_cast<const void*>(a81.data())
                                              : static_cast<const void*>(a80.data());
    const size_t stride = info.act == Act::Q8_K ? cols / kQKK * sizeof(BlockQ8K)
                          : info.act == Act::Q8_1 ? cols / kQK * sizeof(BlockQ8_1)
                                                  : cols / kQK * sizeof(BlockQ8_0);
    for (int nx = 1; nx <= 4; nx++) {
      std::vector<float> want(4), got(4);
      ref.dot[f](cols, w.data(), act, stride, nx, want.data());
      k.dot[f](cols, w.data(), act, stride, nx, got.data());
      want.resize(static_cast<size_t>(nx));
      got.resize(static_cast<size_t>(nx));
      check_close(got, want, 1e-4, p + "format " + std::to_string(f) + " nx=" + std::to_string(nx));
      // ternary: llama.cpp's lane order in every variant, so equal bit for bit
      if (f == kKTQ1_0 || f == kKTQ2_0) {
        check(same_bits(got.data(), want.data(), got.size() * 4), p + "format " + std::to_string(f) + " not exact");
      }
    }
    std::vector<float> da(static_cast<size_t>(cols)), db(static_cast<size_t>(cols));
    ref.dequant[f](w.data(), da.data(), cols);
    k.dequant[f](w.data(), db.data(), cols);
    check(same_bits(da.data(), db.data(), da.size() * 4), p + "dequant " + std::to_string(f) + " not exact");
  }
}

// Ternary LUT kernel (ternary_lut.h): TQ1_0 / TQ2_0 rows with random codes repacked, tables from
// random activations, the tile kernel equal bit for bit to the scalar dot of the file layout
// (integer sums exact, same float operations per block), padded last tile included.
void test_ternary_lut(Isa isa) {
  const KQuantKernels& ref = *kernels_for(Isa::Scalar)->kq;
  const KQuantKernels& k = *kernels_for(isa)->kq;
  const std::string p = std::string(isa_name(isa)) + " ternary LUT: ";
  std::uniform_int_distribution<int> byte(0, 255);
  for (int fmt : {34, 35}) {
    const int kf = kfmt_of(fmt);
    const KFmtInfo info = kfmt_info(kf);
    for (int64_t rows : {32, 45}) {
      const int64_t cols = 768;
      const size_t row_bytes = static_cast<size_t>(cols / info.block * info.bytes);
      std::vector<uint8_t> w(row_bytes * static_cast<size_t>(rows));
      for (auto& b : w) b = static_cast<uint8_t>(byte(g_rng));
      for (size_t b = 0; b < w.size(); b += static_cast<size_t>(info.bytes)) {
        if (fmt == 35) {
          for (int j = 0; j < 64; j++) w[b + j] &= static_cast<uint8_t>(~((w[b + j] & (w[b + j] >> 1) & 0x55) << 1));
        }
        const uint16_t h = f32_to_f16(uniform(1, 0.05f)[0]);
        std::memcpy(&w[b + static_cast<size_t>(info.bytes) - 2], &h, 2);
      }
      check(repack_accepts(fmt, w.data(), rows, cols), p + "ternary codes rejected");
      std::vector<uint8_t> packed(repack_bytes(fmt, rows, cols));
      repack_rows(fmt, w.data(), rows, cols, packed.data());
      // tokens 3 and 4: quants of all -127 / mostly -8, whose lanes may not merge groups 5..10
      // into one int8 chunk (ternary_lut.h), so both kernel paths run; token 5: an all-zero block,
      // a block whose largest magnitude occurs as -5 before +5 (the first one sets the scale) and
      // a block holding a NaN (the scalar quantizer's path)
      const int64_t n = 6;
      auto x = uniform(static_cast<size_t>(n * cols), 4.0f);
      for (int64_t e = 0; e < cols; e++) {
        x[static_cast<size_t>(3 * cols + e)] = 1.0f;
        x[static_cast<size_t>(4 * cols + e)] = e % 32 == 0 ? 127.0f : 7.94f;
        if (e < kQKK) x[static_cast<size_t>(5 * cols + e)] = 0.0f;
      }
      x[static_cast<size_t>(5 * cols + kQKK + 3)] = -5.0f;
      x[static_cast<size_t>(5 * cols + kQKK + 7)] = 5.0f;
      x[static_cast<size_t>(5 * cols + 2 * kQKK + 9)] = NAN;
      const size_t xs = tl_act_bytes(cols);
      std::vector<uint8_t> tab_ref(xs * n + 64), tab(xs * n + 64);
      uint8_t* tr = tab_ref.data() + (64 - reinterpret_cast<uintptr_t>(tab_ref.data()) % 64) % 64;
      uint8_t* tk = tab.data() + (64 - reinterpret_cast<uintptr_t>(tab.data()) % 64) % 64;
      for (int64_t t = 0; t < n; t++) {
        ref.conv_tl(x.data() + t * cols, tr + xs * static_cast<size_t>(t), cols);
        k.conv_tl(x.data() + t * cols, tk + xs * static_cast<size_t>(t), cols);
      }
      check(std::memcmp(tr, tk, xs * n) == 0, p + "tables differ");
      int merged[2] = {0, 0};
      for (int64_t t = 0; t < n; t++) {
        for (int64_t b = 0; b < cols / kQKK; b++) {
          for (int l = 0; l < kTlLanes; l++) {
            merged[tr[xs * static_cast<size_t>(t) + tl_act_tables_off(cols) + static_cast<size_t>(b) * kTlActBlockBytes +
                      kTlCorrBytes + kTlTableBytes * static_cast<size_t>(kTlLaneGroups * l) + kTlMergeFlag] != 0]++;
          }
        }
      }
      check(merged[0] > 0 && merged[1] > 0, p + "merge flag not exercised both ways");
      std::vector<BlockQ8K> q(static_cast<size_t>(n * cols / kQKK));
      for (int64_t t = 0; t < n; t++) ref.conv_q8_k(x.data() + t * cols, q.data() + t * cols / kQKK, cols);
      std::vector<float> want(static_cast<size_t>(n * rows)), got(static_cast<size_t>(n * rows), NAN);
      for (int64_t t = 0; t < n; t++) {
        for (int64_t r = 0; r < rows; r++) {
          ref.dot[kf](cols, w.data() + row_bytes * static_cast<size_t>(r), q.data() + t * cols / kQKK, 0, 1,
                      &want[static_cast<size_t>(t * rows + r)]);
        }
      }
      const size_t tile_bytes = static_cast<size_t>(cols / kQKK) * kTlBlockBytes;
      for (int64_t g = 0; g * kTlRows < rows; g++) {
        const int valid = static_cast<int>(std::min<int64_t>(kTlRows, rows - g * kTlRows));
        k.gemm_tl(cols, packed.data() + tile_bytes * static_cast<size_t>(g), tk, xs, n, got.data() + g * kTlRows,
                  static_cast<size_t>(rows), valid);
      }
      check(same_bits(got.data(), want.data(), got.size() * 4),
            p + "fmt " + std::to_string(fmt) + " rows " + std::to_string(rows) + " differs from the scalar dot");
    }
  }
  std::vector<uint8_t> bad(66, 0);
  bad[3] = 0x30;  // one code 3
  check(!repack_accepts(35, bad.data(), 1, 256), p + "code 3 accepted");
}

}  // namespace

// dx (+)= dy·W through a frozen weight (train_kernels.h gemm_frozen), file and repacked layouts,
// against W decoded by get_rows and a double-precision product; column blocks split in two
// halves like two threads would.
void test_gemm_frozen(Isa isa) {
  Engine ref(1, Isa::Scalar);
  const TrainKernels* tk = train_kernels_for(isa);
  const std::string p = std::string(isa_name(isa)) + ": ";
  for (int fmt : {kF32, kF16, kBF16, kQ8_0, kQ4_0}) {
    const bool block = fmt == kQ8_0 || fmt == kQ4_0;
    for (int64_t rows : {3, 75}) {
      for (int64_t cols : {int64_t{32}, int64_t{96}, block ? int64_t{160} : int64_t{70}}) {
        const auto w = make_weights(fmt, rows, cols);
        std::vector<int32_t> ids(static_cast<size_t>(rows));
        for (int64_t r = 0; r < rows; r++) ids[static_cast<size_t>(r)] = static_cast<int32_t>(r);
        std::vector<float> wd(static_cast<size_t>(rows * cols));
        ref.get_rows(wd.data(), fmt, w.data(), rows, cols, ids.data(), rows);
        std::vector<uint8_t> packed(w.size());
        if (block) repack_rows(fmt, w.data(), rows, cols, packed.data());
        for (bool use_packed : {false, true}) {
          if (use_packed && !block) continue;
          for (int64_t n : {1, 5}) {
            const auto dy = uniform(static_cast<size_t>(n * rows), 2.0f);
            const auto dx0 = uniform(static_cast<size_t>(n * cols), 1.0f);
            for (bool acc : {false, true}) {
              std::vector<float> want(dx0.size());
              for (int64_t i = 0; i < n; i++) {
                for (int64_t c = 0; c < cols; c++) {
                  double s = acc ? dx0[static_cast<size_t>(i * cols + c)] : 0.0;
                  for (int64_t r = 0; r < rows; r++)
                    s += static_cast<double>(dy[static_cast<size_t>(i * rows + r)]) * wd[static_cast<size_t>(r * cols + c)];
                  want[static_cast<size_t>(i * cols + c)] = static_cast<float>(s);
                }
              }
              std::vector<float> got = dx0;
              FrozenGemmArgs g{};
              g.m = n;
              g.a = dy.data();
              g.a_rs = rows;
              g.w = FrozenWeight{fmt, use_packed, use_packed ? packed.data() : w.data(), rows, cols};
              g.c = got.data();
              g.accumulate = acc;
              std::vector<float> panel(256 * 16);
              const int64_t blocks = (cols + 15) / 16, half = blocks / 2;
              tk->gemm_frozen(g, 0, half, panel.data());
              tk->gemm_frozen(g, half, blocks, panel.data());
              check_close(got, want, 1e-5,
                          p + "gemm_frozen " + fmt_name(fmt) + (use_packed ? " packed" : "") + " rows=" +
                              std::to_string(rows) + " cols=" + std::to_string(cols) + " n=" + std::to_string(n));
            }
          }
        }
      }
    }
  }
}

// Fused steps (fused.cpp): each equals, bit for bit, the unfused ops it replaces.
void test_fused(Isa isa) {
  Engine e(2, isa);
  const std::string p = std::string(isa_name(isa)) + " fused: ";
  const int64_t cols = 512, rows = 75, n = 37;  // n * cols crosses the per-row parallel threshold
  const auto x = uniform(static_cast<size_t>(n * cols), 2.0f);
  const auto nw = uniform(static_cast<size_t>(cols), 1.5f);
  std::uniform_int_distribution<int> byte(0, 255);
  for (int fmt : {int{kQ8_0}, int{kQ4_0}, 12 /* Q4_K */, 6 /* Q5_0 */}) {
    std::vector<uint8_t> w;
    if (fmt == kQ8_0 || fmt == kQ4_0) {
      w = make_weights(fmt, rows, cols);
    } else {
      w.resize(format_row_bytes(fmt, cols) * static_cast<size_t>(rows));
      const size_t bs = fmt == 12 ? 144 : 22;
      for (size_t b = 0; b < w.size(); b += bs) {
        for (size_t j = 0; j < bs; j++) w[b + j] = static_cast<uint8_t>(byte(g_rng));
        for (size_t o : {size_t{0}, size_t{2}}) {
          if (fmt != 12 && o == 2) continue;
          const uint16_t d = f32_to_f16(std::uniform_real_distribution<float>(-0.02f, 0.02f)(g_rng));
          std::memcpy(w.data() + b + o, &d, 2);
        }
      }
    }
    const std::string f = p + "type " + std::to_string(fmt) + " ";
    const int layout = e.act_layout(fmt);
    check(layout >= 0, f + "has no activation layout");
    ScratchBuffer act;
    uint8_t* a = act.reserve(e.act_row_bytes(layout, cols) * static_cast<size_t>(n));

    std::vector<float> xb(x.size()), want(static_cast<size_t>(n * rows)), got(want.size()), y(x.size());
    e.rms_norm(xb.data(), x.data(), nw.data(), n, cols, 1e-5f);
    e.matmul(want.data(), fmt, w.data(), rows, cols, xb.data(), n);
    e.rms_norm_quantize(a, layout, y.data(), x.data(), nw.data(), n, cols, 1e-5f);
    check(same_bits(y.data(), xb.data(), y.size() * 4), f + "rms_norm_quantize float output differs");
    e.matmul_quantized(got.data(), fmt, w.data(), false, rows, cols, a, n);
    check(same_bits(got.data(), want.data(), got.size() * 4), f + "rms_norm_quantize + matmul differs");
    e.rms_norm_quantize(a, layout, nullptr, x.data(), nw.data(), n, cols, 1e-5f);
    std::fill(got.begin(), got.end(), 0.0f);
    e.matmul_quantized(got.data(), fmt, w.data(), false, rows, cols, a, n);
    check(same_bits(got.data(), want.data(), got.size() * 4), f + "rms_norm_quantize (no float) + matmul differs");

    if (repack_supported(fmt)) {
      std::vector<uint8_t> wp(w.size());
      repack_rows(fmt, w.data(), rows, cols, wp.data());
      e.matmul_packed(want.data(), fmt, wp.data(), rows, cols, xb.data(), n);
      e.matmul_quantized(got.data(), fmt, wp.data(), true, rows, cols, a, n);
      check(same_bits(got.data(), want.data(), got.size() * 4), f + "packed matmul_quantized differs");
    }

    const auto g = uniform(x.size(), 4.0f);
    const auto u = uniform(x.size(), 2.0f);
    std::vector<float> h(x.size());
    e.swiglu(h.data(), g.data(), u.data(), n * cols);
    e.matmul(want.data(), fmt, w.data(), rows, cols, h.data(), n);
    e.swiglu_quantize(a, layout, g.data(), u.data(), n, cols);
    e.matmul_quantized(got.data(), fmt, w.data(), false, rows, cols, a, n);
    check(same_bits(got.data(), want.data(), got.size() * 4), f + "swiglu_quantize + matmul differs");
  }

  // RoPE + KV-cache write, F16 and F32 caches, normal and NeoX, partial rotation, shuffled slots.
  for (bool f16 : {true, false}) {
    for (bool neox : {false, true}) {
      RopeArgs ra{};
      ra.n_heads = 6;
      ra.head_dim = 38;
      ra.n_dims = neox ? 38 : 34;
      ra.freq_base = 10000.0 + static_cast<double>(byte(g_rng)) * 1000.0;
      ra.freq_scale = 1.0;
      ra.neox = neox;
      const int64_t nkv = 2, kv_row = nkv * ra.head_dim, tokens = 41, cache_rows = 50;
      auto q1 = uniform(static_cast<size_t>(tokens * ra.n_heads * ra.head_dim), 3.0f);
      auto k1 = uniform(static_cast<size_t>(tokens * kv_row), 3.0f);
      const auto v = uniform(k1.size(), 3.0f);
      auto q2 = q1;
      auto k2 = k1;
      std::vector<int32_t> pos(static_cast<size_t>(tokens)), slots(pos.size());
      for (int64_t t = 0; t < tokens; t++) {
        pos[static_cast<size_t>(t)] = static_cast<int32_t>(byte(g_rng) * 16);
        slots[static_cast<size_t>(t)] = static_cast<int32_t>((t * 7) % cache_rows);
      }
      const size_t cache_len = static_cast<size_t>(cache_rows * kv_row);
      std::vector<uint16_t> kh1(cache_len), vh1(cache_len), kh2(cache_len), vh2(cache_len);
      std::vector<float> kf1(cache_len), vf1(cache_len), kf2(cache_len), vf2(cache_len);
      RopeArgs ka = ra;
      ka.n_heads = nkv;
      e.rope(q1.data(), tokens, pos.data(), ra);
      e.rope(k1.data(), tokens, pos.data(), ka);
      for (int64_t t = 0; t < tokens; t++) {
        const size_t at = static_cast<size_t>(slots[static_cast<size_t>(t)] * kv_row);
        if (f16) {
          e.to_f16(kh1.data() + at, k1.data() + t * kv_row, kv_row);
          e.to_f16(vh1.data() + at, v.data() + t * kv_row, kv_row);
        } else {
          std::memcpy(kf1.data() + at, k1.data() + t * kv_row, static_cast<size_t>(kv_row) * 4);
          std::memcpy(vf1.data() + at, v.data() + t * kv_row, static_cast<size_t>(kv_row) * 4);
        }
      }
      e.rope_store_kv(q2.data(), k2.data(), v.data(), tokens, pos.data(), ra, nkv,
                      f16 ? static_cast<void*>(kh2.data()) : static_cast<void*>(kf2.data()),
                      f16 ? static_cast<void*>(vh2.data()) : static_cast<void*>(vf2.data()), f16, slots.data());
      const std::string r = p + (f16 ? "f16 " : "f32 ") + (neox ? "neox " : "normal ") + "rope_store_kv: ";
      check(same_bits(q1.data(), q2.data(), q1.size() * 4), r + "q differs");
      check(same_bits(k1.data(), k2.data(), k1.size() * 4), r + "k differs");
      check(f16 ? same_bits(kh1.data(), kh2.data(), cache_len * 2) && same_bits(vh1.data(), vh2.data(), cache_len * 2)
                : same_bits(kf1.data(), kf2.data(), cache_len * 4) && same_bits(vf1.data(), vf2.data(), cache_len * 4),
            r + "cache differs");
    }
  }
}

int main(int argc, char** argv) {
  const uint64_t seed = argc > 1 ? std::stoull(argv[1]) : static_cast<uint64_t>(std::random_device{}());
  g_rng.seed(seed);
  std::printf("native_test seed %llu\n", static_cast<unsigned long long>(seed));
  std::string names;
  for (Isa isa : available_isas()) names += std::string(" ") + isa_name(isa);
  std::printf("available ISAs:%s\n", names.c_str());
  for (Isa isa : available_isas()) {
    std::printf("testing %s against scalar\n", isa_name(isa));
    test_variant(isa);
    test_packed_and_f16(isa);
    test_gemm_frozen(isa);
    test_kquants(isa);
    test_fused(isa);
    test_ternary_lut(isa);
  }
  std::printf("testing thread pool\n");
  test_thread_pool();
  test_thread_counts();
  test_errors();
  std::printf("%d checks, %d failures (seed %llu)\n", g_checks, g_failures, static_cast<unsigned long long>(seed));
  return g_failures == 0 ? 0 : 1;
}
