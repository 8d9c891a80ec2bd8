// TrainEngine(threads, isa): the training kernels (train_kernels.h) over a private thread pool.
//   gemm(c, a, aRs, aCs, b, bRs, bCs, m, n, k, accumulate)
//   attentionForward(out, probs, q, k, v, batch, seq, nHeads, nKvHeads, headDim, scale)
//   attentionBackward(dq, dk, dv, q, k, v, probs, dout, batch, seq, nHeads, nKvHeads, headDim, scale)
//   linearFrozen(y, x, type, w, packed, rows, cols, n)          y = x·Wᵀ, W frozen in its format
//   linearFrozenBackwardInput(dx, dy, type, w, packed, rows, cols, n, accumulate)   dx (+)= dy·W
//   getRowsFrozen(y, type, table, rows, cols, ids)              embedding lookup in the table's format
// The kernels run on the pool of an inference Engine (engine.h), whose matmul is the forward of a
// frozen weight: the same code path, activation rounding included, as generation.
// TypeScript validates shapes first (packages/kernels-native/src/train.ts); bounds are re-checked
// here so a bad call throws instead of crashing.
#include "train_addon.h"

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "dispatch.h"
#include "engine.h"
#include "repack.h"
#include "thread_pool.h"
#include "train_kernels.h"

namespace ryz {
namespace {

struct F32View {
  float* data;
  double length;
};

F32View f32(const Napi::CallbackInfo& info, size_t i, const char* what) {
  Napi::Env env = info.Env();
  if (!info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    throw Napi::TypeError::New(env, std::string(what) + " must be a Float32Array");
  }
  auto ta = info[i].As<Napi::Float32Array>();
  return F32View{ta.Data(), static_cast<double>(ta.ElementLength())};
}

struct I32View {
  int32_t* data;
  double length;
};

I32View i32(const Napi::CallbackInfo& info, size_t i, const char* what) {
  Napi::Env env = info.Env();
  if (!info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    throw Napi::TypeError::New(env, std::string(what) + " must be an Int32Array");
  }
  auto ta = info[i].As<Napi::Int32Array>();
  return I32View{ta.Data(), static_cast<double>(ta.ElementLength())};
}

double number(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (!info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a number");
  return info[i].As<Napi::Number>().DoubleValue();
}

/** [begin, end) of thread tid's share of `total` items. */
inline void share(int64_t total, int tid, int nth, int64_t* b, int64_t* e) {
  const int64_t per = (total + nth - 1) / nth;
  *b = std::min(total, per * tid);
  *e = std::min(total, *b + per);
}

int64_t integer(const Napi::CallbackInfo& info, size_t i, const char* what, int64_t min = 0) {
  if (!info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a number");
  const double d = info[i].As<Napi::Number>().DoubleValue();
  if (!(d >= static_cast<double>(min)) || d > 9007199254740991.0 || d != static_cast<double>(static_cast<int64_t>(d))) {
    throw Napi::RangeError::New(info.Env(), std::string(what) + " must be an integer >= " + std::to_string(min));
  }
  return static_cast<int64_t>(d);
}

void need(const Napi::Env& env, double have, double want, const char* what) {
  if (have < want) throw Napi::RangeError::New(env, std::string(what) + " is too short");
}

class TrainEngineWrap : public Napi::ObjectWrap<TrainEngineWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "TrainEngine",
                       {
                           InstanceMethod<&TrainEngineWrap::Gemm>("gemm"),
                           InstanceMethod<&TrainEngineWrap::AttnFwd>("attentionForward"),
                           InstanceMethod<&TrainEngineWrap::AttnBwd>("attentionBackward"),
                           InstanceMethod<&TrainEngineWrap::RmsNorm>("rmsNorm"),
                           InstanceMethod<&TrainEngineWrap::RmsNormBwd>("rmsNormBackward"),
                           InstanceMethod<&TrainEngineWrap::Rope>("rope"),
                           InstanceMethod<&TrainEngineWrap::Swiglu>("swiglu"),
                           InstanceMethod<&TrainEngineWrap::SwigluBwd>("swigluBackward"),
                           InstanceMethod<&TrainEngineWrap::CrossEntropy>("crossEntropy"),
                           InstanceMethod<&TrainEngineWrap::EmbeddingBwd>("embeddingBackward"),
                           InstanceMethod<&TrainEngineWrap::LinearFrozen>("linearFrozen"),
                           InstanceMethod<&TrainEngineWrap::LinearFrozenBwd>("linearFrozenBackwardInput"),
                           InstanceMethod<&TrainEngineWrap::GetRowsFrozen>("getRowsFrozen"),
                           InstanceMethod<&TrainEngineWrap::Dispose>("dispose"),
                       });
  }

