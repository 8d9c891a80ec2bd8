// The Node-API surface: one context-aware addon (Napi::Addon, no static references) exposing
//   NativeEngine(threads, isa)  -> synchronous ops over typed arrays (see src/native.ts)
//   cpuIsas()                   -> ["scalar", "avx2", ...]
//   mapFile(path)               -> Uint8Array over a read-only mmap, unmapped on GC
// TypeScript validates arguments first; this layer re-checks types and lengths so a bad call is
// a JS exception, never a crash.
#include <fcntl.h>
#include <napi.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "dispatch.h"
#include "engine.h"
#include "fused.h"
#include "kquants.h"
#include "train_addon.h"
#include "repack.h"

namespace {

using ryz::Engine;

template <class T>
struct View {
  T* data;
  size_t length;  // elements
};

template <class T>
View<T> typed_arg(const Napi::CallbackInfo& info, size_t i, napi_typedarray_type want, const char* type_name,
                  const char* what) {
  Napi::Env env = info.Env();
  napi_value v = info[i];
  bool is_ta = false;
  napi_is_typedarray(env, v, &is_ta);
  if (!is_ta) throw Napi::TypeError::New(env, std::string(what) + " must be a " + type_name);
  napi_typedarray_type type;
  size_t length = 0;
  void* data = nullptr;
  NAPI_THROW_IF_FAILED(env, napi_get_typedarray_info(env, v, &type, &length, &data, nullptr, nullptr), View<T>{});
  if (type != want) throw Napi::TypeError::New(env, std::string(what) + " must be a " + type_name);
  return View<T>{static_cast<T*>(data), length};
}

View<float> f32_arg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  return typed_arg<float>(info, i, napi_float32_array, "Float32Array", what);
}
View<int32_t> i32_arg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  return typed_arg<int32_t>(info, i, napi_int32_array, "Int32Array", what);
}
View<uint16_t> u16_arg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  return typed_arg<uint16_t>(info, i, napi_uint16_array, "Uint16Array", what);
}

View<uint8_t> u8_arg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  return typed_arg<uint8_t>(info, i, napi_uint8_array, "Uint8Array", what);
}

double num_arg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (!info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a number");
  return info[i].As<Napi::Number>().DoubleValue();
}

int64_t int_arg(const Napi::CallbackInfo& info, size_t i, const char* what, int64_t min = 0) {
  const double d = num_arg(info, i, what);
  if (!(d >= static_cast<double>(min)) || d > 9007199254740991.0 || d != static_cast<double>(static_cast<int64_t>(d))) {
    throw Napi::RangeError::New(info.Env(), std::string(what) + " must be an integer >= " + std::to_string(min));
  }
  return static_cast<int64_t>(d);
}

void need(const Napi::Env& env, size_t have, double want, const char* what) {
  if (static_cast<double>(have) < want) {
    throw Napi::RangeError::New(env, std::string(what) + " is too short: " + std::to_string(have) + " elements, " +
                                         std::to_string(static_cast<uint64_t>(want)) + " needed");
  }
}

/**
 * The arguments attention and attentionF16 share, (out, q, k, v, positions, n, nHeads, nKvHeads,
 * headDim, scale), with every length checked against the shapes; `T` is the KV element type.
 */
template <class T>
struct AttentionArgs {
  View<float> out, q;
  View<T> k, v;
  View<int32_t> pos;
  int64_t n, nh, nkv, hd;
  float scale;
};

template <class T>
AttentionArgs<T> attention_args(const Napi::CallbackInfo& info,
                                View<T> (*kv_arg)(const Napi::CallbackInfo&, size_t, const char*)) {
  Napi::Env env = info.Env();
  AttentionArgs<T> a{f32_arg(info, 0, "out"),
                     f32_arg(info, 1, "q"),
                     kv_arg(info, 2, "k"),
                     kv_arg(info, 3, "v"),
                     i32_arg(info, 4, "positions"),
                     int_arg(info, 5, "n"),
                     int_arg(info, 6, "nHeads", 1),
                     int_arg(info, 7, "nKvHeads", 1),
                     int_arg(info, 8, "headDim", 1),
                     static_cast<float>(num_arg(info, 9, "scale"))};
  need(env, a.pos.length, static_cast<double>(a.n), "positions");
  need(env, a.q.length, static_cast<double>(a.n) * a.nh * a.hd, "q");
  need(env, a.out.length, static_cast<double>(a.n) * a.nh * a.hd, "out");
  int64_t max_pos = -1;
  for (int64_t t = 0; t < a.n; t++) {
    if (a.pos.data[t] < 0) throw Napi::RangeError::New(env, "attention: negative position");
    if (a.pos.data[t] > max_pos) max_pos = a.pos.data[t];
  }
  need(env, a.k.length, static_cast<double>(max_pos + 1) * a.nkv * a.hd, "k");
  need(env, a.v.length, static_cast<double>(max_pos + 1) * a.nkv * a.hd, "v");
  return a;
}

