#include "repack.h"

#include <cstring>
#include <stdexcept>

#include "common.h"
#include "engine.h"
#include "ternary_lut.h"

namespace ryz {

namespace {

// Q4_0 / Q8_0: 8-row interleave (layout in repack.h).
void repack_interleaved(int fmt, const uint8_t* src, int64_t rows, int64_t cols, uint8_t* dst) {
  const int64_t nb = cols / kQK;
  const size_t row_bytes = format_row_bytes(fmt, cols);
  const size_t blk_bytes = fmt == kQ4_0 ? sizeof(BlockQ4_0) : sizeof(BlockQ8_0);
  const int qbytes = fmt == kQ4_0 ? kQK / 2 : kQK;  // quant bytes per block and row
  const int64_t groups = rows / kPackRows;
  uint8_t* out = dst;
  for (int64_t g = 0; g < groups; g++) {
    for (int64_t b = 0; b < nb; b++) {
      const uint8_t* blk[kPackRows];
      for (int i = 0; i < kPackRows; i++) {
        blk[i] = src + row_bytes * static_cast<size_t>(g * kPackRows + i) + blk_bytes * static_cast<size_t>(b);
        std::memcpy(out + 2 * i, blk[i], 2);  // d
      }
      out += 2 * kPackRows;
      for (int c = 0; c < qbytes / 4; c++) {
        for (int i = 0; i < kPackRows; i++) {
          std::memcpy(out, blk[i] + 2 + 4 * c, 4);
          out += 4;
        }
      }
    }
  }
  const int64_t tail = rows - groups * kPackRows;
  std::memcpy(out, src + row_bytes * static_cast<size_t>(groups * kPackRows), row_bytes * static_cast<size_t>(tail));
}

size_t interleaved_bytes(int fmt, int64_t rows, int64_t cols) {
  return format_row_bytes(fmt, cols) * static_cast<size_t>(rows);
}
bool accepts_all(int, const uint8_t*, int64_t, int64_t) { return true; }

/** One packed layout: its size, whether a matrix fits it, and the packing. */
struct RepackEntry {
  int fmt;
  size_t (*bytes)(int fmt, int64_t rows, int64_t cols);
  bool (*accepts)(int fmt, const uint8_t* src, int64_t rows, int64_t cols);
  void (*pack)(int fmt, const uint8_t* src, int64_t rows, int64_t cols, uint8_t* dst);
};

size_t ternary_bytes(int, int64_t rows, int64_t cols) { return tl_packed_bytes(rows, cols); }

const RepackEntry kRepack[] = {
    {kQ4_0, interleaved_bytes, accepts_all, repack_interleaved},
    {kQ8_0, interleaved_bytes, accepts_all, repack_interleaved},
    {34, ternary_bytes, tl_accepts, tl_repack},  // TQ1_0
    {35, ternary_bytes, tl_accepts, tl_repack},  // TQ2_0
};

const RepackEntry* find(int fmt) {
  for (const RepackEntry& e : kRepack) {
    if (e.fmt == fmt) return &e;
  }
  return nullptr;
}

const RepackEntry& entry(int fmt) {
  const RepackEntry* e = find(fmt);
  if (e == nullptr) throw std::invalid_argument("repack: unsupported format");
  return *e;
}

}  // namespace

bool repack_supported(int fmt) { return find(fmt) != nullptr; }

size_t repack_bytes(int fmt, int64_t rows, int64_t cols) { return entry(fmt).bytes(fmt, rows, cols); }

bool repack_accepts(int fmt, const uint8_t* src, int64_t rows, int64_t cols) {
  return entry(fmt).accepts(fmt, src, rows, cols);
}

void repack_rows(int fmt, const uint8_t* src, int64_t rows, int64_t cols, uint8_t* dst) {
  entry(fmt).pack(fmt, src, rows, cols, dst);
}

}  // namespace ryz