  explicit TrainEngineWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TrainEngineWrap>(info) {
    Napi::Env env = info.Env();
    const int64_t threads = integer(info, 0, "threads", 1);
    if (threads > 1024) throw Napi::RangeError::New(env, "threads must be <= 1024");
    if (!info[1].IsString()) throw Napi::TypeError::New(env, "isa must be a string");
    const std::string name = info[1].As<Napi::String>().Utf8Value();
    Isa isa;
    if (!parse_isa(name, &isa)) throw Napi::Error::New(env, "unknown ISA '" + name + "'");
    if (!cpu_supports(isa)) throw Napi::Error::New(env, "ISA '" + name + "' is not supported by this CPU");
    kernels_ = train_kernels_for(isa);
    engine_ = std::make_unique<Engine>(static_cast<int>(threads), isa);
    scratch_.resize(static_cast<size_t>(threads));
  }

 private:
  ThreadPool& pool(const Napi::Env& env) {
    if (!engine_) throw Napi::Error::New(env, "TrainEngine has been disposed");
    return engine_->pool();
  }

  float* scratch(int tid, size_t floats) {
    auto& s = scratch_[static_cast<size_t>(tid)];
    if (s.size() < floats) s.resize(floats);
    return s.data();
  }

  void Gemm(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    ThreadPool& tp = pool(env);
    GemmArgs g{};
    auto c = f32(info, 0, "c");
    auto a = f32(info, 1, "a");
    g.a_rs = integer(info, 2, "aRs");
    g.a_cs = integer(info, 3, "aCs");
    auto b = f32(info, 4, "b");
    g.b_rs = integer(info, 5, "bRs");
    g.b_cs = integer(info, 6, "bCs");
    g.m = integer(info, 7, "m");
    g.n = integer(info, 8, "n");
    g.k = integer(info, 9, "k");
    g.accumulate = info[10].ToBoolean().Value();
    g.ldc = g.n;
    if (g.m == 0 || g.n == 0) return;
    if (g.k > 0) {
      need(env, a.length, static_cast<double>(g.m - 1) * g.a_rs + static_cast<double>(g.k - 1) * g.a_cs + 1, "a");
      need(env, b.length, static_cast<double>(g.k - 1) * g.b_rs + static_cast<double>(g.n - 1) * g.b_cs + 1, "b");
    }
    need(env, c.length, static_cast<double>(g.m) * g.n, "c");
    g.a = a.data;
    g.b = b.data;
    g.c = c.data;
    const int64_t blocks = (g.n + 15) / 16;
    const TrainKernels* kern = kernels_;
    auto fn = [&](int tid, int nth) {
      const int64_t per = (blocks + nth - 1) / nth;
      const int64_t j0 = std::min(blocks, per * tid), j1 = std::min(blocks, j0 + per);
      if (j0 < j1) kern->gemm(g, j0, j1, scratch(tid, 256 * 16));
    };
    tp.run_fn(fn);
  }

  static AttnArgs attn_args(const Napi::CallbackInfo& info, size_t at) {
    AttnArgs a{};
    a.batch = integer(info, at, "batch", 1);
    a.seq = integer(info, at + 1, "seq", 1);
    a.n_heads = integer(info, at + 2, "nHeads", 1);
    a.n_kv_heads = integer(info, at + 3, "nKvHeads", 1);
    a.head_dim = integer(info, at + 4, "headDim", 1);
    if (!info[at + 5].IsNumber()) throw Napi::TypeError::New(info.Env(), "scale must be a number");
    a.scale = info[at + 5].As<Napi::Number>().FloatValue();
    if (a.n_heads % a.n_kv_heads != 0) throw Napi::RangeError::New(info.Env(), "nHeads must be a multiple of nKvHeads");
    return a;
  }