// Row length check of the Q4_1 / Q5_0 / K-quant / ternary formats (block 32 or 256).
void check_kblock(Napi::Env env, const char* op, int type, int64_t cols) {
  const int kf = ryz::kfmt_of(type);
  if (kf >= 0 && cols % ryz::kfmt_info(kf).block != 0) {
    throw Napi::RangeError::New(env, std::string(op) + ": cols must be a multiple of " +
                                         std::to_string(ryz::kfmt_info(kf).block) + " for this format");
  }
}

// Row length check of a packed layout: 32 for Q4_0 / Q8_0, the format's block otherwise.
void check_packed_cols(Napi::Env env, const char* op, int type, int64_t cols) {
  if (cols % ryz::kQK != 0) throw Napi::RangeError::New(env, std::string(op) + ": cols must be a multiple of 32");
  check_kblock(env, op, type, cols);
}

class EngineWrap : public Napi::ObjectWrap<EngineWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeEngine",
                       {
                           InstanceAccessor<&EngineWrap::Isa>("isa"),
                           InstanceAccessor<&EngineWrap::Threads>("threads"),
                           InstanceMethod<&EngineWrap::Matmul>("matmul"),
                           InstanceMethod<&EngineWrap::GetRows>("getRows"),
                           InstanceMethod<&EngineWrap::Quantize>("quantize"),
                           InstanceMethod<&EngineWrap::RmsNorm>("rmsNorm"),
                           InstanceMethod<&EngineWrap::Rope>("rope"),
                           InstanceMethod<&EngineWrap::Softmax>("softmax"),
                           InstanceMethod<&EngineWrap::Argmax>("argmax"),
                           InstanceMethod<&EngineWrap::Swiglu>("swiglu"),
                           InstanceMethod<&EngineWrap::Add>("add"),
                           InstanceMethod<&EngineWrap::Attention>("attention"),
                           InstanceMethod<&EngineWrap::PagedAttention>("pagedAttention"),
                           InstanceMethod<&EngineWrap::MatmulPacked>("matmulPacked"),
                           InstanceMethod<&EngineWrap::AttentionF16>("attentionF16"),
                           InstanceMethod<&EngineWrap::ToF16>("toF16"),
                           InstanceMethod<&EngineWrap::QuantizeKvQ8_0>("quantizeKvQ8_0"),
                           InstanceMethod<&EngineWrap::MemoryBandwidth>("memoryBandwidth"),
                           InstanceMethod<&EngineWrap::ActLayout>("actLayout"),
                           InstanceMethod<&EngineWrap::ActRowBytes>("actRowBytes"),
                           InstanceMethod<&EngineWrap::RmsNormQuantize>("rmsNormQuantize"),
                           InstanceMethod<&EngineWrap::SwigluQuantize>("swigluQuantize"),
                           InstanceMethod<&EngineWrap::MatmulQuantized>("matmulQuantized"),
                           InstanceMethod<&EngineWrap::RopeStoreKV>("ropeStoreKV"),
                           InstanceMethod<&EngineWrap::Dispose>("dispose"),
                       });
  }

  // new NativeEngine(threads: number, isa: string)
  explicit EngineWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EngineWrap>(info) {
    Napi::Env env = info.Env();
    const int64_t threads = int_arg(info, 0, "threads", 1);
    if (threads > 1024) throw Napi::RangeError::New(env, "threads must be <= 1024");
    if (!info[1].IsString()) throw Napi::TypeError::New(env, "isa must be a string");
    const std::string name = info[1].As<Napi::String>().Utf8Value();
    ryz::Isa isa;
    if (!ryz::parse_isa(name, &isa)) throw Napi::Error::New(env, "unknown ISA '" + name + "'");
    if (!ryz::cpu_supports(isa)) throw Napi::Error::New(env, "ISA '" + name + "' is not supported by this CPU");
    engine_ = std::make_unique<Engine>(static_cast<int>(threads), isa);
  }

 private:
  Engine& engine(const Napi::Env& env) {
    if (!engine_) throw Napi::Error::New(env, "NativeBackend has been disposed");
    return *engine_;
  }

  Napi::Value Isa(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), ryz::isa_name(engine(info.Env()).isa()));
  }
  Napi::Value Threads(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), engine(info.Env()).threads());
  }

  // matmul(y, type, w, rows, cols, x, n)
  void Matmul(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& e = engine(env);
    auto y = f32_arg(info, 0, "y");
    const int64_t type = int_arg(info, 1, "type");
    auto w = u8_arg(info, 2, "w");
    const int64_t rows = int_arg(info, 3, "rows");
    const int64_t cols = int_arg(info, 4, "cols");
    auto x = f32_arg(info, 5, "x");
    const int64_t n = int_arg(info, 6, "n");
    if (!ryz::format_supported(static_cast<int>(type))) {
      throw Napi::Error::New(env, "matmul: unsupported tensor type id " + std::to_string(type));
    }
    if ((type == ryz::kQ8_0 || type == ryz::kQ4_0) && cols % ryz::kQK != 0) {
      throw Napi::RangeError::New(env, "matmul: cols must be a multiple of 32 for block formats");
    }
    check_kblock(env, "matmul", static_cast<int>(type), cols);
    need(env, w.length, static_cast<double>(ryz::format_row_bytes(static_cast<int>(type), cols)) * rows, "w");
    need(env, x.length, static_cast<double>(n) * cols, "x");
    need(env, y.length, static_cast<double>(n) * rows, "y");
    e.matmul(y.data, static_cast<int>(type), w.data, rows, cols, x.data, n);
  }

  // matmulPacked(y, type, wp, rows, cols, x, n): wp from repackWeights().
  void MatmulPacked(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& e = engine(env);
    auto y = f32_arg(info, 0, "y");
    const int64_t type = int_arg(info, 1, "type");
    auto w = u8_arg(info, 2, "w");
    const int64_t rows = int_arg(info, 3, "rows");
    const int64_t cols = int_arg(info, 4, "cols");
    auto x = f32_arg(info, 5, "x");
    const int64_t n = int_arg(info, 6, "n");
    if (!ryz::repack_supported(static_cast<int>(type))) {
      throw Napi::Error::New(env, "matmulPacked: no repacked layout for tensor type id " + std::to_string(type));
    }
    check_packed_cols(env, "matmulPacked", static_cast<int>(type), cols);
    need(env, w.length, static_cast<double>(ryz::repack_bytes(static_cast<int>(type), rows, cols)), "w");
    need(env, x.length, static_cast<double>(n) * cols, "x");
    need(env, y.length, static_cast<double>(n) * rows, "y");
    e.matmul_packed(y.data, static_cast<int>(type), w.data, rows, cols, x.data, n);
  }

  // attentionF16(out, q, k, v, positions, n, nHeads, nKvHeads, headDim, scale, f16Accumulate): k, v
  // Uint16Array (f16 bits)
  void AttentionF16(const Napi::CallbackInfo& info) {
    const auto a = attention_args<uint16_t>(info, u16_arg);
    const bool f16_accumulate = info.Length() > 10 && info[10].ToBoolean().Value();
    engine(info.Env()).attention_f16(a.out.data, a.q.data, a.k.data, a.v.data, a.pos.data, a.n, a.nh, a.nkv, a.hd,
                                     a.scale, f16_accumulate);
  }

  // toF16(dst, dstOffset, src, len)
  void ToF16(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& e = engine(env);
    auto dst = u16_arg(info, 0, "dst");
    const int64_t off = int_arg(info, 1, "dstOffset");
    auto src = f32_arg(info, 2, "src");
    const int64_t len = int_arg(info, 3, "len");
    need(env, dst.length, static_cast<double>(off) + static_cast<double>(len), "dst");
    need(env, src.length, static_cast<double>(len), "src");
    e.to_f16(dst.data + off, src.data, len);
  }

  // quantizeKvQ8_0(dst, dstRow, src, rows, rowSize): rows of a Q8_0 KV cache (Uint8Array)
  void QuantizeKvQ8_0(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& e = engine(env);
    auto dst = u8_arg(info, 0, "dst");
    const int64_t row = int_arg(info, 1, "dstRow");
    auto src = f32_arg(info, 2, "src");
    const int64_t rows = int_arg(info, 3, "rows");
    const int64_t row_size = int_arg(info, 4, "rowSize", 1);
    if (row_size % ryz::kQK != 0) throw Napi::RangeError::New(env, "quantizeKvQ8_0: rowSize must be a multiple of 32");
    const double row_bytes = static_cast<double>(ryz::kv_q8_0_row_bytes(row_size));
    need(env, dst.length, (static_cast<double>(row) + static_cast<double>(rows)) * row_bytes, "dst");
    need(env, src.length, static_cast<double>(rows) * static_cast<double>(row_size), "src");
    e.quantize_kv_q8_0(dst.data + static_cast<size_t>(row) * ryz::kv_q8_0_row_bytes(row_size), src.data, rows,
                       row_size);
  }

  // memoryBandwidth(bytes, reps, copy) -> bytes per second
  Napi::Value MemoryBandwidth(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& e = engine(env);
    const int64_t bytes = int_arg(info, 0, "bytes", 1);
    const int64_t reps = int_arg(info, 1, "reps", 1);
    const bool copy = info[2].ToBoolean().Value();
    return Napi::Number::New(env, e.memory_bandwidth(static_cast<size_t>(bytes), static_cast<int>(reps), copy));
  }

  // quantize(dst, type, src, rows, cols): ggml's reference quantizer, rows in parallel (Q4_K, Q6_K)
  void Quantize(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& e = engine(env);
    auto dst = u8_arg(info, 0, "dst");
    const int64_t type = int_arg(info, 1, "type");
    auto src = f32_arg(info, 2, "src");
    const int64_t rows = int_arg(info, 3, "rows");
    const int64_t cols = int_arg(info, 4, "cols");
    if (!ryz::quantize_rows_supported(static_cast<int>(type))) {
      throw Napi::Error::New(env, "quantize: no native quantizer for tensor type id " + std::to_string(type));
    }
    check_kblock(env, "quantize", static_cast<int>(type), cols);
    need(env, src.length, static_cast<double>(rows) * cols, "src");
    need(env, dst.length, static_cast<double>(ryz::format_row_bytes(static_cast<int>(type), cols)) * rows, "dst");
    e.quantize(static_cast<int>(type), src.data, rows, cols, dst.data);
  }

  // getRows(y, type, table, rows, cols, ids)
  void GetRows(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& e = engine(env);
    auto y = f32_arg(info, 0, "y");
    const int64_t type = int_arg(info, 1, "type");
    auto t = u8_arg(info, 2, "table");
    const int64_t rows = int_arg(info, 3, "rows");
    const int64_t cols = int_arg(info, 4, "cols");
    auto ids = i32_arg(info, 5, "ids");
    if (!ryz::format_supported(static_cast<int>(type))) {
      throw Napi::Error::New(env, "getRows: unsupported tensor type id " + std::to_string(type));
    }
    if ((type == ryz::kQ8_0 || type == ryz::kQ4_0) && cols % ryz::kQK != 0) {
      throw Napi::RangeError::New(env, "getRows: cols must be a multiple of 32 for block formats");
    }
    check_kblock(env, "getRows", static_cast<int>(type), cols);
    need(env, t.length, static_cast<double>(ryz::format_row_bytes(static_cast<int>(type), cols)) * rows, "table");
    need(env, y.length, static_cast<double>(ids.length) * cols, "y");
    e.get_rows(y.data, static_cast<int>(type), t.data, rows, cols, ids.data, static_cast<int64_t>(ids.length));
  }

  // rmsNorm(y, x, weight, n, dim, eps)
  void RmsNorm(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& e = engine(env);
    auto y = f32_arg(info, 0, "y");
    auto x = f32_arg(info, 1, "x");
    auto w = f32_arg(info, 2, "weight");
    const int64_t n = int_arg(info, 3, "n");
    const int64_t dim = int_arg(info, 4, "dim");
    const double eps = num_arg(info, 5, "eps");
    need(env, y.length, static_cast<double>(n) * dim, "y");
    need(env, x.length, static_cast<double>(n) * dim, "x");
    need(env, w.length, static_cast<double>(dim), "weight");
    e.rms_norm(y.data, x.data, w.data, n, dim, static_cast<float>(eps));
  }

  // rope(x, n, positions, nHeads, headDim, nDims, freqBase, freqScale, neox)
  void Rope(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& e = engine(env);
    auto x = f32_arg(info, 0, "x");
    const int64_t n = int_arg(info, 1, "n");
    auto pos = i32_arg(info, 2, "positions");
    ryz::RopeArgs a{};
    a.n_heads = int_arg(info, 3, "nHeads", 1);
    a.head_dim = int_arg(info, 4, "headDim", 1);
    a.n_dims = int_arg(info, 5, "nDims", 1);
    a.freq_base = num_arg(info, 6, "freqBase");
    a.freq_scale = num_arg(info, 7, "freqScale");
    a.neox = info[8].ToBoolean().Value();
    need(env, x.length, static_cast<double>(n) * a.n_heads * a.head_dim, "x");
    need(env, pos.length, static_cast<double>(n), "positions");
    e.rope(x.data, n, pos.data, a);
  }

  // softmax(x, n, dim)
  void Softmax(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& e = engine(env);
    auto x = f32_arg(info, 0, "x");
    const int64_t n = int_arg(info, 1, "n");
    const int64_t dim = int_arg(info, 2, "dim");
    need(env, x.length, static_cast<double>(n) * dim, "x");
    e.softmax(x.data, n, dim);
  }

  // argmax(ids, x, n, dim)
  void Argmax(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& e = engine(env);
    auto ids = i32_arg(info, 0, "ids");
    auto x = f32_arg(info, 1, "x");
    const int64_t n = int_arg(info, 2, "n");
    const int64_t dim = int_arg(info, 3, "dim");
    need(env, ids.length, static_cast<double>(n), "ids");
    need(env, x.length, static_cast<double>(n) * dim, "x");
    e.argmax(ids.data, x.data, n, dim);
  }

  // swiglu(y, gate, up, len)
  void Swiglu(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& e = engine(env);
    auto y = f32_arg(info, 0, "y");
    auto g = f32_arg(info, 1, "gate");
    auto u = f32_arg(info, 2, "up");
    const int64_t len = int_arg(info, 3, "len");
    need(env, y.length, static_cast<double>(len), "y");
    need(env, g.length, static_cast<double>(len), "gate");
    need(env, u.length, static_cast<double>(len), "up");
    e.swiglu(y.data, g.data, u.data, len);
  }

  // add(y, a, b, len)
  void Add(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& e = engine(env);
    auto y = f32_arg(info, 0, "y");
    auto a = f32_arg(info, 1, "a");
    auto b = f32_arg(info, 2, "b");
    const int64_t len = int_arg(info, 3, "len");
    need(env, y.length, static_cast<double>(len), "y");
    need(env, a.length, static_cast<double>(len), "a");
    need(env, b.length, static_cast<double>(len), "b");
    e.add(y.data, a.data, b.data, len);
  }

  // attention(out, q, k, v, positions, n, nHeads, nKvHeads, headDim, scale)
  void Attention(const Napi::CallbackInfo& info) {
    const auto a = attention_args<float>(info, f32_arg);
    engine(info.Env()).attention(a.out.data, a.q.data, a.k.data, a.v.data, a.pos.data, a.n, a.nh, a.nkv, a.hd,
                                 a.scale);
  }

  // pagedAttention(out, q, k, v, positions, seqOfRow, blockTables, n, nHeads, nKvHeads, headDim, scale,
  //                blockSize, maxBlocksPerSeq)
  void PagedAttention(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& e = engine(env);
    auto out = f32_arg(info, 0, "out");
    auto q = f32_arg(info, 1, "q");
    // The cache is F32 (Float32Array), F16 (Uint16Array of half bits) or Q8_0 (Uint8Array of
    // kv_q8_0_row_bytes rows), k and v alike.
    napi_typedarray_type kt = napi_float32_array;
    if (info[2].IsTypedArray()) kt = info[2].As<Napi::TypedArray>().TypedArrayType();
    const bool f16 = kt == napi_uint16_array;
    const bool q8 = kt == napi_uint8_array;
    View<float> k{nullptr, 0}, v{nullptr, 0};
    View<uint16_t> kh{nullptr, 0}, vh{nullptr, 0};
    View<uint8_t> kq{nullptr, 0}, vq{nullptr, 0};
    if (f16) {
      kh = u16_arg(info, 2, "k");
      vh = u16_arg(info, 3, "v");
    } else if (q8) {
      kq = u8_arg(info, 2, "k");
      vq = u8_arg(info, 3, "v");
    } else {
      k = f32_arg(info, 2, "k");
      v = f32_arg(info, 3, "v");
    }
    const size_t k_len = f16 ? kh.length : q8 ? kq.length : k.length;
    const size_t v_len = f16 ? vh.length : q8 ? vq.length : v.length;
    auto pos = i32_arg(info, 4, "positions");
    auto seq = i32_arg(info, 5, "seqOfRow");
    auto tables = i32_arg(info, 6, "blockTables");
    const int64_t n = int_arg(info, 7, "n");
    const int64_t nh = int_arg(info, 8, "nHeads", 1);
    const int64_t nkv = int_arg(info, 9, "nKvHeads", 1);
    const int64_t hd = int_arg(info, 10, "headDim", 1);
    const double scale = num_arg(info, 11, "scale");
    const int64_t bs = int_arg(info, 12, "blockSize", 1);
    const int64_t mb = int_arg(info, 13, "maxBlocksPerSeq", 1);
    need(env, pos.length, static_cast<double>(n), "positions");
    need(env, seq.length, static_cast<double>(n), "seqOfRow");
    need(env, q.length, static_cast<double>(n) * nh * hd, "q");
    need(env, out.length, static_cast<double>(n) * nh * hd, "out");
    if (nh % nkv != 0) throw Napi::RangeError::New(env, "pagedAttention: nHeads must be a multiple of nKvHeads");
    if (q8 && (nkv * hd) % ryz::kQK != 0)
      throw Napi::RangeError::New(env, "pagedAttention: a Q8_0 cache needs nKvHeads*headDim to be a multiple of 32");
    const size_t row_units = q8 ? ryz::kv_q8_0_row_bytes(nkv * hd) : static_cast<size_t>(nkv * hd);
    const int64_t cache_rows = static_cast<int64_t>(std::min(k_len, v_len) / row_units);
    const int64_t n_blocks = cache_rows / bs;
    for (int64_t t = 0; t < n; t++) {
      const int64_t p = pos.data[t];
      const int64_t s = seq.data[t];
      if (p < 0 || s < 0) throw Napi::RangeError::New(env, "pagedAttention: negative position or sequence");
      const int64_t used = p / bs + 1;
      if (used > mb) throw Napi::RangeError::New(env, "pagedAttention: position beyond the block table");
      if (static_cast<double>(tables.length) < static_cast<double>(s * mb + used))
        throw Napi::RangeError::New(env, "pagedAttention: sequence beyond the block tables");
      for (int64_t b = 0; b < used; b++) {
        const int64_t blk = tables.data[s * mb + b];
        if (blk < 0 || blk >= n_blocks) throw Napi::RangeError::New(env, "pagedAttention: block outside the cache");
      }
    }
    if (f16) {
      e.paged_attention_f16(out.data, q.data, kh.data, vh.data, pos.data, seq.data, tables.data, n, nh, nkv, hd,
                            static_cast<float>(scale), bs, mb);
    } else if (q8) {
      e.paged_attention_q8_0(out.data, q.data, kq.data, vq.data, pos.data, seq.data, tables.data, n, nh, nkv, hd,
                             static_cast<float>(scale), bs, mb);
    } else {
      e.paged_attention(out.data, q.data, k.data, v.data, pos.data, seq.data, tables.data, n, nh, nkv, hd,
                        static_cast<float>(scale), bs, mb);
    }
  }

  // ---- fused steps (fused.cpp) ----

  // actLayout(type) -> layout id, or -1 for formats taking float activations
  Napi::Value ActLayout(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Napi::Number::New(env, engine(env).act_layout(static_cast<int>(int_arg(info, 0, "type"))));
  }

  // actRowBytes(layout, cols) -> bytes of one row
  Napi::Value ActRowBytes(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& e = engine(env);
    const int64_t layout = int_arg(info, 0, "layout");
    const int64_t cols = int_arg(info, 1, "cols");
    if (layout >= ryz::kActLayouts) throw Napi::RangeError::New(env, "unknown activation layout");
    return Napi::Number::New(env, static_cast<double>(e.act_row_bytes(static_cast<int>(layout), cols)));
  }

  // An activation buffer of n rows in `layout`: long enough and 64-byte aligned (allocActivations).
  View<uint8_t> act_arg(const Napi::CallbackInfo& info, size_t i, int64_t layout, int64_t cols, int64_t n) {
    Napi::Env env = info.Env();
    if (layout >= ryz::kActLayouts) throw Napi::RangeError::New(env, "unknown activation layout");
    auto act = u8_arg(info, i, "act");
    if (reinterpret_cast<uintptr_t>(act.data) % 64 != 0) {
      throw Napi::Error::New(env, "act must be 64-byte aligned (made by allocActivations)");
    }
    const size_t row = engine(env).act_row_bytes(static_cast<int>(layout), cols);
    need(env, act.length, static_cast<double>(row) * static_cast<double>(n), "act");
    return act;
  }

  // rmsNormQuantize(act, layout, y | null, x, weight, n, dim, eps)
  void RmsNormQuantize(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& e = engine(env);
    const int64_t layout = int_arg(info, 1, "layout");
    const int64_t n = int_arg(info, 5, "n");
    const int64_t dim = int_arg(info, 6, "dim");
    const double eps = num_arg(info, 7, "eps");
    auto act = act_arg(info, 0, layout, dim, n);
    float* y = nullptr;
    if (!info[2].IsNull() && !info[2].IsUndefined()) {
      auto yv = f32_arg(info, 2, "y");
      need(env, yv.length, static_cast<double>(n) * dim, "y");
      y = yv.data;
    }
    auto x = f32_arg(info, 3, "x");
    auto w = f32_arg(info, 4, "weight");
    need(env, x.length, static_cast<double>(n) * dim, "x");
    need(env, w.length, static_cast<double>(dim), "weight");
    e.rms_norm_quantize(act.data, static_cast<int>(layout), y, x.data, w.data, n, dim, static_cast<float>(eps));
  }

  // swigluQuantize(act, layout, gate, up, n, cols)
  void SwigluQuantize(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& e = engine(env);
    const int64_t layout = int_arg(info, 1, "layout");
    const int64_t n = int_arg(info, 4, "n");
    const int64_t cols = int_arg(info, 5, "cols");
    auto act = act_arg(info, 0, layout, cols, n);
    auto g = f32_arg(info, 2, "gate");
    auto u = f32_arg(info, 3, "up");
    need(env, g.length, static_cast<double>(n) * cols, "gate");
    need(env, u.length, static_cast<double>(n) * cols, "up");
    e.swiglu_quantize(act.data, static_cast<int>(layout), g.data, u.data, n, cols);
  }

  // matmulQuantized(y, type, w, packed, rows, cols, act, n): act in actLayout(type)
  void MatmulQuantized(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& e = engine(env);
    auto y = f32_arg(info, 0, "y");
    const int64_t type = int_arg(info, 1, "type");
    auto w = u8_arg(info, 2, "w");
    const bool packed = info[3].ToBoolean().Value();
    const int64_t rows = int_arg(info, 4, "rows");
    const int64_t cols = int_arg(info, 5, "cols");
    const int64_t n = int_arg(info, 7, "n");
    const int layout = e.act_layout(static_cast<int>(type));
    if (layout < 0) throw Napi::Error::New(env, "matmulQuantized: this format takes float activations");
    if (cols % (layout == ryz::kActQ8_K ? ryz::kQKK : ryz::kQK) != 0) {
      throw Napi::RangeError::New(env, "matmulQuantized: cols is not a multiple of the block size");
    }
    auto act = act_arg(info, 6, layout, cols, n);
    need(env, w.length, static_cast<double>(ryz::format_row_bytes(static_cast<int>(type), cols)) * rows, "w");
    need(env, y.length, static_cast<double>(n) * rows, "y");
    e.matmul_quantized(y.data, static_cast<int>(type), w.data, packed, rows, cols, act.data, n);
  }

  // ropeStoreKV(q, k, v, n, positions, nHeads, nKvHeads, headDim, nDims, freqBase, freqScale, neox,
  //             keys, values, slots): keys/values both Float32Array or both Uint16Array (F16 bits)
  void RopeStoreKV(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& e = engine(env);
    auto q = f32_arg(info, 0, "q");
    auto k = f32_arg(info, 1, "k");
    auto v = f32_arg(info, 2, "v");
    const int64_t n = int_arg(info, 3, "n");
    auto pos = i32_arg(info, 4, "positions");
    ryz::RopeArgs a{};
    a.n_heads = int_arg(info, 5, "nHeads", 1);
    const int64_t nkv = int_arg(info, 6, "nKvHeads", 1);
    a.head_dim = int_arg(info, 7, "headDim", 1);
    a.n_dims = int_arg(info, 8, "nDims", 1);
    a.freq_base = num_arg(info, 9, "freqBase");
    a.freq_scale = num_arg(info, 10, "freqScale");
    a.neox = info[11].ToBoolean().Value();
    const napi_typedarray_type kt =
        info[12].IsTypedArray() ? info[12].As<Napi::TypedArray>().TypedArrayType() : napi_float32_array;
    const ryz::KvFormat fmt = kt == napi_uint16_array  ? ryz::KvFormat::F16
                              : kt == napi_uint8_array ? ryz::KvFormat::Q8_0
                                                       : ryz::KvFormat::F32;
    void* kc = nullptr;
    void* vc = nullptr;
    size_t cache_len = 0;
    double row_units = static_cast<double>(nkv) * static_cast<double>(a.head_dim);
    if (fmt == ryz::KvFormat::F16) {
      auto kh = u16_arg(info, 12, "keys");
      auto vh = u16_arg(info, 13, "values");
      kc = kh.data;
      vc = vh.data;
      cache_len = std::min(kh.length, vh.length);
    } else if (fmt == ryz::KvFormat::Q8_0) {
      auto kq = u8_arg(info, 12, "keys");
      auto vq = u8_arg(info, 13, "values");
      kc = kq.data;
      vc = vq.data;
      cache_len = std::min(kq.length, vq.length);
      if ((nkv * a.head_dim) % ryz::kQK != 0)
        throw Napi::RangeError::New(env, "ropeStoreKV: a Q8_0 cache needs nKvHeads*headDim to be a multiple of 32");
      row_units = static_cast<double>(ryz::kv_q8_0_row_bytes(nkv * a.head_dim));
    } else {
      auto kf = f32_arg(info, 12, "keys");
      auto vf = f32_arg(info, 13, "values");
      kc = kf.data;
      vc = vf.data;
      cache_len = std::min(kf.length, vf.length);
    }
    auto slots = i32_arg(info, 14, "slots");
    const double kv_row = static_cast<double>(nkv) * static_cast<double>(a.head_dim);
    need(env, q.length, static_cast<double>(n) * a.n_heads * a.head_dim, "q");
    need(env, k.length, static_cast<double>(n) * kv_row, "k");
    need(env, v.length, static_cast<double>(n) * kv_row, "v");
    need(env, pos.length, static_cast<double>(n), "positions");
    need(env, slots.length, static_cast<double>(n), "slots");
    for (int64_t t = 0; t < n; t++) {
      if (slots.data[t] < 0 || (static_cast<double>(slots.data[t]) + 1) * row_units > static_cast<double>(cache_len)) {
        throw Napi::RangeError::New(env, "ropeStoreKV: slot " + std::to_string(slots.data[t]) + " is outside the cache");
      }
    }
    e.rope_store_kv(q.data, k.data, v.data, n, pos.data, a, nkv, kc, vc, fmt, slots.data);
  }

  void Dispose(const Napi::CallbackInfo&) { engine_.reset(); }

  std::unique_ptr<Engine> engine_;
};

