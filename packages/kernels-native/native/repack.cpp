#include "repack.h"

#include <cstring>
#include <stdexcept>

#include "common.h"
#include "engine.h"

namespace ryz {

bool repack_supported(int fmt) { return fmt == kQ4_0 || fmt == kQ8_0; }

void repack_rows(int fmt, const uint8_t* src, int64_t rows, int64_t cols, uint8_t* dst) {
  if (!repack_supported(fmt)) throw std::invalid_argument("repack: unsupported format");
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

}  // namespace ryz