  void AttnFwd(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    ThreadPool& tp = pool(env);
    auto out = f32(info, 0, "out");
    auto probs = f32(info, 1, "probs");
    auto q = f32(info, 2, "q");
    auto k = f32(info, 3, "k");
    auto v = f32(info, 4, "v");
    const AttnArgs a = attn_args(info, 5);
    const double tokens = static_cast<double>(a.batch) * a.seq;
    need(env, q.length, tokens * a.n_heads * a.head_dim, "q");
    need(env, out.length, tokens * a.n_heads * a.head_dim, "out");
    need(env, k.length, tokens * a.n_kv_heads * a.head_dim, "k");
    need(env, v.length, tokens * a.n_kv_heads * a.head_dim, "v");
    need(env, probs.length, tokens * a.n_heads * a.seq, "probs");
    const int64_t pairs = a.batch * a.n_kv_heads;
    const TrainKernels* kern = kernels_;
    auto fn = [&](int tid, int nth) {
      const int64_t per = (pairs + nth - 1) / nth;
      const int64_t p0 = std::min(pairs, per * tid), p1 = std::min(pairs, p0 + per);
      if (p0 < p1) kern->attn_fwd(a, q.data, k.data, v.data, out.data, probs.data, p0, p1);
    };
    tp.run_fn(fn);
  }

  void AttnBwd(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    ThreadPool& tp = pool(env);
    auto dq = f32(info, 0, "dq");
    auto dk = f32(info, 1, "dk");
    auto dv = f32(info, 2, "dv");
    auto q = f32(info, 3, "q");
    auto k = f32(info, 4, "k");
    auto v = f32(info, 5, "v");
    auto probs = f32(info, 6, "probs");
    auto dout = f32(info, 7, "dout");
    const AttnArgs a = attn_args(info, 8);
    const double tokens = static_cast<double>(a.batch) * a.seq;
    const double qn = tokens * a.n_heads * a.head_dim, kn = tokens * a.n_kv_heads * a.head_dim;
    need(env, q.length, qn, "q");
    need(env, dq.length, qn, "dq");
    need(env, dout.length, qn, "dout");
    need(env, k.length, kn, "k");
    need(env, v.length, kn, "v");
    need(env, dk.length, kn, "dk");
    need(env, dv.length, kn, "dv");
    need(env, probs.length, tokens * a.n_heads * a.seq, "probs");
    const int64_t pairs = a.batch * a.n_kv_heads;
    const TrainKernels* kern = kernels_;
    auto fn = [&](int tid, int nth) {
      const int64_t per = (pairs + nth - 1) / nth;
      const int64_t p0 = std::min(pairs, per * tid), p1 = std::min(pairs, p0 + per);
      if (p0 < p1) {
        float* s = scratch(tid, static_cast<size_t>(std::max<int64_t>(a.seq, 256 * 16)));
        kern->attn_bwd(a, q.data, k.data, v.data, probs.data, dout.data, dq.data, dk.data, dv.data, p0, p1, s);
      }
    };
    tp.run_fn(fn);
  }

  // rmsNorm(y, x, w, n, dim, eps)
  void RmsNorm(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    ThreadPool& tp = pool(env);
    auto y = f32(info, 0, "y");
    auto x = f32(info, 1, "x");
    auto w = f32(info, 2, "w");
    const int64_t n = integer(info, 3, "n");
    const int64_t dim = integer(info, 4, "dim", 1);
    const float eps = static_cast<float>(number(info, 5, "eps"));
    need(env, y.length, static_cast<double>(n) * dim, "y");
    need(env, x.length, static_cast<double>(n) * dim, "x");
    need(env, w.length, static_cast<double>(dim), "w");
    const TrainKernels* k = kernels_;
    auto fn = [&](int tid, int nth) {
      int64_t b, e;
      share(n, tid, nth, &b, &e);
      if (b < e) k->rms_norm(y.data, x.data, w.data, dim, eps, b, e);
    };
    tp.run_fn(fn);
  }