// Ranges this addon has mapped read-only from files (start -> length): repackWeights may drop the
// pages of a source inside one of them (MADV_DONTNEED re-reads from the file if touched again);
// never anything else, where MADV_DONTNEED would zero memory.
std::mutex g_maps_mu;
std::map<uintptr_t, size_t> g_maps;

bool inside_mapping(const uint8_t* p, size_t len) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  std::lock_guard<std::mutex> lock(g_maps_mu);
  auto it = g_maps.upper_bound(a);
  if (it == g_maps.begin()) return false;
  --it;
  return a >= it->first && a + len <= it->first + it->second;
}

void unmap(Napi::Env, void* data, size_t* length) {
  {
    std::lock_guard<std::mutex> lock(g_maps_mu);
    g_maps.erase(reinterpret_cast<uintptr_t>(data));
  }
  munmap(data, *length);
  delete length;
}

// Repacked weights live in their own anonymous mapping, advised for transparent huge pages: decode
// streams every weight once per token, and 2 MiB pages keep the hardware prefetchers running
// across 4 KiB boundaries and the TLB from thrashing. (Only whole 2 MiB ranges get huge pages, so
// the mapping never uses more than its rounded-up size.) RYZANSTEIN_HUGEPAGES=0 turns the advice off.
void* alloc_packed(size_t bytes) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  const char* env = std::getenv("RYZANSTEIN_HUGEPAGES");
  if (env == nullptr || std::strcmp(env, "0") != 0) ::madvise(p, bytes, MADV_HUGEPAGE);
  return p;
}