  // rmsNormBackward(dx, dw, dy, x, w, n, dim, eps): dx += ..., dw += ...
  void RmsNormBwd(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    ThreadPool& tp = pool(env);
    auto dx = f32(info, 0, "dx");
    auto dw = f32(info, 1, "dw");
    auto dy = f32(info, 2, "dy");
    auto x = f32(info, 3, "x");
    auto w = f32(info, 4, "w");
    const int64_t n = integer(info, 5, "n");
    const int64_t dim = integer(info, 6, "dim", 1);
    const float eps = static_cast<float>(number(info, 7, "eps"));
    const double nd = static_cast<double>(n) * dim;
    need(env, dx.length, nd, "dx");
    need(env, dy.length, nd, "dy");
    need(env, x.length, nd, "x");
    need(env, w.length, static_cast<double>(dim), "w");
    need(env, dw.length, static_cast<double>(dim), "dw");
    const int nth_all = tp.size();
    partials_.assign(static_cast<size_t>(nth_all) * static_cast<size_t>(dim), 0.0f);
    const TrainKernels* k = kernels_;
    auto fn = [&](int tid, int nth) {
      int64_t b, e;
      share(n, tid, nth, &b, &e);
      if (b < e) k->rms_norm_bwd(dx.data, partials_.data() + tid * dim, dy.data, x.data, w.data, dim, eps, b, e);
    };
    tp.run_fn(fn);
    for (int t = 0; t < nth_all; t++) {
      for (int64_t i = 0; i < dim; i++) dw.data[i] += partials_[static_cast<size_t>(t * dim + i)];
    }
  }

  // rope(x, n, seq, nHeads, headDim, freqBase, sign)
  void Rope(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    ThreadPool& tp = pool(env);
    auto x = f32(info, 0, "x");
    const int64_t n = integer(info, 1, "n");
    const int64_t seq = integer(info, 2, "seq", 1);
    const int64_t heads = integer(info, 3, "nHeads", 1);
    const int64_t hd = integer(info, 4, "headDim", 2);
    const double base = number(info, 5, "freqBase");
    const int sign = number(info, 6, "sign") < 0 ? -1 : 1;
    if (hd % 2 != 0) throw Napi::RangeError::New(env, "headDim must be even");
    need(env, x.length, static_cast<double>(n) * heads * hd, "x");
    const TrainKernels* k = kernels_;
    auto fn = [&](int tid, int nth) {
      int64_t b, e;
      share(n, tid, nth, &b, &e);
      if (b < e) k->rope(x.data, seq, heads, hd, base, sign, b, e);
    };
    tp.run_fn(fn);
  }

  // swiglu(out, gate, up, len)
  void Swiglu(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    ThreadPool& tp = pool(env);
    auto out = f32(info, 0, "out");
    auto gate = f32(info, 1, "gate");
    auto up = f32(info, 2, "up");
    const int64_t len = integer(info, 3, "len");
    need(env, out.length, static_cast<double>(len), "out");
    need(env, gate.length, static_cast<double>(len), "gate");
    need(env, up.length, static_cast<double>(len), "up");
    const TrainKernels* k = kernels_;
    auto fn = [&](int tid, int nth) {
      int64_t b, e;
      share(len, tid, nth, &b, &e);
      if (b < e) k->swiglu(out.data, gate.data, up.data, b, e);
    };
    tp.run_fn(fn);
  }

  // swigluBackward(dgate, dup, dout, gate, up, len)
  void SwigluBwd(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    ThreadPool& tp = pool(env);
    auto dgate = f32(info, 0, "dgate");
    auto dup = f32(info, 1, "dup");
    auto dout = f32(info, 2, "dout");
    auto gate = f32(info, 3, "gate");
    auto up = f32(info, 4, "up");
    const int64_t len = integer(info, 5, "len");
    for (auto* v : {&dgate, &dup, &dout, &gate, &up}) need(env, v->length, static_cast<double>(len), "swiglu buffer");
    const TrainKernels* k = kernels_;
    auto fn = [&](int tid, int nth) {
      int64_t b, e;
      share(len, tid, nth, &b, &e);
      if (b < e) k->swiglu_bwd(dgate.data, dup.data, dout.data, gate.data, up.data, b, e);
    };
    tp.run_fn(fn);
  }