void free_packed(Napi::Env, void* data, size_t* length) {
  ::munmap(data, *length);
  delete length;
}

class Addon : public Napi::Addon<Addon> {
 public:
  Addon(Napi::Env env, Napi::Object exports) {
    DefineAddon(exports, {
                             InstanceMethod<&Addon::CpuIsas>("cpuIsas"),
                             InstanceMethod<&Addon::MapFile>("mapFile"),
                             InstanceMethod<&Addon::RepackWeights>("repackWeights"),
                             InstanceMethod<&Addon::AllocActivations>("allocActivations"),
                             InstanceValue("NativeEngine", EngineWrap::Define(env), napi_enumerable),
                             InstanceValue("TrainEngine", ryz::define_train_engine(env), napi_enumerable),
                         });
  }

 private:
  Napi::Value CpuIsas(const Napi::CallbackInfo& info) {
    const auto isas = ryz::available_isas();
    Napi::Array out = Napi::Array::New(info.Env(), isas.size());
    for (size_t i = 0; i < isas.size(); i++) out.Set(static_cast<uint32_t>(i), ryz::isa_name(isas[i]));
    return out;
  }

  // mapFile(path): the whole file, mapped read-only (PROT_READ, MAP_PRIVATE).
  Napi::Value MapFile(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsString()) throw Napi::TypeError::New(env, "path must be a string");
    const std::string path = info[0].As<Napi::String>().Utf8Value();
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw Napi::Error::New(env, std::string("cannot open: ") + std::strerror(errno));
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      const int err = errno;
      ::close(fd);
      throw Napi::Error::New(env, std::string("cannot stat: ") + std::strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd);
      throw Napi::Error::New(env, "not a regular file");
    }
    const size_t length = static_cast<size_t>(st.st_size);
    if (length == 0) {
      ::close(fd);
      return Napi::Uint8Array::New(env, 0);
    }
    void* p = ::mmap(nullptr, length, PROT_READ, MAP_PRIVATE, fd, 0);
    const int err = errno;
    ::close(fd);
    if (p == MAP_FAILED) throw Napi::Error::New(env, std::string("cannot mmap: ") + std::strerror(err));
    {
      std::lock_guard<std::mutex> lock(g_maps_mu);
      g_maps[reinterpret_cast<uintptr_t>(p)] = length;
    }
    Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, p, length, unmap, new size_t(length));
    return Napi::Uint8Array::New(env, length, ab, 0);
  }

  // allocActivations(bytes) -> zeroed Uint8Array, 64-byte aligned (the fused steps' activation
  // buffers: the Q8 act layout is read with aligned loads), freed on GC.
  Napi::Value AllocActivations(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const int64_t bytes = int_arg(info, 0, "bytes");
    if (bytes == 0) return Napi::Uint8Array::New(env, 0);
    const size_t size = (static_cast<size_t>(bytes) + 63) & ~size_t{63};
    void* p = std::aligned_alloc(64, size);
    if (p == nullptr) throw Napi::Error::New(env, "allocActivations: out of memory");
    std::memset(p, 0, size);
    Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, p, static_cast<size_t>(bytes), [](Napi::Env, void* d) { std::free(d); });
    return Napi::Uint8Array::New(env, static_cast<size_t>(bytes), ab, 0);
  }

  // repackWeights(type, w, rows, cols, release) -> Uint8Array in the layout of repack.h (or null when
  // the matrix's values do not fit that layout), page
  // aligned (alloc_packed), unmapped on GC. With `release`, the whole pages of `w` are dropped from memory when `w`
  // lies in a file mapping made by mapFile (the copy replaces them in RSS); returns the copy with a
  // `released` flag set on it as a property.
  Napi::Value RepackWeights(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const int64_t type = int_arg(info, 0, "type");
    auto w = u8_arg(info, 1, "w");
    const int64_t rows = int_arg(info, 2, "rows");
    const int64_t cols = int_arg(info, 3, "cols");
    const bool release = info[4].ToBoolean().Value();
    if (!ryz::repack_supported(static_cast<int>(type))) {
      throw Napi::Error::New(env, "repackWeights: no repacked layout for tensor type id " + std::to_string(type));
    }
    check_packed_cols(env, "repackWeights", static_cast<int>(type), cols);
    const size_t bytes = ryz::format_row_bytes(static_cast<int>(type), cols) * static_cast<size_t>(rows);
    need(env, w.length, static_cast<double>(bytes), "w");
    // A matrix the packed layout cannot hold (TQ2_0 with weight +2) stays in the file layout.
    if (!ryz::repack_accepts(static_cast<int>(type), w.data, rows, cols)) return env.Null();
    const size_t packed_bytes = ryz::repack_bytes(static_cast<int>(type), rows, cols);
    if (packed_bytes == 0) return Napi::Uint8Array::New(env, 0);
    void* dst = alloc_packed(packed_bytes);
    if (dst == nullptr) throw Napi::Error::New(env, "repackWeights: out of memory");
    ryz::repack_rows(static_cast<int>(type), w.data, rows, cols, static_cast<uint8_t*>(dst));
    bool released = false;
    if (release && inside_mapping(w.data, bytes)) {
      const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
      const uintptr_t a = (reinterpret_cast<uintptr_t>(w.data) + page - 1) & ~(page - 1);
      const uintptr_t b = (reinterpret_cast<uintptr_t>(w.data) + bytes) & ~(page - 1);
      if (b > a) released = ::madvise(reinterpret_cast<void*>(a), b - a, MADV_DONTNEED) == 0;
    }
    Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, dst, packed_bytes, free_packed, new size_t(packed_bytes));
    Napi::Uint8Array out = Napi::Uint8Array::New(env, packed_bytes, ab, 0);
    out.Set("released", Napi::Boolean::New(env, released));
    return out;
  }
};

}  // namespace

NODE_API_ADDON(Addon)