  // crossEntropy(logits, targets, n, vocab, dlogits | null, scale) -> summed loss
  Napi::Value CrossEntropy(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    ThreadPool& tp = pool(env);
    auto logits = f32(info, 0, "logits");
    auto targets = i32(info, 1, "targets");
    const int64_t n = integer(info, 2, "n");
    const int64_t vocab = integer(info, 3, "vocab", 1);
    float* dl = nullptr;
    if (!info[4].IsNull() && !info[4].IsUndefined()) {
      auto d = f32(info, 4, "dlogits");
      need(env, d.length, static_cast<double>(n) * vocab, "dlogits");
      dl = d.data;
    }
    const float scale = static_cast<float>(number(info, 5, "scale"));
    need(env, logits.length, static_cast<double>(n) * vocab, "logits");
    need(env, targets.length, static_cast<double>(n), "targets");
    for (int64_t r = 0; r < n; r++) {
      if (targets.data[r] >= vocab) throw Napi::RangeError::New(env, "target outside the vocabulary");
    }
    std::vector<double> part(static_cast<size_t>(tp.size()), 0.0);
    const TrainKernels* k = kernels_;
    auto fn = [&](int tid, int nth) {
      int64_t b, e;
      share(n, tid, nth, &b, &e);
      if (b < e) part[static_cast<size_t>(tid)] = k->cross_entropy(logits.data, targets.data, vocab, dl, scale, b, e);
    };
    tp.run_fn(fn);
    double total = 0.0;
    for (double p : part) total += p;
    return Napi::Number::New(env, total);
  }

  // embeddingBackward(dtable, dy, ids, n, dim): dtable[ids[r]] += dy[r]
  void EmbeddingBwd(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    ThreadPool& tp = pool(env);
    auto dt = f32(info, 0, "dtable");
    auto dy = f32(info, 1, "dy");
    auto ids = i32(info, 2, "ids");
    const int64_t n = integer(info, 3, "n");
    const int64_t dim = integer(info, 4, "dim", 1);
    need(env, dy.length, static_cast<double>(n) * dim, "dy");
    need(env, ids.length, static_cast<double>(n), "ids");
    const double rows = dt.length / static_cast<double>(dim);
    for (int64_t r = 0; r < n; r++) {
      if (ids.data[r] < 0 || ids.data[r] >= rows) throw Napi::RangeError::New(env, "id outside the table");
    }
    const TrainKernels* k = kernels_;
    auto fn = [&](int tid, int nth) {
      int64_t b, e;
      share(dim, tid, nth, &b, &e);
      if (b < e) k->embedding_bwd(dt.data, dy.data, ids.data, n, dim, b, e);
    };
    tp.run_fn(fn);
  }

  // Reads (type, w, packed, rows, cols) at `at` and checks the bytes cover the matrix.
  FrozenWeight frozen(const Napi::CallbackInfo& info, size_t at, const char* op) {
    Napi::Env env = info.Env();
    FrozenWeight w{};
    w.fmt = static_cast<int>(integer(info, at, "type"));
    if (!info[at + 1].IsTypedArray() || info[at + 1].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
      throw Napi::TypeError::New(env, std::string(op) + ": w must be a Uint8Array");
    }
    auto bytes = info[at + 1].As<Napi::Uint8Array>();
    w.data = bytes.Data();
    w.packed = info[at + 2].ToBoolean().Value();
    w.rows = integer(info, at + 3, "rows");
    w.cols = integer(info, at + 4, "cols");
    if (!format_supported(w.fmt)) {
      throw Napi::Error::New(env, std::string(op) + ": unsupported tensor type id " + std::to_string(w.fmt));
    }
    const bool block = w.fmt == kQ4_0 || w.fmt == kQ8_0;
    if (block && w.cols % kQK != 0) {
      throw Napi::RangeError::New(env, std::string(op) + ": cols must be a multiple of 32 for block formats");
    }
    if (w.packed && !(repack_supported(w.fmt) && block)) {  // the training kernels read Q4_0 / Q8_0 packings only
      throw Napi::Error::New(env, std::string(op) + ": no repacked layout for tensor type id " + std::to_string(w.fmt));
    }
    need(env, static_cast<double>(bytes.ByteLength()),
         static_cast<double>(format_row_bytes(w.fmt, w.cols)) * static_cast<double>(w.rows), "w");
    return w;
  }

  // linearFrozen(y, x, type, w, packed, rows, cols, n): y[n, rows] = x[n, cols]·Wᵀ
  void LinearFrozen(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    pool(env);
    auto y = f32(info, 0, "y");
    auto x = f32(info, 1, "x");
    const FrozenWeight w = frozen(info, 2, "linearFrozen");
    const int64_t n = integer(info, 7, "n");
    need(env, x.length, static_cast<double>(n) * w.cols, "x");
    need(env, y.length, static_cast<double>(n) * w.rows, "y");
    try {
      if (w.packed) engine_->matmul_packed(y.data, w.fmt, w.data, w.rows, w.cols, x.data, n);
      else engine_->matmul(y.data, w.fmt, w.data, w.rows, w.cols, x.data, n);
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, std::string("linearFrozen: ") + e.what());
    }
  }

  // linearFrozenBackwardInput(dx, dy, type, w, packed, rows, cols, n, accumulate): dx[n, cols] (+)= dy[n, rows]·W
  void LinearFrozenBwd(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    ThreadPool& tp = pool(env);
    auto dx = f32(info, 0, "dx");
    auto dy = f32(info, 1, "dy");
    FrozenGemmArgs g{};
    g.w = frozen(info, 2, "linearFrozenBackwardInput");
    g.m = integer(info, 7, "n");
    g.accumulate = info[8].ToBoolean().Value();
    need(env, dy.length, static_cast<double>(g.m) * g.w.rows, "dy");
    need(env, dx.length, static_cast<double>(g.m) * g.w.cols, "dx");
    if (g.m == 0 || g.w.cols == 0) return;
    g.a = dy.data;
    g.a_rs = g.w.rows;
    g.c = dx.data;
    const int64_t blocks = (g.w.cols + 15) / 16;
    const TrainKernels* kern = kernels_;
    auto fn = [&](int tid, int nth) {
      const int64_t per = (blocks + nth - 1) / nth;
      const int64_t j0 = std::min(blocks, per * tid), j1 = std::min(blocks, j0 + per);
      if (j0 < j1) kern->gemm_frozen(g, j0, j1, scratch(tid, 256 * 16));
    };
    tp.run_fn(fn);
  }

  // getRowsFrozen(y, type, table, rows, cols, ids): y[i] = decode(table[ids[i]]) (file layout)
  void GetRowsFrozen(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    pool(env);
    auto y = f32(info, 0, "y");
    if (!info[2].IsTypedArray() || info[2].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
      throw Napi::TypeError::New(env, "getRowsFrozen: table must be a Uint8Array");
    }
    auto table = info[2].As<Napi::Uint8Array>();
    const int fmt = static_cast<int>(integer(info, 1, "type"));
    const int64_t rows = integer(info, 3, "rows");
    const int64_t cols = integer(info, 4, "cols");
    auto ids = i32(info, 5, "ids");
    if (!format_supported(fmt)) throw Napi::Error::New(env, "getRowsFrozen: unsupported tensor type id " + std::to_string(fmt));
    if ((fmt == kQ4_0 || fmt == kQ8_0) && cols % kQK != 0) {
      throw Napi::RangeError::New(env, "getRowsFrozen: cols must be a multiple of 32 for block formats");
    }
    need(env, static_cast<double>(table.ByteLength()),
         static_cast<double>(format_row_bytes(fmt, cols)) * static_cast<double>(rows), "table");
    const int64_t n = static_cast<int64_t>(ids.length);
    need(env, y.length, static_cast<double>(n) * cols, "y");
    for (int64_t i = 0; i < n; i++) {
      if (ids.data[i] < 0 || ids.data[i] >= rows) throw Napi::RangeError::New(env, "getRowsFrozen: id outside the table");
    }
    try {
      engine_->get_rows(y.data, fmt, table.Data(), rows, cols, ids.data, n);
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, std::string("getRowsFrozen: ") + e.what());
    }
  }

  void Dispose(const Napi::CallbackInfo&) { engine_.reset(); }

  const TrainKernels* kernels_ = nullptr;
  std::unique_ptr<Engine> engine_;
  std::vector<std::vector<float>> scratch_;
  std::vector<float> partials_;
};

}  // namespace

Napi::Function define_train_engine(Napi::Env env) { return TrainEngineWrap::Define(env); }

}  // namespace ryz
